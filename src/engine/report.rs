//! Reports, targets and history import: the ledger's cells turned into rows, in the report
//! time zone.
use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::domain::assignment::{HistoryLead, Imported, LeadContext, Outcome};
use crate::domain::lead::{AttrValue, Lead};
use crate::domain::ledger::{Grain, LedgerCell, m, month_of_day};
use crate::domain::report::{self, Band, By, ForecastRow, FunnelRow, PerformanceRow, Period};
use crate::domain::target::{self, Progress, Scope, Target, TargetMetric};
use crate::error::{Error, Result};
use crate::store::ledger::report_day;

use super::Engine;

/// `[report]` as the engine uses it.
#[derive(Debug, Clone)]
pub struct ReportPolicy {
    pub zone: TimeZone,
    pub value_attribute: String,
    pub currency: String,
    pub stale_queue_ms: i64,
}

impl Default for ReportPolicy {
    fn default() -> Self {
        ReportPolicy {
            zone: TimeZone::UTC,
            value_attribute: "expected_value".into(),
            currency: "USD".into(),
            stale_queue_ms: 3_600_000,
        }
    }
}

/// Which cells a report reads and how it groups them.
#[derive(Debug, Clone)]
pub struct ReportQuery {
    pub period: Period,
    pub by: By,
    pub pool: Option<String>,
    /// Report days, inclusive.
    pub from: i32,
    pub to: i32,
}

/// A past lead as a CRM export gives it: dates as text, the rep as an id or a name.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    pub lead: Lead,
    pub rep: String,
    pub assigned_at: String,
    pub closed_at: String,
    pub outcome: Option<Outcome>,
    pub value: Option<f64>,
}

/// The month of a report day, keeping the open ends of a range open.
fn month_bound(day: i32) -> i32 {
    match day {
        i32::MIN | i32::MAX => day,
        d => month_of_day(d),
    }
}

