//! The embedded store: all routing state behind one mutex, so every operation is atomic.
use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use jiff::Timestamp;

use crate::domain::assignment::{
    Assignment, AssignmentState, LeadContext, LeadState, Outcome, OutcomeRecord,
};
use crate::domain::event::{EventKind, EventPage, Retention};
use crate::domain::packed::{PackedContext, View};
use crate::domain::rep::Rep;
use crate::domain::routing::Candidate;
use crate::error::{Error, Result};
use crate::store::{
    CapacityStore, Claim, ClaimRequest, Closed, Due, ListPage, ListQuery, Reassigned, Release,
    Released, RepDirectory, RepStatus, millis,
};

mod ledger;
mod log;
mod offers;
mod persist;
mod queue;
mod report;
mod state;
use ledger::Move;
use state::{KeptOutcome, LeadEntry, RepEntry, State, booked_kind, queue_key};

pub struct MemoryStore {
    state: Mutex<State>,
    /// Leads held at most; see `config::StoreSettings::memory_max_leads`.
    max_leads: usize,
    /// Bytes of lead contexts (leads and kept outcomes) at most: `store.memory_max_bytes`.
    max_bytes: usize,
    /// Ticks after each write, for watchers.
    changes: tokio::sync::watch::Sender<u64>,
    /// The live model of this process (see `persist.rs`).
    registry: crate::store::registry::LocalRegistry,
}

/// The limits when none is configured (as in `defaults.toml`).
pub const DEFAULT_MAX_LEADS: usize = 200_000;
pub const DEFAULT_MAX_BYTES: usize = 512 << 20;

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::with_max_leads(DEFAULT_MAX_LEADS)
    }
}

impl MemoryStore {
    pub fn with_max_leads(max_leads: usize) -> MemoryStore {
        MemoryStore::with_limits(max_leads, DEFAULT_MAX_BYTES)
    }

    pub fn with_limits(max_leads: usize, max_bytes: usize) -> MemoryStore {
        MemoryStore {
            state: Mutex::default(),
            max_leads: max_leads.max(1),
            max_bytes: max_bytes.max(1),
            changes: tokio::sync::watch::Sender::new(0),
            registry: Default::default(),
        }
    }

    /// Counts report days in `zone`.
    pub fn report_zone(self, zone: jiff::tz::TimeZone) -> MemoryStore {
        self.lock().ledger.zone = Some(zone);
        self
    }

    /// Keeps events per pool as `retention` says.
    pub fn retain(self, retention: Retention) -> MemoryStore {
        self.lock().retention = retention;
        self
    }

    /// The common end of every close, under the lock: frees the rep, records the outcome and
    /// the CLOSED event, and keeps the lead as closed.
    #[allow(clippy::too_many_arguments)]
    fn seal(
        &self,
        s: &mut State,
        assignment: Assignment,
        ctx: PackedContext,
        outcome: Outcome,
        value: Option<f64>,
        held_since: i64,
        now: Timestamp,
    ) -> Assignment {
        let lead_id = assignment.lead_id.clone();
        if !assignment.rep_id.is_empty() {
            s.unhold(&assignment);
            if !assignment.imported {
                s.release(&assignment.rep_id);
            }
        }
        let mv = Move {
            value,
            ..Move::from(&assignment.rep_id, held_since)
        };
        s.ledger.record(
            EventKind::Closed,
            ctx.view(),
            None,
            &assignment.rep_id,
            Some(outcome.as_str()),
            mv,
            millis(now),
        );
        s.offers.remove(&lead_id);
        let mut closed = assignment;
        closed.state = AssignmentState::Closed(outcome);
        closed.closed_at_ms = Some(millis(now));
        closed.deadline_ms = None;
        let rep = closed.rep_id.clone();
        s.emit(&closed, EventKind::Closed, &rep, outcome.as_str(), now);
        // Imported history is report data, not a training row: its columns are the CRM's.
        if !closed.imported {
            s.bytes += ctx.heap_bytes();
            s.outcomes.push_back(KeptOutcome {
                context: ctx.clone(),
                rep_id: closed.rep_id.clone(),
                outcome,
                closed_at_ms: millis(now),
                assigned_at_ms: (!closed.rep_id.is_empty()).then_some(held_since),
                contacted_at_ms: closed.contacted_at_ms,
                value,
            });
            if s.outcomes.len() > self.max_leads {
                s.forget_oldest_outcome();
            }
        }
        s.closed.push_back(lead_id.clone());
        s.leads
            .insert(lead_id, LeadEntry::Assigned(Box::new(closed.clone()), ctx));
        closed
    }

