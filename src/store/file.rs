//! The durable embedded store (`store.url = "file:///path/leadrouter.db"`): the memory
//! store's state and atomic steps, with every change written to a redb journal first.
//!
//! Every store call that changes state is deterministic given its arguments (the ranked
//! candidates and `now` travel in the call), so the journal holds the calls, not the state:
//! one redb write transaction (fsynced) per change, or per batch for `claim_many`, then the
//! call runs on the in-memory state. On open the journal is replayed into a fresh state. One
//! lock orders journal and state alike, so a replay sees the calls in the order they ran. A
//! call answered with an error after its journal commit (none today: the memory steps fail
//! only on validation they repeat identically) would be replayed the same way.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::domain::assignment::{Assignment, LeadContext, LeadState, Outcome, OutcomeRecord};
use crate::domain::event::EventPage;
use crate::domain::rep::Rep;
use crate::domain::routing::Candidate;
use crate::error::{Error, Result};
use crate::store::memory::MemoryStore;
use crate::store::{
    CapacityStore, Claim, ClaimRequest, Closed, Due, ListPage, ListQuery, Reassigned, Release,
    Released, RepDirectory, RepStatus,
};

const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal");

/// One state-changing call, as journaled.
#[derive(Debug, Serialize, Deserialize)]
enum Op {
    Claim {
        context: LeadContext,
        candidates: Vec<Candidate>,
        now: i64,
    },
    Close {
        lead: String,
        outcome: Outcome,
        now: i64,
    },
    Reassign {
        lead: String,
        from: String,
        candidates: Vec<Candidate>,
        now: i64,
    },
    Drain {
        pool: String,
        now: i64,
    },
    Accept {
        lead: String,
        rep: String,
        now: i64,
    },
    Release {
        lead: String,
        rep: String,
        /// The decline's reason; None for an expired offer.
        declined: Option<String>,
        now: i64,
    },
    Contacted {
        lead: String,
        rep: String,
        now: i64,
    },
    Breach {
        lead: String,
        now: i64,
    },
    ExpireQueued {
        lead: String,
        now: i64,
    },
    UpsertRep {
        rep: Rep,
        now: i64,
    },
    DeleteRep {
        rep: String,
    },
    SetActive {
        rep: String,
        active: bool,
        now: i64,
    },
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn disk(e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("embedded store: {e}"))
}

pub struct FileStore {
    mem: MemoryStore,
    db: Arc<Database>,
    /// The next journal sequence number; held across journal write and state change.
    next: tokio::sync::Mutex<u64>,
    path: PathBuf,
}

