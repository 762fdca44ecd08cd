//! Finding a lead's pool and record, and small helpers every Redis path shares: empty-safe
//! pipelines and the report day of now.
use jiff::Timestamp;

use crate::error::{Error, Result};
use crate::store::millis;

use super::RedisStore;
use super::conn::classify;
use super::reply::Record;

/// Lead record fields `find` reads: the first seven and the last three make a `Record`.
pub(super) const FIND_FIELDS: [&str; 12] = [
    "state", "rep", "prob", "seg", "at", "cat", "outcome", "qm", "grp", "dl", "ct", "br",
];

/// A found lead's record (from `FIND_FIELDS`) and its group id.
pub(super) fn found(f: &[Option<String>]) -> (Record, String) {
    let g = |i: usize| f.get(i).cloned().flatten().unwrap_or_default();
    let rec = [0, 1, 2, 3, 4, 5, 6, 9, 10, 11].map(g).to_vec();
    (Record(rec), g(8))
}

impl RedisStore {
    /// Runs a pipeline of `n` commands; an empty one answers nothing without a round trip
    /// (Redis refuses an empty pipeline).
    pub(super) async fn query_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: redis::Pipeline,
        n: usize,
    ) -> Result<Vec<T>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        pipe.query_async(&mut self.conn()).await.map_err(classify)
    }

    /// The report day of `now`, which the scripts cannot work out (no time zones in Lua).
    pub(super) fn today(&self, now: Timestamp) -> i32 {
        crate::store::ledger::report_day(millis(now), &self.zone)
    }

    /// The pool, record and group id of a lead that must exist (NOT_FOUND otherwise).
    pub(super) async fn find_known(&self, lead_id: &str) -> Result<(String, Record, String)> {
        let (pool, f) = self
            .find(lead_id)
            .await?
            .ok_or_else(|| Error::not_found("lead", lead_id))?;
        let (rec, group) = found(&f);
        Ok((pool, rec, group))
    }

    /// Finds the pool holding a lead and the lead's record fields (`FIND_FIELDS`).
    pub(super) async fn find(
        &self,
        lead_id: &str,
    ) -> Result<Option<(String, Vec<Option<String>>)>> {
        for pool in self.pools().await? {
            let fields: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(self.pool(&pool).lead(lead_id))
                .arg(&FIND_FIELDS)
                .query_async(&mut self.conn())
                .await
                .map_err(classify)?;
            if fields[0].is_some() {
                return Ok(Some((pool, fields)));
            }
        }
        Ok(None)
    }
}
