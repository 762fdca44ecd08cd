//! Contract cases for the report ledger: every backend keeps the same counters as the memory
//! store for the same calls (a reference store runs the same workload), imports history
//! idempotently without touching capacity, and keeps targets.
use std::sync::Arc;

use jiff::{Timestamp, ToSpan};

use super::{claim_context, context, rep, t0};
use crate::domain::assignment::{HistoryLead, Outcome, Terms};
use crate::domain::ledger::{Grain, LedgerCell, m};
use crate::domain::report::Period;
use crate::domain::target::{Scope, Target, TargetMetric};
use crate::store::memory::MemoryStore;
use crate::store::{Release, Store};

fn at(hours: i64) -> Timestamp {
    t0() + hours.hours()
}

fn history(id: &str, rep_id: &str, assigned: &str, closed: Option<(Outcome, &str)>) -> HistoryLead {
    let ms = |d: &str| {
        format!("{d}T12:00:00Z")
            .parse::<Timestamp>()
            .unwrap()
            .as_millisecond()
    };
    HistoryLead {
        context: context(id, 0.25),
        rep_id: rep_id.into(),
        assigned_at_ms: Some(ms(assigned)),
        closed: closed.map(|(o, d)| (o, ms(d))),
        value: closed.map(|_| 100.0),
    }
}

/// Claims, offers, declines, contacts, breaches, reassigns, closes (with and without a
/// value, held and queued), an unroutable lead and an import, across days and a month end.
async fn workload(store: &dyn Store) {
    store.upsert_rep(rep("a", 1), t0()).await.unwrap();
    store.upsert_rep(rep("b", 1), t0()).await.unwrap();
    claim_context(store, context("l1", 0.3), at(0))
        .await
        .unwrap();
    claim_context(store, context("l2", 0.6), at(0))
        .await
        .unwrap();
    let mut l3 = context("l3", 0.2);
    l3.expected_value = 250.0;
    claim_context(store, l3, at(1)).await.unwrap();
    store.contacted("l1", "", at(2)).await.unwrap();
    store
        .close_valued("l1", Outcome::Won, Some(500.0), at(26))
        .await
        .unwrap();
    let mut l4 = context("l4", 0.4);
    l4.terms = Terms {
        offer_ms: 60_000,
        max_offers: 3,
        ..Terms::default()
    };
    claim_context(store, l4, at(27)).await.unwrap();
    // Into December: l2's close lets l4 through as an offer, which its rep declines.
    store.close("l2", Outcome::Lost, at(120)).await.unwrap();
    let holder = match store.lookup("l4").await.unwrap() {
        Some(crate::domain::assignment::LeadState::Assigned(a)) => a.rep_id,
        other => panic!("l4 should be offered: {other:?}"),
    };
    store
        .release("l4", &holder, Release::Declined("busy".into()), at(121))
        .await
        .unwrap();
    store
        .close("l4", Outcome::Disqualified, at(144))
        .await
        .unwrap();
    store.upsert_rep(rep("c", 2), at(144)).await.unwrap();
    let l3_rep = match store.lookup("l3").await.unwrap() {
        Some(crate::domain::assignment::LeadState::Assigned(a)) => a.rep_id,
        other => panic!("l3 should be held: {other:?}"),
    };
    let reps = store.reps().await.unwrap();
    let to_c: Vec<_> = crate::domain::routing::rank(&reps, &context("l3", 0.2).needs, at(144), &[])
        .candidates
        .into_iter()
        .filter(|c| c.rep_id == "c")
        .collect();
    store.reassign("l3", &l3_rep, to_c, at(144)).await.unwrap();
    let mut l5 = context("l5", 0.9);
    l5.terms.sla_ms = 1_000;
    claim_context(store, l5, at(145)).await.unwrap();
    store.breach("l5", at(146)).await.unwrap();
    store.close("l3", Outcome::Won, at(150)).await.unwrap();
    store
        .note_unroutable("default", "qualified", at(150))
        .await
        .unwrap();
    let imported = store
        .import_history(vec![
            history("h1", "a", "2026-10-01", Some((Outcome::Won, "2026-10-15"))),
            history("h2", "a", "2026-10-20", None),
        ])
        .await
        .unwrap();
    assert_eq!((imported.imported, imported.skipped), (2, 0));
}

/// Cells as comparable rows: (pool, bucket, rep, segment, metric, value), zeros left out.
fn rows(cells: Vec<LedgerCell>) -> Vec<(String, String, String, String, u16, f64)> {
    let mut out: Vec<_> = cells
        .into_iter()
        .flat_map(|c| {
            let head = (c.pool, c.bucket.key(), c.rep, c.segment);
            c.cell
                .0
                .into_iter()
                .filter(|(_, v)| v.abs() > 1e-9)
                .map(move |(k, v)| {
                    (
                        head.0.clone(),
                        head.1.clone(),
                        head.2.clone(),
                        head.3.clone(),
                        k,
                        v,
                    )
                })
        })
        .collect();
    out.sort_by(|a, b| (&a.0, &a.1, &a.2, &a.3, a.4).cmp(&(&b.0, &b.1, &b.2, &b.3, b.4)));
    out
}

fn total(rows: &[(String, String, String, String, u16, f64)], metric: u16) -> f64 {
    rows.iter().filter(|r| r.4 == metric).map(|r| r.5).sum()
}

