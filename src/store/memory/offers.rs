//! The memory store's steps after a decision: accept, decline or expire an offer, mark a lead
//! contacted, flag an SLA breach, list deadlines and leads. Each runs under the store's lock.
use jiff::Timestamp;

use crate::domain::assignment::{Assignment, AssignmentState};
use crate::domain::event::{Event, EventKind};
use crate::domain::packed::PackedContext;
use crate::error::{Error, Result};
use crate::store::{Due, DueKind, ListItem, ListPage, ListQuery, Listed, Release, millis};

use super::ledger::Move;
use super::state::{LeadEntry, State, queue_key};

impl State {
    /// The held lead and its context, or why it is not held by `rep_id` (empty: anyone).
    fn held_lead(&self, lead_id: &str, rep_id: &str) -> Result<(Assignment, PackedContext)> {
        match self.leads.get(lead_id) {
            None => Err(Error::not_found("lead", lead_id)),
            Some(LeadEntry::Queued(..)) => Err(self.not_held(lead_id, rep_id, "is queued")),
            Some(LeadEntry::Assigned(a, _)) if a.is_closed() => {
                Err(self.not_held(lead_id, rep_id, "is closed"))
            }
            Some(LeadEntry::Assigned(a, _)) if !rep_id.is_empty() && a.rep_id != rep_id => {
                Err(self.not_held(lead_id, rep_id, &format!("is with rep {:?}", a.rep_id)))
            }
            Some(LeadEntry::Assigned(a, ctx)) => Ok(((**a).clone(), ctx.clone())),
        }
    }

    fn not_held(&self, lead_id: &str, rep_id: &str, why: &str) -> Error {
        let ended = self
            .offers
            .get(lead_id)
            .and_then(|(_, e)| e.iter().rev().find(|(r, _)| r == rep_id));
        match ended {
            Some((_, how)) => Error::FailedPrecondition(format!(
                "the offer of lead {lead_id:?} to rep {rep_id:?} {how}; the lead {why}"
            )),
            None => Error::FailedPrecondition(format!("lead {lead_id:?} {why}")),
        }
    }

    fn put(&mut self, a: &Assignment, ctx: PackedContext) {
        self.leads.insert(
            a.lead_id.clone(),
            LeadEntry::Assigned(Box::new(a.clone()), ctx),
        );
    }

    pub(super) fn accept(
        &mut self,
        lead_id: &str,
        rep_id: &str,
        now: Timestamp,
    ) -> Result<Assignment> {
        let (mut a, ctx) = self.held_lead(lead_id, rep_id)?;
        if a.state == AssignmentState::Open {
            return Ok(a);
        }
        self.undue(&a);
        a.state = AssignmentState::Open;
        let at = millis(now);
        let sla_ms = ctx.view().terms.sla_ms;
        a.deadline_ms = (sla_ms > 0).then(|| at + sla_ms);
        self.hold(&a);
        self.emit(&a, EventKind::Accepted, rep_id, "", now);
        self.ledger.record(
            EventKind::Accepted,
            ctx.view(),
            Some(&a),
            rep_id,
            None,
            Move::none(),
            at,
        );
        self.put(&a, ctx);
        Ok(a)
    }

    /// Ends an offer and queues the lead again; returns its pool (to drain).
    pub(super) fn end_offer(
        &mut self,
        lead_id: &str,
        rep_id: &str,
        why: &Release,
        now: Timestamp,
    ) -> Result<String> {
        let (a, ctx) = self.held_lead(lead_id, rep_id)?;
        if a.state != AssignmentState::Offered {
            return Err(Error::FailedPrecondition(format!(
                "lead {lead_id:?} was accepted; it is no longer an offer"
            )));
        }
        let at = millis(now);
        let (kind, how, mut reason) = match why {
            Release::Declined(r) => (EventKind::Declined, "declined", r.clone()),
            Release::Expired if a.deadline_ms.is_some_and(|d| d <= at) => (
                EventKind::Expired,
                "expired",
                "no answer in time".to_string(),
            ),
            Release::Expired => {
                return Err(Error::FailedPrecondition(format!(
                    "the offer of lead {lead_id:?} has not expired"
                )));
            }
        };
        self.unhold(&a);
        self.release(&a.rep_id);
        let trail = self.offers.entry(lead_id.to_string()).or_default();
        trail.1.push((a.rep_id.clone(), how.to_string()));
        if trail.0 >= ctx.view().terms.max_offers.max(1) {
            *trail = (0, Vec::new());
            reason.push_str(if reason.is_empty() { "" } else { "; " });
            reason.push_str("max_offers reached: back in the queue with a clean slate");
        }
        let mv = Move::from(&a.rep_id, a.assigned_at_ms);
        self.ledger
            .record(kind, ctx.view(), None, &a.rep_id, None, mv, at);
        self.seq += 1;
        let key = queue_key(ctx.view().probability, self.seq, lead_id);
        self.enqueue(ctx.view(), &ctx.required_skills(), key.clone(), at);
        let pool = ctx.view().pool.to_string();
        self.leads
            .insert(lead_id.to_string(), LeadEntry::Queued(key, ctx));
        self.push_event(Event {
            cursor: 0,
            pool: pool.clone(),
            kind,
            lead_id: lead_id.to_string(),
            rep_id: a.rep_id,
            assignment: None,
            reason,
            at_ms: at,
        });
        Ok(pool)
    }

