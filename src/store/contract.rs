//! The contract every store backend must pass; tests/ runs it against each one.
//!
//! Each case takes a fresh, empty store. `store_contract_tests!` turns them into one test each.
use std::sync::Arc;

use jiff::{Timestamp, ToSpan};

use crate::domain::assignment::{AssignmentState, LeadContext, LeadState, Outcome, Terms};
use crate::domain::lead::Lead;
use crate::domain::rep::Rep;
use crate::domain::routing::{self, Needs};
use crate::error::Error;
use crate::store::{Claim, ClaimRequest, Store};

/// Generates one `#[tokio::test]` per contract case for the backend `$make`: an async
/// expression giving `(Arc<dyn Store>, guard)`, where the guard (say, the Redis server the store
/// talks to) lives until the case ends.
#[macro_export]
macro_rules! store_contract_tests {
    ($make:expr) => {
        $crate::store_contract_tests!(@cases $make;
            assign_then_replay, capacity_is_never_exceeded, close_drains_in_probability_order,
            close_is_idempotent_and_checked, loads_match_open_records, daily_quota_is_enforced,
            reassign_moves_load_or_changes_nothing, directory_round_trip, raising_capacity_drains,
            closing_a_queued_lead_withdraws_it, concurrent_claims_respect_capacity,
            a_deleted_rep_is_never_assigned, weekly_quota_is_enforced_and_named,
            time_off_is_on_leave_then_ramps_back, a_drain_skips_leads_no_free_rep_can_take,
            offers_expire_and_move_on, declined_offers_skip_those_reps_until_max_offers,
            contacted_stops_the_sla_and_breaches_are_counted,
            events_are_numbered_per_pool_and_resume, listings_show_inboxes_and_the_queue,
            racing_pool_moves_leave_each_rep_in_one_pool, queued_leads_expire_after_their_ttl,
            the_model_registry_publishes_keeps_and_rolls_back,
            the_ledger_matches_the_reference_store, imports_are_idempotent_and_hold_no_capacity,
            targets_are_kept_and_removed);
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $make.await;
                $crate::store::contract::$case(store).await;
            }
        )*
    };
}

mod calendar;
mod directory;
mod ledger;
mod offers;
mod queue;
mod registry;
pub use calendar::*;
pub use directory::*;
pub use ledger::*;
pub use offers::*;
pub use queue::*;
pub use registry::*;

pub fn t0() -> Timestamp {
    "2026-11-27T12:00:00Z".parse().unwrap()
}

pub fn rep(id: &str, capacity: u32) -> Rep {
    Rep::new(id, capacity)
}

pub fn context(id: &str, probability: f64) -> LeadContext {
    LeadContext {
        lead: Lead {
            id: id.into(),
            attributes: Default::default(),
        },
        needs: Needs {
            pool: "default".into(),
            required_skills: vec![],
            preferred: vec![],
        },
        probability,
        segment: "qualified".into(),
        model_version: "test".into(),
        terms: Terms::default(),
        expected_value: 0.0,
    }
}

/// Ranks the store's current reps for the lead and claims, as the engine does.
pub async fn claim(store: &dyn Store, id: &str, probability: f64, now: Timestamp) -> Claim {
    try_claim(store, id, probability, now).await.unwrap()
}

/// `claim`, handing back the store's error.
pub async fn try_claim(
    store: &dyn Store,
    id: &str,
    probability: f64,
    now: Timestamp,
) -> crate::error::Result<Claim> {
    claim_context(store, context(id, probability), now).await
}

/// Ranks the store's current reps for `ctx` and claims.
pub async fn claim_context(
    store: &dyn Store,
    ctx: LeadContext,
    now: Timestamp,
) -> crate::error::Result<Claim> {
    let reps = store.reps().await.unwrap();
    let candidates = routing::rank(&reps, &ctx.needs, now, &[]).candidates;
    store
        .claim(ClaimRequest {
            context: ctx,
            candidates,
            now,
        })
        .await
}

pub(crate) fn assigned_rep(c: &Claim) -> Option<&str> {
    match c {
        Claim::Assigned { assignment, .. } => Some(&assignment.rep_id),
        Claim::Queued { .. } => None,
    }
}

async fn load(store: &dyn Store, rep_id: &str) -> u32 {
    store.rep(rep_id, t0()).await.unwrap().unwrap().load
}

