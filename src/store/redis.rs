//! The production store: routing state in Redis, shared by any number of replicas.
//!
//! Every key of a pool carries the hash tag `{pool}`, so each script touches one slot and runs
//! unchanged on Redis Cluster. A claim is one EVALSHA (`claim.lua`); a close is one EVALSHA
//! (`close.lua`) followed by a drain. Rep profiles live in Redis too; each replica keeps a
//! snapshot for ranking, refreshed within 250 ms of any change (`dirver` counter).
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use jiff::Timestamp;
use redis::{AsyncCommands, Script};

use crate::domain::assignment::{
    Assignment, AssignmentState, LeadContext, LeadState, Outcome, OutcomeRecord,
};
use crate::domain::event::{EventPage, Retention};
use crate::domain::packed;
use crate::domain::routing::Candidate;
use crate::error::{Error, Result};
use crate::store::{
    CapacityStore, Claim, ClaimRequest, Closed, Due, ListPage, ListQuery, Reassigned, Release,
    Released, millis,
};

mod after;
mod conn;
mod directory;
mod drain;
mod keys;
mod lookup;
use lookup::found;
mod registry;
mod replock;
mod reply;
mod report;
mod state;
pub use conn::{Conn, classify, redact};
use directory::{Directory, watch_directory};
use keys::PoolKeys;
use reply::{
    ClaimReply, CloseReply, Head, Listed, candidate_list, num, outcome_str, parse_outcome,
};

/// Helpers (event append, held-index member, load release) prepended to the scripts below.
const PRELUDE: &str = include_str!("redis/events.lua");
const CLAIM: &str = include_str!("redis/claim.lua");
const CLOSE: &str = include_str!("redis/close.lua");
const STEP: &str = include_str!("redis/step.lua");
const REP: &str = include_str!("redis/rep.lua");
const IMPORT: &str = include_str!("redis/import.lua");

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}
/// Outcome streams keep about this many entries per pool.
const STREAM_MAXLEN: u64 = 1_000_000;

/// How often replicas look for directory changes.
const DIRECTORY_POLL: Duration = Duration::from_millis(250);

/// Where a store lives and how its keys are named.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// One URL (redis://, redis+unix://), or seed nodes of a cluster.
    pub urls: Vec<String>,
    pub cluster: bool,
    /// Prefix of every key, so several deployments (or tests) can share one Redis.
    pub prefix: String,
    /// PEM file of the CA that signed the server's certificate (`rediss://`), if the system
    /// trust store does not hold it.
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// How long each pool's event stream keeps events.
    pub retention: Retention,
    /// The report time zone (report days).
    pub zone: jiff::tz::TimeZone,
}

pub struct RedisStore {
    conn: Conn,
    prefix: String,
    claim: Script,
    close: Script,
    step: Script,
    rep: Script,
    /// import.lua: imported leads and counter changes computed here.
    import: Script,
    retention: Retention,
    /// The report time zone: the scripts get the report day of `now` from it.
    zone: jiff::tz::TimeZone,
    /// Ticks after each local write, for watchers.
    changes: tokio::sync::watch::Sender<u64>,
    directory: ArcSwap<Directory>,
    /// Pools this process has registered in the global pool set.
    known_pools: Mutex<HashSet<String>>,
    /// The claim script is known to be loaded (a claim succeeded since the last pipeline
    /// failure), so a pipeline of bare EVALSHAs will not meet NOSCRIPT.
    claim_loaded: std::sync::atomic::AtomicBool,
}

