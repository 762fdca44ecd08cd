//! Contract cases for the loop after a decision: offers that expire or are declined, first
//! touch and SLA breaches, the event log and inbox/queue listings.
use std::sync::Arc;

use jiff::{Timestamp, ToSpan};

use super::{claim_context, context, rep, t0};
use crate::domain::assignment::{AssignmentState, LeadContext, LeadState, Terms};
use crate::domain::event::EventKind;
use crate::error::Error;
use crate::store::{Claim, DueKind, ListQuery, Listed, Release, Store};

fn offered(id: &str, p: f64, max_offers: u32) -> LeadContext {
    let mut ctx = context(id, p);
    ctx.terms = Terms {
        offer_ms: 1_000,
        max_offers,
        ..Terms::default()
    };
    ctx
}

async fn holder(store: &dyn Store, id: &str) -> (String, AssignmentState) {
    match store.lookup(id).await.unwrap() {
        Some(LeadState::Assigned(a)) => (a.rep_id, a.state),
        other => panic!("{id}: {other:?}"),
    }
}

async fn kinds(store: &dyn Store, pool: &str) -> Vec<(u64, EventKind, String)> {
    let page = store.events_after(pool, 0, 100).await.unwrap();
    page.events
        .into_iter()
        .map(|e| (e.cursor, e.kind, e.rep_id))
        .collect()
}

fn precondition(r: crate::error::Result<impl std::fmt::Debug>, needle: &str) {
    match r {
        Err(Error::FailedPrecondition(m)) => assert!(m.contains(needle), "{m:?} lacks {needle:?}"),
        other => panic!("expected FAILED_PRECONDITION ({needle}), got {other:?}"),
    }
}

pub async fn offers_expire_and_move_on(store: Arc<dyn Store>) {
    store.upsert_rep(rep("a", 1), t0()).await.unwrap();
    store.upsert_rep(rep("b", 1), t0()).await.unwrap();
    let c = claim_context(&*store, offered("l", 0.5, 3), t0())
        .await
        .unwrap();
    let Claim::Assigned { assignment, .. } = &c else {
        panic!("{c:?}")
    };
    assert_eq!(assignment.state, AssignmentState::Offered);
    let first = assignment.rep_id.clone();
    let other = if first == "a" { "b" } else { "a" };
    assert_eq!(assignment.deadline_ms, Some(t0().as_millisecond() + 1_000));
    precondition(store.accept("l", other, t0()).await, "is with rep");
    precondition(
        store.release("l", "", Release::Expired, t0()).await,
        "not expired",
    );
    let due = store.due("default", t0(), 10).await.unwrap();
    assert!(due.leads.is_empty());
    assert_eq!(due.next_ms, Some(t0().as_millisecond() + 1_000));
    let later = t0() + 1.second();
    let due = store.due("default", later, 10).await.unwrap();
    assert_eq!(due.leads, vec![("l".to_string(), DueKind::Offer)]);
    let r = store
        .release("l", "", Release::Expired, later)
        .await
        .unwrap();
    assert_eq!(r.drained.len(), 1, "{r:?}");
    assert_eq!(
        holder(&*store, "l").await,
        (other.to_string(), AssignmentState::Offered)
    );
    assert_eq!(store.rep(&first, later).await.unwrap().unwrap().load, 0);
    assert_eq!(store.rep(other, later).await.unwrap().unwrap().load, 1);
    precondition(store.accept("l", &first, later).await, "expired");
    let a = store.accept("l", other, later).await.unwrap();
    assert_eq!((a.state, a.deadline_ms), (AssignmentState::Open, None));
    assert_eq!(store.accept("l", other, later).await.unwrap(), a);
    precondition(
        store
            .release("l", other, Release::Declined("x".into()), later)
            .await,
        "accepted",
    );
    assert!(matches!(
        store.accept("nope", "a", later).await,
        Err(Error::NotFound { .. })
    ));
    let log = kinds(&*store, "default").await;
    let want = [
        (1, EventKind::Offered, first.clone()),
        (2, EventKind::Expired, first.clone()),
        (3, EventKind::Offered, other.to_string()),
        (4, EventKind::Accepted, other.to_string()),
    ];
    assert_eq!(log, want);
    assert!(
        store
            .due("default", later, 10)
            .await
            .unwrap()
            .leads
            .is_empty()
    );
}

