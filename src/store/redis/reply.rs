//! Typed decoders for the Lua scripts' replies, and the claim's candidate list encoding.
use std::collections::HashMap;

use crate::domain::assignment::{Assignment, AssignmentState, Outcome};
use crate::domain::routing::{self, Candidate, CandidateRecord};

use super::state::{self, RepState};

pub(super) fn outcome_str(o: Outcome) -> &'static str {
    o.as_str()
}

pub(super) fn parse_outcome(s: &str) -> Option<Outcome> {
    Some(match s {
        "won" => Outcome::Won,
        "lost" => Outcome::Lost,
        "disqualified" => Outcome::Disqualified,
        "returned" => Outcome::Returned,
        "expired" => Outcome::Expired,
        _ => return None,
    })
}

pub(super) fn num<T: std::str::FromStr>(s: &str) -> Option<T> {
    s.parse().ok()
}

/// What claim.lua answered: a head (kind and its values) and, for decision records, how
/// many candidates it read (a prefix of the list) and their records.
pub(super) struct ClaimReply {
    pub(super) head: Head,
    read: Read,
    listed: Listed,
}

/// The claim script's answer, typed.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Head {
    /// The lead was routed before: its record fields (see `Record`), and its place if queued.
    Replay(Record, u32),
    /// Booked `rep` at `at`: open, or offered until `deadline`; for an open lead, `deadline` is
    /// its SLA deadline.
    Assigned {
        rep: String,
        at: i64,
        offered: bool,
        deadline: Option<i64>,
    },
    Queued(u32),
    /// Nobody had room (reassign and drain modes).
    NoRoom,
    /// Drain mode: the lead is no longer queued.
    Gone,
    /// Reassign mode: the lead is no longer open with the expected rep.
    Conflict,
    Unknown(String),
}

/// A lead record's fields as the scripts return them: state, rep, prob, seg, at, cat,
/// outcome, deadline, contacted at, breached.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Record(pub(super) Vec<String>);

impl Record {
    pub(super) fn state(&self) -> &str {
        self.0.first().map_or("", String::as_str)
    }

    /// The assignment this record describes.
    pub(super) fn assignment(&self, lead_id: &str, pool: &str) -> Assignment {
        let f = |i: usize| self.0.get(i).map_or("", String::as_str);
        let mut a = assignment(lead_id, pool, &[f(0), f(1), f(2), f(3), f(4), f(5), f(6)]);
        a.deadline_ms = num(f(7));
        a.contacted_at_ms = num(f(8));
        a.sla_breached = f(9) == "1";
        a
    }
}

fn strings(values: Vec<Vec<u8>>) -> Vec<String> {
    values
        .into_iter()
        .map(|v| String::from_utf8(v).unwrap_or_default())
        .collect()
}

impl Head {
    fn decode(v: Vec<String>) -> Head {
        let at = |i: usize| v.get(i).map_or("", String::as_str);
        match at(0) {
            "replay" => {
                // replay, state, rep, prob, seg, at, cat, outcome, position, dl, ct, br
                let pos = num(at(8)).unwrap_or(0);
                let rec = [1, 2, 3, 4, 5, 6, 7, 9, 10, 11].map(|i| at(i).to_string());
                Head::Replay(Record(rec.to_vec()), pos)
            }
            "assigned" => Head::Assigned {
                rep: at(1).to_string(),
                at: num(at(2)).unwrap_or(0),
                offered: at(5) == "offered",
                deadline: num(at(6)),
            },
            "queued" => Head::Queued(num(at(1)).unwrap_or(0)),
            "noroom" => Head::NoRoom,
            "gone" => Head::Gone,
            "conflict" => Head::Conflict,
            other => Head::Unknown(other.to_string()),
        }
    }
}

/// What close.lua answered, typed.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum CloseReply {
    Missing,
    /// Already closed with this other outcome.
    Conflict(String),
    /// The closed record; `fresh` unless it was closed before with the same outcome.
    Closed {
        record: Record,
        fresh: bool,
    },
    Unknown(String),
}