impl RedisStore {
    /// Connects, loads the directory and starts the directory watcher.
    pub async fn open(config: RedisConfig) -> Result<Arc<RedisStore>, String> {
        if config.urls.is_empty() {
            return Err("store.url: no Redis URL given".into());
        }
        let tls_ca = match &config.tls_ca_file {
            Some(f) => Some(
                std::fs::read(f).map_err(|e| format!("store.tls_ca_file {}: {e}", f.display()))?,
            ),
            None => None,
        };
        let conn = Conn::open(&config.urls, config.cluster, tls_ca)
            .await
            .map_err(|e| {
                let urls: Vec<String> = config.urls.iter().map(|u| redact(u)).collect();
                format!(
                    "cannot connect to Redis {urls:?}: {}",
                    redact(&e.to_string())
                )
            })?;
        let store = Arc::new(RedisStore {
            conn,
            prefix: config.prefix,
            claim: script(CLAIM),
            close: script(CLOSE),
            step: script(STEP),
            rep: Script::new(REP),
            import: script(IMPORT),
            retention: config.retention,
            zone: config.zone,
            changes: tokio::sync::watch::Sender::new(0),
            directory: ArcSwap::from_pointee(Directory {
                slots: HashMap::new(),
                reps: Arc::from(Vec::new()),
                version: None,
            }),
            known_pools: Mutex::new(HashSet::new()),
            claim_loaded: std::sync::atomic::AtomicBool::new(false),
        });
        store.refresh().await.map_err(|e| e.to_string())?;
        tokio::spawn(watch_directory(Arc::downgrade(&store)));
        Ok(store)
    }

    fn pool(&self, pool: &str) -> PoolKeys {
        PoolKeys {
            base: format!("{}:{{{pool}}}", self.prefix),
        }
    }

    fn global(&self, what: &str) -> String {
        format!("{}:{what}", self.prefix)
    }

    fn conn(&self) -> Conn {
        self.conn.clone()
    }

