//! A store that times every operation of the one it wraps: latency by operation, and failures
//! of the backend itself (unreachable, broken), not answers such as NOT_FOUND.
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use jiff::Timestamp;

use super::ledger::ReportLedger;
use super::registry::{ModelRegistry, Published};
use super::*;
use crate::domain::assignment::{HistoryLead, Imported};
use crate::domain::ledger::{Grain, LedgerCell};
use crate::domain::target::Target;
use crate::error::Error;
use crate::observe::Metrics;

pub struct Observed {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl Observed {
    pub fn wrap(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Arc<dyn Store> {
        Arc::new(Observed { inner, metrics })
    }

    async fn timed<T>(&self, op: &'static str, f: impl Future<Output = Result<T>>) -> Result<T> {
        let start = Instant::now();
        let r = f.await;
        let failed = matches!(r, Err(Error::Unavailable(_) | Error::Internal(_)));
        self.metrics
            .store_op(op, start.elapsed().as_secs_f64(), failed);
        r
    }
}

#[async_trait]
impl CapacityStore for Observed {
    async fn claim(&self, req: ClaimRequest) -> Result<Claim> {
        self.timed("claim", self.inner.claim(req)).await
    }
    async fn claim_many(&self, reqs: Vec<ClaimRequest>) -> Vec<Result<Claim>> {
        let start = Instant::now();
        let out = self.inner.claim_many(reqs).await;
        let failed = out
            .iter()
            .any(|r| matches!(r, Err(Error::Unavailable(_) | Error::Internal(_))));
        self.metrics
            .store_op("claim_many", start.elapsed().as_secs_f64(), failed);
        out
    }
    async fn lookup(&self, lead_id: &str) -> Result<Option<LeadState>> {
        self.timed("lookup", self.inner.lookup(lead_id)).await
    }
    async fn context(&self, lead_id: &str) -> Result<Option<LeadContext>> {
        self.timed("context", self.inner.context(lead_id)).await
    }
    async fn close_valued(
        &self,
        lead_id: &str,
        outcome: Outcome,
        value: Option<f64>,
        now: Timestamp,
    ) -> Result<Closed> {
        let f = self.inner.close_valued(lead_id, outcome, value, now);
        self.timed("close", f).await
    }
    async fn reassign(
        &self,
        lead_id: &str,
        from_rep: &str,
        candidates: Vec<Candidate>,
        now: Timestamp,
    ) -> Result<Reassigned> {
        let f = self.inner.reassign(lead_id, from_rep, candidates, now);
        self.timed("reassign", f).await
    }
    async fn drain(&self, pool: &str, now: Timestamp) -> Result<Vec<Assignment>> {
        self.timed("drain", self.inner.drain(pool, now)).await
    }
    async fn outcomes(&self) -> Result<Vec<OutcomeRecord>> {
        self.timed("outcomes", self.inner.outcomes()).await
    }
    async fn accept(&self, lead_id: &str, rep_id: &str, now: Timestamp) -> Result<Assignment> {
        self.timed("accept", self.inner.accept(lead_id, rep_id, now))
            .await
    }
    async fn release(
        &self,
        lead_id: &str,
        rep_id: &str,
        why: Release,
        now: Timestamp,
    ) -> Result<Released> {
        let f = self.inner.release(lead_id, rep_id, why, now);
        self.timed("release", f).await
    }
    async fn contacted(&self, lead_id: &str, rep_id: &str, now: Timestamp) -> Result<Assignment> {
        let f = self.inner.contacted(lead_id, rep_id, now);
        self.timed("contacted", f).await
    }
    async fn breach(&self, lead_id: &str, now: Timestamp) -> Result<Option<Assignment>> {
        self.timed("breach", self.inner.breach(lead_id, now)).await
    }
    async fn expire_queued(&self, lead_id: &str, now: Timestamp) -> Result<Option<Assignment>> {
        let f = self.inner.expire_queued(lead_id, now);
        self.timed("expire_queued", f).await
    }
    async fn due(&self, pool: &str, now: Timestamp, limit: usize) -> Result<Due> {
        self.timed("due", self.inner.due(pool, now, limit)).await
    }
    async fn events_after(&self, pool: &str, after: u64, limit: usize) -> Result<EventPage> {
        let f = self.inner.events_after(pool, after, limit);
        self.timed("events_after", f).await
    }
    async fn pools(&self) -> Result<Vec<String>> {
        self.timed("pools", self.inner.pools()).await
    }
    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changes()
    }
    async fn list(&self, q: &ListQuery) -> Result<ListPage> {
        self.timed("list", self.inner.list(q)).await
    }
    async fn ping(&self) -> Result<()> {
        self.timed("ping", self.inner.ping()).await
    }
}

#[async_trait]
impl RepDirectory for Observed {
    async fn upsert_rep(&self, rep: Rep, now: Timestamp) -> Result<(RepStatus, Vec<Assignment>)> {
        self.timed("upsert_rep", self.inner.upsert_rep(rep, now))
            .await
    }
    async fn rep(&self, rep_id: &str, now: Timestamp) -> Result<Option<RepStatus>> {
        self.timed("rep", self.inner.rep(rep_id, now)).await
    }
    async fn reps(&self) -> Result<Arc<[Rep]>> {
        self.timed("reps", self.inner.reps()).await
    }
    async fn rep_statuses(&self, pool: Option<&str>, now: Timestamp) -> Result<Vec<RepStatus>> {
        self.timed("rep_statuses", self.inner.rep_statuses(pool, now))
            .await
    }
    async fn delete_rep(&self, rep_id: &str) -> Result<()> {
        self.timed("delete_rep", self.inner.delete_rep(rep_id))
            .await
    }
    async fn set_active(
        &self,
        rep_id: &str,
        active: bool,
        now: Timestamp,
    ) -> Result<(RepStatus, Vec<Assignment>)> {
        let f = self.inner.set_active(rep_id, active, now);
        self.timed("set_active", f).await
    }
}

#[async_trait]
impl ModelRegistry for Observed {
    async fn generation(&self) -> Result<u64> {
        self.timed("registry_generation", self.inner.generation())
            .await
    }
    async fn live(&self) -> Result<Option<Published>> {
        self.timed("registry_live", self.inner.live()).await
    }
    async fn publish(&self, model_version: &str, artifact: &[u8], keep: usize) -> Result<u64> {
        let f = self.inner.publish(model_version, artifact, keep);
        self.timed("registry_publish", f).await
    }
    async fn rollback(&self) -> Result<Option<Published>> {
        self.timed("registry_rollback", self.inner.rollback()).await
    }
}

#[async_trait]
impl ReportLedger for Observed {
    async fn ledger(
        &self,
        pool: Option<&str>,
        grain: Grain,
        from: i32,
        to: i32,
    ) -> Result<Vec<LedgerCell>> {
        self.timed("ledger", self.inner.ledger(pool, grain, from, to))
            .await
    }
    async fn note_unroutable(&self, pool: &str, segment: &str, now: Timestamp) -> Result<()> {
        let f = self.inner.note_unroutable(pool, segment, now);
        self.timed("note_unroutable", f).await
    }
    async fn import_history(&self, leads: Vec<HistoryLead>) -> Result<Imported> {
        self.timed("import_history", self.inner.import_history(leads))
            .await
    }
    async fn set_target(&self, target: Target) -> Result<()> {
        self.timed("set_target", self.inner.set_target(target))
            .await
    }
    async fn targets(&self) -> Result<Vec<Target>> {
        self.timed("targets", self.inner.targets()).await
    }
}