    pub(super) fn contacted(
        &mut self,
        lead_id: &str,
        rep_id: &str,
        now: Timestamp,
    ) -> Result<Assignment> {
        let (mut a, ctx) = self.held_lead(lead_id, rep_id)?;
        if a.state == AssignmentState::Offered {
            return Err(Error::FailedPrecondition(format!(
                "lead {lead_id:?} is offered to {:?}; accept it first",
                a.rep_id
            )));
        }
        if a.contacted_at_ms.is_some() {
            return Ok(a);
        }
        self.undue(&a);
        a.deadline_ms = None;
        a.contacted_at_ms = Some(millis(now));
        let rep = a.rep_id.clone();
        self.emit(&a, EventKind::Contacted, &rep, "", now);
        let at = millis(now);
        self.ledger.record(
            EventKind::Contacted,
            ctx.view(),
            Some(&a),
            &rep,
            None,
            Move::none(),
            at,
        );
        self.put(&a, ctx);
        Ok(a)
    }

    pub(super) fn breach(&mut self, lead_id: &str, now: Timestamp) -> Option<Assignment> {
        let (mut a, ctx) = self.held_lead(lead_id, "").ok()?;
        let at = millis(now);
        if a.state != AssignmentState::Open
            || a.contacted_at_ms.is_some()
            || a.deadline_ms.is_none_or(|d| d > at)
        {
            return None;
        }
        self.undue(&a);
        a.deadline_ms = None;
        a.sla_breached = true;
        if let Some(e) = self.reps.get_mut(&a.rep_id) {
            e.breaches += 1;
        }
        let rep = a.rep_id.clone();
        let reason = format!(
            "not contacted within {} s",
            ctx.view().terms.sla_ms as f64 / 1000.0
        );
        self.emit(&a, EventKind::SlaBreached, &rep, &reason, now);
        self.ledger.record(
            EventKind::SlaBreached,
            ctx.view(),
            Some(&a),
            &rep,
            None,
            Move::none(),
            at,
        );
        self.put(&a, ctx);
        Some(a)
    }

    pub(super) fn due(&self, pool: &str, now: Timestamp, limit: usize) -> Due {
        let at = millis(now);
        let mut out = Due::default();
        for (d, lead) in self.due.get(pool).into_iter().flatten() {
            if *d > at {
                out.next_ms = Some(*d);
                break;
            }
            if out.leads.len() == limit {
                break;
            }
            let kind = match self.leads.get(lead) {
                Some(LeadEntry::Assigned(a, _)) if a.state == AssignmentState::Offered => {
                    DueKind::Offer
                }
                _ => DueKind::Sla,
            };
            out.leads.push((lead.clone(), kind));
        }
        for (d, lead) in self.queue_due.get(pool).into_iter().flatten() {
            if *d > at {
                out.next_ms = Some(out.next_ms.map_or(*d, |n| n.min(*d)));
                break;
            }
            if out.leads.len() == limit {
                break;
            }
            out.leads.push((lead.clone(), DueKind::QueueTtl));
        }
        out
    }

    pub(super) fn list(&self, q: &ListQuery) -> ListPage {
        let wants = |l: Listed| q.states.is_empty() || q.states.contains(&l);
        let mut items = Vec::new();
        let held: Vec<&String> = match &q.rep_id {
            Some(r) => self.held_by(&q.pool, r).collect(),
            None => {
                let from = (q.pool.clone(), String::new(), String::new());
                self.held
                    .range(from..)
                    .take_while(|(p, _, _)| *p == q.pool)
                    .map(|(_, _, l)| l)
                    .collect()
            }
        };
        let mut skipped = 0;
        let want = q.offset + q.limit + 1;
        for id in held {
            let Some(LeadEntry::Assigned(a, _)) = self.leads.get(id) else {
                continue;
            };
            let listed = if a.state == AssignmentState::Offered {
                Listed::Offered
            } else {
                Listed::Open
            };
            if wants(listed) {
                items.push(ListItem {
                    listed,
                    assignment: (**a).clone(),
                    position: 0,
                });
            }
        }
        if items.len() > q.offset {
            items.drain(..q.offset);
        } else {
            skipped = items.len();
            items.clear();
        }
        if q.rep_id.is_none() && wants(Listed::Queued) && items.len() < want - q.offset {
            let start = q.offset - skipped;
            if let Some(queue) = self.queues.get(&q.pool) {
                for (i, key) in queue.iter_from(start).enumerate() {
                    if items.len() > q.limit {
                        break;
                    }
                    let Some(LeadEntry::Queued(_, ctx)) = self.leads.get(&key.2) else {
                        continue;
                    };
                    items.push(ListItem {
                        listed: Listed::Queued,
                        assignment: Assignment {
                            lead_id: key.2.clone(),
                            pool: q.pool.clone(),
                            probability: ctx.view().probability,
                            segment: ctx.view().segment.to_string(),
                            assigned_at_ms: self.queued_at.get(&key.2).copied().unwrap_or(0),
                            ..Assignment::default()
                        },
                        position: u32::try_from(start + i + 1).unwrap_or(u32::MAX),
                    });
                }
            }
        }
        let more = items.len() > q.limit;
        items.truncate(q.limit);
        ListPage { items, more }
    }
}
