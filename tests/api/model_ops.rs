//! The ops model lifecycle: hot swap under load, SIGHUP and file-watch reloads through the
//! gate, drift per model version, and the route -> close -> retrain -> gate -> swap loop.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use leadrouter::domain::model::Artifact;
use leadrouter::grpc::pb;

use crate::gate_rows::{record_outcomes, reload_with_rows};
use crate::helpers::*;
use crate::models::variant_model;
use crate::redis_server::RedisServer;

/// ReloadModel with the artifact in the request (the file may be anywhere).
async fn reload(app: &TestApp, path: &std::path::Path, force: bool) -> pb::ReloadModelResponse {
    app.models()
        .reload_model(reload_with_rows(std::fs::read(path).unwrap(), force))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_swaps_while_64_clients_score_fail_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app().await;
    let original = app.model_version().await;
    let (a, va) = variant_model(dir.path(), 0.4);
    let (b, vb) = variant_model(dir.path(), -0.4);
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..64 {
        let (mut leads, stop) = (app.leads(), stop.clone());
        clients.push(tokio::spawn(async move {
            // version -> the probabilities it gave the same lead attributes
            let mut seen: HashMap<String, HashSet<u64>> = HashMap::new();
            let (mut errors, mut n) = (Vec::new(), 0u32);
            while !stop.load(Ordering::Relaxed) {
                let req = pb::ScoreLeadRequest {
                    lead: Some(good_lead(&format!("c{c}-{n}"))),
                };
                match leads.score_lead(req).await {
                    Ok(r) => {
                        let sc = r.into_inner().decision.unwrap().score.unwrap();
                        seen.entry(sc.model_version)
                            .or_default()
                            .insert(sc.probability.to_bits());
                    }
                    Err(e) => errors.push(e.to_string()),
                }
                n += 1;
            }
            (seen, errors, n)
        }));
    }
    for i in 0..50 {
        let r = reload(&app, if i % 2 == 0 { &a } else { &b }, false).await;
        let want = match i {
            0 => &original,
            _ if i % 2 == 0 => &vb,
            _ => &va,
        };
        assert_eq!(&r.previous_version, want);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut all: HashMap<String, HashSet<u64>> = HashMap::new();
    let mut total = 0;
    for c in clients {
        let (seen, errors, n) = c.await.unwrap();
        assert!(
            errors.is_empty(),
            "failed requests during swaps: {errors:?}"
        );
        total += n;
        for (v, p) in seen {
            all.entry(v).or_default().extend(p);
        }
    }
    let live: HashSet<&String> = [&original, &va, &vb].into();
    assert!(
        all.keys().all(|v| live.contains(v)),
        "versions seen: {:?}",
        all.keys()
    );
    assert!(
        all.contains_key(&va) && all.contains_key(&vb),
        "both swapped-in versions served"
    );
    // Each version gave the one probability of its own weights: no request mixed two models.
    assert!(all.values().all(|p| p.len() == 1), "{all:?}");
    assert!(total > 500, "only {total} requests ran during the swaps");
}

/// Replaces `dst` atomically with `src`'s bytes (as `train --out` does).
fn install(src: &std::path::Path, dst: &std::path::Path) {
    let tmp = dst.with_extension("tmp");
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, dst).unwrap();
}

