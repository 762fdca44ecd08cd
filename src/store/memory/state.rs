//! The memory store's state behind its one mutex: reps with live counters, leads, per-pool
//! queues, and the atomic steps (book, enqueue, drain one lead, make room) the store runs.
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::domain::assignment::{Assignment, AssignmentState, Outcome, OutcomeRecord};
use crate::domain::event::{Event, EventKind, Retention};
use crate::domain::packed::{PackedContext, View};
use crate::domain::rep::{Periods, Rep, ZoneCache};
use crate::domain::routing::{self, Candidate, CandidateRecord, LiveState};
use crate::error::{Error, Result};
use crate::store::{RepStatus, millis};

use super::ledger::{Ledger, Move};
use super::log::EventLog;
use super::queue::PoolQueue;

#[derive(Serialize, Deserialize)]
pub(super) struct RepEntry {
    pub(super) rep: Rep,
    pub(super) load: u32,
    /// The period each count belongs to (`rep::PERIODS` order).
    pub(super) periods: Periods,
    pub(super) counts: [u32; 4],
    pub(super) last_assigned_ms: Option<i64>,
    pub(super) breaches: u32,
}

impl RepEntry {
    pub(super) fn live(&self, periods: &Periods) -> LiveState {
        LiveState::in_periods(
            self.load,
            &self.periods,
            self.counts,
            self.last_assigned_ms,
            periods,
        )
    }

    pub(super) fn status(&self, now: Timestamp) -> RepStatus {
        let mut s = RepStatus::new(self.rep.clone(), self.live(&self.rep.periods(now)), now);
        s.sla_breaches = self.breaches;
        s
    }

    /// Whether the rep could take a lead now: active, on shift, not on leave, below its
    /// (ramped) capacity and every quota. Skills are the caller's business.
    pub(super) fn has_room(&self, now: Timestamp, zones: &mut ZoneCache) -> bool {
        let at = self.rep.availability(now, zones);
        if !self.rep.active || at.on_leave || !at.on_shift {
            return false;
        }
        let live = self.live(&at.periods);
        live.load < routing::ramped(self.rep.capacity, at.ramp_permille)
            && self
                .rep
                .quotas()
                .iter()
                .zip(live.counts)
                .all(|(q, c)| q.is_none_or(|q| c < q))
    }
}

/// Offers made since the slate was last clean, and the reps whose offer ended with how.
pub(super) type OfferTrail = (u32, Vec<(String, String)>);

/// Queue order: highest probability first, then first come first served.
pub(super) type QueueKey = (Reverse<u64>, u64, String);

/// A stored lead. Contexts are packed (issue 16: ~2 KiB as maps of Strings, ~300 B packed);
/// code under the lock reads their fixed fields through `view()` without unpacking.
#[derive(Serialize, Deserialize)]
pub(super) enum LeadEntry {
    /// Boxed: the map's slots are sized by the larger variant, and most leads are queued.
    Assigned(Box<Assignment>, PackedContext),
    Queued(QueueKey, PackedContext),
}

/// An [`OutcomeRecord`] with its context packed; serialized with the same fields.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct KeptOutcome {
    pub(super) context: PackedContext,
    pub(super) rep_id: String,
    pub(super) outcome: Outcome,
    pub(super) closed_at_ms: i64,
    #[serde(default)]
    pub(super) assigned_at_ms: Option<i64>,
    #[serde(default)]
    pub(super) contacted_at_ms: Option<i64>,
    #[serde(default)]
    pub(super) value: Option<f64>,
}

impl KeptOutcome {
    pub(super) fn record(&self) -> OutcomeRecord {
        OutcomeRecord {
            context: self.context.unpack(),
            rep_id: self.rep_id.clone(),
            outcome: self.outcome,
            closed_at_ms: self.closed_at_ms,
            assigned_at_ms: self.assigned_at_ms,
            contacted_at_ms: self.contacted_at_ms,
            value: self.value,
        }
    }
}

