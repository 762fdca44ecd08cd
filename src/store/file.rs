//! The durable embedded store (`store.url = "file:///path/leadrouter.db"`): the memory
//! store's state and atomic steps, with every change written to a redb journal first.
//!
//! Every store call that changes state is deterministic given its arguments (the ranked
//! candidates and `now` travel in the call), so the journal holds the calls, not the state:
//! one redb write transaction (fsynced) per change, or per batch for `claim_many`, then the
//! call runs on the in-memory state. One lock orders journal and state alike, so a replay sees
//! the calls in the order they ran. A call that cannot change anything (a replayed claim, a
//! close of an unknown or closed lead) is answered without a journal row.
//!
//! Compaction: after `max(store.snapshot_every, leads held)` journaled changes the whole state
//! is written as one snapshot row, tagged with the first journal sequence it does not contain,
//! and the rows before it are deleted in the same transaction. Open = load the snapshot, then
//! replay the rows after it. Spacing snapshots by the state's size keeps their cost per change
//! constant.
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use redb::{Database, ReadableTable, TableDefinition};

use crate::domain::assignment::{
    Assignment, HistoryLead, Imported, LeadContext, LeadState, Outcome, OutcomeRecord,
};
use crate::domain::event::EventPage;
use crate::domain::ledger::{Grain, LedgerCell};
use crate::domain::rep::Rep;
use crate::domain::routing::Candidate;
use crate::domain::target::Target;
use crate::error::{Error, Result};
use crate::store::ledger::ReportLedger;
use crate::store::memory::MemoryStore;

mod journal;
mod registry;
use crate::store::{
    CapacityStore, Claim, ClaimRequest, Closed, Due, ListPage, ListQuery, Reassigned, Release,
    Released, RepDirectory, RepStatus,
};
use journal::{Answer, Op, apply, cands, ms, pack, unexpected, unpack};

const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal");
/// One snapshot in chunks: key = (the first journal sequence it does not contain, chunk).
/// Chunks keep redb's allocations page-sized; one multi-MB value made the file grow by
/// 64 MB steps.
const SNAPSHOT: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("snapshot");
const CHUNK: usize = 256 << 10;

fn disk(e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("embedded store: {e}"))
}

/// The journal's position, held across journal write and state change.
struct Log {
    /// The next journal sequence number.
    next: u64,
    /// Journal rows written since the last snapshot.
    since_snapshot: u64,
}

pub struct FileStore {
    mem: MemoryStore,
    db: Arc<Database>,
    log: tokio::sync::Mutex<Log>,
    /// `store.snapshot_every`: journaled changes between snapshots, at least.
    snapshot_every: u64,
}

/// What opening found: for the startup log line and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub snapshot_loaded: bool,
    pub replayed: usize,
}

impl FileStore {
    /// Opens (or creates) the database at `path`, loads its snapshot and replays the journal
    /// after it.
    pub async fn open(
        path: &Path,
        mem: MemoryStore,
        snapshot_every: u64,
    ) -> Result<FileStore, String> {
        Ok(Self::open_counted(path, mem, snapshot_every).await?.0)
    }

    pub async fn open_counted(
        path: &Path,
        mem: MemoryStore,
        snapshot_every: u64,
    ) -> Result<(FileStore, Opened), String> {
        let shown = path.display().to_string();
        let mut db = Database::create(path).map_err(|e| format!("cannot open {shown}: {e}"))?;
        // Gives back the space old snapshots and compacted journal rows left (the file only
        // grows while running).
        db.compact()
            .map_err(|e| format!("cannot compact {shown}: {e}"))?;
        let (from, snapshot) =
            read_snapshot(&db).map_err(|e| format!("cannot read {shown}: {e}"))?;
        registry::load(&db, &mem).map_err(|e| format!("{shown}: {e}"))?;
        if let Some(bytes) = &snapshot {
            mem.restore(bytes)
                .map_err(|e| format!("{shown}: snapshot does not load: {e}"))?;
        }
        let ops = read_journal(&db, from).map_err(|e| format!("cannot read {shown}: {e}"))?;
        let next = ops.last().map_or(from, |(seq, _)| seq + 1);
        let opened = Opened {
            snapshot_loaded: snapshot.is_some(),
            replayed: ops.len(),
        };
        for (_, op) in ops {
            // Results are the ones the calls had; only the state they leave matters here.
            let _ = apply(&mem, op).await;
        }
        tracing::info!(path = %shown, snapshot = opened.snapshot_loaded, changes = opened.replayed,
            "embedded store loaded");
        let store = FileStore {
            mem,
            db: Arc::new(db),
            log: tokio::sync::Mutex::new(Log {
                next,
                since_snapshot: opened.replayed as u64,
            }),
            snapshot_every: snapshot_every.max(1),
        };
        Ok((store, opened))
    }