    fn tick(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Runs close.lua for a known lead; `mode` "expire" closes only a lead queued past its TTL.
    async fn run_close(
        &self,
        lead_id: &str,
        outcome: Outcome,
        value: Option<f64>,
        now: Timestamp,
        mode: &str,
    ) -> Result<(String, Vec<String>)> {
        let (pool, _, group) = self.find_known(lead_id).await?;
        let mut inv = self.close.prepare_invoke();
        for k in self.pool(&pool).close(lead_id, &group) {
            inv.key(k);
        }
        let r: Vec<String> = inv
            .arg(outcome_str(outcome))
            .arg(millis(now))
            .arg(lead_id)
            .arg(STREAM_MAXLEN)
            .arg(self.retention.count)
            .arg(self.retention.age_ms)
            .arg(mode)
            .arg(self.today(now))
            .arg(value.map(|v| v.to_string()).unwrap_or_default())
            .invoke_async(&mut self.conn())
            .await
            .map_err(classify)?;
        self.tick();
        Ok((pool, r))
    }

    async fn run_claim(
        &self,
        mode: &str,
        ctx: &LeadContext,
        from_rep: &str,
        candidates: &[Candidate],
        now: Timestamp,
        packed: &[u8],
    ) -> Result<ClaimReply> {
        let (inv, listed) = self.claim_invocation(mode, ctx, from_rep, candidates, now, packed);
        let values: Vec<Vec<u8>> = inv.invoke_async(&mut self.conn()).await.map_err(classify)?;
        self.tick();
        Ok(ClaimReply::from_values(values, listed))
    }

    fn claim_invocation(
        &self,
        mode: &str,
        ctx: &LeadContext,
        from_rep: &str,
        candidates: &[Candidate],
        now: Timestamp,
        packed: &[u8],
    ) -> (redis::ScriptInvocation<'_>, Listed) {
        let keys = self.pool(&ctx.needs.pool);
        let mut inv = self.claim.prepare_invoke();
        let group = keys::group_id(&ctx.needs.required_skills);
        for k in keys.claim(&ctx.lead.id, &group) {
            inv.key(k);
        }
        inv.arg(mode)
            .arg(&ctx.lead.id)
            .arg(millis(now))
            .arg(ctx.probability.to_string())
            .arg(&ctx.segment)
            .arg(packed)
            .arg(from_rep);
        let skills = serde_json::to_string(&ctx.needs.required_skills).unwrap_or_default();
        // One argument for all candidates: Redis and Lua pay per argument, not per byte.
        let (listed, list) = candidate_list(candidates, &self.directory.load().slots);
        let terms = ctx.terms;
        let reason = match mode {
            "queued" => "a rep had room",
            _ => "",
        };
        inv.arg(list)
            .arg(group)
            .arg(skills)
            .arg(if mode == "reassign" {
                0
            } else {
                terms.offer_ms
            })
            .arg(terms.sla_ms)
            .arg(self.retention.count)
            .arg(self.retention.age_ms)
            .arg(reason)
            .arg(terms.max_offers.max(1))
            .arg(terms.queue_ttl_ms.max(0))
            .arg(self.today(now))
            .arg(ctx.expected_value.to_string());
        (inv, listed)
    }

    /// The claim's answer as a Claim.
    fn claim_result(req: &ClaimRequest, reply: ClaimReply) -> Result<Claim> {
        let ctx = &req.context;
        let pool = &ctx.needs.pool;
        match reply.head.clone() {
            Head::Replay(rec, position) if rec.state() == "queued" => Ok(Claim::Queued {
                position,
                records: vec![],
                replayed: true,
            }),
            Head::Replay(rec, _) => Ok(Claim::Assigned {
                assignment: rec.assignment(&ctx.lead.id, pool),
                records: vec![],
                replayed: true,
            }),
            Head::Assigned {
                rep,
                at,
                offered,
                deadline,
            } => Ok(Claim::Assigned {
                assignment: booked(ctx, rep, at, offered, deadline),
                records: reply.records(&req.candidates),
                replayed: false,
            }),
            Head::Queued(position) => Ok(Claim::Queued {
                position,
                records: reply.records(&req.candidates),
                replayed: false,
            }),
            other => Err(Error::Internal(format!("claim script answered {other:?}"))),
        }
    }
}

/// The assignment a claim booked.
fn booked(
    ctx: &LeadContext,
    rep: String,
    at: i64,
    offered: bool,
    deadline: Option<i64>,
) -> Assignment {
    Assignment {
        lead_id: ctx.lead.id.clone(),
        rep_id: rep,
        pool: ctx.needs.pool.clone(),
        state: if offered {
            AssignmentState::Offered
        } else {
            AssignmentState::Open
        },
        probability: ctx.probability,
        segment: ctx.segment.clone(),
        assigned_at_ms: at,
        deadline_ms: deadline,
        ..Assignment::default()
    }
}

#[async_trait]
impl CapacityStore for RedisStore {
    async fn claim(&self, req: ClaimRequest) -> Result<Claim> {
        let ctx = &req.context;
        self.register_pool(&ctx.needs.pool).await?;
        let packed = packed::encode(ctx);
        let r = self
            .run_claim("new", ctx, "", &req.candidates, req.now, &packed)
            .await?;
        self.claim_loaded.store(true, Ordering::Relaxed);
        Self::claim_result(&req, r)
    }