/// Everything the store holds. It serializes whole (the file store's snapshot); the reps
/// snapshot is a cache and retention comes from config, so neither is kept.
#[derive(Default, Serialize, Deserialize)]
pub(super) struct State {
    pub(super) reps: BTreeMap<String, RepEntry>,
    #[serde(skip)]
    pub(super) snapshot: Option<Arc<[Rep]>>,
    pub(super) leads: HashMap<String, LeadEntry>,
    /// Per pool, sorted ascending (best first), with a cheap rank: every Queued answer
    /// carries the lead's place.
    pub(super) queues: HashMap<String, PoolQueue<QueueKey>>,
    pub(super) outcomes: VecDeque<KeptOutcome>,
    /// Closed leads, oldest first: the ones forgotten when the store is full.
    pub(super) closed: VecDeque<String>,
    pub(super) seq: u64,
    /// Per lead in offer mode: offers made since the slate was last clean, and the reps whose
    /// offer ended (rep, "declined" | "expired"), who are not offered it again.
    pub(super) offers: HashMap<String, OfferTrail>,
    /// Per pool: (deadline ms, lead id) of offers and SLA clocks.
    pub(super) due: HashMap<String, BTreeSet<(i64, String)>>,
    /// Held leads: (pool, rep, lead).
    pub(super) held: BTreeSet<(String, String, String)>,
    pub(super) events: HashMap<String, EventLog>,
    /// When each queued lead joined the queue (ms).
    pub(super) queued_at: HashMap<String, i64>,
    /// Per pool: (queued at + queue_ttl_ms, lead id) of leads queued with a TTL; entries for
    /// leads no longer queued are dropped when they come due.
    pub(super) queue_due: HashMap<String, BTreeSet<(i64, String)>>,
    #[serde(skip)]
    pub(super) retention: Retention,
    /// `heap_bytes` of every stored lead's packed context and every kept outcome's.
    pub(super) bytes: usize,
    /// Report counters and targets.
    #[serde(default)]
    pub(super) ledger: Ledger,
}

pub(super) fn queue_key(probability: f64, seq: u64, lead_id: &str) -> QueueKey {
    // Probabilities are in [0, 1], where the bit pattern orders like the number.
    (
        Reverse(probability.max(0.0).to_bits()),
        seq,
        lead_id.to_string(),
    )
}

impl State {
    /// Candidates refreshed from the current directory (a rep may have changed since ranking).
    pub(super) fn live_candidates(
        &self,
        candidates: Vec<Candidate>,
    ) -> (Vec<Candidate>, Vec<LiveState>) {
        let mut cs = Vec::with_capacity(candidates.len());
        let mut live = Vec::with_capacity(candidates.len());
        for mut c in candidates {
            if let Some(e) = self.reps.get(&c.rep_id) {
                c.capacity = routing::ramped(e.rep.capacity, c.ramp_permille);
                c.quotas = e.rep.quotas();
                live.push(e.live(&c.periods));
                cs.push(c);
            }
        }
        (cs, live)
    }

    /// Chooses and books a rep (an offer when `offer` and the lead's terms say so), indexing
    /// the held lead and its deadline; None when nobody has room.
    pub(super) fn book(
        &mut self,
        context: View<'_>,
        candidates: Vec<Candidate>,
        now: Timestamp,
        offer: bool,
    ) -> (Option<Assignment>, Vec<CandidateRecord>) {
        let (cs, live) = self.live_candidates(candidates);
        let (winner, records) = routing::choose(&cs, &live);
        let Some(w) = winner else {
            return (None, records);
        };
        let c = &cs[w];
        let Some(e) = self.reps.get_mut(&c.rep_id) else {
            return (None, records);
        };
        for k in 0..4 {
            if e.periods[k] != c.periods[k] {
                e.periods[k] = c.periods[k];
                e.counts[k] = 0;
            }
            e.counts[k] += 1;
        }
        e.load += 1;
        e.last_assigned_ms = Some(millis(now));
        let terms = context.terms;
        let offered = offer && terms.offer_ms > 0;
        let at = millis(now);
        let a = Assignment {
            lead_id: context.id.to_string(),
            rep_id: c.rep_id.clone(),
            pool: context.pool.to_string(),
            state: if offered {
                AssignmentState::Offered
            } else {
                AssignmentState::Open
            },
            probability: context.probability,
            segment: context.segment.to_string(),
            assigned_at_ms: at,
            deadline_ms: if offered {
                Some(at + terms.offer_ms)
            } else {
                (terms.sla_ms > 0).then(|| at + terms.sla_ms)
            },
            ..Assignment::default()
        };
        if offered {
            self.offers.entry(a.lead_id.clone()).or_default().0 += 1;
        }
        self.hold(&a);
        (Some(a), records)
    }

    pub(super) fn enqueue(
        &mut self,
        ctx: View<'_>,
        skills: &[String],
        key: QueueKey,
        at_ms: i64,
    ) -> u32 {
        self.queued_at.insert(ctx.id.to_string(), at_ms);
        if ctx.terms.queue_ttl_ms > 0 {
            self.queue_due
                .entry(ctx.pool.to_string())
                .or_default()
                .insert((at_ms + ctx.terms.queue_ttl_ms, ctx.id.to_string()));
        }
        let q = self.queues.entry(ctx.pool.to_string()).or_default();
        u32::try_from(q.insert(key, skills)).unwrap_or(u32::MAX - 1) + 1
    }