    /// The whole state as the snapshot would hold it (JSON), for tests and diagnostics.
    pub fn state(&self) -> Result<Vec<u8>> {
        self.mem.snapshot()
    }

    /// Journals `ops` in one fsynced transaction; the caller holds the guard and applies them
    /// before releasing it.
    async fn write_journal(&self, log: &mut Log, ops: &[Op]) -> Result<()> {
        self.write_journal_refs(log, &ops.iter().collect::<Vec<_>>())
            .await
    }

    async fn write_journal_refs(&self, log: &mut Log, ops: &[&Op]) -> Result<()> {
        let rows: Vec<Vec<u8>> = ops
            .iter()
            .map(|op| {
                serde_json::to_vec(op)
                    .map_err(|e| Error::Internal(e.to_string()))
                    .and_then(|json| pack(&json))
            })
            .collect::<Result<_>>()?;
        let (db, first) = (self.db.clone(), log.next);
        blocking(move || {
            let tx = db.begin_write().map_err(disk)?;
            {
                let mut t = tx.open_table(JOURNAL).map_err(disk)?;
                for (i, row) in rows.iter().enumerate() {
                    t.insert(first + i as u64, row.as_slice()).map_err(disk)?;
                }
            }
            tx.commit().map_err(disk)
        })
        .await?;
        log.next += ops.len() as u64;
        log.since_snapshot += ops.len() as u64;
        Ok(())
    }

    /// After a journaled change, still under the guard: snapshots when enough changes piled up.
    /// A failed snapshot costs nothing but a longer replay; it is retried after as many again.
    async fn settle(&self, log: &mut Log) {
        let due = self.snapshot_every.max(self.mem.lead_count() as u64);
        if log.since_snapshot < due {
            return;
        }
        log.since_snapshot = 0;
        if let Err(e) = self.write_snapshot(log.next).await {
            tracing::warn!(error = %e, "embedded store: snapshot failed; the journal keeps growing");
        }
    }

    async fn write_snapshot(&self, upto: u64) -> Result<()> {
        let bytes = pack(&self.mem.snapshot()?)?;
        let db = self.db.clone();
        blocking(move || {
            let tx = db.begin_write().map_err(disk)?;
            {
                let mut snap = tx.open_table(SNAPSHOT).map_err(disk)?;
                snap.retain(|_, _| false).map_err(disk)?;
                for (i, chunk) in bytes.chunks(CHUNK).enumerate() {
                    snap.insert((upto, i as u32), chunk).map_err(disk)?;
                }
                let mut journal = tx.open_table(JOURNAL).map_err(disk)?;
                journal.retain_in(..upto, |_, _| false).map_err(disk)?;
            }
            tx.commit().map_err(disk)
        })
        .await
    }

    /// Journals and applies one call, unless `idle` says (under the lock, where nothing else
    /// changes the state) that it cannot change anything: then the state alone answers it.
    async fn run<T>(
        &self,
        op: Op,
        idle: impl FnOnce(&MemoryStore) -> bool,
        pick: fn(Answer) -> Option<T>,
    ) -> Result<T> {
        let mut log = self.log.lock().await;
        let journaled = !idle(&self.mem);
        if journaled {
            self.write_journal(&mut log, std::slice::from_ref(&op))
                .await?;
        }
        let r = apply(&self.mem, op).await;
        if journaled {
            self.settle(&mut log).await;
        }
        drop(log);
        r.and_then(|a| pick(a).ok_or_else(unexpected))
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("embedded store task: {e}")))?
}

fn read_snapshot(db: &Database) -> Result<(u64, Option<Vec<u8>>), String> {
    let tx = db.begin_read().map_err(|e| e.to_string())?;
    let table = match tx.open_table(SNAPSHOT) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok((0, None)),
        Err(e) => return Err(e.to_string()),
    };
    let mut packed = Vec::new();
    let mut upto = None;
    for row in table.iter().map_err(|e| e.to_string())? {
        let (k, v) = row.map_err(|e| e.to_string())?;
        let (seq, _) = k.value();
        if upto.is_some_and(|u| u != seq) {
            return Err("two snapshots in one file".into());
        }
        upto = Some(seq);
        packed.extend_from_slice(v.value());
    }
    match upto {
        None => Ok((0, None)),
        Some(seq) => {
            let json = unpack(&packed).map_err(|e| format!("snapshot: {e}"))?;
            Ok((seq, Some(json.into_owned())))
        }
    }
}