    fn tick(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Drains `pool` one lead per lock: other calls interleave with a long drain instead of
    /// waiting for all of it.
    fn drain_pool(&self, pool: &str, now: Timestamp) -> Vec<Assignment> {
        let mut blocked = HashSet::new();
        let mut drained = Vec::new();
        while let Some(a) = self.lock().drain_step(pool, now, &mut blocked) {
            drained.push(a);
        }
        self.tick();
        drained
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave half an operation behind (each operation
        // mutates only after its checks), so a poisoned lock is safe to reuse.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl CapacityStore for MemoryStore {
    async fn claim(&self, req: ClaimRequest) -> Result<Claim> {
        let mut s = self.lock();
        let id = req.context.lead.id.clone();
        match s.leads.get(&id) {
            Some(LeadEntry::Assigned(a, _)) => {
                return Ok(Claim::Assigned {
                    assignment: (**a).clone(),
                    records: vec![],
                    replayed: true,
                });
            }
            Some(LeadEntry::Queued(key, ctx)) => {
                return Ok(Claim::Queued {
                    position: s.position(key, ctx.view().pool),
                    records: vec![],
                    replayed: true,
                });
            }
            None => {}
        }
        let packed = PackedContext::pack(&req.context);
        let bytes = packed.heap_bytes();
        s.make_room(self.max_leads, self.max_bytes, bytes)?;
        s.bytes += bytes;
        let view = View::of(&req.context);
        let (assigned, records) = s.book(view, req.candidates, req.now, true);
        let claim = match assigned {
            Some(a) => {
                s.emit(&a, booked_kind(&a), &a.rep_id, "", req.now);
                let kind = booked_kind(&a);
                let at = millis(req.now);
                s.ledger
                    .record(kind, view, Some(&a), &a.rep_id, None, Move::new_lead(), at);
                s.leads
                    .insert(id, LeadEntry::Assigned(Box::new(a.clone()), packed));
                Claim::Assigned {
                    assignment: a,
                    records,
                    replayed: false,
                }
            }
            None => {
                s.seq += 1;
                let key = queue_key(view.probability, s.seq, &id);
                let skills = &req.context.needs.required_skills;
                let position = s.enqueue(view, skills, key.clone(), millis(req.now));
                s.push_event(queued_event(view, req.now));
                let at = millis(req.now);
                let kind = EventKind::Queued;
                s.ledger
                    .record(kind, view, None, "", None, Move::new_lead(), at);
                s.leads.insert(id, LeadEntry::Queued(key, packed));
                Claim::Queued {
                    position,
                    records,
                    replayed: false,
                }
            }
        };
        drop(s);
        self.tick();
        Ok(claim)
    }

    async fn lookup(&self, lead_id: &str) -> Result<Option<LeadState>> {
        let s = self.lock();
        Ok(s.leads.get(lead_id).map(|e| match e {
            LeadEntry::Assigned(a, _) => LeadState::Assigned((**a).clone()),
            LeadEntry::Queued(key, ctx) => {
                let v = ctx.view();
                LeadState::Queued {
                    pool: v.pool.to_string(),
                    probability: v.probability,
                    position: s.position(key, v.pool),
                }
            }
        }))
    }

    async fn context(&self, lead_id: &str) -> Result<Option<LeadContext>> {
        Ok(self.lock().leads.get(lead_id).map(|e| match e {
            LeadEntry::Assigned(_, c) | LeadEntry::Queued(_, c) => c.unpack(),
        }))
    }

    async fn close_valued(
        &self,
        lead_id: &str,
        outcome: Outcome,
        value: Option<f64>,
        now: Timestamp,
    ) -> Result<Closed> {
        let mut s = self.lock();
        let assignment = match s.leads.get(lead_id) {
            None => return Err(Error::not_found("lead", lead_id)),
            Some(LeadEntry::Assigned(a, ctx)) => match a.state {
                AssignmentState::Closed(o) if o == outcome => {
                    return Ok(Closed {
                        assignment: (**a).clone(),
                        drained: vec![],
                    });
                }
                AssignmentState::Closed(o) => {
                    return Err(Error::FailedPrecondition(format!(
                        "lead {lead_id:?} is already closed as {}",
                        o.as_str()
                    )));
                }
                AssignmentState::Open | AssignmentState::Offered => {
                    ((**a).clone(), ctx.clone(), a.assigned_at_ms)
                }
            },
            Some(LeadEntry::Queued(key, ctx)) => {
                let (key, ctx) = (key.clone(), ctx.clone());
                let since = s.queued_at.get(lead_id).copied().unwrap_or(millis(now));
                s.dequeue(&ctx, &key);
                let a = queued_assignment(ctx.view(), millis(now));
                (a, ctx, since)
            }
        };
        let (assignment, ctx, since) = (assignment.0, assignment.1, assignment.2);
        let closed = self.seal(&mut s, assignment, ctx, outcome, value, since, now);
        drop(s);
        let drained = self.drain_pool(&closed.pool, now);
        Ok(Closed {
            assignment: closed,
            drained,
        })
    }

    async fn reassign(
        &self,
        lead_id: &str,
        from_rep: &str,
        candidates: Vec<Candidate>,
        now: Timestamp,
    ) -> Result<Reassigned> {
        let mut s = self.lock();
        let (previous, ctx) = match s.leads.get(lead_id) {
            Some(LeadEntry::Assigned(a, ctx)) if a.is_open() && a.rep_id == from_rep => {
                ((**a).clone(), ctx.clone())
            }
            Some(LeadEntry::Assigned(a, _)) if a.is_open() => {
                return Err(Error::FailedPrecondition(format!(
                    "lead {lead_id:?} moved to {:?} meanwhile; retry",
                    a.rep_id
                )));
            }
            Some(_) => {
                return Err(Error::FailedPrecondition(format!(
                    "lead {lead_id:?} has no open assignment"
                )));
            }
            None => return Err(Error::not_found("lead", lead_id)),
        };
        // Unindexed first: the new booking may index the same lead and deadline.
        s.unhold(&previous);
        let (assigned, records) = s.book(ctx.view(), candidates, now, false);
        let Some(mut assignment) = assigned else {
            s.hold(&previous);
            return Err(Error::FailedPrecondition(format!(
                "no other rep can take lead {lead_id:?} now; it stays with {from_rep:?}"
            )));
        };
        s.release(from_rep);
        assignment.sla_breached = previous.sla_breached;
        s.emit(&assignment, EventKind::Reassigned, from_rep, "", now);
        let mv = Move::from(from_rep, previous.assigned_at_ms);
        let kind = EventKind::Reassigned;
        s.ledger.record(
            kind,
            ctx.view(),
            Some(&assignment),
            from_rep,
            None,
            mv,
            millis(now),
        );
        s.leads.insert(
            lead_id.to_string(),
            LeadEntry::Assigned(Box::new(assignment.clone()), ctx),
        );
        drop(s);
        let drained = self.drain_pool(&previous.pool, now);
        Ok(Reassigned {
            previous,
            assignment,
            records,
            drained,
        })
    }

    async fn drain(&self, pool: &str, now: Timestamp) -> Result<Vec<Assignment>> {
        Ok(self.drain_pool(pool, now))
    }

    async fn outcomes(&self) -> Result<Vec<OutcomeRecord>> {
        Ok(self
            .lock()
            .outcomes
            .iter()
            .map(KeptOutcome::record)
            .collect())
    }

    async fn accept(&self, lead_id: &str, rep_id: &str, now: Timestamp) -> Result<Assignment> {
        let a = self.lock().accept(lead_id, rep_id, now)?;
        self.tick();
        Ok(a)
    }

    async fn release(
        &self,
        lead_id: &str,
        rep_id: &str,
        why: Release,
        now: Timestamp,
    ) -> Result<Released> {
        let pool = self.lock().end_offer(lead_id, rep_id, &why, now)?;
        Ok(Released {
            rep_id: rep_id.to_string(),
            drained: self.drain_pool(&pool, now),
        })
    }

    async fn contacted(&self, lead_id: &str, rep_id: &str, now: Timestamp) -> Result<Assignment> {
        let a = self.lock().contacted(lead_id, rep_id, now)?;
        self.tick();
        Ok(a)
    }

    async fn breach(&self, lead_id: &str, now: Timestamp) -> Result<Option<Assignment>> {
        let a = self.lock().breach(lead_id, now);
        self.tick();
        Ok(a)
    }

    async fn expire_queued(&self, lead_id: &str, now: Timestamp) -> Result<Option<Assignment>> {
        let mut s = self.lock();
        let at = millis(now);
        let Some(LeadEntry::Queued(key, ctx)) = s.leads.get(lead_id) else {
            // Not queued any more: forget its TTL entries that came due.
            s.forget_queue_due(lead_id, at);
            return Ok(None);
        };
        let (key, ctx) = (key.clone(), ctx.clone());
        let since = s.queued_at.get(lead_id).copied().unwrap_or(at);
        let ttl = ctx.view().terms.queue_ttl_ms;
        if ttl <= 0 || since + ttl > at {
            s.forget_queue_due(lead_id, at);
            return Ok(None);
        }
        s.forget_queue_due(lead_id, at);
        s.dequeue(&ctx, &key);
        let a = queued_assignment(ctx.view(), since);
        let closed = self.seal(&mut s, a, ctx, Outcome::Expired, None, since, now);
        drop(s);
        self.tick();
        Ok(Some(closed))
    }

    async fn due(&self, pool: &str, now: Timestamp, limit: usize) -> Result<Due> {
        Ok(self.lock().due(pool, now, limit))
    }

    async fn events_after(&self, pool: &str, after: u64, limit: usize) -> Result<EventPage> {
        Ok(self
            .lock()
            .events
            .get(pool)
            .map(|l| l.after(pool, after, limit))
            .unwrap_or_default())
    }

    async fn pools(&self) -> Result<Vec<String>> {
        let s = self.lock();
        let mut pools: Vec<String> = s
            .reps
            .values()
            .map(|e| e.rep.pool.clone())
            .chain(s.events.keys().cloned())
            .collect();
        pools.sort();
        pools.dedup();
        Ok(pools)
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    async fn list(&self, q: &ListQuery) -> Result<ListPage> {
        Ok(self.lock().list(q))
    }
}

/// The assignment-shaped record of a queued lead closed (or expired) at `at_ms`.
fn queued_assignment(ctx: View<'_>, at_ms: i64) -> Assignment {
    Assignment {
        lead_id: ctx.id.to_string(),
        pool: ctx.pool.to_string(),
        probability: ctx.probability,
        segment: ctx.segment.to_string(),
        assigned_at_ms: at_ms,
        ..Assignment::default()
    }
}

/// The QUEUED event of a lead that just joined its pool's queue.
fn queued_event(ctx: View<'_>, now: Timestamp) -> crate::domain::event::Event {
    crate::domain::event::Event {
        cursor: 0,
        pool: ctx.pool.to_string(),
        kind: EventKind::Queued,
        lead_id: ctx.id.to_string(),
        rep_id: String::new(),
        assignment: None,
        reason: "no rep with room".into(),
        at_ms: millis(now),
    }
}

#[async_trait]
impl RepDirectory for MemoryStore {
    async fn upsert_rep(&self, rep: Rep, now: Timestamp) -> Result<(RepStatus, Vec<Assignment>)> {
        let mut s = self.lock();
        if let Some(e) = s.reps.get(&rep.id)
            && e.rep.pool != rep.pool
            && s.open_count(&e.rep.pool, &rep.id) > 0
        {
            // Moving a rep with open leads would strand them in the old pool.
            return Err(Error::FailedPrecondition(format!(
                "rep {:?} holds open assignments; close or reassign them before changing its pool",
                rep.id
            )));
        }
        let pool = rep.pool.clone();
        match s.reps.get_mut(&rep.id) {
            Some(e) => e.rep = rep.clone(),
            None => {
                let entry = RepEntry {
                    rep: rep.clone(),
                    load: 0,
                    periods: [i32::MIN; 4],
                    counts: [0; 4],
                    last_assigned_ms: None,
                    breaches: 0,
                };
                s.reps.insert(rep.id.clone(), entry);
            }
        }
        s.snapshot = None;
        drop(s);
        let drained = self.drain_pool(&pool, now);
        let status = self
            .lock()
            .reps
            .get(&rep.id)
            .map(|e| e.status(now))
            .ok_or_else(|| Error::not_found("rep", &rep.id))?;
        Ok((status, drained))
    }

    async fn rep(&self, rep_id: &str, now: Timestamp) -> Result<Option<RepStatus>> {
        Ok(self.lock().reps.get(rep_id).map(|e| e.status(now)))
    }

    async fn reps(&self) -> Result<Arc<[Rep]>> {
        Ok(self.lock().snapshot())
    }

    async fn rep_statuses(&self, pool: Option<&str>, now: Timestamp) -> Result<Vec<RepStatus>> {
        Ok(self
            .lock()
            .reps
            .values()
            .filter(|e| pool.is_none_or(|p| e.rep.pool == p))
            .map(|e| e.status(now))
            .collect())
    }

    async fn delete_rep(&self, rep_id: &str) -> Result<()> {
        let mut s = self.lock();
        let Some(pool) = s.reps.get(rep_id).map(|e| e.rep.pool.clone()) else {
            return Err(Error::not_found("rep", rep_id));
        };
        let open = s.open_count(&pool, rep_id);
        if open > 0 {
            return Err(Error::FailedPrecondition(format!(
                "rep {rep_id:?} holds {open} open assignments; close or reassign them first"
            )));
        }
        s.reps.remove(rep_id);
        s.snapshot = None;
        Ok(())
    }

    async fn set_active(
        &self,
        rep_id: &str,
        active: bool,
        now: Timestamp,
    ) -> Result<(RepStatus, Vec<Assignment>)> {
        let mut s = self.lock();
        let e = s
            .reps
            .get_mut(rep_id)
            .ok_or_else(|| Error::not_found("rep", rep_id))?;
        e.rep.active = active;
        let pool = e.rep.pool.clone();
        s.snapshot = None;
        drop(s);
        let drained = if active {
            self.drain_pool(&pool, now)
        } else {
            vec![]
        };
        let status = self
            .lock()
            .reps
            .get(rep_id)
            .map(|e| e.status(now))
            .ok_or_else(|| Error::not_found("rep", rep_id))?;
        Ok((status, drained))
    }
}

#[cfg(test)]
mod tests;