pub async fn assign_then_replay(store: Arc<dyn Store>) {
    store.upsert_rep(rep("r1", 5), t0()).await.unwrap();
    let first = claim(&*store, "l1", 0.5, t0()).await;
    let Claim::Assigned {
        assignment,
        replayed: false,
        records,
    } = &first
    else {
        panic!("{first:?}")
    };
    assert_eq!(assignment.rep_id, "r1");
    assert_eq!(records.len(), 1);
    let again = claim(&*store, "l1", 0.9, t0()).await;
    let Claim::Assigned {
        assignment: a2,
        replayed: true,
        ..
    } = &again
    else {
        panic!("{again:?}")
    };
    assert_eq!(a2, assignment);
    assert_eq!(load(&*store, "r1").await, 1);
    assert_eq!(
        store.lookup("l1").await.unwrap(),
        Some(LeadState::Assigned(assignment.clone()))
    );
    assert_eq!(store.lookup("nope").await.unwrap(), None);
}

pub async fn capacity_is_never_exceeded(store: Arc<dyn Store>) {
    store.upsert_rep(rep("a", 2), t0()).await.unwrap();
    store.upsert_rep(rep("b", 1), t0()).await.unwrap();
    let mut reps = Vec::new();
    for i in 0..5 {
        reps.push(
            assigned_rep(&claim(&*store, &format!("l{i}"), 0.5, t0()).await).map(str::to_string),
        );
    }
    assert_eq!(reps.iter().filter(|r| r.as_deref() == Some("a")).count(), 2);
    assert_eq!(reps.iter().filter(|r| r.as_deref() == Some("b")).count(), 1);
    assert_eq!(reps.iter().filter(|r| r.is_none()).count(), 2);
    assert_eq!(load(&*store, "a").await, 2);
    assert!(matches!(
        store.lookup("l4").await.unwrap(),
        Some(LeadState::Queued { position: 2, .. })
    ));
    // A replay of a queued lead stays queued and does not move it.
    assert!(matches!(
        claim(&*store, "l3", 0.99, t0()).await,
        Claim::Queued {
            replayed: true,
            position: 1,
            ..
        }
    ));
}

pub async fn close_drains_in_probability_order(store: Arc<dyn Store>) {
    store.upsert_rep(rep("r", 1), t0()).await.unwrap();
    assert!(assigned_rep(&claim(&*store, "first", 0.1, t0()).await).is_some());
    for (id, p) in [("low", 0.2), ("high", 0.9), ("mid", 0.5), ("mid2", 0.5)] {
        assert!(matches!(
            claim(&*store, id, p, t0()).await,
            Claim::Queued { .. }
        ));
    }
    let mut order = Vec::new();
    let mut current = "first".to_string();
    for _ in 0..4 {
        let closed = store.close(&current, Outcome::Won, t0()).await.unwrap();
        assert_eq!(closed.drained.len(), 1);
        current = closed.drained[0].lead_id.clone();
        order.push(current.clone());
    }
    // Equal probabilities keep arrival order.
    assert_eq!(order, ["high", "mid", "mid2", "low"]);
    let closed = store.close(&current, Outcome::Lost, t0()).await.unwrap();
    assert!(closed.drained.is_empty());
    assert_eq!(load(&*store, "r").await, 0);
    assert_eq!(store.outcomes().await.unwrap().len(), 5);
}

pub async fn close_is_idempotent_and_checked(store: Arc<dyn Store>) {
    store.upsert_rep(rep("r", 1), t0()).await.unwrap();
    claim(&*store, "l", 0.5, t0()).await;
    let c1 = store.close("l", Outcome::Won, t0()).await.unwrap();
    assert_eq!(c1.assignment.state, AssignmentState::Closed(Outcome::Won));
    let c2 = store.close("l", Outcome::Won, t0()).await.unwrap();
    assert_eq!(c1.assignment, c2.assignment);
    assert_eq!(
        load(&*store, "r").await,
        0,
        "a repeated close must not release twice"
    );
    assert!(matches!(
        store.close("l", Outcome::Lost, t0()).await,
        Err(Error::FailedPrecondition(_))
    ));
    assert!(matches!(
        store.close("ghost", Outcome::Won, t0()).await,
        Err(Error::NotFound { .. })
    ));
    // A closed lead is not routed again.
    assert!(matches!(
        claim(&*store, "l", 0.5, t0()).await,
        Claim::Assigned { replayed: true, .. }
    ));
    assert_eq!(store.outcomes().await.unwrap().len(), 1);
}

