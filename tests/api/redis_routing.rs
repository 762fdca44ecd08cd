//! The service on Redis: one command per SubmitLead, outage and recovery, durability across a
//! kill -9, and directory changes seen by every replica.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leadrouter::domain::assignment::LeadState;
use leadrouter::grpc::pb;
use leadrouter::store::Claim;
use leadrouter::store::contract;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::helpers::*;
use crate::redis_server::RedisServer;
use crate::store_contract::redis_store;

fn redis_settings(url: &str) -> leadrouter::config::Settings {
    let mut s = test_settings();
    s.store.url = url.into();
    s
}

fn commandstats(server: &RedisServer) -> HashMap<String, u64> {
    server
        .cli(&["info", "commandstats"])
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

/// Counts round trips with MONITOR, which tells a client's commands from those a script runs
/// (`[0 lua]`); INFO commandstats counts both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_submit_lead_is_exactly_one_redis_command() {
    let server = RedisServer::start();
    let app = spawn_with(redis_settings(&server.url())).await;
    app.add_rep(rep("r", 30, &[])).await;
    submit(&app, good_lead("warm-up")).await.unwrap();
    let log = server.dir.path().join("monitor.log");
    let mut monitor = std::process::Command::new("redis-cli")
        .args(["-s", server.socket.to_str().unwrap(), "monitor"])
        .stdout(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.cli(&["config", "resetstat"]);
    let n = 40;
    for i in 0..n {
        let lead = if i % 2 == 0 {
            good_lead(&format!("l{i}"))
        } else {
            poor_lead(&format!("l{i}"))
        };
        submit(&app, lead).await.unwrap();
    }
    let stats = commandstats(&server);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = monitor.kill();
    let _ = monitor.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    // Background work (directory version polls, health pings, the scheduler's look at each
    // pool's deadlines, the test's own commands) is not per lead.
    let background = [
        "\"get\"",
        "\"ping\"",
        "\"config\"",
        "\"info\"",
        "\"smembers\"",
        "\"zrange\"",
    ];
    let from_clients: Vec<String> = text
        .lines()
        .map(str::to_lowercase)
        .filter(|l| l.contains(" [") && !l.contains("[0 lua]"))
        .filter(|l| !background.iter().any(|b| l.contains(b)))
        .collect();
    assert_eq!(
        from_clients.len() as u64,
        n,
        "one round trip per lead: {from_clients:#?}"
    );
    assert!(
        from_clients.iter().all(|l| l.contains("\"evalsha\"")),
        "{from_clients:#?}"
    );
    assert_eq!(stats.get("evalsha").copied(), Some(n), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_keeps_scoring_and_fails_routing_fast_then_recovers() {
    let mut server = RedisServer::start();
    let app = spawn_with(redis_settings(&server.url())).await;
    app.add_rep(rep("r", 100, &[])).await;
    submit(&app, good_lead("before")).await.unwrap();
    server.kill();

    let started = Instant::now();
    let e = submit(&app, good_lead("during")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(e.message().contains("routing store unavailable"), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failing took {:?}",
        started.elapsed()
    );
    let e = app
        .routing()
        .get_assignment(pb::GetAssignmentRequest {
            lead_id: "before".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    let scored = app
        .leads()
        .score_lead(pb::ScoreLeadRequest {
            lead: Some(good_lead("during")),
        })
        .await;
    assert!(scored.is_ok(), "scoring must not depend on the store");
    let mut health = HealthClient::new(app.channel.clone());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = health
            .check(HealthCheckRequest {
                service: "leadrouter.v1.RoutingService".into(),
            })
            .await
            .unwrap();
        if s.into_inner().status() == ServingStatus::NotServing {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "health never reported the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Load balancers without gRPC health see it too, and the failures are counted.
    let admin = app.admin.unwrap();
    assert_eq!(crate::metrics::http_get(admin, "/readyz").await.0, 503);
    assert_eq!(crate::metrics::http_get(admin, "/healthz").await.0, 200);
    let (status, body) = crate::metrics::http_get(admin, "/metrics").await;
    assert_eq!(status, 200, "metrics answer while the store is down");
    let samples = crate::metrics::parse_prometheus(&body);
    assert_eq!(
        crate::metrics::value(&samples, "leadrouter_ready", &[]),
        0.0
    );
    assert!(
        crate::metrics::value(
            &samples,
            "leadrouter_store_errors_total",
            &[("operation", "claim")]
        ) >= 1.0,
        "{body}"
    );
    let unavailable = crate::metrics::value(
        &samples,
        "leadrouter_grpc_requests_total",
        &[("method", "SubmitLead"), ("code", "UNAVAILABLE")],
    );
    assert_eq!(unavailable, 1.0);

    server.restart();
    let back = Instant::now();
    loop {
        match submit(&app, good_lead("after")).await {
            Ok(d) => {
                assert_eq!(status_of(&d), pb::RoutingStatus::Assigned);
                break;
            }
            Err(e) => {
                assert_eq!(e.code(), tonic::Code::Unavailable);
                assert!(
                    back.elapsed() < Duration::from_secs(5),
                    "routing did not recover: {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    eprintln!(
        "routing recovered {:?} after Redis came back",
        back.elapsed()
    );
    assert_eq!(crate::metrics::http_get(admin, "/readyz").await.0, 200);
    // The assignment made before the outage survived (AOF, fsync always).
    let g = app
        .routing()
        .get_assignment(pb::GetAssignmentRequest {
            lead_id: "before".into(),
        })
        .await
        .unwrap();
    assert_eq!(g.into_inner().status(), pb::RoutingStatus::Assigned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_assignments_survive_kill_9() {
    let mut server = RedisServer::start();
    let store = redis_store(server.url(), false).await;
    for i in 0..10 {
        store
            .upsert_rep(contract::rep(&format!("r{i}"), 1000), contract::t0())
            .await
            .unwrap();
    }
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (store, acked) = (store.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let id = format!("t{t}-{i}");
                let ctx = contract::context(&id, 0.5);
                let reps = store.reps().await.unwrap();
                let candidates =
                    leadrouter::domain::routing::rank(&reps, &ctx.needs, contract::t0(), &[])
                        .candidates;
                match store
                    .claim(leadrouter::store::ClaimRequest {
                        context: ctx,
                        candidates,
                        now: contract::t0(),
                    })
                    .await
                {
                    Ok(Claim::Assigned { assignment, .. }) => {
                        acked.lock().unwrap().push((id, assignment.rep_id))
                    }
                    Ok(other) => panic!("{other:?}"),
                    Err(_) => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.kill();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "too little load before the kill: {}",
        acked.len()
    );
    server.restart();
    let store = redis_store(server.url(), false).await;
    for (id, rep) in &acked {
        match store.lookup(id).await.unwrap() {
            Some(LeadState::Assigned(a)) => assert_eq!(&a.rep_id, rep, "lead {id}"),
            other => panic!("acknowledged lead {id} lost: {other:?}"),
        }
    }
    // Loads equal open records, counting every record Redis kept (some un-acknowledged ones too).
    let keys = server.cli(&["--scan", "--pattern", "lr:{default}:lead:*"]);
    let mut open: HashMap<String, u32> = HashMap::new();
    for key in keys.lines().filter(|k| !k.is_empty()) {
        let id = key.rsplit(':').next().unwrap();
        if let Some(LeadState::Assigned(a)) = store.lookup(id).await.unwrap() {
            *open.entry(a.rep_id).or_default() += 1;
        }
    }
    assert!(open.values().sum::<u32>() as usize >= acked.len());
    for s in store.rep_statuses(None, contract::t0()).await.unwrap() {
        assert_eq!(
            s.load,
            open.get(&s.rep.id).copied().unwrap_or(0),
            "rep {}",
            s.rep.id
        );
    }
    eprintln!(
        "{} acknowledged assignments, all present after kill -9 and AOF replay",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rep_change_on_one_replica_reaches_the_other_within_a_second() {
    let server = RedisServer::start();
    let a = spawn_with(redis_settings(&server.url())).await;
    let b = spawn_with(redis_settings(&server.url())).await;
    a.add_rep(rep("busy", 0, &[("language:de", 1.0)])).await;
    // b must know "busy" exists, or the lead is unroutable (nobody in the pool speaks German).
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Only a German speaker may take this lead; the only one has no room, so it waits.
    let d = submit(&b, with(good_lead("de-1"), &[("language", s("de"))]))
        .await
        .unwrap();
    assert_eq!(status_of(&d), pb::RoutingStatus::Queued);
    let up = a.add_rep(rep("hans", 2, &[("language:de", 1.0)])).await;
    assert_eq!(
        up.drained.len(),
        1,
        "adding the rep drains the queue at once"
    );
    let started = Instant::now();
    loop {
        let d = submit(
            &b,
            with(
                good_lead(&format!("de-{}", started.elapsed().as_millis())),
                &[("language", s("de"))],
            ),
        )
        .await
        .unwrap();
        if status_of(&d) == pb::RoutingStatus::Assigned {
            assert_eq!(rep_of(&d), "hans");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "replica b did not see the new rep within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Deactivation too: b stops routing to hans.
    a.reps()
        .set_availability(pb::SetAvailabilityRequest {
            rep_id: "hans".into(),
            active: false,
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let d = submit(&b, with(good_lead("de-late"), &[("language", s("de"))]))
        .await
        .unwrap();
    assert_eq!(status_of(&d), pb::RoutingStatus::Queued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_outcomes_export_as_a_training_csv() {
    let server = RedisServer::start();
    let app = spawn_with(redis_settings(&server.url())).await;
    app.add_rep(rep("r", 10, &[])).await;
    for (id, outcome) in [
        ("w", pb::Outcome::Won),
        ("l", pb::Outcome::Lost),
        ("x", pb::Outcome::Returned),
    ] {
        submit(&app, with(good_lead(id), &[("industry", s("finance"))]))
            .await
            .unwrap();
        let req = pb::CloseAssignmentRequest {
            lead_id: id.into(),
            outcome: outcome.into(),
            value: None,
        };
        app.routing().close_assignment(req).await.unwrap();
    }
    submit(&app, good_lead("open")).await.unwrap();
    let out = server.dir.path().join("outcomes.csv");
    let r = std::process::Command::new(env!("CARGO_BIN_EXE_leadrouter"))
        .args(["export-outcomes", "--out", out.to_str().unwrap()])
        .env("LEADROUTER__STORE__URL", server.url())
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let mut reader = csv::Reader::from_path(&out).unwrap();
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(
        &header[..11],
        [
            "_lead_id",
            "_rep_id",
            "_closed_at",
            "_probability",
            "_segment",
            "_model_version",
            "_pool",
            "_assigned_at",
            "_contacted_at",
            "_value",
            "outcome"
        ]
    );
    assert!(header.contains(&"age".to_string()) && header.contains(&"industry".to_string()));
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let got: Vec<(&str, &str)> = rows.iter().map(|r| (&r[0], &r[10])).collect();
    assert_eq!(
        got,
        [("w", "won"), ("l", "lost")],
        "returned and open leads are not training rows"
    );
    let age = header.iter().position(|h| h == "age").unwrap();
    assert_eq!(&rows[0][age], "65");
    // The memory store's outcomes live in the server: exporting from it is refused clearly.
    let r = std::process::Command::new(env!("CARGO_BIN_EXE_leadrouter"))
        .args(["export-outcomes", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("memory://"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_auth_is_used_from_the_url() {
    let server = RedisServer::start_with(&["--requirepass", "s3cret"], true);
    let good = format!("redis://:s3cret@127.0.0.1:{}", server.port);
    let store = redis_store(good, false).await;
    store
        .upsert_rep(contract::rep("r", 1), contract::t0())
        .await
        .unwrap();
    assert!(matches!(
        contract::claim(&*store, "l", 0.5, contract::t0()).await,
        Claim::Assigned { .. }
    ));
    let bad = format!("redis://:WrongPassw0rd@127.0.0.1:{}", server.port);
    let config = leadrouter::store::redis::RedisConfig {
        urls: vec![bad],
        cluster: false,
        prefix: "lr".into(),
        tls_ca_file: None,
        retention: Default::default(),
        zone: jiff::tz::TimeZone::UTC,
    };
    let err = leadrouter::store::redis::RedisStore::open(config)
        .await
        .err()
        .expect("a wrong password is refused");
    assert!(err.contains("cannot connect"), "{err}");
    assert!(!err.contains("WrongPassw0rd"), "the password leaked: {err}");
    assert!(err.contains(":***@"), "{err}");
}

/// rediss:// with AUTH, the server's certificate checked against a CA given in config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_auth_and_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    // A private CA and a leaf for 127.0.0.1 (webpki refuses a self-signed CA as a leaf).
    let ca = crate::tls::Ca::new();
    let (leaf, leaf_key) = ca.issue("127.0.0.1");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&cert, leaf).unwrap();
    std::fs::write(&key, leaf_key).unwrap();
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let tls_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    let server = RedisServer::start_with(
        &[
            "--requirepass",
            "s3cret",
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-key-file",
            key.to_str().unwrap(),
            "--tls-ca-cert-file",
            ca_file.to_str().unwrap(),
            "--tls-auth-clients",
            "no",
        ],
        false,
    );
    let mut settings = redis_settings(&format!("rediss://:s3cret@127.0.0.1:{tls_port}"));
    settings.store.tls_ca_file = ca_file.display().to_string();
    let app = spawn_with(settings).await;
    app.add_rep(rep("r", 2, &[])).await;
    let d = submit(&app, good_lead("tls-1")).await.unwrap();
    assert_eq!(status_of(&d), pb::RoutingStatus::Assigned);
    assert!(
        server
            .cli(&[
                "-a",
                "s3cret",
                "--no-auth-warning",
                "hget",
                "lr:{default}:lead:tls-1",
                "state"
            ])
            .contains("open")
    );
    // Without the CA, the self-signed certificate is refused.
    let mut untrusted = redis_settings(&format!("rediss://:s3cret@127.0.0.1:{tls_port}"));
    untrusted.store.tls_ca_file = String::new();
    assert!(leadrouter::app::App::build(untrusted).await.is_err());
}

/// Streams good leads with these ids through SubmitLeads.
async fn stream_leads(app: &TestApp, ids: &[String]) -> Vec<pb::SubmitLeadsResponse> {
    submit_stream(app, ids.iter().map(|id| good_lead(id)).collect()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_batches_claims_into_pipelines_and_survives_a_script_flush() {
    use pb::submit_leads_response::Result as R;
    let server = RedisServer::start();
    let app = spawn_with(redis_settings(&server.url())).await;
    app.add_rep(rep("a", 150, &[])).await;
    app.add_rep(rep("b", 100, &[])).await;
    stream_leads(&app, &["warm-up".to_string()]).await;
    server.cli(&["config", "resetstat"]);
    let ids: Vec<String> = (0..300).map(|i| format!("s{i}")).collect();
    let answers = stream_leads(&app, &ids).await;
    let got: Vec<&str> = answers.iter().map(|a| a.lead_id.as_str()).collect();
    assert_eq!(got, ids.iter().map(String::as_str).collect::<Vec<_>>());
    let mut by_status = HashMap::new();
    for a in &answers {
        let Some(R::Decision(d)) = &a.result else {
            panic!("{a:?}")
        };
        *by_status.entry(status_of(d)).or_insert(0) += 1;
    }
    assert_eq!(by_status[&pb::RoutingStatus::Assigned], 249);
    assert_eq!(by_status[&pb::RoutingStatus::Queued], 51);
    assert_eq!((app.load_of("a").await, app.load_of("b").await), (150, 100));
    // Each lead is still one EVALSHA; they travel in pipelines, so there are fewer round
    // trips than leads (the Lua calls inside are not counted as client commands).
    let stats = commandstats(&server);
    assert_eq!(stats.get("evalsha").copied(), Some(300), "{stats:?}");
    // After SCRIPT FLUSH the pipeline fails with NOSCRIPT; the claims fall back to one by one,
    // which reloads the script, and replays keep every lead counted once.
    server.cli(&["script", "flush"]);
    let mut again: Vec<String> = (295..305).map(|i| format!("s{i}")).collect();
    again.push("s0".into());
    let answers = stream_leads(&app, &again).await;
    assert!(
        answers
            .iter()
            .all(|a| matches!(a.result, Some(R::Decision(_)))),
        "{answers:?}"
    );
    assert_eq!((app.load_of("a").await, app.load_of("b").await), (150, 100));
    let queued_now = answers
        .iter()
        .filter(|a| matches!(&a.result, Some(R::Decision(d)) if status_of(d) == pb::RoutingStatus::Queued))
        .count();
    assert_eq!(
        queued_now, 10,
        "5 replays and 5 new leads queue; s0 replays its assignment"
    );
    assert!(
        commandstats(&server).contains_key("script|load"),
        "the fallback reloaded the script"
    );
}

/// A replica whose directory still lists a deleted rep claims with that rep's old slot; the
/// rep that now holds the slot (next generation) must not be charged, and nobody is assigned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_replica_cannot_charge_a_reused_slot() {
    use leadrouter::domain::routing;
    use leadrouter::store::ClaimRequest;
    let server = RedisServer::start();
    let a = redis_store(server.url(), false).await;
    let b = redis_store(server.url(), false).await;
    a.upsert_rep(contract::rep("old", 1), contract::t0())
        .await
        .unwrap();
    // Let b's directory see "old" (it polls every 250 ms), then change it under b's feet.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !b.reps().await.unwrap().iter().any(|r| r.id == "old") {
        assert!(Instant::now() < deadline, "replica b never saw the rep");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ctx = contract::context("l1", 0.5);
    let stale = routing::rank(&b.reps().await.unwrap(), &ctx.needs, contract::t0(), &[]);
    a.delete_rep("old").await.unwrap();
    a.upsert_rep(contract::rep("new", 1), contract::t0())
        .await
        .unwrap();
    let c = b
        .claim(ClaimRequest {
            context: ctx,
            candidates: stale.candidates,
            now: contract::t0(),
        })
        .await
        .unwrap();
    assert!(matches!(c, Claim::Queued { .. }), "{c:?}");
    let new = a.rep("new", contract::t0()).await.unwrap().unwrap();
    assert_eq!(new.load, 0);
}

/// Restarting against the same Redis with the same reps file rewrites nothing (no rep.lua,
/// no drains: with a long queue each rewrite used to walk it); a rep changed since is put
/// back to what the file says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_seeds_only_reps_that_differ_from_the_file() {
    let server = RedisServer::start();
    let mut settings = redis_settings(&server.url());
    settings.reps.file = repo_path("deploy/reps.example.toml").display().to_string();
    let first = spawn_with(settings.clone()).await;
    let listed = first.engine.reps(None).await.unwrap();
    assert_eq!(listed.len(), 35);
    let mut changed = listed[0].rep.clone();
    changed.capacity += 5;
    first.engine.upsert_rep(changed.clone()).await.unwrap();
    first.stop().await.unwrap();
    // Each rep write takes the rep's lease (one SET NX) first.
    let scripts = |s: &RedisServer| commandstats(s).get("set").copied().unwrap_or(0);
    let before = scripts(&server);
    let second = spawn_with(settings.clone()).await;
    assert_eq!(
        scripts(&server),
        before + 1,
        "only the changed rep is rewritten"
    );
    let restored = second.engine.rep(&changed.id).await.unwrap();
    assert_eq!(restored.rep.capacity, changed.capacity - 5);
    second.stop().await.unwrap();
    let third = spawn_with(settings).await;
    assert_eq!(
        scripts(&server),
        before + 1,
        "an unchanged restart rewrites nothing"
    );
    third.stop().await.unwrap();
}