impl FileStore {
    /// Opens (or creates) the database at `path` and replays its journal.
    pub async fn open(path: &Path, mem: MemoryStore) -> Result<FileStore, String> {
        let shown = path.display().to_string();
        let db = Database::create(path).map_err(|e| format!("cannot open {shown}: {e}"))?;
        let ops = read_journal(&db).map_err(|e| format!("cannot read {shown}: {e}"))?;
        let next = ops.last().map_or(0, |(seq, _)| seq + 1);
        let replayed = ops.len();
        for (_, op) in ops {
            // Results are the ones the calls had; only the state they leave matters here.
            let _ = apply(&mem, op).await;
        }
        tracing::info!(path = %shown, changes = replayed, "embedded store replayed its journal");
        Ok(FileStore {
            mem,
            db: Arc::new(db),
            next: tokio::sync::Mutex::new(next),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Journals `ops` in one fsynced transaction; the caller applies them while still holding
    /// the returned guard.
    async fn journal(&self, ops: &[Op]) -> Result<tokio::sync::MutexGuard<'_, u64>> {
        let mut next = self.next.lock().await;
        let rows: Vec<Vec<u8>> = ops
            .iter()
            .map(|op| serde_json::to_vec(op).map_err(|e| Error::Internal(e.to_string())))
            .collect::<Result<_>>()?;
        let (db, first) = (self.db.clone(), *next);
        tokio::task::spawn_blocking(move || -> Result<()> {
            let tx = db.begin_write().map_err(disk)?;
            {
                let mut t = tx.open_table(JOURNAL).map_err(disk)?;
                for (i, row) in rows.iter().enumerate() {
                    t.insert(first + i as u64, row.as_slice()).map_err(disk)?;
                }
            }
            tx.commit().map_err(disk)
        })
        .await
        .map_err(|e| Error::Internal(format!("journal task: {e}")))??;
        *next += ops.len() as u64;
        Ok(next)
    }

    async fn run(&self, op: Op) -> Result<Outcome2> {
        let guard = self.journal(std::slice::from_ref(&op)).await?;
        let r = apply(&self.mem, op).await;
        drop(guard);
        r
    }
}

fn read_journal(db: &Database) -> Result<Vec<(u64, Op)>, String> {
    let tx = db.begin_read().map_err(|e| e.to_string())?;
    let table = match tx.open_table(JOURNAL) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    let mut out = Vec::new();
    for row in table.iter().map_err(|e| e.to_string())? {
        let (k, v) = row.map_err(|e| e.to_string())?;
        let op: Op = serde_json::from_slice(v.value())
            .map_err(|e| format!("journal entry {}: {e}", k.value()))?;
        out.push((k.value(), op));
    }
    Ok(out)
}

/// What a journaled call answered.
enum Outcome2 {
    Claim(Claim),
    Closed(Closed),
    Reassigned(Reassigned),
    Drained(Vec<Assignment>),
    Assignment(Assignment),
    Released(Released),
    Maybe(Option<Assignment>),
    Rep((RepStatus, Vec<Assignment>)),
    Unit,
}

async fn apply(mem: &MemoryStore, op: Op) -> Result<Outcome2> {
    Ok(match op {
        Op::Claim {
            context,
            candidates,
            now,
        } => Outcome2::Claim(
            mem.claim(ClaimRequest {
                context,
                candidates,
                now: ts(now),
            })
            .await?,
        ),
        Op::Close { lead, outcome, now } => {
            Outcome2::Closed(mem.close(&lead, outcome, ts(now)).await?)
        }
        Op::Reassign {
            lead,
            from,
            candidates,
            now,
        } => Outcome2::Reassigned(mem.reassign(&lead, &from, candidates, ts(now)).await?),
        Op::Drain { pool, now } => Outcome2::Drained(mem.drain(&pool, ts(now)).await?),
        Op::Accept { lead, rep, now } => {
            Outcome2::Assignment(mem.accept(&lead, &rep, ts(now)).await?)
        }
        Op::Release {
            lead,
            rep,
            declined,
            now,
        } => {
            let why = match declined {
                Some(reason) => Release::Declined(reason),
                None => Release::Expired,
            };
            Outcome2::Released(mem.release(&lead, &rep, why, ts(now)).await?)
        }
        Op::Contacted { lead, rep, now } => {
            Outcome2::Assignment(mem.contacted(&lead, &rep, ts(now)).await?)
        }
        Op::Breach { lead, now } => Outcome2::Maybe(mem.breach(&lead, ts(now)).await?),
        Op::ExpireQueued { lead, now } => Outcome2::Maybe(mem.expire_queued(&lead, ts(now)).await?),
        Op::UpsertRep { rep, now } => Outcome2::Rep(mem.upsert_rep(rep, ts(now)).await?),
        Op::DeleteRep { rep } => {
            mem.delete_rep(&rep).await?;
            Outcome2::Unit
        }
        Op::SetActive { rep, active, now } => {
            Outcome2::Rep(mem.set_active(&rep, active, ts(now)).await?)
        }
    })
}

fn unexpected() -> Error {
    Error::Internal("embedded store: a journaled call answered out of kind".into())
}

#[async_trait]
impl CapacityStore for FileStore {
    async fn claim(&self, req: ClaimRequest) -> Result<Claim> {
        match self
            .run(Op::Claim {
                context: req.context,
                candidates: req.candidates,
                now: ms(req.now),
            })
            .await?
        {
            Outcome2::Claim(c) => Ok(c),
            _ => Err(unexpected()),
        }
    }

    /// One journal transaction (one fsync) for the whole batch.
    async fn claim_many(&self, reqs: Vec<ClaimRequest>) -> Vec<Result<Claim>> {
        let ops: Vec<Op> = reqs
            .into_iter()
            .map(|r| Op::Claim {
                context: r.context,
                candidates: r.candidates,
                now: ms(r.now),
            })
            .collect();
        let n = ops.len();
        let guard = match self.journal(&ops).await {
            Ok(g) => g,
            Err(e) => return vec![Err(e); n],
        };
        let mut out = Vec::with_capacity(n);
        for op in ops {
            out.push(match apply(&self.mem, op).await {
                Ok(Outcome2::Claim(c)) => Ok(c),
                Ok(_) => Err(unexpected()),
                Err(e) => Err(e),
            });
        }
        drop(guard);
        out
    }

    async fn lookup(&self, lead_id: &str) -> Result<Option<LeadState>> {
        self.mem.lookup(lead_id).await
    }

    async fn context(&self, lead_id: &str) -> Result<Option<LeadContext>> {
        self.mem.context(lead_id).await
    }

    async fn close(&self, lead_id: &str, outcome: Outcome, now: Timestamp) -> Result<Closed> {
        let op = Op::Close {
            lead: lead_id.into(),
            outcome,
            now: ms(now),
        };
        match self.run(op).await? {
            Outcome2::Closed(c) => Ok(c),
            _ => Err(unexpected()),
        }
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
            candidates,
            now: ms(now),
        };
        match self.run(op).await? {
            Outcome2::Reassigned(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    async fn drain(&self, pool: &str, now: Timestamp) -> Result<Vec<Assignment>> {
        let op = Op::Drain {
            pool: pool.into(),
            now: ms(now),
        };
        match self.run(op).await? {
            Outcome2::Drained(d) => Ok(d),
            _ => Err(unexpected()),
        }
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
        match self.run(op).await? {
            Outcome2::Assignment(a) => Ok(a),
            _ => Err(unexpected()),
        }
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
        match self.run(op).await? {
            Outcome2::Released(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    async fn contacted(&self, lead_id: &str, rep_id: &str, now: Timestamp) -> Result<Assignment> {
        let op = Op::Contacted {
            lead: lead_id.into(),
            rep: rep_id.into(),
            now: ms(now),
        };
        match self.run(op).await? {
            Outcome2::Assignment(a) => Ok(a),
            _ => Err(unexpected()),
        }
    }

    async fn breach(&self, lead_id: &str, now: Timestamp) -> Result<Option<Assignment>> {
        let op = Op::Breach {
            lead: lead_id.into(),
            now: ms(now),
        };
        match self.run(op).await? {
            Outcome2::Maybe(a) => Ok(a),
            _ => Err(unexpected()),
        }
    }

    async fn expire_queued(&self, lead_id: &str, now: Timestamp) -> Result<Option<Assignment>> {
        let op = Op::ExpireQueued {
            lead: lead_id.into(),
            now: ms(now),
        };
        match self.run(op).await? {
            Outcome2::Maybe(a) => Ok(a),
            _ => Err(unexpected()),
        }
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
        match self.run(Op::UpsertRep { rep, now: ms(now) }).await? {
            Outcome2::Rep(r) => Ok(r),
            _ => Err(unexpected()),
        }
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
        self.run(Op::DeleteRep { rep: rep_id.into() }).await?;
        Ok(())
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
        match self.run(op).await? {
            Outcome2::Rep(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }
}
