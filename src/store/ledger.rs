//! `ReportLedger`: the counters reports read (kept by each backend in the same atomic step as
//! the change that moves them), imported history and targets.
use async_trait::async_trait;
use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::domain::assignment::{HistoryLead, Imported};
use crate::domain::ledger::{Grain, LedgerCell};
use crate::domain::rep::calendar::day_number;
use crate::domain::target::Target;
use crate::error::Result;

#[async_trait]
pub trait ReportLedger: Send + Sync {
    /// The cells of `pool` (every pool when None) of one grain: days or months `from..=to`
    /// (days since 1970-01-01; months as year * 12 + month - 1), or the undated `Now` cells.
    async fn ledger(
        &self,
        pool: Option<&str>,
        grain: Grain,
        from: i32,
        to: i32,
    ) -> Result<Vec<LedgerCell>>;
    /// Counts a lead refused as unroutable (it is not stored).
    async fn note_unroutable(&self, pool: &str, segment: &str, now: Timestamp) -> Result<()>;
    /// Writes past leads; a lead id already stored is skipped.
    async fn import_history(&self, leads: Vec<HistoryLead>) -> Result<Imported>;
    /// Sets (value > 0) or removes a target.
    async fn set_target(&self, target: Target) -> Result<()>;
    async fn targets(&self) -> Result<Vec<Target>>;
}

/// The report day (days since 1970-01-01) of an instant, in the report time zone.
pub fn report_day(ms: i64, tz: &TimeZone) -> i32 {
    let ts = Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH);
    day_number(ts.to_zoned(tz.clone()).date())
}
