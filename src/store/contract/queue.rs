//! Contract case for the queue TTL: a lead queued longer than its `queue_ttl_ms` comes due
//! and is closed EXPIRED, recorded as an outcome and an event; a lead a rep took meanwhile is
//! left alone.
use std::sync::Arc;

use jiff::ToSpan;

use super::{claim_context, context, rep, t0};
use crate::domain::assignment::{AssignmentState, LeadContext, LeadState, Outcome};
use crate::domain::event::EventKind;
use crate::store::{Claim, DueKind, Store};

fn with_ttl(id: &str, p: f64) -> LeadContext {
    let mut ctx = context(id, p);
    ctx.terms.queue_ttl_ms = 60_000;
    ctx
}

pub async fn queued_leads_expire_after_their_ttl(store: Arc<dyn Store>) {
    store.upsert_rep(rep("r", 0), t0()).await.unwrap();
    for (id, p) in [("old", 0.5), ("taken", 0.9)] {
        let c = claim_context(&*store, with_ttl(id, p), t0()).await.unwrap();
        assert!(matches!(c, Claim::Queued { .. }), "{c:?}");
    }
    // Not yet due at 59 s; the next deadline is at 60 s.
    let early = store.due("default", t0() + 59.seconds(), 10).await.unwrap();
    assert!(early.leads.is_empty(), "{early:?}");
    assert_eq!(early.next_ms, Some(t0().as_millisecond() + 60_000));
    // A rep takes the better lead before its TTL.
    let (_, drained) = store
        .upsert_rep(rep("r", 1), t0() + 30.seconds())
        .await
        .unwrap();
    assert_eq!(drained.len(), 1);
    assert_eq!(drained[0].lead_id, "taken");
    let later = t0() + 61.seconds();
    let due = store.due("default", later, 10).await.unwrap();
    let mut ids: Vec<&str> = due
        .leads
        .iter()
        .filter(|(_, k)| *k == DueKind::QueueTtl)
        .map(|(l, _)| l.as_str())
        .collect();
    ids.sort();
    assert!(ids.contains(&"old"), "{due:?}");
    // The taken lead is not expired, however often it is asked.
    for _ in 0..2 {
        assert_eq!(store.expire_queued("taken", later).await.unwrap(), None);
    }
    let Some(LeadState::Assigned(a)) = store.lookup("taken").await.unwrap() else {
        panic!("taken lost")
    };
    assert_eq!(a.state, AssignmentState::Open);
    // The old one expires once.
    let expired = store.expire_queued("old", later).await.unwrap().unwrap();
    assert_eq!(expired.state, AssignmentState::Closed(Outcome::Expired));
    assert_eq!(expired.rep_id, "");
    assert_eq!(store.expire_queued("old", later).await.unwrap(), None);
    let Some(LeadState::Assigned(a)) = store.lookup("old").await.unwrap() else {
        panic!("old not closed")
    };
    assert_eq!(a.state, AssignmentState::Closed(Outcome::Expired));
    let outcomes = store.outcomes().await.unwrap();
    assert!(
        outcomes
            .iter()
            .any(|o| o.context.lead.id == "old" && o.outcome == Outcome::Expired)
    );
    let events = store.events_after("default", 0, 100).await.unwrap().events;
    let last = events.iter().rfind(|e| e.lead_id == "old").unwrap();
    assert_eq!(last.kind, EventKind::Closed);
    assert_eq!(last.reason, "expired");
    // Nothing of either is due any more.
    let after = store.due("default", later, 10).await.unwrap();
    assert!(
        !after.leads.iter().any(|(_, k)| *k == DueKind::QueueTtl),
        "{after:?}"
    );
}
