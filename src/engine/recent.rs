//! What this replica saw lately, for the console: decision records by lead id, unroutable
//! leads with their reason, and the model's swaps and gate verdicts. Bounded rings in memory;
//! the store keeps what must survive (leads, events, counters), not these.
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::{Decision, RoutingStatus};

/// Unroutable leads and model events kept (the decisions' bound is configured).
const KEEP: usize = 200;

/// A lead no rep of its pool could take.
#[derive(Debug, Clone, PartialEq)]
pub struct UnroutableLead {
    pub at_ms: i64,
    pub lead_id: String,
    pub pool: String,
    pub segment: String,
    pub reason: String,
}

/// A model swap or a gate verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelEvent {
    pub at_ms: i64,
    /// "live" (swapped in), "passed", "refused" or "forced" (gate verdicts).
    pub what: &'static str,
    pub version: String,
    pub detail: String,
}

#[derive(Default)]
struct Rings {
    order: VecDeque<String>,
    decisions: HashMap<String, Arc<Decision>>,
    unroutable: VecDeque<UnroutableLead>,
    models: VecDeque<ModelEvent>,
}

/// The rings behind one lock: each write is a push and maybe a pop.
pub struct Recent {
    keep_decisions: usize,
    rings: Mutex<Rings>,
}

fn push<T>(ring: &mut VecDeque<T>, item: T) {
    if ring.len() == KEEP {
        ring.pop_front();
    }
    ring.push_back(item);
}

impl Recent {
    pub fn new(keep_decisions: usize) -> Recent {
        Recent {
            keep_decisions,
            rings: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rings> {
        self.rings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a fresh decision (a replay repeats one already kept, with no candidates).
    pub fn decision(&self, d: &Decision, at_ms: i64, record_candidates: usize) {
        let Some(r) = &d.routing else { return };
        if r.replayed {
            return;
        }
        if r.status == RoutingStatus::Unroutable {
            let u = UnroutableLead {
                at_ms,
                lead_id: d.lead_id.clone(),
                pool: r.pool.clone(),
                segment: d.segment.segment.clone(),
                reason: r.reason.clone(),
            };
            push(&mut self.lock().unroutable, u);
        }
        if self.keep_decisions == 0 {
            return;
        }
        let kept = Arc::new(
            d.clone()
                .explained(crate::domain::routing::Explain::Summary, record_candidates),
        );
        let mut g = self.lock();
        if g.decisions.insert(d.lead_id.clone(), kept).is_none() {
            g.order.push_back(d.lead_id.clone());
        }
        while g.order.len() > self.keep_decisions {
            if let Some(old) = g.order.pop_front() {
                g.decisions.remove(&old);
            }
        }
    }

    pub fn model(&self, e: ModelEvent) {
        push(&mut self.lock().models, e);
    }

    /// The decision kept for `lead_id`, if this replica made it lately.
    pub fn decision_of(&self, lead_id: &str) -> Option<Arc<Decision>> {
        self.lock().decisions.get(lead_id).cloned()
    }

    /// Newest first.
    pub fn unroutable(&self) -> Vec<UnroutableLead> {
        self.lock().unroutable.iter().rev().cloned().collect()
    }

    /// Newest first.
    pub fn models(&self) -> Vec<ModelEvent> {
        self.lock().models.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_keep_the_newest() {
        let r = Recent::new(0);
        for i in 0..KEEP + 5 {
            r.model(ModelEvent {
                at_ms: i as i64,
                what: "live",
                version: format!("v{i}"),
                detail: String::new(),
            });
        }
        let m = r.models();
        assert_eq!(m.len(), KEEP);
        assert_eq!(m[0].version, format!("v{}", KEEP + 4));
        assert_eq!(m[KEEP - 1].version, "v5");
    }
}
