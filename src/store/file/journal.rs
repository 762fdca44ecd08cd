//! The journal's rows: one state-changing store call each, its encoding, and how a row is
//! applied to the memory store (live and on replay).
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::domain::assignment::{Assignment, HistoryLead, Imported, LeadContext, Outcome};
use crate::domain::rep::{Periods, Rep};
use crate::domain::routing::Candidate;
use crate::domain::target::Target;
use crate::error::{Error, Result};
use crate::store::ledger::ReportLedger;
use crate::store::memory::MemoryStore;
use crate::store::{
    CapacityStore, Claim, ClaimRequest, Closed, Reassigned, Release, Released, RepDirectory,
    RepStatus,
};

/// One state-changing call, as journaled.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Op {
    Claim {
        context: LeadContext,
        candidates: Vec<Cand>,
        now: i64,
    },
    Close {
        lead: String,
        outcome: Outcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<f64>,
        now: i64,
    },
    Reassign {
        lead: String,
        from: String,
        candidates: Vec<Cand>,
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
    Import {
        leads: Vec<HistoryLead>,
    },
    Unroutable {
        pool: String,
        segment: String,
        now: i64,
    },
    /// A target as its key and value.
    SetTarget {
        key: String,
        value: f64,
    },
}

/// A ranked candidate as journaled (a tuple, ~40 bytes of JSON instead of ~130): only what
/// the state cannot re-derive. Capacity and quotas are refreshed from the rep at claim time
/// (`State::live_candidates`), so they are not kept.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Cand(String, f64, Periods, u32);

pub(super) fn cands(cs: Vec<Candidate>) -> Vec<Cand> {
    cs.into_iter()
        .map(|c| Cand(c.rep_id, c.match_score, c.periods, c.ramp_permille))
        .collect()
}

pub(super) fn uncands(cs: Vec<Cand>) -> Vec<Candidate> {
    cs.into_iter()
        .map(
            |Cand(rep_id, match_score, periods, ramp_permille)| Candidate {
                rep_id,
                match_score,
                capacity: 0,
                quotas: [None; 4],
                periods,
                ramp_permille,
            },
        )
        .collect()
}

/// Rows and snapshots are zlib-compressed JSON (fast level): a claim row of 50 candidates
/// shrinks ~5x, so several share a page. Plain JSON (first byte `{`) still reads.
pub(super) fn pack(json: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(json)
        .and_then(|()| z.finish())
        .map_err(|e| Error::Internal(format!("embedded store: compress: {e}")))
}

pub(super) fn unpack(bytes: &[u8]) -> std::io::Result<std::borrow::Cow<'_, [u8]>> {
    use std::io::Read;
    if bytes.first() != Some(&0x78) {
        return Ok(bytes.into());
    }
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(bytes).read_to_end(&mut out)?;
    Ok(out.into())
}

pub(super) fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

pub(super) fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

/// What a journaled call answered.
pub(super) enum Answer {
    Claim(Claim),
    Closed(Closed),
    Reassigned(Reassigned),
    Drained(Vec<Assignment>),
    Assignment(Assignment),
    Released(Released),
    Maybe(Option<Assignment>),
    Rep((RepStatus, Vec<Assignment>)),
    Imported(Imported),
    Unit(()),
}

pub(super) async fn apply(mem: &MemoryStore, op: Op) -> Result<Answer> {
    Ok(match op {
        Op::Claim {
            context,
            candidates,
            now,
        } => Answer::Claim(
            mem.claim(ClaimRequest {
                context,
                candidates: uncands(candidates),
                now: ts(now),
            })
            .await?,
        ),
        Op::Close {
            lead,
            outcome,
            value,
            now,
        } => Answer::Closed(mem.close_valued(&lead, outcome, value, ts(now)).await?),
        Op::Reassign {
            lead,
            from,
            candidates,
            now,
        } => Answer::Reassigned(
            mem.reassign(&lead, &from, uncands(candidates), ts(now))
                .await?,
        ),
        Op::Drain { pool, now } => Answer::Drained(mem.drain(&pool, ts(now)).await?),
        Op::Accept { lead, rep, now } => {
            Answer::Assignment(mem.accept(&lead, &rep, ts(now)).await?)
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
            Answer::Released(mem.release(&lead, &rep, why, ts(now)).await?)
        }
        Op::Contacted { lead, rep, now } => {
            Answer::Assignment(mem.contacted(&lead, &rep, ts(now)).await?)
        }
        Op::Breach { lead, now } => Answer::Maybe(mem.breach(&lead, ts(now)).await?),
        Op::ExpireQueued { lead, now } => Answer::Maybe(mem.expire_queued(&lead, ts(now)).await?),
        Op::UpsertRep { rep, now } => Answer::Rep(mem.upsert_rep(rep, ts(now)).await?),
        Op::DeleteRep { rep } => {
            mem.delete_rep(&rep).await?;
            Answer::Unit(())
        }
        Op::SetActive { rep, active, now } => {
            Answer::Rep(mem.set_active(&rep, active, ts(now)).await?)
        }
        Op::Import { leads } => Answer::Imported(mem.import_history(leads).await?),
        Op::Unroutable { pool, segment, now } => {
            mem.note_unroutable(&pool, &segment, ts(now)).await?;
            Answer::Unit(())
        }
        Op::SetTarget { key, value } => {
            let target = Target::from_key(&key, value)
                .ok_or_else(|| Error::Internal(format!("journal: bad target key {key:?}")))?;
            mem.set_target(target).await?;
            Answer::Unit(())
        }
    })
}

pub(super) fn unexpected() -> Error {
    Error::Internal("embedded store: a journaled call answered out of kind".into())
}