fn read_journal(db: &Database, from: u64) -> Result<Vec<(u64, Op)>, String> {
    let tx = db.begin_read().map_err(|e| e.to_string())?;
    let table = match tx.open_table(JOURNAL) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    let mut out = Vec::new();
    for row in table.range(from..).map_err(|e| e.to_string())? {
        let (k, v) = row.map_err(|e| e.to_string())?;
        let bad = |e: &dyn std::fmt::Display| format!("journal entry {}: {e}", k.value());
        let json = unpack(v.value()).map_err(|e| bad(&e))?;
        let op: Op = serde_json::from_slice(&json).map_err(|e| bad(&e))?;
        out.push((k.value(), op));
    }
    Ok(out)
}

/// The answer of one kind, as `run` wants it.
macro_rules! pick {
    ($kind:ident) => {
        |a| match a {
            Answer::$kind(x) => Some(x),
            _ => None,
        }
    };
}

/// Whether a call on a lead can change nothing: the lead is unknown or closed.
fn settled(lead: &str) -> impl FnOnce(&MemoryStore) -> bool + '_ {
    move |m| m.is_open(lead) != Some(true)
}

#[async_trait]
impl CapacityStore for FileStore {
    async fn claim(&self, req: ClaimRequest) -> Result<Claim> {
        let id = req.context.lead.id.clone();
        let op = Op::Claim {
            context: req.context,
            candidates: cands(req.candidates),
            now: ms(req.now),
        };
        // A lead the store holds answers as a replay.
        self.run(op, |m| m.is_open(&id).is_some(), pick!(Claim))
            .await
    }

    /// One journal transaction (one fsync) for the new leads of the batch.
    async fn claim_many(&self, reqs: Vec<ClaimRequest>) -> Vec<Result<Claim>> {
        let mut log = self.log.lock().await;
        let ops: Vec<(bool, Op)> = reqs
            .into_iter()
            .map(|r| {
                let known = self.mem.is_open(&r.context.lead.id).is_some();
                let op = Op::Claim {
                    context: r.context,
                    candidates: cands(r.candidates),
                    now: ms(r.now),
                };
                (!known, op)
            })
            .collect();
        let (fresh, n) = (ops.iter().filter(|(j, _)| *j).count(), ops.len());
        if fresh > 0 {
            let rows: Vec<&Op> = ops.iter().filter(|(j, _)| *j).map(|(_, op)| op).collect();
            if let Err(e) = self.write_journal_refs(&mut log, &rows).await {
                return vec![Err(e); n];
            }
        }
        let mut out = Vec::with_capacity(n);
        for (_, op) in ops {
            let r = apply(&self.mem, op).await;
            out.push(r.and_then(|a| pick!(Claim)(a).ok_or_else(unexpected)));
        }
        if fresh > 0 {
            self.settle(&mut log).await;
        }
        out
    }

    async fn lookup(&self, lead_id: &str) -> Result<Option<LeadState>> {
        self.mem.lookup(lead_id).await
    }

    async fn context(&self, lead_id: &str) -> Result<Option<LeadContext>> {
        self.mem.context(lead_id).await
    }

    async fn close_valued(
        &self,
        lead_id: &str,
        outcome: Outcome,
        value: Option<f64>,
        now: Timestamp,
    ) -> Result<Closed> {
        let op = Op::Close {
            lead: lead_id.into(),
            outcome,
            value,
            now: ms(now),
        };
        self.run(op, settled(lead_id), pick!(Closed)).await
    }

    async fn reassign(
        &self,
        lead_id: &str,
        from_rep: &str,
        candidates: Vec<Candidate>,
        now: Timestamp,
    ) -> Result<Reassigned> {
        let op = Op::Reassign {
            lead: lead_id.into(),
            from: from_rep.into(),
            candidates: cands(candidates),
            now: ms(now),
        };
        self.run(op, settled(lead_id), pick!(Reassigned)).await
    }

    async fn drain(&self, pool: &str, now: Timestamp) -> Result<Vec<Assignment>> {
        let op = Op::Drain {
            pool: pool.into(),
            now: ms(now),
        };
        self.run(op, |_| false, pick!(Drained)).await
    }

    async fn outcomes(&self) -> Result<Vec<OutcomeRecord>> {
        self.mem.outcomes().await
    }