    /// All claims in one pipeline: one round trip, each EVALSHA still atomic on its own.
    /// If the pipeline fails (e.g. NOSCRIPT after a Redis restart), the claims are sent one
    /// by one, which reloads the script; replays make that safe for any claim that did run.
    async fn claim_many(&self, mut reqs: Vec<ClaimRequest>) -> Vec<Result<Claim>> {
        let mut out = Vec::with_capacity(reqs.len());
        // Until the script is known to be loaded, the first claim goes alone (and loads it).
        while !reqs.is_empty() && (reqs.len() < 2 || !self.claim_loaded.load(Ordering::Relaxed)) {
            out.push(self.claim(reqs.remove(0)).await);
        }
        if reqs.is_empty() {
            return out;
        }
        let mut packs = Vec::with_capacity(reqs.len());
        for r in &reqs {
            if let Err(e) = self.register_pool(&r.context.needs.pool).await {
                return reqs.iter().map(|_| Err(e.clone())).collect();
            }
            packs.push(packed::encode(&r.context));
        }
        let (invocations, mut listed): (Vec<_>, Vec<_>) = reqs
            .iter()
            .zip(&packs)
            .map(|(r, j)| self.claim_invocation("new", &r.context, "", &r.candidates, r.now, j))
            .unzip();
        let mut pipe = redis::pipe();
        for inv in &invocations {
            pipe.invoke_script(inv);
        }
        let answers: redis::RedisResult<Vec<Vec<Vec<u8>>>> =
            pipe.query_async(&mut self.conn()).await;
        drop(invocations);
        match answers {
            Ok(values) if values.len() == reqs.len() => out.extend(
                reqs.iter()
                    .zip(values)
                    .zip(listed.drain(..))
                    .map(|((r, v), l)| Self::claim_result(r, ClaimReply::from_values(v, l))),
            ),
            _ => {
                self.claim_loaded.store(false, Ordering::Relaxed);
                for r in reqs {
                    out.push(self.claim(r).await);
                }
            }
        }
        out
    }

    async fn lookup(&self, lead_id: &str) -> Result<Option<LeadState>> {
        let Some((pool, f)) = self.find(lead_id).await? else {
            return Ok(None);
        };
        let (rec, _) = found(&f);
        if rec.state() == "queued" {
            let qm = f.get(7).cloned().flatten().unwrap_or_default();
            let rank: Option<u32> = self
                .conn()
                .zrank(self.pool(&pool).k("queue"), qm)
                .await
                .map_err(classify)?;
            return Ok(Some(LeadState::Queued {
                probability: num(&rec.0[2]).unwrap_or(0.0),
                position: rank.map_or(0, |r| r + 1),
                pool,
            }));
        }
        Ok(Some(LeadState::Assigned(rec.assignment(lead_id, &pool))))
    }

    async fn context(&self, lead_id: &str) -> Result<Option<LeadContext>> {
        let Some((pool, _)) = self.find(lead_id).await? else {
            return Ok(None);
        };
        let bytes: Option<Vec<u8>> = self
            .conn()
            .hget(self.pool(&pool).lead(lead_id), "ctx")
            .await
            .map_err(classify)?;
        bytes
            .map(|b| {
                packed::decode(&b).map_err(|e| Error::Internal(format!("lead {lead_id}: {e}")))
            })
            .transpose()
    }

    async fn close_valued(
        &self,
        lead_id: &str,
        outcome: Outcome,
        value: Option<f64>,
        now: Timestamp,
    ) -> Result<Closed> {
        let (pool, r) = self.run_close(lead_id, outcome, value, now, "").await?;
        match CloseReply::decode(r) {
            CloseReply::Missing => Err(Error::not_found("lead", lead_id)),
            CloseReply::Conflict(was) => Err(Error::FailedPrecondition(format!(
                "lead {lead_id:?} is already closed as {was}"
            ))),
            CloseReply::Closed { record, fresh } => {
                let assignment = record.assignment(lead_id, &pool);
                let drained = if fresh {
                    self.drain_pool(&pool, now).await?
                } else {
                    vec![]
                };
                Ok(Closed {
                    assignment,
                    drained,
                })
            }
            CloseReply::Unknown(other) => {
                Err(Error::Internal(format!("close script answered {other}")))
            }
        }
    }

