//! The production store: routing state in Redis, shared by any number of replicas.
//!
//! Every key of a pool carries the hash tag `{pool}`, so each script touches one slot and runs
//! unchanged on Redis Cluster. A claim is one EVALSHA (`claim.lua`); a close is one EVALSHA
//! (`close.lua`) followed by a drain. Rep profiles live in Redis too; each replica keeps a
//! snapshot for ranking, refreshed within 250 ms of any change (`dirver` counter).
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use jiff::Timestamp;
use redis::{AsyncCommands, Script};

use crate::domain::assignment::{
    Assignment, AssignmentState, LeadContext, LeadState, Outcome, OutcomeRecord,
};
use crate::domain::rep::Rep;
use crate::domain::routing::{self, Candidate, CandidateRecord, LiveState};
use crate::error::{Error, Result};
use crate::store::{
    CapacityStore, Claim, ClaimRequest, Closed, Reassigned, RepDirectory, RepStatus, millis,
};

mod conn;
mod state;
pub use conn::Conn;
use state::RepState;

const CLAIM: &str = include_str!("redis/claim.lua");
const CLOSE: &str = include_str!("redis/close.lua");
const REP: &str = include_str!("redis/rep.lua");
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
}

/// Key names of one pool; all share the hash tag `{pool}`.
struct PoolKeys {
    base: String,
}

impl PoolKeys {
    fn k(&self, what: &str) -> String {
        format!("{}:{what}", self.base)
    }
    fn lead(&self, id: &str) -> String {
        format!("{}:lead:{id}", self.base)
    }
    /// KEYS of claim.lua, in order.
    fn claim(&self, lead: &str) -> [String; 5] {
        [
            self.lead(lead),
            self.k("table"),
            self.k("queue"),
            self.k("seq"),
            self.k("slots"),
        ]
    }
    /// KEYS of rep.lua, in order.
    fn rep(&self) -> [String; 4] {
        [
            self.k("reps"),
            self.k("table"),
            self.k("active"),
            self.k("slots"),
        ]
    }
}

struct Directory {
    reps: Arc<[Rep]>,
    /// Rep id -> (slot, generation) in its pool's table.
    slots: HashMap<String, (u32, u32)>,
    version: Option<i64>,
}

/// A "slot:generation" value of a pool's `slots` hash.
fn parse_slot(v: &str) -> Option<(u32, u32)> {
    let (slot, generation) = v.split_once(':')?;
    Some((slot.parse().ok()?, generation.parse().ok()?))
}

pub struct RedisStore {
    conn: Conn,
    prefix: String,
    claim: Script,
    close: Script,
    rep: Script,
    directory: ArcSwap<Directory>,
    /// Pools this process has registered in the global pool set.
    known_pools: Mutex<HashSet<String>>,
    /// The claim script is known to be loaded (a claim succeeded since the last pipeline
    /// failure), so a pipeline of bare EVALSHAs will not meet NOSCRIPT.
    claim_loaded: std::sync::atomic::AtomicBool,
}

fn unavailable(e: redis::RedisError) -> Error {
    if e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
    {
        Error::Unavailable(format!("routing store unavailable: {e}"))
    } else {
        Error::Internal(format!("redis: {e}"))
    }
}

fn outcome_str(o: Outcome) -> &'static str {
    o.as_str()
}

fn parse_outcome(s: &str) -> Option<Outcome> {
    Some(match s {
        "won" => Outcome::Won,
        "lost" => Outcome::Lost,
        "disqualified" => Outcome::Disqualified,
        "returned" => Outcome::Returned,
        _ => return None,
    })
}

fn num<T: std::str::FromStr>(s: &str) -> Option<T> {
    s.parse().ok()
}

/// What claim.lua answered: a head (kind and its values) and, for decision records, how
/// many candidates it read (a prefix of the list) and their records.
struct ClaimReply {
    head: Vec<String>,
    read: Read,
    listed: Listed,
}