pub async fn loads_match_open_records(store: Arc<dyn Store>) {
    for (id, cap) in [("a", 3), ("b", 2), ("c", 4)] {
        store.upsert_rep(rep(id, cap), t0()).await.unwrap();
    }
    // A fixed pseudo-random walk of claims and closes.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut ids = Vec::new();
    for step in 0..300 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if !x.is_multiple_of(3) || ids.is_empty() {
            let id = format!("l{step}");
            claim(&*store, &id, (x % 100) as f64 / 100.0, t0()).await;
            ids.push(id);
        } else {
            let id = ids.swap_remove((x as usize / 3) % ids.len());
            let _ = store.close(&id, Outcome::Lost, t0()).await;
        }
    }
    let mut open = std::collections::HashMap::<String, u32>::new();
    for id in &ids {
        if let Some(LeadState::Assigned(a)) = store.lookup(id).await.unwrap()
            && a.is_open()
        {
            *open.entry(a.rep_id).or_default() += 1;
        }
    }
    for s in store.rep_statuses(None, t0()).await.unwrap() {
        assert!(s.load <= s.rep.capacity);
        assert_eq!(
            s.load,
            open.get(&s.rep.id).copied().unwrap_or(0),
            "rep {}",
            s.rep.id
        );
    }
}

pub async fn daily_quota_is_enforced(store: Arc<dyn Store>) {
    let mut r = rep("r", 10);
    r.daily_quota = Some(2);
    store.upsert_rep(r, t0()).await.unwrap();
    assert!(assigned_rep(&claim(&*store, "a", 0.5, t0()).await).is_some());
    assert!(assigned_rep(&claim(&*store, "b", 0.5, t0()).await).is_some());
    let c = claim(&*store, "c", 0.5, t0()).await;
    let Claim::Queued { records, .. } = &c else {
        panic!("{c:?}")
    };
    assert_eq!(records[0].verdict, routing::Verdict::OverQuota);
    // Closing frees capacity but not quota: c stays queued today.
    assert!(
        store
            .close("a", Outcome::Won, t0())
            .await
            .unwrap()
            .drained
            .is_empty()
    );
    // The next local day has a fresh quota.
    let tomorrow = t0() + 24.hours();
    let drained = store.drain("default", tomorrow).await.unwrap();
    assert_eq!(drained.len(), 1);
    assert_eq!(drained[0].lead_id, "c");
}

pub async fn reassign_moves_load_or_changes_nothing(store: Arc<dyn Store>) {
    store.upsert_rep(rep("a", 1), t0()).await.unwrap();
    store.upsert_rep(rep("b", 1), t0()).await.unwrap();
    let first = assigned_rep(&claim(&*store, "l", 0.5, t0()).await)
        .unwrap()
        .to_string();
    let other = if first == "a" { "b" } else { "a" };
    let ctx = store.context("l").await.unwrap().unwrap();
    let reps = store.reps().await.unwrap();
    let cands = routing::rank(&reps, &ctx.needs, t0(), std::slice::from_ref(&first)).candidates;
    let moved = store
        .reassign("l", &first, cands.clone(), t0())
        .await
        .unwrap();
    assert_eq!(moved.assignment.rep_id, other);
    assert_eq!(moved.previous.rep_id, first);
    assert_eq!(
        (load(&*store, &first).await, load(&*store, other).await),
        (0, 1)
    );
    // Stale expectation: the lead is no longer with `first`.
    assert!(matches!(
        store.reassign("l", &first, cands, t0()).await,
        Err(Error::FailedPrecondition(_))
    ));
    // Fill `first`, then try to move back: nobody has room, nothing changes.
    claim(&*store, "filler", 0.5, t0()).await;
    let cands = routing::rank(&reps, &ctx.needs, t0(), &[other.to_string()]).candidates;
    assert!(matches!(
        store.reassign("l", other, cands, t0()).await,
        Err(Error::FailedPrecondition(_))
    ));
    assert_eq!(
        (load(&*store, &first).await, load(&*store, other).await),
        (1, 1)
    );
}

pub async fn directory_round_trip(store: Arc<dyn Store>) {
    let mut r = rep("r1", 2);
    r.skills.insert("language:de".into(), 0.8);
    store.upsert_rep(r.clone(), t0()).await.unwrap();
    let mut other = rep("r2", 1);
    other.pool = "emea".into();
    store.upsert_rep(other, t0()).await.unwrap();
    assert_eq!(store.rep("r1", t0()).await.unwrap().unwrap().rep, r);
    assert_eq!(
        store.rep_statuses(Some("emea"), t0()).await.unwrap().len(),
        1
    );
    assert_eq!(store.rep_statuses(None, t0()).await.unwrap().len(), 2);
    claim(&*store, "l", 0.5, t0()).await;
    assert!(matches!(
        store.delete_rep("r1").await,
        Err(Error::FailedPrecondition(_))
    ));
    let mut moved = r.clone();
    moved.pool = "emea".into();
    assert!(matches!(
        store.upsert_rep(moved, t0()).await,
        Err(Error::FailedPrecondition(_))
    ));
    store.close("l", Outcome::Won, t0()).await.unwrap();
    store.delete_rep("r1").await.unwrap();
    assert!(store.rep("r1", t0()).await.unwrap().is_none());
    assert!(matches!(
        store.delete_rep("r1").await,
        Err(Error::NotFound { .. })
    ));
    let (s, _) = store.set_active("r2", false, t0()).await.unwrap();
    assert!(!s.rep.active);
    assert!(matches!(
        store.set_active("zz", true, t0()).await,
        Err(Error::NotFound { .. })
    ));
}

