//! The memory store's `ReportLedger`: counters read under the lock, history imported as
//! closed or open leads outside capacity accounting, targets.
use async_trait::async_trait;
use jiff::Timestamp;

use crate::domain::assignment::{Assignment, AssignmentState, HistoryLead, Imported};
use crate::domain::event::EventKind;
use crate::domain::ledger::{Bucket, Grain, LedgerCell, m, month_of_day};
use crate::domain::target::Target;
use crate::error::Result;
use crate::store::ledger::ReportLedger;
use crate::store::millis;

use super::MemoryStore;
use super::ledger::Move;
use super::state::LeadEntry;
use crate::domain::packed::{PackedContext, View};

#[async_trait]
impl ReportLedger for MemoryStore {
    async fn ledger(
        &self,
        pool: Option<&str>,
        grain: Grain,
        from: i32,
        to: i32,
    ) -> Result<Vec<LedgerCell>> {
        Ok(self.lock().ledger.read(pool, grain, from, to))
    }

    async fn note_unroutable(&self, pool: &str, segment: &str, now: Timestamp) -> Result<()> {
        let mut s = self.lock();
        let day = s.ledger.day(millis(now));
        for b in [Bucket::Day(day), Bucket::Month(month_of_day(day))] {
            s.ledger.add(pool, b, "", segment, m::UNROUTABLE, 1.0);
        }
        Ok(())
    }

    async fn import_history(&self, leads: Vec<HistoryLead>) -> Result<Imported> {
        let mut s = self.lock();
        let mut out = Imported::default();
        for h in leads {
            let id = h.context.lead.id.clone();
            let at = h.assigned_at_ms.or(h.closed.map(|c| c.1));
            let Some(at) = at.filter(|_| !s.leads.contains_key(&id)) else {
                out.skipped += 1;
                continue;
            };
            let packed = PackedContext::pack(&h.context);
            let bytes = packed.heap_bytes();
            s.make_room(self.max_leads, self.max_bytes, bytes)?;
            s.bytes += bytes;
            let mut a = Assignment {
                lead_id: id.clone(),
                rep_id: h.rep_id.clone(),
                pool: h.context.needs.pool.clone(),
                probability: h.context.probability,
                segment: h.context.segment.clone(),
                assigned_at_ms: at,
                imported: true,
                ..Assignment::default()
            };
            let ctx = View::of(&h.context);
            s.ledger.record_imported(
                EventKind::Assigned,
                ctx,
                Some(&a),
                &a.rep_id,
                None,
                Move::new_lead(),
                at,
            );
            match h.closed {
                Some((outcome, closed_at)) => {
                    let mv = Move {
                        value: h.value,
                        ..Move::from(&a.rep_id, at)
                    };
                    let rep = a.rep_id.clone();
                    s.ledger.record_imported(
                        EventKind::Closed,
                        ctx,
                        None,
                        &rep,
                        Some(outcome.as_str()),
                        mv,
                        closed_at,
                    );
                    a.state = AssignmentState::Closed(outcome);
                    a.closed_at_ms = Some(closed_at);
                    s.closed.push_back(id.clone());
                }
                None => s.hold(&a),
            }
            s.leads.insert(id, LeadEntry::Assigned(Box::new(a), packed));
            out.imported += 1;
        }
        drop(s);
        self.tick();
        Ok(out)
    }

    async fn set_target(&self, target: Target) -> Result<()> {
        let mut s = self.lock();
        if target.value > 0.0 {
            s.ledger.targets.insert(target.key(), target.value);
        } else {
            s.ledger.targets.remove(&target.key());
        }
        Ok(())
    }

    async fn targets(&self) -> Result<Vec<Target>> {
        let s = self.lock();
        Ok(s.ledger
            .targets
            .iter()
            .filter_map(|(k, v)| Target::from_key(k, *v))
            .collect())
    }
}