/// A rep name as deploy/make_reps.py turns it into an id: lower case, runs of other
/// characters as one '-', none at the ends.
pub fn rep_id_of(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

impl Engine {
    pub fn report_policy(&self) -> &ReportPolicy {
        &self.parts.report
    }

    /// Today's report day.
    pub fn report_today(&self) -> i32 {
        report_day(self.now().as_millisecond(), &self.parts.report.zone)
    }

    /// A date ("YYYY-MM-DD") as a report day.
    pub fn parse_report_day(&self, field: &str, s: &str) -> Result<i32> {
        let d: jiff::civil::Date = s
            .trim()
            .parse()
            .map_err(|_| Error::invalid(field, format!("{s:?} is not a date (YYYY-MM-DD)")))?;
        Ok(crate::domain::rep::calendar::day_number(d))
    }

    /// The cells of a period's grain covering report days `from..=to`.
    async fn cells_between(
        &self,
        pool: Option<&str>,
        period: Period,
        from: i32,
        to: i32,
    ) -> Result<Vec<LedgerCell>> {
        let grain = period.grain();
        let (from, to) = match grain {
            Grain::Month => (month_bound(from), month_bound(to)),
            _ => (from, to),
        };
        self.parts.store.ledger(pool, grain, from, to).await
    }

    async fn cells(&self, q: &ReportQuery) -> Result<Vec<LedgerCell>> {
        self.cells_between(q.pool.as_deref(), q.period, q.from, q.to)
            .await
    }

    pub async fn performance(&self, q: &ReportQuery) -> Result<(Vec<PerformanceRow>, Vec<Band>)> {
        let cells = self.cells(q).await?;
        Ok((
            report::performance(&cells, q.by, q.period),
            report::calibration(&cells),
        ))
    }

    /// Open leads now: every day's open counters.
    pub async fn forecast(&self, by: By, pool: Option<&str>) -> Result<Vec<ForecastRow>> {
        let cells = self.parts.store.ledger(pool, Grain::Now, 0, 0).await?;
        Ok(report::forecast(&cells, by))
    }

    pub async fn funnel(&self, q: &ReportQuery) -> Result<Vec<FunnelRow>> {
        let cells = self.cells(q).await?;
        let stale = self.stale_queued(q).await?;
        Ok(report::funnel(
            &cells,
            q.by,
            q.period,
            &stale,
            self.report_today(),
        ))
    }

    /// Leads queued longer than `report.stale_queue_s`, per group (queued leads have no rep:
    /// grouped by rep they count under "").
    async fn stale_queued(&self, q: &ReportQuery) -> Result<BTreeMap<String, f64>> {
        let cutoff = self.now().as_millisecond() - self.parts.report.stale_queue_ms;
        let mut out = BTreeMap::new();
        let pools = match &q.pool {
            Some(p) => vec![p.clone()],
            None => self.parts.store.pools().await?,
        };
        for pool in pools {
            self.each_queued(&pool, |item| {
                if item.assignment.assigned_at_ms <= cutoff {
                    let key = match q.by {
                        By::Rep => String::new(),
                        By::Pool => pool.clone(),
                        By::Segment => item.assignment.segment.clone(),
                        By::Team => "all".into(),
                    };
                    *out.entry(key).or_insert(0.0) += 1.0;
                }
            })
            .await?;
        }
        Ok(out)
    }

    pub async fn set_target(&self, t: Target) -> Result<Progress> {
        if !t.value.is_finite() || t.value < 0.0 {
            return Err(Error::invalid(
                "target.value",
                "must be a finite number >= 0",
            ));
        }
        self.parts.store.set_target(t.clone()).await?;
        self.progress(t).await
    }

    pub async fn target_progress(&self) -> Result<Vec<Progress>> {
        let mut out = Vec::new();
        for t in self.parts.store.targets().await? {
            out.push(self.progress(t).await?);
        }
        Ok(out)
    }

    async fn progress(&self, t: Target) -> Result<Progress> {
        let today = self.report_today();
        let (first, last) = t.period.bounds(today);
        let pool = match &t.scope {
            Scope::Pool(p) => Some(p.as_str()),
            _ => None,
        };
        let cells = self.cells_between(pool, t.period, first, last).await?;
        let metric = match t.metric {
            TargetMetric::Assignments => m::ASSIGNED,
            TargetMetric::Wins => m::WON,
            TargetMetric::WonValue => m::WON_VALUE,
        };
        let actual: f64 = cells
            .iter()
            .filter(|c| match &t.scope {
                Scope::Rep(id) => &c.rep == id,
                _ => true,
            })
            .map(|c| c.cell.get(metric))
            .sum();
        let zone = &self.parts.report.zone;
        let start = |day: i32| {
            report::date_of(day)
                .to_zoned(zone.clone())
                .map_or(0, |z| z.timestamp().as_millisecond())
        };
        let (a, b) = (start(first), start(last + 1));
        let elapsed = (self.now().as_millisecond() - a) as f64 / (b - a).max(1) as f64;
        let (_, label) = t.period.of_day(today);
        Ok(target::progress(t, label, actual, elapsed))
    }

    /// Writes a CRM's history: each lead scored and segmented by the live model and rules
    /// as if it arrived now (its probability is what forecasts compare with), dates in the
    /// report zone.
    pub async fn import_history(&self, rows: Vec<HistoryRow>) -> Result<Imported> {
        let mut leads = Vec::with_capacity(rows.len());
        for (i, row) in rows.into_iter().enumerate() {
            let field = |f: &str| format!("rows[{i}].{f}");
            let assigned = self.history_time(&field("assigned_at"), &row.assigned_at)?;
            let closed_at = self.history_time(&field("closed_at"), &row.closed_at)?;
            let closed = match (closed_at, row.outcome) {
                (Some(at), Some(o)) => Some((o, at)),
                (Some(_), None) => {
                    return Err(Error::invalid(
                        field("outcome"),
                        "is required with closed_at",
                    ));
                }
                (None, _) => None,
            };
            if let Some(v) = row.value
                && (!v.is_finite() || v < 0.0)
            {
                return Err(Error::invalid(
                    field("value"),
                    "must be a finite number >= 0",
                ));
            }
            let rep_id = if row.rep.trim().is_empty() {
                String::new()
            } else {
                rep_id_of(&row.rep)
            };
            let decision = self.score_observed(&row.lead, false)?;
            let segment = decision.segment.segment.clone();
            let skills = self.parts.segments.skills_for(&segment);
            let mut needs = self.parts.routing.needs(&row.lead, &segment, skills);
            let reps = self.parts.store.reps().await?;
            if !self.parts.routing.is_declared(&needs.pool, &reps) {
                needs.pool = self.parts.routing.default_pool.clone();
            }
            let expected_value = self.expected_value(&row.lead);
            leads.push(HistoryLead {
                context: LeadContext {
                    lead: row.lead,
                    needs,
                    probability: decision.score.probability,
                    segment,
                    model_version: decision.score.model_version,
                    terms: Default::default(),
                    expected_value,
                },
                rep_id,
                assigned_at_ms: assigned,
                closed,
                value: row.value,
            });
        }
        self.parts.store.import_history(leads).await
    }

    /// "" -> None; a date -> noon of that day in the report zone (so it stays that date there);
    /// else an RFC 3339 instant.
    fn history_time(&self, field: &str, s: &str) -> Result<Option<i64>> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        if let Ok(d) = s.parse::<jiff::civil::Date>() {
            let noon = d.at(12, 0, 0, 0);
            return noon
                .to_zoned(self.parts.report.zone.clone())
                .map(|z| Some(z.timestamp().as_millisecond()))
                .map_err(|e| Error::invalid(field, e.to_string()));
        }
        s.parse::<Timestamp>()
            .map(|t| Some(t.as_millisecond()))
            .map_err(|_| Error::invalid(field, format!("{s:?} is not a date or an RFC 3339 time")))
    }

    /// The lead's `report.value_attribute`, 0 without a usable one.
    pub(super) fn expected_value(&self, lead: &Lead) -> f64 {
        lead.get(&self.parts.report.value_attribute)
            .and_then(AttrValue::as_number)
            .filter(|v| v.is_finite() && *v >= 0.0)
            .unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rep_names_map_as_make_reps_does() {
        assert_eq!(super::rep_id_of("Anna Snelling"), "anna-snelling");
        assert_eq!(super::rep_id_of("  Ma'x  O'Brien--Jr. "), "ma-x-o-brien-jr");
    }
}
