//! The published race suite: two leadrouter processes on one Redis (and on a 3-master cluster),
//! 128 concurrent clients, random retries, then concurrent closes, assigns and queue drains.
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use leadrouter::domain::assignment::LeadState;
use leadrouter::grpc::pb;
use leadrouter::store::Store;

use crate::helpers::*;
use crate::redis_server::{RedisCluster, RedisServer};
use crate::store_contract::redis_store;

const LEADS: usize = 10_000;
const REPS: usize = 20;
const CLIENTS_PER_PROCESS: usize = 64;

/// Deterministic per-lead coin, so a failure can be replayed.
fn coin(i: usize, salt: u64, percent: u64) -> bool {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt;
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x % 100 < percent
}

/// Leads of many different probabilities.
fn race_lead(id: &str, i: usize) -> pb::Lead {
    let base = if i.is_multiple_of(3) {
        good_lead(id)
    } else {
        poor_lead(id)
    };
    with(
        base,
        &[
            ("age", n((18 + i % 60) as f64)),
            ("campaign", n((1 + i % 7) as f64)),
        ],
    )
}

fn capacity(i: usize) -> i32 {
    155 + 10 * i as i32 // 20 reps: 155 + 165 + ... + 345 = 5,000
}

async fn probability_of(store: &Arc<dyn Store>, id: &str) -> f64 {
    match store.lookup(id).await.unwrap() {
        Some(LeadState::Queued { probability, .. }) => probability,
        Some(LeadState::Assigned(a)) => a.probability,
        None => panic!("lead {id} lost"),
    }
}

/// Loads never above capacity and equal to the open records; returns (open, queued, closed).
async fn check_books(store: &Arc<dyn Store>, ids: &[String]) -> (usize, usize, usize) {
    let (mut open, mut queued, mut closed) = (0, 0, 0);
    let mut per_rep: HashMap<String, u32> = HashMap::new();
    for id in ids {
        match store.lookup(id).await.unwrap() {
            Some(LeadState::Assigned(a)) if a.is_open() => {
                open += 1;
                *per_rep.entry(a.rep_id).or_default() += 1;
            }
            Some(LeadState::Assigned(_)) => closed += 1,
            Some(LeadState::Queued { .. }) => queued += 1,
            None => panic!("lead {id} lost"),
        }
    }
    let statuses = store.rep_statuses(None, friday()).await.unwrap();
    assert_eq!(statuses.len(), REPS);
    for s in statuses {
        assert!(
            s.load <= s.rep.capacity,
            "rep {} over capacity: {} > {}",
            s.rep.id,
            s.load,
            s.rep.capacity
        );
        assert_eq!(
            s.load,
            per_rep.get(&s.rep.id).copied().unwrap_or(0),
            "stored load of {} != its open records",
            s.rep.id
        );
    }
    (open, queued, closed)
}

