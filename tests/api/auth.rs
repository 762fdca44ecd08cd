//! Keys per role, from outside: a real server with auth.keys_file, tonic clients sending
//! `authorization: Bearer`, and the binary's `keys new`.
use std::time::Duration;

use leadrouter::app::App;
use leadrouter::auth::{Role, new_key};
use leadrouter::grpc::pb;
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::helpers::*;

fn with_key<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

struct Team {
    marketing: String,
    crm: String,
    ops: String,
}

fn keys_file(dir: &std::path::Path) -> (std::path::PathBuf, Team) {
    let (marketing, l1) = new_key("mk", Role::Marketing).unwrap();
    let (crm, l2) = new_key("crm", Role::Crm).unwrap();
    let (ops, l3) = new_key("ops", Role::Ops).unwrap();
    let path = dir.join("keys.toml");
    std::fs::write(&path, format!("{l1}\n{l2}\n{l3}")).unwrap();
    (
        path,
        Team {
            marketing,
            crm,
            ops,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_reaches_only_its_services_and_keys_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (path, team) = keys_file(dir.path());
    let mut s = test_settings();
    s.auth.keys_file = path.display().to_string();
    let app = spawn_with(s).await;

    // Health answers without a key.
    let h = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(h.into_inner().status, 1);

    let lead = || pb::SubmitLeadRequest {
        lead: Some(good_lead("l1")),
        ..Default::default()
    };
    let e = app.leads().submit_lead(lead()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = app
        .leads()
        .submit_lead(with_key(lead(), "lr_not-a-key"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    app.leads()
        .submit_lead(with_key(lead(), &team.marketing))
        .await
        .unwrap();

    // Marketing may not swap models or change the team.
    let reload = || pb::ReloadModelRequest {
        path: "bank-default.json".into(),
        force: false,
        artifact: vec![],
        ..Default::default()
    };
    let e = app
        .models()
        .reload_model(with_key(reload(), &team.marketing))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("ops"), "names the role needed: {e:?}");
    let upsert = || pb::UpsertRepRequest {
        rep: Some(rep("ann", 3, &[])),
    };
    let e = app
        .reps()
        .upsert_rep(with_key(upsert(), &team.marketing))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = app
        .reps()
        .upsert_rep(with_key(upsert(), &team.crm))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    app.reps()
        .upsert_rep(with_key(upsert(), &team.ops))
        .await
        .unwrap();
    // CRM reads the team and works assignments.
    app.reps()
        .list_reps(with_key(pb::ListRepsRequest::default(), &team.crm))
        .await
        .unwrap();
    // (l1 came before any rep, so it was not stored: NOT_FOUND means the key got through.)
    let e = app
        .routing()
        .get_assignment(with_key(
            pb::GetAssignmentRequest {
                lead_id: "l1".into(),
            },
            &team.crm,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // Ops pointing ReloadModel at the server's files gets nothing back.
    let e = app
        .models()
        .reload_model(with_key(
            pb::ReloadModelRequest {
                path: "/etc/passwd".into(),
                force: true,
                artifact: vec![],
                ..Default::default()
            },
            &team.ops,
        ))
        .await
        .unwrap_err();
    assert!(!e.message().contains("root:"), "{e:?}");
    assert!(e.message().contains("not under model.dir"), "{e:?}");

    // A new keys file takes effect without a restart: the old marketing key is gone.
    let (fresh, line) = new_key("mk2", Role::Marketing).unwrap();
    std::thread::sleep(Duration::from_millis(1100)); // a new mtime second on coarse clocks
    std::fs::write(&path, line).unwrap();
    let started = std::time::Instant::now();
    loop {
        let r = app
            .leads()
            .submit_lead(with_key(
                pb::SubmitLeadRequest {
                    lead: Some(good_lead("l2")),
                    ..Default::default()
                },
                &fresh,
            ))
            .await;
        if r.is_ok() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "keys not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e = app
        .leads()
        .submit_lead(with_key(lead(), &team.marketing))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn without_keys_the_server_stays_on_loopback() {
    let mut s = test_settings();
    s.server.addr = "0.0.0.0:0".into();
    let err = App::build(s.clone()).await.err().expect("refused");
    assert!(err.to_string().contains("refusing to serve"), "{err}");
    s.auth.allow_anonymous = true;
    assert!(App::build(s).await.is_ok());
}

#[test]
fn keys_new_prints_a_token_and_its_line() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leadrouter"))
        .args(["keys", "new", "--role", "crm", "--id", "crm-east"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let token = text
        .lines()
        .find(|l| l.starts_with("lr_"))
        .expect("a token line");
    let toml = &text[text.find("[[key]]").expect("a [[key]] line")..];
    assert!(!toml.contains(token), "the token is not in the file line");
    let keys = leadrouter::auth::Keys::parse(toml).unwrap();
    let caller = keys.find(token).expect("the token matches its line");
    assert_eq!(
        (caller.key_id.as_str(), caller.role),
        ("crm-east", Role::Crm)
    );
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_leadrouter"))
        .args(["keys", "new", "--role", "root"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

/// Secrets never reach a log line: a Redis password in a failing start-up, and the tokens of
/// a keys file while requests with and without them are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_the_logs() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leadrouter"))
        .arg("serve")
        .current_dir(repo_path(""))
        .env(
            "LEADROUTER__STORE__URL",
            "redis://:Sekret-Passw0rd@127.0.0.1:1/0",
        )
        .env("LEADROUTER__SERVER__ADDR", "127.0.0.1:0")
        .env("LEADROUTER__ADMIN__ADDR", "127.0.0.1:0")
        .env("LEADROUTER__LOG__FORMAT", "json")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("cannot connect to Redis"), "{text}");
    assert!(!text.contains("Sekret-Passw0rd"), "password leaked: {text}");

    let dir = tempfile::tempdir().unwrap();
    let (path, team) = keys_file(dir.path());
    let p = Process::start(&[
        ("LEADROUTER__AUTH__KEYS_FILE", path.to_str().unwrap()),
        ("LEADROUTER__REPS__FILE", ""),
        ("LEADROUTER__LOG__FILTER", "debug"),
    ])
    .await;
    let mut c = p.reps();
    c.upsert_rep(with_key(
        pb::UpsertRepRequest {
            rep: Some(rep("ann", 2, &[])),
        },
        &team.ops,
    ))
    .await
    .unwrap();
    let _ = c
        .upsert_rep(with_key(
            pb::UpsertRepRequest {
                rep: Some(rep("bob", 2, &[])),
            },
            &team.marketing,
        ))
        .await
        .unwrap_err();
    // Every line the server wrote (debug level) after start-up: one audit line for the
    // allowed change, and no token anywhere.
    let lines = p.logs_for(Duration::from_millis(700));
    let audit: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "audit")
        .collect();
    // The refused call never reached the service, so it has no audit line; the allowed one
    // says who, from where and what changed.
    assert_eq!(audit.len(), 1, "{lines:#?}");
    let f = &audit[0]["fields"];
    assert_eq!(f["key"], "ops");
    assert_eq!(f["role"], "ops");
    assert_eq!(f["method"], "UpsertRep");
    assert_eq!(f["outcome"], "ok");
    assert!(f["what"].as_str().unwrap().contains("\"ann\""), "{f}");
    assert!(f["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{f}");
    for token in [&team.marketing, &team.crm, &team.ops] {
        assert!(
            !lines.iter().any(|l| l.contains(token.as_str())),
            "a token was logged"
        );
    }
    let keys = std::fs::read_to_string(&path).unwrap();
    assert!(
        !keys.contains(team.ops.as_str()),
        "the keys file holds no token"
    );
    assert!(p.terminate().success());
}

/// SIGHUP re-reads the keys file even when its modification time did not move (a file put
/// back by a tool that keeps times).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rereads_the_keys_file() {
    let dir = tempfile::tempdir().unwrap();
    let (path, team) = keys_file(dir.path());
    let p = Process::start(&[
        ("LEADROUTER__AUTH__KEYS_FILE", path.to_str().unwrap()),
        ("LEADROUTER__REPS__FILE", ""),
    ])
    .await;
    let list = |token: &str| {
        let mut c = p.reps();
        let req = with_key(pb::ListRepsRequest::default(), token);
        async move { c.list_reps(req).await.map(|_| ()) }
    };
    list(&team.ops).await.unwrap();
    // A new ops key replaces the old ones, with the old modification time put back.
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    let (fresh, line) = new_key("ops2", Role::Ops).unwrap();
    std::fs::write(&path, line).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(before)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        list(&fresh).await.unwrap_err().code(),
        Code::Unauthenticated,
        "the watcher saw no change"
    );
    p.signal("HUP");
    assert!(
        p.wait_for_log("auth keys reloaded", Duration::from_secs(5))
            .is_some()
    );
    list(&fresh).await.unwrap();
    assert_eq!(
        list(&team.ops).await.unwrap_err().code(),
        Code::Unauthenticated
    );
}