async fn wait_for_version(p: &Process, want: &str) -> bool {
    for _ in 0..60 {
        if p.model_version().await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The shipped model with its weights turned around: valid, but far worse on real rows.
fn worse_model(dir: &std::path::Path) -> std::path::PathBuf {
    let mut a = Artifact::from_json(&std::fs::read(shipped_model()).unwrap()).unwrap();
    a.weights.iter_mut().for_each(|w| *w = -*w);
    let path = dir.join("worse.json");
    std::fs::write(&path, a.seal().1).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_watch_and_sighup_reload_through_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.json");
    install(&shipped_model(), &live);
    let (variant, v) = variant_model(dir.path(), 0.2);
    let worse = worse_model(dir.path());
    let original = Artifact::from_json(&std::fs::read(&live).unwrap())
        .unwrap()
        .model_version;

    let watched = Process::start(&[
        ("LEADROUTER__MODEL__PATH", live.to_str().unwrap()),
        ("LEADROUTER__MODEL__WATCH_MS", "100"),
    ])
    .await;
    // Operator reloads are gated on the recorded outcomes.
    record_outcomes(&watched, "w", 800).await;
    install(&variant, &live);
    assert!(
        wait_for_version(&watched, &v).await,
        "the watch picked up the new file"
    );
    install(&worse, &live);
    let refused = watched
        .wait_for_log("model reload refused", Duration::from_secs(3))
        .expect("a refused reload is logged");
    assert!(
        refused["fields"]["error"]
            .as_str()
            .unwrap()
            .contains("below the live model"),
        "{refused}"
    );
    assert_eq!(
        watched.model_version().await,
        v,
        "the live model keeps serving"
    );
    drop(watched);

    install(&shipped_model(), &live);
    let hup = Process::start(&[("LEADROUTER__MODEL__PATH", live.to_str().unwrap())]).await;
    record_outcomes(&hup, "h", 800).await;
    install(&variant, &live);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        hup.model_version().await,
        original,
        "no watch: nothing changes by itself"
    );
    hup.signal("HUP");
    assert!(wait_for_version(&hup, &v).await, "SIGHUP reloaded the file");
    install(&worse, &live);
    hup.signal("HUP");
    assert!(
        hup.wait_for_log("model reload refused", Duration::from_secs(3))
            .is_some()
    );
    assert_eq!(hup.model_version().await, v);
    assert!(
        hup.terminate().success(),
        "SIGHUP did not disturb a clean exit"
    );
}

async fn score_all(p: &Process, leads: &[(pb::Lead, bool)]) {
    let mut c = p.leads();
    for (lead, _) in leads {
        c.score_lead(pb::ScoreLeadRequest {
            lead: Some(lead.clone()),
        })
        .await
        .unwrap();
    }
}

async fn health(p: &Process) -> pb::ModelHealth {
    p.models()
        .get_model_health(pb::GetModelHealthRequest {})
        .await
        .unwrap()
        .into_inner()
}

fn psi_of(h: &pb::ModelHealth, name: &str) -> f64 {
    h.features.iter().find(|f| f.name == name).unwrap().psi
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_measured_per_version_and_warned_past_0_2() {
    let dir = tempfile::tempdir().unwrap();
    let p = Process::start(&[]).await;
    // Leads like the training data, in a shuffled order (the file is ordered by date, and a
    // prefix of it really has drifted): every feature stays stable.
    let mut leads = bank_leads("same", 3, 1100);
    let len = leads.len();
    let mut order: Vec<usize> = (0..len).collect();
    order.sort_by_key(|i| (i * 7919) % len);
    leads = order.into_iter().map(|i| leads[i].clone()).collect();
    score_all(&p, &leads).await;
    // The issue-13 probe: one lead scored again and again counts once per version.
    let same: Vec<(pb::Lead, bool)> = (0..300).map(|_| leads[0].clone()).collect();
    score_all(&p, &same).await;
    let h = health(&p).await;
    assert_eq!(h.observed, 1100);
    assert_eq!(h.min_observations, 1000);
    assert_eq!(h.cold_start, Some(false), "present when false");
    let worst = h.features.iter().map(|f| f.psi).fold(0.0, f64::max);
    assert!(worst < 0.1, "in-distribution PSI {worst}: {:?}", h.features);
    assert!(h.score.as_ref().unwrap().psi < 0.1);
    let age = h.features.iter().find(|f| f.name == "age").unwrap();
    assert_eq!(age.bins.len(), 11);
    assert_eq!(age.bins.iter().map(|b| b.count).sum::<u64>(), 1100);
    let early = p.wait_for_log("feature drift", Duration::from_millis(200));
    assert!(early.is_none(), "{early:?}");

    // A new version binned the same way keeps the features' counts (the score's start over);
    // then the leads get 25 years older.
    let (variant, v) = variant_model(dir.path(), 0.0001);
    p.models()
        .reload_model(reload_with_rows(std::fs::read(&variant).unwrap(), false))
        .await
        .unwrap();
    let h = health(&p).await;
    assert_eq!(h.observed, 0);
    assert!(
        h.features.iter().all(|f| f.observed == 1100),
        "{:?}",
        h.features
    );
    assert_eq!(h.score.as_ref().unwrap().observed, 0);
    let older: Vec<(pb::Lead, bool)> = bank_leads("old", 5, 1100)
        .into_iter()
        .map(|(l, y)| {
            let age: f64 = match &l.attributes["age"].kind {
                Some(pb::attribute_value::Kind::StringValue(a)) => a.parse().unwrap(),
                other => panic!("{other:?}"),
            };
            (with(l, &[("age", n(age + 25.0))]), y)
        })
        .collect();
    score_all(&p, &older).await;
    let h = health(&p).await;
    assert_eq!((h.model_version.as_str(), h.observed), (v.as_str(), 1100));
    assert!(psi_of(&h, "age") > 0.2, "age PSI {}", psi_of(&h, "age"));
    let age = h.features.iter().find(|f| f.name == "age").unwrap();
    assert_eq!((age.alert, age.observed), (Some(true), 2200));
    assert!(psi_of(&h, "job") < 0.1, "job PSI {}", psi_of(&h, "job"));
    let warn = p
        .wait_for_log("feature drift", Duration::from_secs(2))
        .expect("a drift warning is logged");
    assert_eq!(warn["fields"]["feature"], "age", "{warn}");
    assert_eq!(warn["level"], "WARN");

    // The runbook's drift command prints the same figures.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leadrouter"))
        .args(["model-health", "--server", &format!("http://{}", p.addr)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["features"][0]["name"], "age", "sorted by PSI: {j}");
    assert_eq!(j["features"][0]["alert"], true);
    assert_eq!(j["features"][0]["observed"], 2200);
    assert_eq!(j["min_observations"], 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_close_retrain_gate_swap_runs_end_to_end() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = redis.url();
    let env = [
        ("LEADROUTER__STORE__URL", url.as_str()),
        ("LEADROUTER__REPS__FILE", ""),
    ];
    let p = Process::start(&env).await;
    p.reps()
        .upsert_rep(pb::UpsertRepRequest {
            rep: Some(rep("closer", 5, &[])),
        })
        .await
        .unwrap();
    let live = p.model_version().await;
    // Route 2,000 real leads, then close each with what really happened to it.
    let leads = bank_leads("loop", 0, 2000);
    let (mut c, mut r) = (p.leads(), p.routing());
    for (lead, converted) in &leads {
        let id = lead.id.clone();
        c.submit_lead(pb::SubmitLeadRequest {
            lead: Some(lead.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
        let outcome = if *converted {
            pb::Outcome::Won
        } else {
            pb::Outcome::Lost
        };
        r.close_assignment(pb::CloseAssignmentRequest {
            lead_id: id,
            outcome: outcome.into(),
            value: None,
        })
        .await
        .unwrap();
    }
    // Retrain straight from the store, with the live model's spec.
    let out = dir.path().join("retrained.json");
    let o = out.to_str().unwrap();
    let t = cli(
        &[
            "train",
            "--from-outcomes",
            "--spec",
            "models/bank-additional.spec.toml",
            "--out",
            o,
        ],
        &env,
    );
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    let csv = std::fs::read_to_string(dir.path().join("retrained.outcomes.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2001, "one row per closed lead");
    let cand = Artifact::from_json(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(cand.training.label, "outcome");
    assert_eq!(cand.training.rows_train + cand.training.rows_holdout, 2000);

    // Compare on the outcomes the candidate was not fitted on, then promote: the server's
    // gate scores the same recorded outcomes and must reach the same verdict on the same
    // figures (the issue-13 runbook: compare refused, promote accepted).
    assert_eq!(cand.training.fit_leads.len(), 1600);
    let cmp = cli(
        &[
            "compare",
            "--candidate",
            o,
            "--current",
            "models/bank-default.json",
            "--data",
            dir.path().join("retrained.outcomes.csv").to_str().unwrap(),
            "--label",
            "outcome",
            "--positive",
            "won",
        ],
        &[],
    );
    let j: serde_json::Value = serde_json::from_slice(&cmp.stdout).unwrap();
    assert_eq!(j["rows"], "not trained on");
    assert_eq!(j["candidate"]["metrics"]["n"], 400);
    assert!(!cmp.status.success(), "compare passed: {j}");
    let summary = String::from_utf8_lossy(&cmp.stderr);
    assert!(summary.starts_with("REFUSED"), "{summary}");
    eprintln!("compare: {summary}");
    let server = format!("http://{}", p.addr);
    let promote = cli(&["promote", "--server", &server, "--model", o], &[]);
    assert!(!promote.status.success());
    let err = String::from_utf8_lossy(&promote.stderr);
    let refusals: Vec<&str> = j["refusals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(!refusals.is_empty());
    for r in &refusals {
        assert!(err.contains(r), "the server's gate disagrees: {err} vs {r}");
    }
    assert_eq!(
        p.model_version().await,
        live,
        "the live model keeps serving"
    );
    // ... and ops can still force it.
    let forced = cli(
        &["promote", "--server", &server, "--model", o, "--force"],
        &[],
    );
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    let g: serde_json::Value = serde_json::from_slice(&forced.stdout).unwrap();
    assert_eq!(
        (g["forced"].as_bool(), g["previous_version"].as_str()),
        (Some(true), Some(live.as_str()))
    );
    assert_eq!(g["gate_overridden"], true);
    assert_eq!(g["rows"], 400);
    for (server, local) in [
        ("candidate_auc", &j["candidate"]["metrics"]["auc"]),
        ("live_auc", &j["current"]["metrics"]["auc"]),
        ("candidate_log_loss", &j["candidate"]["metrics"]["log_loss"]),
        ("live_brier", &j["current"]["metrics"]["brier"]),
    ] {
        let (a, b) = (g[server].as_f64().unwrap(), local.as_f64().unwrap());
        assert!((a - b).abs() < 1e-12, "{server}: server {a}, compare {b}");
    }
    assert_eq!(p.model_version().await, cand.model_version);
    // New leads are scored by the retrained model and still routed.
    let d = c
        .submit_lead(pb::SubmitLeadRequest {
            lead: Some(bank_leads("after", 1, 1)[0].0.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .decision
        .unwrap();
    assert_eq!(d.score.unwrap().model_version, cand.model_version);
    assert!(d.routing.is_some());
    // Roll back: the old file, forced if the gate calls it worse.
    let back = cli(
        &[
            "promote",
            "--server",
            &server,
            "--model",
            "models/bank-default.json",
            "--force",
        ],
        &[],
    );
    assert!(
        back.status.success(),
        "{}",
        String::from_utf8_lossy(&back.stderr)
    );
    assert_eq!(p.model_version().await, live);
}