    async fn reassign(
        &self,
        lead_id: &str,
        from_rep: &str,
        candidates: Vec<Candidate>,
        now: Timestamp,
    ) -> Result<Reassigned> {
        let (pool, rec, _) = self.find_known(lead_id).await?;
        let previous = rec.assignment(lead_id, &pool);
        let ctx = self
            .context(lead_id)
            .await?
            .ok_or_else(|| Error::not_found("lead", lead_id))?;
        let reply = self
            .run_claim("reassign", &ctx, from_rep, &candidates, now, &[])
            .await?;
        match reply.head.clone() {
            Head::Conflict => Err(Error::FailedPrecondition(format!(
                "lead {lead_id:?} is no longer open with {from_rep:?}; retry"
            ))),
            Head::NoRoom => Err(Error::FailedPrecondition(format!(
                "no other rep can take lead {lead_id:?} now; it stays with {from_rep:?}"
            ))),
            Head::Assigned {
                rep, at, deadline, ..
            } => {
                let mut assignment = previous.clone();
                assignment.rep_id = rep;
                assignment.assigned_at_ms = at;
                assignment.deadline_ms = deadline;
                assignment.contacted_at_ms = None;
                let records = reply.records(&candidates);
                let drained = self.drain_pool(&pool, now).await?;
                Ok(Reassigned {
                    previous,
                    assignment,
                    records,
                    drained,
                })
            }
            other => Err(Error::Internal(format!("reassign answered {other:?}"))),
        }
    }

    async fn drain(&self, pool: &str, now: Timestamp) -> Result<Vec<Assignment>> {
        self.drain_pool(pool, now).await
    }

    async fn outcomes(&self) -> Result<Vec<OutcomeRecord>> {
        let mut out = Vec::new();
        for pool in self.pools().await? {
            let reply: redis::streams::StreamRangeReply = self
                .conn()
                .xrange_all(self.pool(&pool).k("outcomes"))
                .await
                .map_err(classify)?;
            for entry in reply.ids {
                let get = |k: &str| entry.get::<String>(k).unwrap_or_default();
                let ctx = entry.get::<Vec<u8>>("ctx").unwrap_or_default();
                let (Some(outcome), Ok(context)) =
                    (parse_outcome(&get("outcome")), packed::decode(&ctx))
                else {
                    continue;
                };
                out.push(OutcomeRecord {
                    context,
                    rep_id: get("rep"),
                    outcome,
                    closed_at_ms: num(&get("closed_at")).unwrap_or(0),
                    assigned_at_ms: num(&get("at")),
                    contacted_at_ms: num(&get("ct")),
                    value: get("v").parse().ok(),
                });
            }
        }
        out.sort_by_key(|o| o.closed_at_ms);
        Ok(out)
    }

    async fn accept(&self, lead_id: &str, rep_id: &str, now: Timestamp) -> Result<Assignment> {
        self.accept_offer(lead_id, rep_id, now).await
    }

    async fn release(
        &self,
        lead_id: &str,
        rep_id: &str,
        why: Release,
        now: Timestamp,
    ) -> Result<Released> {
        self.end_offer(lead_id, rep_id, why, now).await
    }

    async fn contacted(&self, lead_id: &str, rep_id: &str, now: Timestamp) -> Result<Assignment> {
        self.mark_contacted(lead_id, rep_id, now).await
    }

    async fn breach(&self, lead_id: &str, now: Timestamp) -> Result<Option<Assignment>> {
        self.flag_breach(lead_id, now).await
    }

    async fn expire_queued(&self, lead_id: &str, now: Timestamp) -> Result<Option<Assignment>> {
        self.expire_if_queued(lead_id, now).await
    }

    async fn due(&self, pool: &str, now: Timestamp, limit: usize) -> Result<Due> {
        self.deadlines(pool, now, limit).await
    }

    async fn events_after(&self, pool: &str, after: u64, limit: usize) -> Result<EventPage> {
        self.read_events(pool, after, limit).await
    }

    async fn pools(&self) -> Result<Vec<String>> {
        RedisStore::pools(self).await
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    async fn list(&self, q: &ListQuery) -> Result<ListPage> {
        self.list_leads(q).await
    }

    async fn ping(&self) -> Result<()> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn())
            .await
            .map_err(classify)?;
        Ok(())
    }
}
