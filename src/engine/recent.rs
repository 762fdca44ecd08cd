//! What this replica saw lately, for the console: decision records by lead id, unroutable
//! leads with their reason, and the model's swaps and gate verdicts. Bounded rings in memory;
//! the store keeps what must survive (leads, events, counters), not these.
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::Decision;

/// Unroutable leads and model events kept (the decisions' bound is configured).
const KEEP: usize = 200;
/// Candidates a kept record lists (every rep of pools up to this size; in bigger pools the
/// chosen rep, the nearest of each verdict and the best runners-up, the rest counted), so a
/// kept decision costs at most ~10 KiB however big the pool.
pub const KEEP_CANDIDATES: usize = 100;

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
    /// postcard bytes: one allocation per record, so forgetting the oldest frees one block
    /// (freeing the ~70 small blocks of a whole Decision, cold in cache, cost SubmitLead ~15 %).
    decisions: HashMap<String, Box<[u8]>>,
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

    /// Notes an unroutable lead (the answer's own record is kept by `keep`).
    pub fn note_unroutable(&self, d: &Decision, at_ms: i64) {
        let Some(r) = &d.routing else { return };
        let u = UnroutableLead {
            at_ms,
            lead_id: d.lead_id.clone(),
            pool: r.pool.clone(),
            segment: d.segment.segment.clone(),
            reason: r.reason.clone(),
        };
        push(&mut self.lock().unroutable, u);
    }

    /// Whether `keep` would keep this decision: a fresh routing decision (a replay repeats
    /// one already kept, without candidates) while records are kept at all.
    pub fn keeps(&self, d: &Decision) -> bool {
        self.keep_decisions > 0 && d.routing.as_ref().is_some_and(|r| !r.replayed)
    }

    /// Keeps a decision, replacing an older one of the same lead, forgetting the oldest.
    pub fn keep(&self, d: Decision) {
        if !self.keeps(&d) {
            return;
        }
        let d = d.explained(crate::domain::routing::Explain::Summary, KEEP_CANDIDATES);
        let Ok(bytes) = postcard::to_allocvec(&d) else {
            return;
        };
        let mut g = self.lock();
        let evicted = match g
            .decisions
            .insert(d.lead_id.clone(), bytes.into_boxed_slice())
        {
            Some(_) => None,
            None => {
                g.order.push_back(d.lead_id);
                (g.order.len() > self.keep_decisions)
                    .then(|| g.order.pop_front())
                    .flatten()
                    .and_then(|old| g.decisions.remove(&old))
            }
        };
        drop(g);
        // The evicted record is freed after the lock is let go.
        drop(evicted);
    }

    pub fn model(&self, e: ModelEvent) {
        push(&mut self.lock().models, e);
    }

    /// The decision kept for `lead_id`, if this replica made it lately.
    pub fn decision_of(&self, lead_id: &str) -> Option<Decision> {
        let bytes = self.lock().decisions.get(lead_id).cloned()?;
        postcard::from_bytes(&bytes).ok()
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
    use crate::domain::routing::{CandidateRecord, Detail, Verdict};
    use crate::engine::{RoutingDecision, RoutingStatus};

    fn decision(id: &str, reps: usize) -> Decision {
        Decision {
            lead_id: id.into(),
            score: crate::domain::model::cold_start_score(0.1),
            segment: crate::domain::segment::SegmentMatch {
                segment: "qualified".into(),
                rule: "hot".into(),
            },
            required_skills: vec!["language:de".into()],
            routing: Some(RoutingDecision {
                status: RoutingStatus::Queued { position: 2 },
                pool: "default".into(),
                candidates: (0..reps)
                    .map(|i| CandidateRecord {
                        rep_id: format!("r{i}"),
                        match_score: 0.5,
                        verdict: if i == 0 {
                            Verdict::AtCapacity
                        } else {
                            Verdict::OffShift
                        },
                        detail: Detail::Load {
                            load: 2,
                            capacity: 2,
                        },
                        load: 2,
                        capacity: 2,
                    })
                    .collect(),
                replayed: false,
                reason: "no rep with room".into(),
                omitted: vec![],
            }),
        }
    }

    #[test]
    fn decisions_come_back_as_kept_and_the_oldest_go() {
        let r = Recent::new(2);
        for id in ["a", "b", "c"] {
            r.keep(decision(id, 3));
        }
        assert!(r.decision_of("a").is_none(), "the oldest is forgotten");
        let c = r.decision_of("c").unwrap();
        let mut want = decision("c", 3);
        // Details travel as their words.
        for cand in &mut want.routing.as_mut().unwrap().candidates {
            cand.detail = Detail::from("load 2 of 2".to_string());
        }
        assert_eq!(c, want);
        // A big pool keeps KEEP_CANDIDATES and counts the rest.
        r.keep(decision("big", 250));
        let big = r.decision_of("big").unwrap().routing.unwrap();
        assert_eq!(big.candidates.len(), KEEP_CANDIDATES);
        assert_eq!(big.omitted, vec![(Verdict::OffShift, 150)]);
        // Replays are not kept; nothing is kept with a bound of 0.
        let mut replay = decision("replay", 1);
        replay.routing.as_mut().unwrap().replayed = true;
        r.keep(replay);
        assert!(r.decision_of("replay").is_none());
        let none = Recent::new(0);
        none.keep(decision("x", 1));
        assert!(none.decision_of("x").is_none());
    }

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