async fn race_suite(url: String, cluster: bool) {
    let cluster_flag = if cluster { "true" } else { "false" };
    let env = [
        ("LEADROUTER__STORE__URL", url.as_str()),
        ("LEADROUTER__STORE__CLUSTER", cluster_flag),
        ("LEADROUTER__REPS__FILE", ""),
    ];
    let procs = Arc::new([Process::start(&env).await, Process::start(&env).await]);
    for i in 0..REPS {
        let r = rep(&format!("rep{i:02}"), capacity(i), &[]);
        procs[0]
            .reps()
            .upsert_rep(pb::UpsertRepRequest { rep: Some(r) })
            .await
            .unwrap();
    }
    // The other process sees directory changes within a second.
    tokio::time::sleep(Duration::from_millis(1200)).await;

    // Phase 1: 10,000 distinct leads, 2 processes x 64 clients, random retries.
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..2 * CLIENTS_PER_PROCESS {
        let (procs, next) = (procs.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= LEADS {
                    return seen;
                }
                let id = format!("lead{i:05}");
                let first = procs[c % 2]
                    .leads()
                    .submit_lead(pb::SubmitLeadRequest {
                        lead: Some(race_lead(&id, i)),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                let d = first.into_inner().decision.unwrap();
                if coin(i, 1, 20) {
                    // A retry with the same id, through the other process.
                    let again = procs[(c + 1) % 2]
                        .leads()
                        .submit_lead(pb::SubmitLeadRequest {
                            lead: Some(race_lead(&id, i)),
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                    let d2 = again.into_inner().decision.unwrap();
                    assert!(d2.routing.as_ref().unwrap().replayed);
                    assert_eq!(
                        rep_of(&d2),
                        rep_of(&d),
                        "lead {id}: a retry got another answer"
                    );
                }
                seen.push((id, status_of(&d)));
            }
        }));
    }
    let mut statuses = HashMap::new();
    for t in tasks {
        statuses.extend(t.await.unwrap());
    }
    assert_eq!(statuses.len(), LEADS);
    let assigned = statuses
        .values()
        .filter(|s| **s == pb::RoutingStatus::Assigned)
        .count();
    assert_eq!(assigned, 5_000, "exactly the total capacity is assigned");
    assert_eq!(LEADS - assigned, 5_000);

    let store = redis_store(url.clone(), cluster).await;
    let mut ids: Vec<String> = statuses.keys().cloned().collect();
    ids.sort();
    assert_eq!(check_books(&store, &ids).await, (5_000, 5_000, 0));

    // Phase 2: both processes close 1,500 open leads and take 500 new ones at the same time;
    // every close drains the queue.
    let mut queued_before = Vec::new();
    for (id, s) in &statuses {
        if *s == pb::RoutingStatus::Queued {
            queued_before.push((id.clone(), probability_of(&store, id).await));
        }
    }
    let to_close: Vec<String> = ids
        .iter()
        .filter(|id| statuses[*id] == pb::RoutingStatus::Assigned)
        .take(1_500)
        .cloned()
        .collect();
    let to_close = Arc::new(to_close);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..2 * CLIENTS_PER_PROCESS {
        let (procs, next, to_close) = (procs.clone(), next.clone(), to_close.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k < to_close.len() {
                    let outcome = if coin(k, 2, 50) {
                        pb::Outcome::Won
                    } else {
                        pb::Outcome::Lost
                    };
                    let req = pb::CloseAssignmentRequest {
                        lead_id: to_close[k].clone(),
                        outcome: outcome.into(),
                        value: None,
                    };
                    procs[c % 2].routing().close_assignment(req).await.unwrap();
                } else if k < to_close.len() + 500 {
                    let i = LEADS + k;
                    let id = format!("late{i:05}");
                    procs[c % 2]
                        .leads()
                        .submit_lead(pb::SubmitLeadRequest {
                            lead: Some(race_lead(&id, i)),
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                } else {
                    return;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let late: Vec<String> = (0..500)
        .map(|k| format!("late{:05}", LEADS + to_close.len() + k))
        .collect();
    ids.extend(late);
    let (open, queued, closed) = check_books(&store, &ids).await;
    assert_eq!(closed, 1_500);
    assert_eq!(
        open + queued + closed,
        LEADS + 500,
        "no lead lost or counted twice"
    );
    assert!(open <= 5_000);

    // Of the leads queued before phase 2, those assigned since all had at least the
    // probability of every one still waiting.
    let mut drained_min = f64::INFINITY;
    let mut waiting_max = f64::NEG_INFINITY;
    let mut drained = 0;
    for (id, p) in &queued_before {
        match store.lookup(id).await.unwrap() {
            Some(LeadState::Queued { .. }) => waiting_max = waiting_max.max(*p),
            _ => {
                drained += 1;
                drained_min = drained_min.min(*p);
            }
        }
    }
    assert!(drained > 0, "closing 1,500 leads must drain the queue");
    assert!(
        drained_min >= waiting_max - 1e-12,
        "queue order broken: drained lead at {drained_min} while {waiting_max} waits"
    );
    eprintln!(
        "race suite ({}): 5,000 assigned, 5,000 queued; {drained} drained in probability order",
        if cluster { "cluster" } else { "single" }
    );
    let procs = Arc::try_unwrap(procs).ok().unwrap();
    for p in procs {
        assert!(p.terminate().success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn race_suite_on_one_redis() {
    let server = RedisServer::start();
    race_suite(server.url(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn race_suite_on_a_three_master_cluster() {
    let cluster = RedisCluster::start();
    race_suite(cluster.url(), true).await;
}
