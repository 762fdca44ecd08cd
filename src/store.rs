//! Pluggable routing state: the `CapacityStore` and `RepDirectory` traits and their backends.
//!
//! Every backend passes the same contract suite (`store::contract`). The claim is one atomic
//! step (for Redis: one EVALSHA): replay an existing decision, or choose among the ranked
//! candidates with the loads read inside that step, or enqueue.
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;

use crate::domain::assignment::{Assignment, LeadContext, LeadState, Outcome, OutcomeRecord};
use crate::domain::event::{EventPage, Retention};
use crate::domain::rep::{Rep, ZoneCache};
use crate::domain::routing::{self, Candidate, CandidateRecord, LiveState};
use crate::error::Result;

#[cfg(any(test, feature = "test-support"))]
pub mod contract;
pub mod file;
pub mod ledger;
pub mod memory;
pub mod observed;
pub mod redis;
pub mod registry;

/// A request to assign one lead to the best candidate with room.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub context: LeadContext,
    /// Ranked by match score, already filtered on activity, shift and required skills.
    pub candidates: Vec<Candidate>,
    pub now: Timestamp,
}

/// What a claim did.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// `records` is empty on a replay (the original decision was made by an earlier call).
    Assigned {
        assignment: Assignment,
        records: Vec<CandidateRecord>,
        replayed: bool,
    },
    Queued {
        position: u32,
        records: Vec<CandidateRecord>,
        replayed: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    pub assignment: Assignment,
    /// Queued leads the freed capacity let through, in order.
    pub drained: Vec<Assignment>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reassigned {
    pub previous: Assignment,
    pub assignment: Assignment,
    pub records: Vec<CandidateRecord>,
    pub drained: Vec<Assignment>,
}

/// Why an offer ended without being accepted.
#[derive(Debug, Clone, PartialEq)]
pub enum Release {
    Declined(String),
    /// Its deadline passed (the store checks).
    Expired,
}

/// An offer that ended: the lead is back in the queue (unless a drain took it at once).
#[derive(Debug, Clone, PartialEq)]
pub struct Released {
    /// The rep whose offer ended.
    pub rep_id: String,
    pub drained: Vec<Assignment>,
}

/// What a deadline in the store is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueKind {
    Offer,
    Sla,
    /// A queued lead's `queue_ttl_ms` may have passed.
    QueueTtl,
}

/// A pool's deadlines that have passed, and the next one that has not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Due {
    pub leads: Vec<(String, DueKind)>,
    pub next_ms: Option<i64>,
}

/// Where a listed lead stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    Queued,
    Offered,
    Open,
}

