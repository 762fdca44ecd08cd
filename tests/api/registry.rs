//! The shared model registry (issue 13): a promotion through one replica reaches the other,
//! a restarted replica serves the promoted model (not model.path), and a rollback goes back
//! one step on every replica without a file.
use std::time::{Duration, Instant};

use crate::gate_rows::reload_with_rows;
use crate::helpers::*;
use crate::models::variant_model;
use crate::redis_server::RedisServer;

/// Waits until `p` serves `want`; returns how long it took.
async fn serves(p: &Process, want: &str) -> Duration {
    let started = Instant::now();
    while p.model_version().await != want {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still serving {} instead of {want}",
            p.model_version().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_reaches_every_replica_and_survives_a_restart() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = redis.url();
    let env = [
        ("LEADROUTER__STORE__URL", url.as_str()),
        ("LEADROUTER__REPS__FILE", ""),
    ];
    let a = Process::start(&env).await;
    let b = Process::start(&env).await;
    let original = a.model_version().await;
    assert_eq!(b.model_version().await, original);

    let (variant, v) = variant_model(dir.path(), 0.3);
    let resp = a
        .models()
        .reload_model(reload_with_rows(std::fs::read(&variant).unwrap(), false))
        .await
        .unwrap()
        .into_inner();
    assert!(resp.generation >= 2, "published: {resp:?}");
    assert_eq!(a.model_version().await, v);
    let took = serves(&b, &v).await;
    eprintln!("the other replica served the promoted model after {took:?}");

    // A restart serves the registry's model, not model.path.
    drop(b);
    let b = Process::start(&env).await;
    assert_eq!(
        b.model_version().await,
        v,
        "a restart serves the registry's model"
    );

    // Roll back through the restarted replica: both go back to the original, no file given.
    let out = cli(
        &[
            "promote",
            "--server",
            &format!("http://{}", b.addr),
            "--rollback",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (j["model_version"].as_str(), j["previous_version"].as_str()),
        (Some(original.as_str()), Some(v.as_str()))
    );
    assert_eq!(j["rolled_back"], true);
    assert_eq!(b.model_version().await, original);
    serves(&a, &original).await;
    // Nothing before the original is kept: a second rollback is refused and changes nothing.
    let again = cli(
        &[
            "promote",
            "--server",
            &format!("http://{}", a.addr),
            "--rollback",
        ],
        &[],
    );
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("no earlier model"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(a.model_version().await, original);
    assert_eq!(b.model_version().await, original);
}