/// The candidates a claim sent, in the order it sent them: (index into the ranked
/// candidates, slot, generation).
#[derive(Default)]
struct Listed(Vec<(usize, (u32, u32))>);

/// The records a claim read: the pool's whole table, or the read candidates' records in
/// candidate order.
enum Read {
    Table(Vec<u8>, usize),
    Records(Vec<u8>, usize),
}

impl ClaimReply {
    fn from_values(mut values: Vec<Vec<u8>>, listed: Listed) -> ClaimReply {
        let read = match values.first().map(Vec::as_slice) {
            Some(b"assigned" | b"queued" | b"noroom") if values.len() >= 3 => {
                let data = values.pop().unwrap_or_default();
                let kind = values.pop().unwrap_or_default();
                let n = values
                    .pop()
                    .and_then(|v| String::from_utf8(v).ok()?.parse().ok())
                    .unwrap_or(0);
                if kind == b"T" {
                    Read::Table(data, n)
                } else {
                    Read::Records(data, n)
                }
            }
            _ => Read::Records(Vec::new(), 0),
        };
        let head = values
            .into_iter()
            .map(|v| String::from_utf8(v).unwrap_or_default())
            .collect();
        ClaimReply { head, read, listed }
    }

    fn kind(&self) -> &str {
        self.head.first().map_or("", String::as_str)
    }

    /// Decision-record lines; `candidates` is the ranking the claim was built from.
    fn records(&self, candidates: &[Candidate]) -> Vec<CandidateRecord> {
        records(candidates, &self.listed, &self.read)
    }
}

/// Turns the records the claim script read (those of a prefix of the listed candidates, a
/// match-score group at a time) into decision-record lines, with the same `routing::choose`
/// the memory store uses. Listed candidates past the prefix lost on match score to a higher
/// group.
fn records(candidates: &[Candidate], listed: &Listed, read: &Read) -> Vec<CandidateRecord> {
    let listed = &listed.0;
    let n = match read {
        Read::Table(_, n) | Read::Records(_, n) => (*n).min(listed.len()),
    };
    let mut examined = Vec::with_capacity(n);
    let mut states = Vec::with_capacity(n);
    for (i, &(at, (slot, generation))) in listed[..n].iter().enumerate() {
        let stored = match read {
            Read::Table(t, _) => RepState::in_table(t, (slot, generation)),
            Read::Records(r, _) => r
                .get(i * state::LEN..(i + 1) * state::LEN)
                .and_then(RepState::decode)
                .filter(|s| s.generation == generation),
        };
        let mut c = candidates[at].clone();
        c.capacity = stored.map_or(0, |s| s.capacity);
        c.daily_quota = stored.and_then(|s| s.quota);
        let (load, period_count, last_assigned_ms) = RepState::live(stored, c.period);
        states.push(LiveState {
            load,
            period_count,
            last_assigned_ms,
        });
        examined.push(c);
    }
    let (winner, mut out) = routing::choose(&examined, &states);
    let top = winner
        .map(|w| examined[w].match_score)
        .unwrap_or(f64::NEG_INFINITY);
    for &(at, _) in &listed[n..] {
        let c = &candidates[at];
        out.push(CandidateRecord {
            rep_id: c.rep_id.clone(),
            match_score: c.match_score,
            verdict: routing::Verdict::LowerMatch,
            detail: format!("match {:.3} < {:.3}", c.match_score, top),
            load: 0,
            capacity: c.capacity,
        });
    }
    out
}

