//! The memory store's report counters: cells per (pool, report day) and (rep, segment), moved
//! under the store's lock by the same step that moves the lead; and the targets.
use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::domain::assignment::Assignment;
use crate::domain::event::EventKind;
use crate::domain::ledger::{Bucket, Cell, Grain, Holding, LedgerCell, Stage, Tick, m, tally};
use crate::domain::packed::View;
use crate::store::ledger::report_day;

#[derive(Default, Serialize, Deserialize)]
pub(super) struct Ledger {
    /// (pool, bucket) -> (rep, segment) -> counters. Serialized as a list: JSON map keys must be
    /// strings.
    #[serde(with = "as_list")]
    cells: BTreeMap<(String, Bucket), BTreeMap<(String, String), Cell>>,
    pub(super) targets: BTreeMap<String, f64>,
    /// The report time zone (from config; UTC when unset).
    #[serde(skip)]
    pub(super) zone: Option<TimeZone>,
}

mod as_list {
    use super::*;
    type Cells = BTreeMap<(String, Bucket), BTreeMap<(String, String), Cell>>;
    type Row = (String, Bucket, String, String, Cell);

    pub fn serialize<S: serde::Serializer>(cells: &Cells, s: S) -> Result<S::Ok, S::Error> {
        let rows: Vec<(&String, &Bucket, &String, &String, &Cell)> = cells
            .iter()
            .flat_map(|((pool, b), m)| m.iter().map(move |((r, g), c)| (pool, b, r, g, c)))
            .collect();
        rows.serialize(s)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Cells, D::Error> {
        let rows: Vec<Row> = Vec::deserialize(d)?;
        let mut cells = Cells::new();
        for (pool, day, rep, seg, cell) in rows {
            cells
                .entry((pool, day))
                .or_default()
                .insert((rep, seg), cell);
        }
        Ok(cells)
    }
}

/// How a change moved a lead, besides what its event says.
pub(super) struct Move {
    pub(super) before: Option<Holding>,
    pub(super) new: bool,
    pub(super) value: Option<f64>,
}

impl Move {
    pub(super) fn none() -> Move {
        Move {
            before: None,
            new: false,
            value: None,
        }
    }
    pub(super) fn new_lead() -> Move {
        Move {
            new: true,
            ..Move::none()
        }
    }
    pub(super) fn from(rep: &str, since_ms: i64) -> Move {
        Move {
            before: Some(Holding {
                rep: rep.to_string(),
                since_ms,
            }),
            ..Move::none()
        }
    }
}

impl Ledger {
    pub(super) fn day(&self, ms: i64) -> i32 {
        report_day(ms, self.zone.as_ref().unwrap_or(&TimeZone::UTC))
    }

    /// Applies the counters of one change. `a` is the lead's assignment after it (None when it
    /// is queued or closed), `rep` the rep the change is about.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record(
        &mut self,
        kind: EventKind,
        ctx: View<'_>,
        a: Option<&Assignment>,
        rep: &str,
        outcome: Option<&str>,
        mv: Move,
        at_ms: i64,
    ) {
        let tick = tick(kind, ctx, a, rep, outcome, mv, at_ms);
        self.apply(ctx.pool, &tick, |_| true);
    }

    /// As `record`, for imported history: it never waited in a queue, so no queue wait.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record_imported(
        &mut self,
        kind: EventKind,
        ctx: View<'_>,
        a: Option<&Assignment>,
        rep: &str,
        outcome: Option<&str>,
        mv: Move,
        at_ms: i64,
    ) {
        let tick = tick(kind, ctx, a, rep, outcome, mv, at_ms);
        let wait = m::HIST + Stage::QueueWait as u16 * m::HIST_BUCKETS;
        let waits = wait..wait + m::HIST_BUCKETS;
        self.apply(ctx.pool, &tick, |k| !waits.contains(&k));
    }

    fn apply(&mut self, pool: &str, tick: &Tick, keep: impl Fn(u16) -> bool) {
        for d in tally(tick, |ms| self.day(ms)) {
            if keep(d.metric) {
                self.add(pool, d.bucket, &d.rep, &d.segment, d.metric, d.delta);
            }
        }
    }

    pub(super) fn add(&mut self, pool: &str, b: Bucket, rep: &str, seg: &str, metric: u16, v: f64) {
        self.cells
            .entry((pool.to_string(), b))
            .or_default()
            .entry((rep.to_string(), seg.to_string()))
            .or_default()
            .add(metric, v);
    }

    pub(super) fn read(
        &self,
        pool: Option<&str>,
        grain: Grain,
        from: i32,
        to: i32,
    ) -> Vec<LedgerCell> {
        let mut out = Vec::new();
        for ((p, b), m) in &self.cells {
            let wanted = match (grain, b) {
                (Grain::Now, Bucket::Now) => true,
                (Grain::Day, Bucket::Day(i)) | (Grain::Month, Bucket::Month(i)) => {
                    (from..=to).contains(i)
                }
                _ => false,
            };
            if !wanted || pool.is_some_and(|want| want != p) {
                continue;
            }
            for ((rep, seg), cell) in m {
                out.push(LedgerCell {
                    pool: p.clone(),
                    bucket: *b,
                    rep: rep.clone(),
                    segment: seg.clone(),
                    cell: cell.clone(),
                });
            }
        }
        out
    }
}

#[allow(clippy::too_many_arguments)]
fn tick(
    kind: EventKind,
    ctx: View<'_>,
    a: Option<&Assignment>,
    rep: &str,
    outcome: Option<&str>,
    mv: Move,
    at_ms: i64,
) -> Tick {
    let after = match kind {
        EventKind::Closed => None,
        EventKind::Queued | EventKind::Declined | EventKind::Expired => Some(Holding {
            rep: String::new(),
            since_ms: at_ms,
        }),
        EventKind::Assigned | EventKind::Offered | EventKind::Reassigned => a.map(|a| Holding {
            rep: a.rep_id.clone(),
            since_ms: a.assigned_at_ms,
        }),
        _ => None,
    };
    Tick {
        kind,
        rep: rep.to_string(),
        segment: ctx.segment.to_string(),
        probability: ctx.probability,
        expected_value: ctx.expected_value,
        outcome: outcome.map(str::to_string),
        value: mv.value,
        after,
        before: mv.before,
        new: mv.new,
        held_since_ms: a.map_or(at_ms, |a| a.assigned_at_ms),
        at_ms,
    }
}