/// A page of a rep's inbox or a pool's leads: held leads (by rep, then lead id), then the
/// queue in order.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub pool: String,
    /// Only this rep's leads (queued leads have no rep, so none are listed).
    pub rep_id: Option<String>,
    /// Empty for all three.
    pub states: Vec<Listed>,
    pub offset: usize,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListItem {
    pub listed: Listed,
    /// For a queued lead: no rep, and `assigned_at_ms` is when it was queued.
    pub assignment: Assignment,
    /// 1-based queue place; 0 for held leads.
    pub position: u32,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListPage {
    pub items: Vec<ListItem>,
    /// Whether more items follow this page.
    pub more: bool,
}

/// A rep with its live counters.
#[derive(Debug, Clone, PartialEq)]
pub struct RepStatus {
    pub rep: Rep,
    pub load: u32,
    pub assigned_today: u32,
    pub last_assigned_ms: Option<i64>,
    /// New assignments in each current quota period (`rep::PERIODS` order).
    pub counts: [u32; 4],
    pub on_shift: bool,
    pub on_leave: bool,
    /// Capacity after a return ramp (equal to `rep.capacity` outside one).
    pub effective_capacity: u32,
    /// First-touch SLA breaches so far.
    pub sla_breaches: u32,
}

impl RepStatus {
    /// The status of `rep` at `now` given its live counters (already for the current periods).
    pub fn new(rep: Rep, live: LiveState, now: Timestamp) -> RepStatus {
        let at = rep.availability(now, &mut ZoneCache::default());
        RepStatus {
            load: live.load,
            assigned_today: live.counts[0],
            last_assigned_ms: live.last_assigned_ms,
            counts: live.counts,
            on_shift: at.on_shift,
            on_leave: at.on_leave,
            effective_capacity: routing::ramped(rep.capacity, at.ramp_permille),
            sla_breaches: 0,
            rep,
        }
    }
}

/// Assignments, loads and the queue.
#[async_trait]
pub trait CapacityStore: Send + Sync {
    /// Atomically replays, assigns (load, period count and record in one step) or enqueues.
    async fn claim(&self, req: ClaimRequest) -> Result<Claim>;

    /// Several claims, each atomic on its own, answered in order. Backends that can send them
    /// in one round trip (Redis: a pipeline) override this.
    async fn claim_many(&self, reqs: Vec<ClaimRequest>) -> Vec<Result<Claim>> {
        let mut out = Vec::with_capacity(reqs.len());
        for r in reqs {
            out.push(self.claim(r).await);
        }
        out
    }
    async fn lookup(&self, lead_id: &str) -> Result<Option<LeadState>>;
    /// The stored context of a lead (assigned, closed or queued).
    async fn context(&self, lead_id: &str) -> Result<Option<LeadContext>>;
    /// Releases the load (never below 0), records the outcome (and the deal's value, if
    /// given), then drains the pool's queue. Closing a queued lead withdraws it from the queue.
    async fn close_valued(
        &self,
        lead_id: &str,
        outcome: Outcome,
        value: Option<f64>,
        now: Timestamp,
    ) -> Result<Closed>;
    /// `close_valued` without a value.
    async fn close(&self, lead_id: &str, outcome: Outcome, now: Timestamp) -> Result<Closed> {
        self.close_valued(lead_id, outcome, None, now).await
    }
    /// Moves an open assignment held by `from_rep` to the best of `candidates` with room, in
    /// one step; changes nothing when none has room.
    async fn reassign(
        &self,
        lead_id: &str,
        from_rep: &str,
        candidates: Vec<Candidate>,
        now: Timestamp,
    ) -> Result<Reassigned>;
    /// Assigns queued leads of `pool`, highest probability first, while anyone has room.
    async fn drain(&self, pool: &str, now: Timestamp) -> Result<Vec<Assignment>>;
    /// Every recorded outcome, oldest first.
    async fn outcomes(&self) -> Result<Vec<OutcomeRecord>>;

    /// The offered rep accepts: the lead becomes open (its SLA clock starts). Accepting
    /// again is a no-op; another rep's or an ended offer is FAILED_PRECONDITION.
    async fn accept(&self, lead_id: &str, rep_id: &str, now: Timestamp) -> Result<Assignment>;
    /// Ends an offer (declined by `rep_id`, or expired past its deadline): frees the capacity,
    /// puts the lead back in the queue with its priority, keeps `rep_id` from being offered it
    /// again (until `max_offers` offers ended: then the slate is clean), and drains the pool.
    async fn release(
        &self,
        lead_id: &str,
        rep_id: &str,
        why: Release,
        now: Timestamp,
    ) -> Result<Released>;
    /// Marks an open lead contacted (idempotent), stopping its SLA clock. `rep_id`, when not
    /// empty, must hold the lead.
    async fn contacted(&self, lead_id: &str, rep_id: &str, now: Timestamp) -> Result<Assignment>;
    /// Flags an open lead whose SLA deadline has passed uncontacted and counts it against the
    /// rep; None when it is not (or no longer) due.
    async fn breach(&self, lead_id: &str, now: Timestamp) -> Result<Option<Assignment>>;
    /// Closes a lead EXPIRED if it is still queued and has waited its `queue_ttl_ms`; None
    /// when it is not (taken by a rep meanwhile, closed, or queued again later).
    async fn expire_queued(&self, lead_id: &str, now: Timestamp) -> Result<Option<Assignment>>;
    /// Deadlines of `pool` at or before `now` (at most `limit`) and the next later one.
    async fn due(&self, pool: &str, now: Timestamp, limit: usize) -> Result<Due>;
    /// A pool's events after cursor `after`, at most `limit`.
    async fn events_after(&self, pool: &str, after: u64, limit: usize) -> Result<EventPage>;
    /// Pools that have (or had) leads or reps.
    async fn pools(&self) -> Result<Vec<String>>;
    /// Ticks after every local write; watchers wait on it (and poll for other replicas').
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
    async fn list(&self, q: &ListQuery) -> Result<ListPage>;
    /// Answers Ok while the backend is reachable.
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

/// The team: profiles, capacity, quota and availability.
#[async_trait]
pub trait RepDirectory: Send + Sync {
    /// Creates or replaces a rep (keeping its counters) and drains its pool.
    async fn upsert_rep(&self, rep: Rep, now: Timestamp) -> Result<(RepStatus, Vec<Assignment>)>;
    async fn rep(&self, rep_id: &str, now: Timestamp) -> Result<Option<RepStatus>>;
    /// A snapshot of every rep, for ranking.
    async fn reps(&self) -> Result<Arc<[Rep]>>;
    async fn rep_statuses(&self, pool: Option<&str>, now: Timestamp) -> Result<Vec<RepStatus>>;
    /// Refused while the rep holds open assignments.
    async fn delete_rep(&self, rep_id: &str) -> Result<()>;
    async fn set_active(
        &self,
        rep_id: &str,
        active: bool,
        now: Timestamp,
    ) -> Result<(RepStatus, Vec<Assignment>)>;
}

/// A complete backend.
pub trait Store:
    CapacityStore + RepDirectory + registry::ModelRegistry + ledger::ReportLedger
{
}
impl<T: CapacityStore + RepDirectory + registry::ModelRegistry + ledger::ReportLedger> Store for T {}

/// Opens the store the settings name: `memory://`, or Redis (`redis://`, `redis+unix://`,
/// `unix://`; with `store.cluster`, a comma-separated list of seed nodes).
/// Why `open` could not give a store.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// `store.url` names no backend we can open.
    #[error("{0}")]
    Url(String),
    /// Redis (or a Redis Cluster) could not be reached or set up; the message is redacted.
    #[error("{0}")]
    Redis(String),
    /// The file store's database could not be opened or replayed.
    #[error("{0}")]
    File(String),
}

pub async fn open(
    settings: &crate::config::StoreSettings,
    retention: Retention,
    zone: jiff::tz::TimeZone,
) -> Result<Arc<dyn Store>, OpenError> {
    let url = settings.url.trim();
    match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("memory") => Ok(Arc::new(
            memory::MemoryStore::with_limits(settings.memory_max_leads, settings.memory_max_bytes)
                .retain(retention)
                .report_zone(zone),
        )),
        Some("redis" | "redis+unix" | "unix" | "rediss") => {
            let config = redis::RedisConfig {
                urls: url
                    .split(',')
                    .map(|u| u.trim().to_string())
                    .filter(|u| !u.is_empty())
                    .collect(),
                cluster: settings.cluster,
                prefix: settings.prefix.clone(),
                tls_ca_file: Some(settings.tls_ca_file.trim())
                    .filter(|f| !f.is_empty())
                    .map(Into::into),
                retention,
                zone,
            };
            Ok(redis::RedisStore::open(config)
                .await
                .map_err(OpenError::Redis)? as Arc<dyn Store>)
        }
        Some("file") => {
            let path = &url["file://".len()..];
            if !path.starts_with('/') {
                return Err(OpenError::Url(format!(
                    "store.url: {url:?} needs an absolute path (file:///var/lib/leadrouter/leadrouter.db)"
                )));
            }
            let mem = memory::MemoryStore::with_limits(
                settings.memory_max_leads,
                settings.memory_max_bytes,
            )
            .retain(retention)
            .report_zone(zone);
            Ok(Arc::new(
                file::FileStore::open(std::path::Path::new(path), mem, settings.snapshot_every)
                    .await
                    .map_err(OpenError::File)?,
            ))
        }
        Some(other) => Err(OpenError::Url(format!(
            "store.url: unsupported scheme {other:?} (use memory://, file:// or redis://)"
        ))),
        None => Err(OpenError::Url(format!(
            "store.url: {:?} is not a URL such as memory:// or redis://host:6379",
            redis::redact(url)
        ))),
    }
}

pub fn millis(t: Timestamp) -> i64 {
    t.as_millisecond()
}
