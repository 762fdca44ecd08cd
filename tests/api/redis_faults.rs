//! Redis states that pass by themselves, from outside: out of memory answers
//! RESOURCE_EXHAUSTED and a busy script UNAVAILABLE, each naming the state and never a script
//! hash or line; both clear without a restart.
use std::time::Duration;

use tonic::Code;

use crate::helpers::*;
use crate::redis_server::RedisServer;

fn redis_settings(url: &str) -> leadrouter::config::Settings {
    let mut s = test_settings();
    s.store.url = url.into();
    s
}

/// Nothing of Redis' own wording leaks: no script hash, no Lua line, no URL.
fn assert_clean(e: &tonic::Status) {
    for leak in ["script", "user_script", "@", "redis://", "redis+unix"] {
        assert!(!e.message().contains(leak), "{leak:?} in {:?}", e.message());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_is_resource_exhausted_and_clears() {
    let server = RedisServer::start();
    let app = spawn_with(redis_settings(&server.url())).await;
    app.add_rep(rep("r", 100, &[])).await;
    submit(&app, good_lead("before")).await.unwrap();
    server.cli(&["config", "set", "maxmemory", "1"]);
    let e = submit(&app, good_lead("during")).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("out of memory"), "{e:?}");
    assert_clean(&e);
    let e = app
        .reps()
        .upsert_rep(leadrouter::grpc::pb::UpsertRepRequest {
            rep: Some(rep("s", 1, &[])),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert_clean(&e);
    server.cli(&["config", "set", "maxmemory", "0"]);
    submit(&app, good_lead("after")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_script_is_unavailable_and_clears() {
    let server = RedisServer::start();
    let app = spawn_with(redis_settings(&server.url())).await;
    app.add_rep(rep("r", 100, &[])).await;
    submit(&app, good_lead("before")).await.unwrap();
    server.cli(&["config", "set", "busy-reply-threshold", "50"]);
    // Another client's script that never ends: Redis answers BUSY to everybody else.
    let mut hog = std::process::Command::new("redis-cli")
        .args(["-s", server.socket.to_str().unwrap()])
        .args(["eval", "while true do end", "0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = submit(&app, good_lead("during")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().contains("(BUSY)"), "{e:?}");
    assert!(e.message().contains("retry"), "{e:?}");
    assert_clean(&e);
    server.cli(&["script", "kill"]);
    let _ = hog.wait();
    submit(&app, good_lead("after")).await.unwrap();
}