    /// 1-based place of `key` in its pool's queue (0 if absent).
    pub(super) fn position(&self, key: &QueueKey, pool: &str) -> u32 {
        self.queues
            .get(pool)
            .and_then(|q| q.position(key))
            .map_or(0, |i| u32::try_from(i).unwrap_or(u32::MAX - 1) + 1)
    }

    /// Drops `lead_id`'s queue-TTL entries due at or before `at_ms`.
    pub(super) fn forget_queue_due(&mut self, lead_id: &str, at_ms: i64) {
        // A lead the store still holds has one pool; only a forgotten one needs the walk.
        let pool = match self.leads.get(lead_id) {
            Some(LeadEntry::Assigned(_, ctx) | LeadEntry::Queued(_, ctx)) => {
                Some(ctx.view().pool.to_string())
            }
            None => None,
        };
        for (_, set) in self
            .queue_due
            .iter_mut()
            .filter(|(p, _)| pool.as_ref().is_none_or(|want| *p == want))
        {
            let gone: Vec<(i64, String)> = set
                .iter()
                .take_while(|(d, _)| *d <= at_ms)
                .filter(|(_, l)| l == lead_id)
                .cloned()
                .collect();
            for g in gone {
                set.remove(&g);
            }
        }
    }

    pub(super) fn dequeue(&mut self, ctx: &PackedContext, key: &QueueKey) {
        let v = ctx.view();
        self.queued_at.remove(v.id);
        if let Some(q) = self.queues.get_mut(v.pool) {
            q.remove(key, &ctx.required_skills());
        }
    }

    pub(super) fn release(&mut self, rep_id: &str) {
        if let Some(e) = self.reps.get_mut(rep_id) {
            e.load = e.load.saturating_sub(1);
        }
    }

    /// Assigns the best queued lead of `pool` that some rep with room can take, if any.
    /// Looks at one lead per required-skill group: a group whose best lead found no room, or
    /// whose skills no rep with room has, is added to `blocked` and skipped for the rest of
    /// this drain (room only shrinks while a drain runs).
    pub(super) fn drain_step(
        &mut self,
        pool: &str,
        now: Timestamp,
        blocked: &mut HashSet<Vec<String>>,
    ) -> Option<Assignment> {
        let reps = self.snapshot();
        let mut zones = ZoneCache::default();
        let free: Vec<&Rep> = self
            .reps
            .values()
            .filter(|e| e.rep.pool == pool && e.has_room(now, &mut zones))
            .map(|e| &e.rep)
            .collect();
        if free.is_empty() {
            return None;
        }
        let q = self.queues.get(pool)?;
        for (group, _) in q.heads() {
            if !free.iter().any(|r| group.iter().all(|s| r.skill(s) > 0.0)) {
                blocked.insert(group.to_vec());
            }
        }
        loop {
            let q = self.queues.get(pool)?;
            let (key, group) = q
                .heads()
                .filter(|(g, _)| !blocked.contains(*g))
                .min_by(|a, b| a.1.cmp(b.1))
                .map(|(g, k)| (k.clone(), g.to_vec()))?;
            let Some(LeadEntry::Queued(_, ctx)) = self.leads.get(&key.2) else {
                // Not a queued lead any more: a stale key (cannot happen; never loop on it).
                if let Some(q) = self.queues.get_mut(pool) {
                    q.remove(&key, &group);
                }
                continue;
            };
            let ctx = ctx.clone();
            let needs = ctx.head().needs;
            let ranking = routing::rank_after_offers(&reps, &needs, now, &self.excluded(&key.2));
            if let (Some(a), _) = self.book(ctx.view(), ranking.candidates, now, true) {
                let since = self
                    .queued_at
                    .get(&key.2)
                    .copied()
                    .unwrap_or(a.assigned_at_ms);
                self.dequeue(&ctx, &key);
                self.emit(&a, booked_kind(&a), &a.rep_id, "a rep had room", now);
                let kind = booked_kind(&a);
                self.ledger.record(
                    kind,
                    ctx.view(),
                    Some(&a),
                    &a.rep_id,
                    None,
                    Move::from("", since),
                    a.assigned_at_ms,
                );
                self.leads.insert(
                    a.lead_id.clone(),
                    LeadEntry::Assigned(Box::new(a.clone()), ctx),
                );
                return Some(a);
            }
            blocked.insert(group);
        }
    }

    pub(super) fn snapshot(&mut self) -> Arc<[Rep]> {
        if let Some(s) = &self.snapshot {
            return s.clone();
        }
        let s: Arc<[Rep]> = self.reps.values().map(|e| e.rep.clone()).collect();
        self.snapshot = Some(s.clone());
        s
    }

