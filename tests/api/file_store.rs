//! The durable embedded store from outside: `leadrouter serve` on `file:///...db`, leads
//! submitted under load, kill -9, a restart on the same file: every acknowledged assignment is
//! there with its rep, and every rep's load equals its open leads. And in process: a state
//! rebuilt from snapshot plus journal equals one rebuilt from the journal alone.
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leadrouter::domain::assignment::Outcome;
use leadrouter::grpc::pb;
use leadrouter::store::contract::{claim, rep as rep_of_capacity, t0};
use leadrouter::store::file::{FileStore, Opened};
use leadrouter::store::memory::MemoryStore;
use leadrouter::store::{CapacityStore, RepDirectory};

use crate::helpers::*;

async fn open_leads(p: &Process) -> Vec<pb::ListedAssignment> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = p
            .routing()
            .list_assignments(pb::ListAssignmentsRequest {
                pool: "default".into(),
                states: vec![pb::ListState::Open as i32],
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        out.extend(page.assignments);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_assignments_survive_kill_9_on_the_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("leadrouter.db").display());
    let env = [
        ("LEADROUTER__STORE__URL", url.as_str()),
        ("LEADROUTER__REPS__FILE", ""),
        // Snapshots (and journal compaction) run under the load the kill interrupts.
        ("LEADROUTER__STORE__SNAPSHOT_EVERY", "200"),
    ];
    let p = Process::start(&env).await;
    for i in 0..5 {
        p.reps()
            .upsert_rep(pb::UpsertRepRequest {
                rep: Some(rep(&format!("r{i}"), 100_000, &[])),
            })
            .await
            .unwrap();
    }
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (mut leads, acked) = (p.leads(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let id = format!("t{t}-{i}");
                let r = leads
                    .submit_lead(pb::SubmitLeadRequest {
                        lead: Some(good_lead(&id)),
                        ..Default::default()
                    })
                    .await;
                match r {
                    Ok(d) => {
                        let d = d.into_inner().decision.unwrap();
                        acked.lock().unwrap().push((id, rep_of(&d)));
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    p.signal("KILL");
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "too little load: {}", acked.len());
    drop(p);
    let p = Process::start(&env).await;
    for (id, rep) in &acked {
        let a = p
            .routing()
            .get_assignment(pb::GetAssignmentRequest {
                lead_id: id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("acknowledged lead {id} lost: {e:?}"))
            .into_inner();
        assert_eq!(&a.assignment.unwrap().rep_id, rep, "lead {id}");
    }
    // Loads equal open records (journaled calls whose answer the kill swallowed count too).
    let open = open_leads(&p).await;
    assert!(open.len() >= acked.len());
    let reps = p
        .reps()
        .list_reps(pb::ListRepsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .reps;
    for r in reps {
        let id = r.rep.unwrap().id;
        let held = open
            .iter()
            .filter(|l| l.assignment.as_ref().is_some_and(|a| a.rep_id == id))
            .count();
        assert_eq!(r.load as usize, held, "rep {id}");
    }
    eprintln!("{} acknowledged before kill -9, all found", acked.len());
    assert!(p.terminate().success());
}

async fn open_file(path: &Path, snapshot_every: u64) -> (FileStore, Opened) {
    FileStore::open_counted(path, MemoryStore::default(), snapshot_every)
        .await
        .unwrap()
}

fn state_of(store: &FileStore) -> serde_json::Value {
    serde_json::from_slice(&store.state().unwrap()).unwrap()
}

/// A mixed workload; returns how many calls could change state (the rest are replays and
/// calls on unknown leads, which must not reach the journal).
async fn workload(store: &FileStore) -> usize {
    let mut changes = 0;
    for i in 0..4 {
        // r3 has no room: it can be deleted while the others hold leads.
        let capacity = if i == 3 { 0 } else { 2 };
        store
            .upsert_rep(rep_of_capacity(&format!("r{i}"), capacity), t0())
            .await
            .unwrap();
        changes += 1;
    }
    for i in 0..10 {
        let p = 0.05 + f64::from(i) / 20.0;
        claim(store, &format!("l{i}"), p, t0()).await;
        changes += 1;
    }
    for i in 0..20 {
        claim(store, &format!("l{}", i % 10), 0.5, t0()).await;
        store
            .close("nobody", Outcome::Won, t0())
            .await
            .expect_err("unknown lead");
    }
    for i in 0..3 {
        store
            .close(&format!("l{}", 9 - i), Outcome::Won, t0())
            .await
            .unwrap();
        changes += 1;
    }
    store.set_active("r1", false, t0()).await.unwrap();
    // Refused with leads held, but journaled: the rep exists, so the call might have changed it.
    store.delete_rep("r2").await.expect_err("r2 holds leads");
    store.delete_rep("r3").await.unwrap();
    store.delete_rep("r3").await.expect_err("gone");
    changes + 3
}

#[tokio::test]
async fn snapshot_plus_journal_equals_the_journal_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (compacting, journal_only) = (dir.path().join("a.db"), dir.path().join("b.db"));
    let (a, _) = open_file(&compacting, 4).await;
    let (b, _) = open_file(&journal_only, 1_000_000).await;
    let changes = workload(&a).await;
    assert_eq!(workload(&b).await, changes);
    let before = state_of(&a);
    assert_eq!(before, state_of(&b), "snapshots change what the store does");
    assert!(before["leads"].as_object().unwrap().len() == 10);
    drop((a, b));

    let (a, opened) = open_file(&compacting, 4).await;
    assert!(opened.snapshot_loaded);
    assert!(
        opened.replayed < 10,
        "the journal was not compacted: {opened:?}"
    );
    assert_eq!(state_of(&a), before);
    let (b, opened) = open_file(&journal_only, 1_000_000).await;
    assert!(!opened.snapshot_loaded);
    assert_eq!(opened.replayed, changes, "idle calls were journaled");
    assert_eq!(state_of(&b), before);

    // The reopened store goes on where it stopped: a queued lead drains when a slot frees.
    let closed = a.close("l0", Outcome::Lost, t0()).await.unwrap();
    let still = b.close("l0", Outcome::Lost, t0()).await.unwrap();
    assert_eq!(closed.drained, still.drained);
    assert_eq!(state_of(&a), state_of(&b));
}