pub async fn declined_offers_skip_those_reps_until_max_offers(store: Arc<dyn Store>) {
    for id in ["a", "b", "c"] {
        store.upsert_rep(rep(id, 1), t0()).await.unwrap();
    }
    claim_context(&*store, offered("l", 0.5, 2), t0())
        .await
        .unwrap();
    let (first, _) = holder(&*store, "l").await;
    precondition(
        store
            .release("l", "zz", Release::Declined("busy".into()), t0())
            .await,
        "is with rep",
    );
    store
        .release("l", &first, Release::Declined("busy".into()), t0())
        .await
        .unwrap();
    let (second, state) = holder(&*store, "l").await;
    assert_eq!(state, AssignmentState::Offered);
    assert_ne!(second, first);
    // The second offer ends: max_offers (2) reached, so the slate is clean and the lead is
    // offered again to whoever ranks first, possibly one who declined before.
    store
        .release("l", &second, Release::Declined("no".into()), t0())
        .await
        .unwrap();
    let (third, _) = holder(&*store, "l").await;
    let page = store.events_after("default", 0, 100).await.unwrap();
    let declined: Vec<_> = page
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Declined)
        .collect();
    assert_eq!(declined.len(), 2);
    assert_eq!(declined[0].reason, "busy");
    assert!(
        declined[1].reason.contains("max_offers"),
        "{:?}",
        declined[1]
    );
    assert!(
        declined[0].assignment.is_none(),
        "a declined lead is queued"
    );
    let loads: u32 = futures::future::join_all(["a", "b", "c"].map(|r| store.rep(r, t0())))
        .await
        .into_iter()
        .map(|s| s.unwrap().unwrap().load)
        .sum();
    assert_eq!(loads, 1, "only {third} holds it");
}

pub async fn contacted_stops_the_sla_and_breaches_are_counted(store: Arc<dyn Store>) {
    store.upsert_rep(rep("a", 2), t0()).await.unwrap();
    for id in ["l1", "l2"] {
        let mut ctx = context(id, 0.5);
        ctx.terms.sla_ms = 60_000;
        let c = claim_context(&*store, ctx, t0()).await.unwrap();
        let Claim::Assigned { assignment, .. } = c else {
            panic!("{c:?}")
        };
        assert_eq!(assignment.deadline_ms, Some(t0().as_millisecond() + 60_000));
    }
    precondition(store.contacted("l1", "b", t0()).await, "is with rep");
    let a = store.contacted("l1", "a", t0()).await.unwrap();
    assert_eq!(a.contacted_at_ms, Some(t0().as_millisecond()));
    assert_eq!(a.deadline_ms, None);
    assert_eq!(store.contacted("l1", "", t0()).await.unwrap(), a);
    let late = t0() + 60.seconds();
    let due = store.due("default", late, 10).await.unwrap();
    assert_eq!(due.leads, vec![("l2".to_string(), DueKind::Sla)]);
    let b = store
        .breach("l2", late)
        .await
        .unwrap()
        .expect("l2 breached");
    assert!(b.sla_breached);
    assert_eq!(store.breach("l2", late).await.unwrap(), None);
    assert_eq!(store.breach("l1", late).await.unwrap(), None);
    let status = store.rep("a", late).await.unwrap().unwrap();
    assert_eq!(status.sla_breaches, 1);
    let kinds: Vec<EventKind> = kinds(&*store, "default")
        .await
        .into_iter()
        .map(|k| k.1)
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::Assigned,
            EventKind::Assigned,
            EventKind::Contacted,
            EventKind::SlaBreached
        ]
    );
    store
        .close("l2", crate::domain::assignment::Outcome::Won, late)
        .await
        .unwrap();
    precondition(store.contacted("l2", "", late).await, "closed");
}

