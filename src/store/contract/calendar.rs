//! Contract cases for time and skills: quotas per week, time off and its ramp, shifts, and
//! drains that look only at leads a rep with room could take.
use std::sync::Arc;

use jiff::{Timestamp, ToSpan};

use super::{assigned_rep, claim, claim_context, context, rep, t0};
use crate::domain::assignment::{LeadState, Outcome};
use crate::domain::rep::{Shift, TimeOff};
use crate::domain::routing::{self, Verdict};
use crate::store::{Claim, Store};

/// Claims a lead that requires `skills`, ranked as the engine would.
async fn claim_needing(
    store: &dyn Store,
    id: &str,
    p: f64,
    skills: &[&str],
    now: Timestamp,
) -> Claim {
    let mut ctx = context(id, p);
    ctx.needs.required_skills = skills.iter().map(|s| s.to_string()).collect();
    claim_context(store, ctx, now).await.unwrap()
}

pub async fn weekly_quota_is_enforced_and_named(store: Arc<dyn Store>) {
    // t0 is Friday 2026-11-27; the ISO week ends on Sunday the 29th.
    let mut r = rep("r", 10);
    r.daily_quota = Some(5);
    r.weekly_quota = Some(2);
    store.upsert_rep(r, t0()).await.unwrap();
    assert!(assigned_rep(&claim(&*store, "a", 0.5, t0()).await).is_some());
    let saturday = t0() + 24.hours();
    assert!(assigned_rep(&claim(&*store, "b", 0.5, saturday).await).is_some());
    let c = claim(&*store, "c", 0.5, saturday).await;
    let Claim::Queued { records, .. } = &c else {
        panic!("{c:?}")
    };
    assert_eq!(records[0].verdict, Verdict::OverQuota);
    assert_eq!(records[0].detail.to_string(), "2 of 2 this week");
    let sunday = saturday + 24.hours();
    assert!(store.drain("default", sunday).await.unwrap().is_empty());
    let status = store.rep("r", sunday).await.unwrap().unwrap();
    assert_eq!(
        status.counts,
        [0, 2, 2, 2],
        "day resets, week/month/quarter do not"
    );
    let monday = sunday + 24.hours();
    let drained = store.drain("default", monday).await.unwrap();
    assert_eq!(drained.len(), 1);
    assert_eq!(drained[0].lead_id, "c");
    let status = store.rep("r", monday).await.unwrap().unwrap();
    assert_eq!(status.counts, [1, 1, 3, 3]);
}

pub async fn time_off_is_on_leave_then_ramps_back(store: Arc<dyn Store>) {
    let mut r = rep("r", 4);
    r.time_off = vec![TimeOff {
        from: "2026-11-26".into(),
        to: "2026-11-27".into(),
    }];
    r.return_ramp_days = 2;
    store.upsert_rep(r, t0()).await.unwrap();
    let c = claim(&*store, "a", 0.5, t0()).await;
    assert!(matches!(c, Claim::Queued { .. }), "{c:?}");
    let reps = store.reps().await.unwrap();
    let ranking = routing::rank(&reps, &context("x", 0.5).needs, t0(), &[]);
    assert_eq!(ranking.rejected[0].verdict, Verdict::OnLeave);
    let status = store.rep("r", t0()).await.unwrap().unwrap();
    assert!(status.on_leave);
    // First day back: half of 4. The drain takes "a", one more claim fits, the third waits.
    let back = t0() + 24.hours();
    assert_eq!(store.drain("default", back).await.unwrap().len(), 1);
    assert!(assigned_rep(&claim(&*store, "b", 0.5, back).await).is_some());
    assert!(matches!(
        claim(&*store, "c", 0.5, back).await,
        Claim::Queued { .. }
    ));
    let status = store.rep("r", back).await.unwrap().unwrap();
    assert_eq!((status.on_leave, status.effective_capacity), (false, 2));
    // Two days after the ramp began: full capacity again.
    let later = back + 48.hours();
    assert_eq!(store.drain("default", later).await.unwrap().len(), 1);
}

pub async fn a_drain_skips_leads_no_free_rep_can_take(store: Arc<dyn Store>) {
    let mut de = rep("de", 1);
    de.skills.insert("language:de".into(), 1.0);
    store.upsert_rep(de, t0()).await.unwrap();
    let mut night = rep("night", 5);
    night.skills.insert("language:fr".into(), 1.0);
    night.shift = Some(Shift {
        timezone: "UTC".into(),
        start: "22:00".into(),
        end: "06:00".into(),
        days: vec![],
    });
    store.upsert_rep(night, t0()).await.unwrap();
    assert_eq!(
        assigned_rep(&claim_needing(&*store, "first", 0.1, &["language:de"], t0()).await),
        Some("de")
    );
    // French leads queue ahead (higher probability) but only the off-shift rep speaks French.
    for i in 0..50 {
        let c = claim_needing(&*store, &format!("fr{i}"), 0.9, &["language:fr"], t0()).await;
        assert!(matches!(c, Claim::Queued { .. }), "{c:?}");
    }
    for (id, p) in [("de-low", 0.2), ("de-high", 0.6)] {
        claim_needing(&*store, id, p, &["language:de"], t0()).await;
    }
    assert!(matches!(
        store.lookup("de-high").await.unwrap(),
        Some(LeadState::Queued { position: 51, .. })
    ));
    let closed = store.close("first", Outcome::Won, t0()).await.unwrap();
    let ids: Vec<_> = closed.drained.iter().map(|a| a.lead_id.as_str()).collect();
    assert_eq!(ids, ["de-high"]);
    assert!(matches!(
        store.lookup("de-low").await.unwrap(),
        Some(LeadState::Queued { position: 51, .. })
    ));
    // At 22:00 the French rep starts: five French leads go, in arrival order.
    let evening: Timestamp = "2026-11-27T22:30:00Z".parse().unwrap();
    let drained = store.drain("default", evening).await.unwrap();
    let ids: Vec<_> = drained.iter().map(|a| a.lead_id.as_str()).collect();
    assert_eq!(ids, ["fr0", "fr1", "fr2", "fr3", "fr4"]);
}