impl CloseReply {
    pub(super) fn decode(v: Vec<String>) -> CloseReply {
        // ok|closed, rep, prob, seg, at, closed at, outcome, contacted at, breached
        let at = |i: usize| v.get(i).cloned().unwrap_or_default();
        let record = || {
            let mut rec = vec!["closed".to_string()];
            rec.extend((1..7).map(at));
            rec.extend([String::new(), at(7), at(8)]);
            Record(rec)
        };
        match v.first().map(String::as_str) {
            Some("missing") => CloseReply::Missing,
            Some("conflict") => CloseReply::Conflict(at(1)),
            Some("ok") => CloseReply::Closed {
                record: record(),
                fresh: true,
            },
            Some("closed") => CloseReply::Closed {
                record: record(),
                fresh: false,
            },
            other => CloseReply::Unknown(format!("{other:?}")),
        }
    }
}

/// What step.lua answered, typed.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Step {
    Missing,
    /// Not allowed: the lead's state and holder, the reps whose offer ended ("rep=how"
    /// lines), and why ("not held", "offered", "accepted").
    Refused {
        state: String,
        holder: String,
        ended: String,
        why: String,
    },
    /// A breach or expiry that is not (or no longer) due.
    Skip,
    Done(Record),
    /// The offer ended and the lead is queued again.
    Released,
}

impl Step {
    pub(super) fn decode(v: Vec<String>) -> Step {
        let at = |i: usize| v.get(i).cloned().unwrap_or_default();
        match v.first().map(String::as_str) {
            Some("missing") => Step::Missing,
            Some("refused") => Step::Refused {
                state: at(1),
                holder: at(2),
                ended: at(3),
                why: at(4),
            },
            Some("skip") => Step::Skip,
            Some("ok") => Step::Done(Record(v[1..].to_vec())),
            Some("released") => Step::Released,
            _ => Step::Missing,
        }
    }
}

/// The candidates a claim sent, in the order it sent them: (index into the ranked
/// candidates, slot, generation).
#[derive(Default)]
pub(super) struct Listed(Vec<(usize, (u32, u32))>);

/// The records a claim read: the pool's whole table, or the read candidates' records in
/// candidate order.
pub(super) enum Read {
    Table(Vec<u8>, usize),
    Records(Vec<u8>, usize),
}

impl ClaimReply {
    pub(super) fn from_values(mut values: Vec<Vec<u8>>, listed: Listed) -> ClaimReply {
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
        let head = Head::decode(strings(values));
        ClaimReply { head, read, listed }
    }

    /// Decision-record lines; `candidates` is the ranking the claim was built from.
    pub(super) fn records(&self, candidates: &[Candidate]) -> Vec<CandidateRecord> {
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
        c.capacity = stored.map_or(0, |s| routing::ramped(s.capacity, c.ramp_permille));
        c.quotas = stored.map_or([None; 4], |s| s.quotas);
        states.push(RepState::live(stored, &c.periods));
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
            detail: routing::Detail::Match {
                score: c.match_score,
                best: top,
            },
            load: 0,
            capacity: c.capacity,
        });
    }
    out
}

/// The claim script's candidate list (format in claim.lua) and what it lists. Candidates
/// the directory has no slot for yet are left out; within a match-score group (ranking order
/// is by score, so groups are runs) the list is in rep-id order, the script's last tie-break.
pub(super) fn candidate_list(
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
            for (k, digits) in [3, 2, 2, 2].into_iter().enumerate() {
                state::push_digits(&mut list, u32::try_from(c.periods[k]).unwrap_or(0), digits);
            }
            state::push_digits(&mut list, c.ramp_permille.min(1000), 2);
            list.push(u8::try_from(c.rep_id.len()).unwrap_or(u8::MAX));
            list.extend_from_slice(c.rep_id.as_bytes());
        }
        start = end;
    }
    (Listed(listed), list)
}

/// An assignment from a lead record's fields.
pub(super) fn assignment(lead_id: &str, pool: &str, f: &[&str]) -> Assignment {
    // f: state, rep, prob, seg, at, cat, outcome
    let state = match parse_outcome(f[6]) {
        Some(o) if f[0] == "closed" => AssignmentState::Closed(o),
        _ if f[0] == "offered" => AssignmentState::Offered,
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
        ..Assignment::default()
    }
}