pub async fn events_are_numbered_per_pool_and_resume(store: Arc<dyn Store>) {
    store.upsert_rep(rep("r", 1), t0()).await.unwrap();
    let mut other = context("o", 0.5);
    other.needs.pool = "other".into();
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        claim_context(&*store, context(id, 0.5 - i as f64 / 10.0), t0())
            .await
            .unwrap();
    }
    claim_context(&*store, other, t0()).await.unwrap();
    store
        .close("a", crate::domain::assignment::Outcome::Lost, t0())
        .await
        .unwrap();
    let all = store.events_after("default", 0, 100).await.unwrap();
    let got: Vec<(u64, EventKind, &str)> = all
        .events
        .iter()
        .map(|e| (e.cursor, e.kind, e.lead_id.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (1, EventKind::Assigned, "a"),
            (2, EventKind::Queued, "b"),
            (3, EventKind::Queued, "c"),
            (4, EventKind::Closed, "a"),
            (5, EventKind::Assigned, "b"),
        ]
    );
    assert_eq!((all.oldest, all.last), (1, 5));
    let closed = &all.events[3];
    assert_eq!(closed.reason, "lost");
    assert!(matches!(
        closed.assignment.as_ref().map(|a| a.state),
        Some(AssignmentState::Closed(_))
    ));
    let rest = store.events_after("default", 3, 1).await.unwrap();
    assert_eq!(rest.events.len(), 1);
    assert_eq!(rest.events[0].cursor, 4);
    assert!(
        store
            .events_after("default", 5, 10)
            .await
            .unwrap()
            .events
            .is_empty()
    );
    let o = store.events_after("other", 0, 10).await.unwrap();
    assert_eq!(o.events.len(), 1);
    assert_eq!(
        (o.events[0].cursor, o.events[0].kind),
        (1, EventKind::Queued)
    );
    let mut pools = store.pools().await.unwrap();
    pools.sort();
    assert!(pools.contains(&"other".to_string()), "{pools:?}");
}

pub async fn listings_show_inboxes_and_the_queue(store: Arc<dyn Store>) {
    // Nothing held and nothing queued: empty pages, not errors.
    let mut idle = rep("idle", 1);
    idle.pool = "quiet".into();
    store.upsert_rep(idle, t0()).await.unwrap();
    for rep_id in [None, Some("idle".to_string())] {
        let q = ListQuery {
            pool: "quiet".into(),
            rep_id,
            states: vec![],
            offset: 0,
            limit: 10,
        };
        assert_eq!(store.list(&q).await.unwrap().items, vec![]);
    }

    store.upsert_rep(rep("a", 1), t0()).await.unwrap();
    store.upsert_rep(rep("b", 1), t0()).await.unwrap();
    for (id, p) in [("h1", 0.5), ("h2", 0.5), ("q1", 0.3), ("q2", 0.9)] {
        claim_context(&*store, context(id, p), t0()).await.unwrap();
    }
    let later: Timestamp = t0() + 5.seconds();
    let q = |rep: Option<&str>, states: Vec<Listed>, offset, limit| ListQuery {
        pool: "default".into(),
        rep_id: rep.map(str::to_string),
        states,
        offset,
        limit,
    };
    let all = store.list(&q(None, vec![], 0, 10)).await.unwrap();
    let got: Vec<(&str, Listed, u32)> = all
        .items
        .iter()
        .map(|i| (i.assignment.lead_id.as_str(), i.listed, i.position))
        .collect();
    let (ha, hb) = match holder(&*store, "h1").await.0.as_str() {
        "a" => ("h1", "h2"),
        _ => ("h2", "h1"),
    };
    assert_eq!(
        got,
        [
            (ha, Listed::Open, 0),
            (hb, Listed::Open, 0),
            ("q2", Listed::Queued, 1),
            ("q1", Listed::Queued, 2)
        ]
    );
    assert!(!all.more);
    assert_eq!(
        all.items[2].assignment.assigned_at_ms,
        t0().as_millisecond()
    );
    let inbox = store.list(&q(Some("a"), vec![], 0, 10)).await.unwrap();
    assert_eq!(inbox.items.len(), 1);
    assert_eq!(inbox.items[0].assignment.lead_id, ha);
    let page = store
        .list(&q(None, vec![Listed::Queued], 1, 1))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(
        (
            page.items[0].assignment.lead_id.as_str(),
            page.items[0].position
        ),
        ("q1", 2)
    );
    assert!(!page.more);
    let first = store.list(&q(None, vec![], 0, 3)).await.unwrap();
    assert!(first.more);
    assert_eq!(first.items.len(), 3);
    let second = store.list(&q(None, vec![], 3, 3)).await.unwrap();
    assert_eq!(second.items.len(), 1);
    assert_eq!(second.items[0].assignment.lead_id, "q1");
    let open = store
        .list(&q(None, vec![Listed::Offered], 0, 10))
        .await
        .unwrap();
    assert!(open.items.is_empty());
    let _ = later;
}