/// The claim script's candidate list (format in claim.lua) and what it lists. Candidates
/// the directory has no slot for yet are left out; within a match-score group (ranking order
/// is by score, so groups are runs) the list is in rep-id order, the script's last tie-break.
fn candidate_list(
    candidates: &[Candidate],
    slots: &HashMap<String, (u32, u32)>,
) -> (Listed, Vec<u8>) {
    let mut listed: Vec<(usize, (u32, u32))> = candidates
        .iter()
        .enumerate()
        .filter_map(|(i, c)| Some((i, *slots.get(&c.rep_id)?)))
        .collect();
    let mut list = Vec::with_capacity(listed.len() * 24);
    let mut start = 0;
    while start < listed.len() {
        let top = candidates[listed[start].0].match_score;
        let end = listed[start..]
            .iter()
            .position(|&(i, _)| (candidates[i].match_score - top).abs() > routing::SCORE_EPSILON)
            .map_or(listed.len(), |p| start + p);
        listed[start..end].sort_by(|a, b| candidates[a.0].rep_id.cmp(&candidates[b.0].rep_id));
        for (k, &(i, (slot, generation))) in listed[start..end].iter().enumerate() {
            let c = &candidates[i];
            list.push(if k == 0 { 1 } else { 2 });
            state::push_digits(&mut list, slot, 2);
            state::push_digits(&mut list, generation, 3);
            state::push_digits(&mut list, u32::try_from(c.period).unwrap_or(0), 3);
            list.push(u8::try_from(c.rep_id.len()).unwrap_or(u8::MAX));
            list.extend_from_slice(c.rep_id.as_bytes());
        }
        start = end;
    }
    (Listed(listed), list)
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
            .map_err(|e| format!("cannot connect to Redis {:?}: {e}", config.urls))?;
        let store = Arc::new(RedisStore {
            conn,
            prefix: config.prefix,
            claim: Script::new(CLAIM),
            close: Script::new(CLOSE),
            rep: Script::new(REP),
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

    async fn pools(&self) -> Result<Vec<String>> {
        let mut pools: Vec<String> = self
            .conn()
            .smembers(self.global("pools"))
            .await
            .map_err(unavailable)?;
        pools.sort();
        Ok(pools)
    }

    /// Registers a pool in the global set, once per process (the claim itself cannot: the set
    /// lives in another slot).
    async fn register_pool(&self, pool: &str) -> Result<()> {
        let known = self
            .known_pools
            .lock()
            .map(|k| k.contains(pool))
            .unwrap_or(false);
        if !known {
            let _: i64 = self
                .conn()
                .sadd(self.global("pools"), pool)
                .await
                .map_err(unavailable)?;
            if let Ok(mut k) = self.known_pools.lock() {
                k.insert(pool.to_string());
            }
        }
        Ok(())
    }

    /// Reloads every rep profile (with its availability) into the local snapshot.
    async fn refresh(&self) -> Result<()> {
        let mut conn = self.conn();
        let version: Option<i64> = conn.get(self.global("dirver")).await.map_err(unavailable)?;
        let mut reps = Vec::new();
        let mut slots = HashMap::new();
        for pool in self.pools().await? {
            let keys = self.pool(&pool);
            // One pipeline; rep.lua writes profile and slot together, and a rep seen without
            // its slot is left out of claims until the next refresh.
            let (profiles, active, pool_slots): (
                HashMap<String, String>,
                HashMap<String, String>,
                HashMap<String, String>,
            ) = redis::pipe()
                .hgetall(keys.k("reps"))
                .hgetall(keys.k("active"))
                .hgetall(keys.k("slots"))
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            slots.extend(
                pool_slots
                    .into_iter()
                    .filter_map(|(id, v)| Some((id, parse_slot(&v)?))),
            );
            for (id, json) in profiles {
                match serde_json::from_str::<Rep>(&json) {
                    Ok(mut r) => {
                        r.active = active.get(&id).is_none_or(|a| a == "1");
                        reps.push(r);
                    }
                    Err(e) => {
                        tracing::error!(rep = %id, error = %e, "unreadable rep profile in Redis")
                    }
                }
            }
        }
        reps.sort_by(|a, b| a.id.cmp(&b.id));
        self.directory.store(Arc::new(Directory {
            reps: reps.into(),
            slots,
            version,
        }));
        Ok(())
    }

    async fn bump_directory(&self) -> Result<()> {
        let _: i64 = self
            .conn()
            .incr(self.global("dirver"), 1)
            .await
            .map_err(unavailable)?;
        self.refresh().await
    }

    /// Finds the pool holding a lead and the lead's record fields.
    async fn find(&self, lead_id: &str) -> Result<Option<(String, Vec<Option<String>>)>> {
        for pool in self.pools().await? {
            let fields: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(self.pool(&pool).lead(lead_id))
                .arg(&["state", "rep", "prob", "seg", "at", "cat", "outcome", "qm"])
                .query_async(&mut self.conn())
                .await
                .map_err(unavailable)?;
            if fields[0].is_some() {
                return Ok(Some((pool, fields)));
            }
        }
        Ok(None)
    }

    fn assignment(lead_id: &str, pool: &str, f: &[&str]) -> Assignment {
        // f: state, rep, prob, seg, at, cat, outcome
        let state = match parse_outcome(f[6]) {
            Some(o) if f[0] == "closed" => AssignmentState::Closed(o),
            _ => AssignmentState::Open,
        };
        Assignment {
            lead_id: lead_id.to_string(),
            rep_id: f[1].to_string(),
            pool: pool.to_string(),
            state,
            probability: num(f[2]).unwrap_or(0.0),
            segment: f[3].to_string(),
            assigned_at_ms: num(f[4]).unwrap_or(0),
            closed_at_ms: num(f[5]),
        }
    }

    async fn run_claim(
        &self,
        mode: &str,
        ctx: &LeadContext,
        from_rep: &str,
        candidates: &[Candidate],
        now: Timestamp,
        ctx_json: &str,
    ) -> Result<ClaimReply> {
        let (inv, listed) = self.claim_invocation(mode, ctx, from_rep, candidates, now, ctx_json);
        let values: Vec<Vec<u8>> = inv
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(ClaimReply::from_values(values, listed))
    }

    fn claim_invocation(
        &self,
        mode: &str,
        ctx: &LeadContext,
        from_rep: &str,
        candidates: &[Candidate],
        now: Timestamp,
        ctx_json: &str,
    ) -> (redis::ScriptInvocation<'_>, Listed) {
        let keys = self.pool(&ctx.needs.pool);
        let mut inv = self.claim.prepare_invoke();
        for k in keys.claim(&ctx.lead.id) {
            inv.key(k);
        }
        inv.arg(mode)
            .arg(&ctx.lead.id)
            .arg(millis(now))
            .arg(ctx.probability.to_string())
            .arg(&ctx.segment)
            .arg(ctx_json)
            .arg(from_rep);
        // One argument for all candidates: Redis and Lua pay per argument, not per byte.
        let (listed, list) = candidate_list(candidates, &self.directory.load().slots);
        inv.arg(list);
        (inv, listed)
    }

    /// The claim's answer as a Claim.
    fn claim_result(req: &ClaimRequest, reply: ClaimReply) -> Result<Claim> {
        let ctx = &req.context;
        let pool = &ctx.needs.pool;
        let r = &reply.head;
        match r.first().map(String::as_str) {
            Some("replay") if r[1] == "queued" => Ok(Claim::Queued {
                position: num(&r[8]).unwrap_or(0),
                records: vec![],
                replayed: true,
            }),
            Some("replay") => {
                let f: Vec<&str> = r[1..8].iter().map(String::as_str).collect();
                Ok(Claim::Assigned {
                    assignment: Self::assignment(&ctx.lead.id, pool, &f),
                    records: vec![],
                    replayed: true,
                })
            }
            Some("assigned") => {
                let assignment = Assignment {
                    lead_id: ctx.lead.id.clone(),
                    rep_id: r[1].clone(),
                    pool: pool.clone(),
                    state: AssignmentState::Open,
                    probability: ctx.probability,
                    segment: ctx.segment.clone(),
                    assigned_at_ms: num(&r[2]).unwrap_or(0),
                    closed_at_ms: None,
                };
                Ok(Claim::Assigned {
                    assignment,
                    records: reply.records(&req.candidates),
                    replayed: false,
                })
            }
            Some("queued") => Ok(Claim::Queued {
                position: num(&r[1]).unwrap_or(0),
                records: reply.records(&req.candidates),
                replayed: false,
            }),
            other => Err(Error::Internal(format!("claim script answered {other:?}"))),
        }
    }

    /// Assigns queued leads of `pool` in queue order while any rep might have room.
    async fn drain_pool(&self, pool: &str, now: Timestamp) -> Result<Vec<Assignment>> {
        const BATCH: isize = 200;
        let keys = self.pool(pool);
        let mut conn = self.conn();
        let reps = self.directory.load().reps.clone();
        let everyone = reps.iter().filter(|r| r.pool == pool && r.active).count();
        let mut drained = Vec::new();
        let mut offset: isize = 0;
        loop {
            let room = self.reps_with_room(pool, now).await?;
            if room.is_empty() {
                break;
            }
            let members: Vec<String> = conn
                .zrange(keys.k("queue"), offset, offset + BATCH - 1)
                .await
                .map_err(unavailable)?;
            if members.is_empty() {
                break;
            }
            let mut pipe = redis::pipe();
            for m in &members {
                let id = m.split_once(':').map_or(m.as_str(), |(_, id)| id);
                pipe.hget(keys.lead(id), "ctx");
            }
            let ctxs: Vec<Option<String>> =
                pipe.query_async(&mut conn).await.map_err(unavailable)?;
            // Leads of this batch still queued afterwards; the next batch starts past them.
            let mut stayed: isize = 0;
            for json in ctxs {
                // A member without a readable record (closed meanwhile) is skipped; one that is
                // unreadable yet queued stays, and is counted so the walk moves past it.
                let Some(Ok(ctx)) = json.map(|j| serde_json::from_str::<LeadContext>(&j)) else {
                    stayed += 1;
                    continue;
                };
                let ranking = routing::rank(&reps, &ctx.needs, now, None);
                // Nobody who had room at the start of this batch can take it: no round trip.
                // (A queue of leads that need skills the free reps lack used to cost one
                // EVALSHA each, on every drain.)
                if !ranking.candidates.iter().any(|c| room.contains(&c.rep_id)) {
                    stayed += 1;
                    continue;
                }
                let reply = self
                    .run_claim("queued", &ctx, "", &ranking.candidates, now, "")
                    .await?;
                if reply.kind() == "noroom" && ranking.candidates.len() == everyone {
                    // Every rep of the pool was asked and none had room, so nobody further down
                    // the queue fits either. Stopping also keeps a lower lead from taking
                    // capacity that frees while we walk the queue.
                    return Ok(drained);
                }
                if reply.kind() == "noroom" {
                    stayed += 1;
                }
                if reply.kind() == "assigned" {
                    drained.push(Assignment {
                        lead_id: ctx.lead.id.clone(),
                        rep_id: reply.head[1].clone(),
                        pool: pool.to_string(),
                        state: AssignmentState::Open,
                        probability: ctx.probability,
                        segment: ctx.segment.clone(),
                        assigned_at_ms: num(&reply.head[2]).unwrap_or(0),
                        closed_at_ms: None,
                    });
                }
            }
            offset += stayed;
        }
        Ok(drained)
    }

    /// Active reps of the pool with both capacity and quota left, from one read of the
    /// table (a cheap filter for draining; the claim script decides for real).
    async fn reps_with_room(&self, pool: &str, now: Timestamp) -> Result<HashSet<String>> {
        let keys = self.pool(pool);
        let table: Vec<u8> = self
            .conn()
            .get(keys.k("table"))
            .await
            .map_err(unavailable)?;
        let dir = self.directory.load();
        Ok(dir
            .reps
            .iter()
            .filter(|r| r.pool == pool && r.active)
            .filter(|r| {
                let stored = dir
                    .slots
                    .get(&r.id)
                    .and_then(|s| RepState::in_table(&table, *s));
                let (load, used, _) = RepState::live(stored, r.period(now));
                load < r.capacity && r.daily_quota.is_none_or(|q| used < q)
            })
            .map(|r| r.id.clone())
            .collect())
    }

    async fn rep_pool(&self, rep_id: &str) -> Result<Option<String>> {
        self.conn()
            .hget(self.global("rep-pool"), rep_id)
            .await
            .map_err(unavailable)
    }

    async fn statuses_of_pool(
        &self,
        pool: &str,
        only: Option<&str>,
        now: Timestamp,
    ) -> Result<Vec<RepStatus>> {
        let keys = self.pool(pool);
        type Maps = (
            HashMap<String, String>,
            HashMap<String, String>,
            HashMap<String, String>,
            Vec<u8>,
        );
        let (profiles, active, slots, table): Maps = redis::pipe()
            .hgetall(keys.k("reps"))
            .hgetall(keys.k("active"))
            .hgetall(keys.k("slots"))
            .get(keys.k("table"))
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        for (id, json) in profiles {
            if only.is_some_and(|o| o != id) {
                continue;
            }
            let mut rep: Rep = serde_json::from_str(&json)
                .map_err(|e| Error::Internal(format!("rep {id}: {e}")))?;
            rep.active = active.get(&id).is_none_or(|a| a == "1");
            let stored = slots
                .get(&id)
                .and_then(|v| parse_slot(v))
                .and_then(|s| RepState::in_table(&table, s));
            let (load, assigned_today, last_assigned_ms) = RepState::live(stored, rep.period(now));
            out.push(RepStatus {
                load,
                assigned_today,
                last_assigned_ms,
                rep,
            });
        }
        out.sort_by(|a, b| a.rep.id.cmp(&b.rep.id));
        Ok(out)
    }

    async fn rep_op(&self, pool: &str, args: &[&str]) -> Result<Vec<String>> {
        let mut inv = self.rep.prepare_invoke();
        for k in self.pool(pool).rep() {
            inv.key(k);
        }
        for a in args {
            inv.arg(*a);
        }
        inv.invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)
    }
}

/// Polls the directory version and reloads the snapshot when another replica changed it.
async fn watch_directory(store: Weak<RedisStore>) {
    loop {
        tokio::time::sleep(DIRECTORY_POLL).await;
        let Some(s) = store.upgrade() else { return };
        let current: redis::RedisResult<Option<i64>> = s.conn().get(s.global("dirver")).await;
        if let Ok(v) = current
            && v != s.directory.load().version
            && let Err(e) = s.refresh().await
        {
            tracing::warn!(error = %e, "directory refresh failed");
        }
    }
}

#[async_trait]
impl CapacityStore for RedisStore {
    async fn claim(&self, req: ClaimRequest) -> Result<Claim> {
        let ctx = &req.context;
        self.register_pool(&ctx.needs.pool).await?;
        let json = serde_json::to_string(ctx).map_err(|e| Error::Internal(e.to_string()))?;
        let r = self
            .run_claim("new", ctx, "", &req.candidates, req.now, &json)
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
        let mut jsons = Vec::with_capacity(reqs.len());
        for r in &reqs {
            if let Err(e) = self.register_pool(&r.context.needs.pool).await {
                return reqs.iter().map(|_| Err(e.clone())).collect();
            }
            jsons.push(serde_json::to_string(&r.context).unwrap_or_default());
        }
        let (invocations, mut listed): (Vec<_>, Vec<_>) = reqs
            .iter()
            .zip(&jsons)
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
        let f: Vec<&str> = f.iter().map(|v| v.as_deref().unwrap_or("")).collect();
        if f[0] == "queued" {
            let rank: Option<u32> = self
                .conn()
                .zrank(self.pool(&pool).k("queue"), f[7])
                .await
                .map_err(unavailable)?;
            return Ok(Some(LeadState::Queued {
                probability: num(f[2]).unwrap_or(0.0),
                position: rank.map_or(0, |r| r + 1),
                pool,
            }));
        }
        Ok(Some(LeadState::Assigned(Self::assignment(
            lead_id, &pool, &f,
        ))))
    }

    async fn context(&self, lead_id: &str) -> Result<Option<LeadContext>> {
        let Some((pool, _)) = self.find(lead_id).await? else {
            return Ok(None);
        };
        let json: Option<String> = self
            .conn()
            .hget(self.pool(&pool).lead(lead_id), "ctx")
            .await
            .map_err(unavailable)?;
        json.map(|j| {
            serde_json::from_str(&j).map_err(|e| Error::Internal(format!("lead {lead_id}: {e}")))
        })
        .transpose()
    }

    async fn close(&self, lead_id: &str, outcome: Outcome, now: Timestamp) -> Result<Closed> {
        let Some((pool, _)) = self.find(lead_id).await? else {
            return Err(Error::not_found("lead", lead_id));
        };
        let keys = self.pool(&pool);
        let r: Vec<String> = self
            .close
            .key(keys.lead(lead_id))
            .key(keys.k("table"))
            .key(keys.k("queue"))
            .key(keys.k("outcomes"))
            .key(keys.k("slots"))
            .arg(outcome_str(outcome))
            .arg(millis(now))
            .arg(lead_id)
            .arg(STREAM_MAXLEN)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let closed = |r: &[String]| {
            Self::assignment(
                lead_id,
                &pool,
                &["closed", &r[1], &r[2], &r[3], &r[4], &r[5], &r[6]],
            )
        };
        match r.first().map(String::as_str) {
            Some("missing") => Err(Error::not_found("lead", lead_id)),
            Some("conflict") => Err(Error::FailedPrecondition(format!(
                "lead {lead_id:?} is already closed as {}",
                r[1]
            ))),
            Some("closed") => Ok(Closed {
                assignment: closed(&r),
                drained: vec![],
            }),
            Some("ok") => {
                let assignment = closed(&r);
                let drained = self.drain_pool(&pool, now).await?;
                Ok(Closed {
                    assignment,
                    drained,
                })
            }
            other => Err(Error::Internal(format!("close script answered {other:?}"))),
        }
    }

    async fn reassign(
        &self,
        lead_id: &str,
        from_rep: &str,
        candidates: Vec<Candidate>,
        now: Timestamp,
    ) -> Result<Reassigned> {
        let Some((pool, f)) = self.find(lead_id).await? else {
            return Err(Error::not_found("lead", lead_id));
        };
        let f: Vec<&str> = f.iter().map(|v| v.as_deref().unwrap_or("")).collect();
        let previous = Self::assignment(lead_id, &pool, &f);
        let ctx = self
            .context(lead_id)
            .await?
            .ok_or_else(|| Error::not_found("lead", lead_id))?;
        let reply = self
            .run_claim("reassign", &ctx, from_rep, &candidates, now, "")
            .await?;
        let r = &reply.head;
        match r.first().map(String::as_str) {
            Some("conflict") => Err(Error::FailedPrecondition(format!(
                "lead {lead_id:?} is no longer open with {from_rep:?}; retry"
            ))),
            Some("noroom") => Err(Error::FailedPrecondition(format!(
                "no other rep can take lead {lead_id:?} now; it stays with {from_rep:?}"
            ))),
            Some("assigned") => {
                let mut assignment = previous.clone();
                assignment.rep_id = r[1].clone();
                assignment.assigned_at_ms = num(&r[2]).unwrap_or(0);
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
                .map_err(unavailable)?;
            for entry in reply.ids {
                let get = |k: &str| entry.get::<String>(k).unwrap_or_default();
                let (Some(outcome), Ok(context)) = (
                    parse_outcome(&get("outcome")),
                    serde_json::from_str(&get("ctx")),
                ) else {
                    continue;
                };
                out.push(OutcomeRecord {
                    context,
                    rep_id: get("rep"),
                    outcome,
                    closed_at_ms: num(&get("closed_at")).unwrap_or(0),
                });
            }
        }
        out.sort_by_key(|o| o.closed_at_ms);
        Ok(out)
    }

    async fn ping(&self) -> Result<()> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl RepDirectory for RedisStore {
    async fn upsert_rep(&self, rep: Rep, now: Timestamp) -> Result<(RepStatus, Vec<Assignment>)> {
        if let Some(old) = self.rep_pool(&rep.id).await?
            && old != rep.pool
        {
            let r = self.rep_op(&old, &["delete", &rep.id]).await?;
            if r.first().map(String::as_str) == Some("busy") {
                return Err(Error::FailedPrecondition(format!(
                    "rep {:?} holds open assignments; close or reassign them before changing its pool",
                    rep.id
                )));
            }
        }
        let json = serde_json::to_string(&rep).map_err(|e| Error::Internal(e.to_string()))?;
        let quota = rep.daily_quota.map(|q| q.to_string()).unwrap_or_default();
        let active = if rep.active { "1" } else { "0" };
        self.register_pool(&rep.pool).await?;
        let _: i64 = self
            .conn()
            .hset(self.global("rep-pool"), &rep.id, &rep.pool)
            .await
            .map_err(unavailable)?;
        self.rep_op(
            &rep.pool,
            &[
                "upsert",
                &rep.id,
                &json,
                &rep.capacity.to_string(),
                &quota,
                active,
            ],
        )
        .await?;
        self.bump_directory().await?;
        let drained = self.drain_pool(&rep.pool, now).await?;
        let status = self
            .rep(&rep.id, now)
            .await?
            .ok_or_else(|| Error::Internal("rep vanished".into()))?;
        Ok((status, drained))
    }

    async fn rep(&self, rep_id: &str, now: Timestamp) -> Result<Option<RepStatus>> {
        let Some(pool) = self.rep_pool(rep_id).await? else {
            return Ok(None);
        };
        Ok(self
            .statuses_of_pool(&pool, Some(rep_id), now)
            .await?
            .into_iter()
            .next())
    }

    async fn reps(&self) -> Result<Arc<[Rep]>> {
        Ok(self.directory.load().reps.clone())
    }

    async fn rep_statuses(&self, pool: Option<&str>, now: Timestamp) -> Result<Vec<RepStatus>> {
        let mut out = Vec::new();
        for p in self.pools().await? {
            if pool.is_none_or(|want| want == p) {
                out.extend(self.statuses_of_pool(&p, None, now).await?);
            }
        }
        out.sort_by(|a, b| a.rep.id.cmp(&b.rep.id));
        Ok(out)
    }

    async fn delete_rep(&self, rep_id: &str) -> Result<()> {
        let pool = self
            .rep_pool(rep_id)
            .await?
            .ok_or_else(|| Error::not_found("rep", rep_id))?;
        let r = self.rep_op(&pool, &["delete", rep_id]).await?;
        match r.first().map(String::as_str) {
            Some("busy") => Err(Error::FailedPrecondition(format!(
                "rep {rep_id:?} holds {} open assignments; close or reassign them first",
                r[1]
            ))),
            Some("missing") => Err(Error::not_found("rep", rep_id)),
            _ => {
                let _: i64 = self
                    .conn()
                    .hdel(self.global("rep-pool"), rep_id)
                    .await
                    .map_err(unavailable)?;
                self.bump_directory().await
            }
        }
    }

    async fn set_active(
        &self,
        rep_id: &str,
        active: bool,
        now: Timestamp,
    ) -> Result<(RepStatus, Vec<Assignment>)> {
        let pool = self
            .rep_pool(rep_id)
            .await?
            .ok_or_else(|| Error::not_found("rep", rep_id))?;
        let r = self
            .rep_op(&pool, &["active", rep_id, if active { "1" } else { "0" }])
            .await?;
        if r.first().map(String::as_str) == Some("missing") {
            return Err(Error::not_found("rep", rep_id));
        }
        self.bump_directory().await?;
        let drained = if active {
            self.drain_pool(&pool, now).await?
        } else {
            vec![]
        };
        let status = self
            .rep(rep_id, now)
            .await?
            .ok_or_else(|| Error::not_found("rep", rep_id))?;
        Ok((status, drained))
    }
}