    async fn accept(&self, lead_id: &str, rep_id: &str, now: Timestamp) -> Result<Assignment> {
        let op = Op::Accept {
            lead: lead_id.into(),
            rep: rep_id.into(),
            now: ms(now),
        };
        self.run(op, settled(lead_id), pick!(Assignment)).await
    }

    async fn release(
        &self,
        lead_id: &str,
        rep_id: &str,
        why: Release,
        now: Timestamp,
    ) -> Result<Released> {
        let declined = match why {
            Release::Declined(r) => Some(r),
            Release::Expired => None,
        };
        let op = Op::Release {
            lead: lead_id.into(),
            rep: rep_id.into(),
            declined,
            now: ms(now),
        };
        self.run(op, settled(lead_id), pick!(Released)).await
    }

    async fn contacted(&self, lead_id: &str, rep_id: &str, now: Timestamp) -> Result<Assignment> {
        let op = Op::Contacted {
            lead: lead_id.into(),
            rep: rep_id.into(),
            now: ms(now),
        };
        self.run(op, settled(lead_id), pick!(Assignment)).await
    }

    async fn breach(&self, lead_id: &str, now: Timestamp) -> Result<Option<Assignment>> {
        let op = Op::Breach {
            lead: lead_id.into(),
            now: ms(now),
        };
        self.run(op, settled(lead_id), pick!(Maybe)).await
    }

    async fn expire_queued(&self, lead_id: &str, now: Timestamp) -> Result<Option<Assignment>> {
        let op = Op::ExpireQueued {
            lead: lead_id.into(),
            now: ms(now),
        };
        self.run(op, settled(lead_id), pick!(Maybe)).await
    }

    async fn due(&self, pool: &str, now: Timestamp, limit: usize) -> Result<Due> {
        self.mem.due(pool, now, limit).await
    }

    async fn events_after(&self, pool: &str, after: u64, limit: usize) -> Result<EventPage> {
        self.mem.events_after(pool, after, limit).await
    }

    async fn pools(&self) -> Result<Vec<String>> {
        self.mem.pools().await
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.mem.changes()
    }

    async fn list(&self, q: &ListQuery) -> Result<ListPage> {
        self.mem.list(q).await
    }
}

#[async_trait]
impl RepDirectory for FileStore {
    async fn upsert_rep(&self, rep: Rep, now: Timestamp) -> Result<(RepStatus, Vec<Assignment>)> {
        self.run(Op::UpsertRep { rep, now: ms(now) }, |_| false, pick!(Rep))
            .await
    }

    async fn rep(&self, rep_id: &str, now: Timestamp) -> Result<Option<RepStatus>> {
        self.mem.rep(rep_id, now).await
    }

    async fn reps(&self) -> Result<Arc<[Rep]>> {
        self.mem.reps().await
    }

    async fn rep_statuses(&self, pool: Option<&str>, now: Timestamp) -> Result<Vec<RepStatus>> {
        self.mem.rep_statuses(pool, now).await
    }

    async fn delete_rep(&self, rep_id: &str) -> Result<()> {
        let op = Op::DeleteRep { rep: rep_id.into() };
        self.run(op, |m| !m.has_rep(rep_id), pick!(Unit)).await
    }

    async fn set_active(
        &self,
        rep_id: &str,
        active: bool,
        now: Timestamp,
    ) -> Result<(RepStatus, Vec<Assignment>)> {
        let op = Op::SetActive {
            rep: rep_id.into(),
            active,
            now: ms(now),
        };
        self.run(op, |m| !m.has_rep(rep_id), pick!(Rep)).await
    }
}

#[async_trait]
impl ReportLedger for FileStore {
    async fn ledger(
        &self,
        pool: Option<&str>,
        grain: Grain,
        from: i32,
        to: i32,
    ) -> Result<Vec<LedgerCell>> {
        self.mem.ledger(pool, grain, from, to).await
    }

    async fn note_unroutable(&self, pool: &str, segment: &str, now: Timestamp) -> Result<()> {
        let op = Op::Unroutable {
            pool: pool.into(),
            segment: segment.into(),
            now: ms(now),
        };
        self.run(op, |_| false, pick!(Unit)).await
    }

    async fn import_history(&self, leads: Vec<HistoryLead>) -> Result<Imported> {
        self.run(Op::Import { leads }, |_| false, pick!(Imported))
            .await
    }

    async fn set_target(&self, target: Target) -> Result<()> {
        let op = Op::SetTarget {
            key: target.key(),
            value: target.value,
        };
        self.run(op, |_| false, pick!(Unit)).await
    }

    async fn targets(&self) -> Result<Vec<Target>> {
        self.mem.targets().await
    }
}
