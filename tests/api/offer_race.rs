//! The race suite in offer mode: two leadrouter processes on one Redis (and on a 3-master
//! cluster), 128 clients that submit, accept, decline, let offers expire (1 s), mark contacted
//! and close, while a watcher disconnects and resumes every ~2 s, alternating processes.
//! Afterwards, at rest: nothing lost, loads equal held records and never exceeded capacity,
//! and the event log has no gap or duplicate, agrees with what the watcher saw, and ends each
//! lead in the state the store holds.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leadrouter::domain::assignment::{AssignmentState, LeadState};
use leadrouter::domain::event::Event;
use leadrouter::grpc::pb;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::helpers::*;
use crate::redis_server::{RedisCluster, RedisServer};
use crate::store_contract::redis_store;

const LEADS: usize = 2_000;
const REPS: usize = 10;
const CAPACITY: i32 = 20;
const CLIENTS_PER_PROCESS: usize = 64;

fn coin(i: usize, salt: u64) -> u64 {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt;
    x ^= x >> 29;
    x.wrapping_mul(0xBF58_476D_1CE4_E5B9) % 100
}

/// FAILED_PRECONDITION and NOT_FOUND are fair answers in a race (the offer moved on); any
/// other error fails the suite.
fn fair<T>(r: Result<T, tonic::Status>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) if e.code() == Code::FailedPrecondition => None,
        Err(e) => panic!("unexpected error: {e:?}"),
    }
}