    /// Makes room for one more lead of `incoming` bytes: at a limit, forgets the oldest closed
    /// lead (its replay protection ends there), then the oldest kept outcomes; with neither
    /// left, refuses and names the limit.
    pub(super) fn make_room(
        &mut self,
        max_leads: usize,
        max_bytes: usize,
        incoming: usize,
    ) -> Result<()> {
        loop {
            let over_count = self.leads.len() >= max_leads;
            let over_bytes = self.bytes + incoming > max_bytes;
            if !over_count && !over_bytes {
                return Ok(());
            }
            if let Some(id) = self.closed.pop_front() {
                if matches!(self.leads.get(&id), Some(LeadEntry::Assigned(a, _)) if a.is_closed())
                    && let Some(LeadEntry::Assigned(_, ctx)) = self.leads.remove(&id)
                {
                    self.bytes = self.bytes.saturating_sub(ctx.heap_bytes());
                    self.offers.remove(&id);
                }
                continue;
            }
            if over_bytes && !self.outcomes.is_empty() {
                self.forget_oldest_outcome();
                continue;
            }
            let limit = if over_count {
                "store.memory_max_leads"
            } else {
                "store.memory_max_bytes"
            };
            return Err(Error::ResourceExhausted(format!(
                "the memory store holds {} open or queued leads ({} MiB), its limit ({limit}); \
                 close some, or use Redis",
                self.leads.len(),
                self.bytes >> 20
            )));
        }
    }

    pub(super) fn forget_oldest_outcome(&mut self) {
        if let Some(o) = self.outcomes.pop_front() {
            self.bytes = self.bytes.saturating_sub(o.context.heap_bytes());
        }
    }

    pub(super) fn open_count(&self, pool: &str, rep_id: &str) -> usize {
        self.held_by(pool, rep_id).count()
    }

    /// Lead ids `rep_id` holds, in id order.
    pub(super) fn held_by<'a>(
        &'a self,
        pool: &str,
        rep_id: &str,
    ) -> impl Iterator<Item = &'a String> + 'a {
        let from = (pool.to_string(), rep_id.to_string(), String::new());
        let (pool, rep) = (pool.to_string(), rep_id.to_string());
        self.held
            .range(from..)
            .take_while(move |(p, r, _)| *p == pool && *r == rep)
            .map(|(_, _, l)| l)
    }

    /// Indexes a held lead and its deadline.
    pub(super) fn hold(&mut self, a: &Assignment) {
        self.held
            .insert((a.pool.clone(), a.rep_id.clone(), a.lead_id.clone()));
        if let Some(d) = a.deadline_ms {
            self.due
                .entry(a.pool.clone())
                .or_default()
                .insert((d, a.lead_id.clone()));
        }
    }

    /// Drops a lead from the held and deadline indexes.
    pub(super) fn unhold(&mut self, a: &Assignment) {
        self.held
            .remove(&(a.pool.clone(), a.rep_id.clone(), a.lead_id.clone()));
        self.undue(a);
    }

    pub(super) fn undue(&mut self, a: &Assignment) {
        if let (Some(d), Some(set)) = (a.deadline_ms, self.due.get_mut(&a.pool)) {
            set.remove(&(d, a.lead_id.clone()));
        }
    }

    /// Appends an event about `a` (assigned, offered or closed) to its pool's log.
    pub(super) fn emit(
        &mut self,
        a: &Assignment,
        kind: EventKind,
        rep_id: &str,
        reason: &str,
        now: Timestamp,
    ) {
        let e = Event {
            cursor: 0,
            pool: a.pool.clone(),
            kind,
            lead_id: a.lead_id.clone(),
            rep_id: rep_id.to_string(),
            assignment: Some(a.clone()),
            reason: reason.to_string(),
            at_ms: millis(now),
        };
        self.push_event(e);
    }

    pub(super) fn push_event(&mut self, e: Event) {
        let retention = self.retention;
        self.events
            .entry(e.pool.clone())
            .or_default()
            .push(e, retention);
    }

    /// Reps whose offer of `lead_id` ended since the slate was last clean.
    pub(super) fn excluded(&self, lead_id: &str) -> Vec<String> {
        self.offers
            .get(lead_id)
            .map(|(_, ended)| ended.iter().map(|(r, _)| r.clone()).collect())
            .unwrap_or_default()
    }
}

/// ASSIGNED or OFFERED, by what a booking made.
pub(super) fn booked_kind(a: &Assignment) -> EventKind {
    if a.state == AssignmentState::Offered {
        EventKind::Offered
    } else {
        EventKind::Assigned
    }
}