pub async fn the_ledger_matches_the_reference_store(store: Arc<dyn Store>) {
    let reference: Arc<dyn Store> = Arc::new(MemoryStore::default());
    workload(&*store).await;
    workload(&*reference).await;
    for grain in [Grain::Day, Grain::Month, Grain::Now] {
        let got = rows(store.ledger(None, grain, i32::MIN, i32::MAX).await.unwrap());
        let want = rows(
            reference
                .ledger(None, grain, i32::MIN, i32::MAX)
                .await
                .unwrap(),
        );
        assert_eq!(got.len(), want.len(), "{grain:?}: {got:#?}\nvs\n{want:#?}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(
                (&g.0, &g.1, &g.2, &g.3, g.4),
                (&w.0, &w.1, &w.2, &w.3, w.4),
                "{grain:?}"
            );
            assert!((g.5 - w.5).abs() < 1e-9, "{grain:?} {g:?} vs {w:?}");
        }
    }
    // Outcomes keep when the rep took the lead, first contact and the deal's value.
    let outcomes = store.outcomes().await.unwrap();
    let find = |id: &str| outcomes.iter().find(|o| o.context.lead.id == id).unwrap();
    let ms = |h: i64| Some(at(h).as_millisecond());
    let l1 = find("l1");
    assert_eq!(
        (l1.assigned_at_ms, l1.contacted_at_ms, l1.value),
        (ms(0), ms(2), Some(500.0))
    );
    let l4 = find("l4");
    assert_eq!(
        (l4.assigned_at_ms, l4.contacted_at_ms, l4.value),
        (None, None, None),
        "closed queued"
    );
    // And the figures themselves.
    let months = rows(
        store
            .ledger(None, Grain::Month, i32::MIN, i32::MAX)
            .await
            .unwrap(),
    );
    assert_eq!(total(&months, m::SUBMITTED), 7.0);
    assert_eq!(total(&months, m::WON), 3.0);
    assert_eq!(total(&months, m::LOST), 1.0);
    assert_eq!(total(&months, m::DISQUALIFIED), 1.0);
    assert_eq!(total(&months, m::WON_VALUE), 500.0 + 250.0 + 100.0);
    assert_eq!(total(&months, m::DECLINED), 1.0);
    assert_eq!(total(&months, m::REASSIGNED), 1.0);
    assert_eq!(total(&months, m::CONTACTED), 1.0);
    assert_eq!(total(&months, m::SLA_BREACHED), 1.0);
    assert_eq!(total(&months, m::UNROUTABLE), 1.0);
    assert!((total(&months, m::CLOSED_P) - (0.3 + 0.6 + 0.2 + 0.25)).abs() < 1e-12);
    let now = rows(store.ledger(None, Grain::Now, 0, 0).await.unwrap());
    // Open now: l5 (0.9) and the imported h2 (0.25).
    assert!((total(&now, m::OPEN) - 2.0).abs() < 1e-9, "{now:?}");
    assert!((total(&now, m::OPEN_P) - 1.15).abs() < 1e-9);
    // Day buckets: November's days hold l1's win, December's the rest.
    let nov = Period::Month.bounds(crate::store::ledger::report_day(
        t0().as_millisecond(),
        &jiff::tz::TimeZone::UTC,
    ));
    let days = rows(store.ledger(None, Grain::Day, nov.0, nov.1).await.unwrap());
    assert_eq!(total(&days, m::WON), 1.0);
    assert_eq!(total(&days, m::WON_VALUE), 500.0);
}

pub async fn imports_are_idempotent_and_hold_no_capacity(store: Arc<dyn Store>) {
    store.upsert_rep(rep("a", 1), t0()).await.unwrap();
    let leads = vec![
        history("h1", "a", "2026-10-01", Some((Outcome::Lost, "2026-10-15"))),
        history("h2", "a", "2026-10-20", None),
    ];
    let first = store.import_history(leads.clone()).await.unwrap();
    assert_eq!((first.imported, first.skipped), (2, 0));
    let again = store.import_history(leads).await.unwrap();
    assert_eq!((again.imported, again.skipped), (0, 2));
    let load = |s: Arc<dyn Store>| async move { s.rep("a", t0()).await.unwrap().unwrap().load };
    assert_eq!(load(store.clone()).await, 0, "history holds no capacity");
    // The rep still takes a new lead, and closing the imported one frees nothing.
    claim_context(&*store, context("new", 0.5), t0())
        .await
        .unwrap();
    assert_eq!(load(store.clone()).await, 1);
    store.close("h2", Outcome::Won, t0()).await.unwrap();
    assert_eq!(load(store.clone()).await, 1);
    let months = rows(
        store
            .ledger(None, Grain::Month, i32::MIN, i32::MAX)
            .await
            .unwrap(),
    );
    assert_eq!(total(&months, m::WON), 1.0);
    assert_eq!(total(&months, m::LOST), 1.0);
    // Imported leads are report history, not training rows.
    assert!(
        store
            .outcomes()
            .await
            .unwrap()
            .iter()
            .all(|o| !o.context.lead.id.starts_with('h'))
    );
}

pub async fn targets_are_kept_and_removed(store: Arc<dyn Store>) {
    let t = |scope, value| Target {
        scope,
        period: Period::Month,
        metric: TargetMetric::Wins,
        value,
    };
    store
        .set_target(t(Scope::Rep("a".into()), 10.0))
        .await
        .unwrap();
    store.set_target(t(Scope::Team, 40.0)).await.unwrap();
    store
        .set_target(t(Scope::Rep("a".into()), 12.0))
        .await
        .unwrap();
    let all = store.targets().await.unwrap();
    assert_eq!(
        all,
        vec![t(Scope::Rep("a".into()), 12.0), t(Scope::Team, 40.0)]
    );
    store.set_target(t(Scope::Team, 0.0)).await.unwrap();
    assert_eq!(store.targets().await.unwrap().len(), 1);
}