/// One client's work on lead `i`: submit, then accept / decline / ignore / contact / close.
async fn work(p: &Process, i: usize) {
    let id = format!("o{i:05}");
    let lead = with(good_lead(&id), &[("age", n((20 + i % 50) as f64))]);
    let d = p
        .leads()
        .submit_lead(pb::SubmitLeadRequest {
            lead: Some(lead),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .decision
        .unwrap();
    let holder = rep_of(&d);
    if holder.is_empty() {
        return;
    }
    let mut rc = p.routing();
    match coin(i, 7) {
        0..=19 => {
            fair(
                rc.decline_lead(pb::DeclineLeadRequest {
                    lead_id: id,
                    rep_id: holder,
                    reason: "busy".into(),
                })
                .await,
            );
        }
        20..=39 => {} // let it expire
        c => {
            let accepted = fair(
                rc.accept_lead(pb::AcceptLeadRequest {
                    lead_id: id.clone(),
                    rep_id: holder.clone(),
                })
                .await,
            );
            if accepted.is_none() {
                return;
            }
            if c < 70 {
                fair(
                    rc.mark_contacted(pb::MarkContactedRequest {
                        lead_id: id.clone(),
                        rep_id: holder,
                    })
                    .await,
                );
            }
            if c % 2 == 0 {
                fair(
                    rc.close_assignment(pb::CloseAssignmentRequest {
                        lead_id: id,
                        outcome: pb::Outcome::Won.into(),
                        value: None,
                    })
                    .await,
                );
            }
        }
    }
}

/// Follows pool "default" from cursor 0, reconnecting every ~2 s to alternating processes
/// with the last cursor seen. Returns every event received, in order.
async fn watcher(procs: Arc<[Process; 2]>, stop: Arc<AtomicBool>) -> Vec<pb::AssignmentEvent> {
    let mut seen: Vec<pb::AssignmentEvent> = Vec::new();
    let mut k = 0;
    while !stop.load(Ordering::Relaxed) {
        let after = seen.last().map_or(0, |e| e.cursor);
        let req = pb::WatchAssignmentsRequest {
            pools: vec!["default".into()],
            rep_ids: vec![],
            after: HashMap::from([("default".to_string(), after)]),
        };
        let mut stream = procs[k % 2]
            .routing()
            .watch_assignments(req)
            .await
            .unwrap()
            .into_inner();
        let until = Instant::now() + Duration::from_millis(1500 + 250 * (k as u64 % 4));
        while let Ok(Some(m)) = tokio::time::timeout_at(until.into(), stream.next()).await {
            seen.push(m.unwrap());
        }
        k += 1;
    }
    seen
}

fn state_name(a: Option<&pb::Assignment>) -> (String, String) {
    match a {
        None => ("queued".into(), String::new()),
        Some(a) => (format!("{:?}", a.state()), a.rep_id.clone()),
    }
}

fn stored_name(s: &LeadState) -> (String, String) {
    match s {
        LeadState::Queued { .. } => ("queued".into(), String::new()),
        LeadState::Assigned(a) => {
            let state = match a.state {
                AssignmentState::Open => pb::AssignmentState::Open,
                AssignmentState::Offered => pb::AssignmentState::Offered,
                AssignmentState::Closed(_) => pb::AssignmentState::Closed,
            };
            (format!("{state:?}"), a.rep_id.clone())
        }
    }
}

async fn offer_race(url: String, cluster: bool) {
    let cluster_flag = if cluster { "true" } else { "false" };
    let env = [
        ("LEADROUTER__STORE__URL", url.as_str()),
        ("LEADROUTER__STORE__CLUSTER", cluster_flag),
        ("LEADROUTER__REPS__FILE", ""),
        ("LEADROUTER__ROUTING__MODE", "offer"),
        ("LEADROUTER__ROUTING__OFFER_TIMEOUT_S", "1"),
    ];
    let procs = Arc::new([Process::start(&env).await, Process::start(&env).await]);
    for i in 0..REPS {
        procs[0]
            .reps()
            .upsert_rep(pb::UpsertRepRequest {
                rep: Some(rep(&format!("rep{i:02}"), CAPACITY, &[])),
            })
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let store = redis_store(url.clone(), cluster).await;
    let stop = Arc::new(AtomicBool::new(false));
    let watch = tokio::spawn(watcher(procs.clone(), stop.clone()));
    // Samples loads while everything runs: never above capacity.
    let peak = Arc::new(Mutex::new(0u32));
    let monitor = {
        let (store, stop, peak) = (store.clone(), stop.clone(), peak.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for s in store.rep_statuses(None, friday()).await.unwrap() {
                    assert!(s.load <= s.rep.capacity, "{} over capacity", s.rep.id);
                    let mut p = peak.lock().unwrap();
                    *p = (*p).max(s.load);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..2 * CLIENTS_PER_PROCESS {
        let (procs, next) = (procs.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= LEADS {
                    return;
                }
                work(&procs[c % 2], i).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Let offers expire and move on for a while, with both schedulers racing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    monitor.await.unwrap();
    let seen = watch.await.unwrap();
    let procs = Arc::try_unwrap(procs).ok().unwrap();
    for p in procs {
        assert!(p.terminate().success());
    }

    // At rest. Every lead is in exactly one state; loads equal held records.
    let mut held: HashMap<String, u32> = HashMap::new();
    let mut finals = HashMap::new();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for i in 0..LEADS {
        let id = format!("o{i:05}");
        let s = store.lookup(&id).await.unwrap().expect("no lead lost");
        let kind = match &s {
            LeadState::Queued { .. } => "queued",
            LeadState::Assigned(a) if a.state == AssignmentState::Offered => "offered",
            LeadState::Assigned(a) if a.is_open() => "open",
            LeadState::Assigned(_) => "closed",
        };
        *counts.entry(kind).or_default() += 1;
        if let LeadState::Assigned(a) = &s
            && a.is_held()
        {
            *held.entry(a.rep_id.clone()).or_default() += 1;
        }
        finals.insert(id, stored_name(&s));
    }
    for s in store.rep_statuses(None, friday()).await.unwrap() {
        assert!(s.load <= s.rep.capacity);
        assert_eq!(
            s.load,
            held.get(&s.rep.id).copied().unwrap_or(0),
            "{}",
            s.rep.id
        );
    }
    // The store's log: cursors 1..=last with no gap.
    let mut log: Vec<Event> = Vec::new();
    loop {
        let after = log.last().map_or(0, |e| e.cursor);
        let page = store.events_after("default", after, 5_000).await.unwrap();
        if page.events.is_empty() {
            assert_eq!(after, page.last);
            break;
        }
        log.extend(page.events);
    }
    for (k, e) in log.iter().enumerate() {
        assert_eq!(e.cursor, k as u64 + 1, "gap or duplicate in the stored log");
    }
    // The watcher saw a prefix of it, each event once, across every reconnect.
    assert!(seen.len() > LEADS, "watcher saw only {} events", seen.len());
    for (k, e) in seen.iter().enumerate() {
        assert_eq!(e.cursor, k as u64 + 1, "watcher: gap or duplicate at {k}");
        assert_eq!(e.lead_id, log[k].lead_id);
    }
    // Each lead's last event names the state the store holds.
    let mut last: HashMap<&str, &Event> = HashMap::new();
    for e in &log {
        last.insert(&e.lead_id, e);
    }
    for (id, want) in &finals {
        let e = last
            .get(id.as_str())
            .unwrap_or_else(|| panic!("{id}: no event"));
        let pb_assignment = e
            .assignment
            .clone()
            .map(leadrouter::grpc::convert::assignment);
        assert_eq!(&state_name(pb_assignment.as_ref()), want, "{id}: {e:?}");
    }
    let expired = log
        .iter()
        .filter(|e| e.kind == leadrouter::domain::event::EventKind::Expired)
        .count();
    assert!(expired > 0, "some offers must expire");
    eprintln!(
        "offer race ({}): {counts:?}; {} events, {expired} expiries, watcher saw {}, peak load {}",
        if cluster { "cluster" } else { "single" },
        log.len(),
        seen.len(),
        peak.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offer_race_on_one_redis() {
    let server = RedisServer::start();
    offer_race(server.url(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offer_race_on_a_three_master_cluster() {
    let cluster = RedisCluster::start();
    offer_race(cluster.url(), true).await;
}