pub async fn raising_capacity_drains(store: Arc<dyn Store>) {
    store.upsert_rep(rep("r", 0), t0()).await.unwrap();
    for (id, p) in [("x", 0.3), ("y", 0.8)] {
        assert!(matches!(
            claim(&*store, id, p, t0()).await,
            Claim::Queued { .. }
        ));
    }
    let (status, drained) = store.upsert_rep(rep("r", 1), t0()).await.unwrap();
    assert_eq!(
        drained
            .iter()
            .map(|a| a.lead_id.as_str())
            .collect::<Vec<_>>(),
        ["y"]
    );
    assert_eq!(status.load, 1);
    let (_, drained) = store.upsert_rep(rep("new", 5), t0()).await.unwrap();
    assert_eq!(
        drained
            .iter()
            .map(|a| a.lead_id.as_str())
            .collect::<Vec<_>>(),
        ["x"]
    );
    store.set_active("new", false, t0()).await.unwrap();
    claim(&*store, "z", 0.5, t0()).await;
    let (_, drained) = store.set_active("new", true, t0()).await.unwrap();
    assert_eq!(drained.len(), 1);
}

pub async fn closing_a_queued_lead_withdraws_it(store: Arc<dyn Store>) {
    store.upsert_rep(rep("r", 0), t0()).await.unwrap();
    claim(&*store, "q", 0.5, t0()).await;
    let closed = store.close("q", Outcome::Disqualified, t0()).await.unwrap();
    assert_eq!(closed.assignment.rep_id, "");
    assert_eq!(
        closed.assignment.state,
        AssignmentState::Closed(Outcome::Disqualified)
    );
    let (_, drained) = store.upsert_rep(rep("r", 3), t0()).await.unwrap();
    assert!(drained.is_empty(), "a withdrawn lead must not be assigned");
}

pub async fn concurrent_claims_respect_capacity(store: Arc<dyn Store>) {
    let caps = [7u32, 5, 3, 1, 0, 9];
    for (i, c) in caps.iter().enumerate() {
        store
            .upsert_rep(rep(&format!("r{i}"), *c), t0())
            .await
            .unwrap();
    }
    let total: u32 = caps.iter().sum();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            // Every lead twice, concurrently: retries must count once.
            let id = format!("l{}", i % 100);
            assigned_rep(&claim(&*s, &id, 0.5, t0()).await).is_some()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut assigned = 0;
    for i in 0..100 {
        if let Some(LeadState::Assigned(_)) = store.lookup(&format!("l{i}")).await.unwrap() {
            assigned += 1;
        }
    }
    assert_eq!(assigned, total);
    for s in store.rep_statuses(None, t0()).await.unwrap() {
        assert_eq!(s.load, s.rep.capacity, "rep {}", s.rep.id);
    }
}

/// A ranking made before a rep was deleted (a replica's directory can lag) must not assign
/// to it, nor charge whoever took its place (the Redis store reuses its slot).
pub async fn a_deleted_rep_is_never_assigned(store: Arc<dyn Store>) {
    store.upsert_rep(rep("old", 1), t0()).await.unwrap();
    let ctx = context("l1", 0.5);
    let stale = routing::rank(&store.reps().await.unwrap(), &ctx.needs, t0(), &[]).candidates;
    assert_eq!(stale.len(), 1);
    store.delete_rep("old").await.unwrap();
    store.upsert_rep(rep("new", 1), t0()).await.unwrap();
    let c = store
        .claim(ClaimRequest {
            context: ctx,
            candidates: stale,
            now: t0(),
        })
        .await
        .unwrap();
    assert!(matches!(c, Claim::Queued { .. }), "{c:?}");
    assert_eq!(load(&*store, "new").await, 0);
    let fresh = claim(&*store, "l2", 0.5, t0()).await;
    assert_eq!(assigned_rep(&fresh), Some("new"));
    assert_eq!(load(&*store, "new").await, 1);
}
