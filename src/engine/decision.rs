//! What the engine decided about one lead: the types, the record once the store has
//! answered, and the summary a response lists.
use super::Engine;
use crate::domain::assignment::{Assignment, AssignmentState};
use crate::domain::model::Score;
use crate::domain::routing::{self, CandidateRecord, Explain, Omitted};
use crate::domain::segment::SegmentMatch;
use crate::store::{Claim, ClaimRequest};

/// Everything decided about one lead.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    pub lead_id: String,
    pub score: Score,
    pub segment: SegmentMatch,
    pub required_skills: Vec<String>,
    pub routing: Option<RoutingDecision>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum RoutingStatus {
    Assigned(Assignment),
    Queued {
        position: u32,
    },
    Closed(Assignment),
    /// No rep of the pool could ever take the lead; nothing was stored.
    Unroutable,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RoutingDecision {
    pub status: RoutingStatus,
    pub pool: String,
    /// Every rep of the pool considered, with its verdict (all of them until
    /// `Decision::explained`); empty on a replay.
    pub candidates: Vec<CandidateRecord>,
    pub replayed: bool,
    /// Why the lead is unroutable (also set when it was queued anyway); empty otherwise.
    pub reason: String,
    /// Candidates left out of `candidates`, per verdict (empty until `Decision::explained`
    /// summarises the list).
    pub omitted: Omitted,
}

/// A scored lead ready for the store.
pub(super) struct Prepared {
    pub req: ClaimRequest,
    /// Reps filtered out before the claim, for the decision record.
    pub rejected: Vec<CandidateRecord>,
    /// Why no rep of the pool could ever take the lead, if none could.
    pub unroutable: Option<String>,
    /// Said in the decision record whatever happens (an unknown pool sent to the default).
    pub note: Option<String>,
}

impl Prepared {
    /// The decision record's `reason`: the note, then why the lead is unroutable.
    pub fn reason(&self) -> String {
        match (&self.note, &self.unroutable) {
            (Some(n), Some(u)) => format!("{n}; {u}"),
            (Some(s), None) | (None, Some(s)) => s.clone(),
            (None, None) => String::new(),
        }
    }
}

impl Decision {
    /// The decision as a response lists it: at most `record_candidates` candidates unless
    /// `explain` is `Full`, the rest counted per verdict.
    pub fn explained(mut self, explain: Explain, record_candidates: usize) -> Decision {
        if let Some(r) = &mut self.routing {
            r.omitted = routing::summarise(&mut r.candidates, explain.limit(record_candidates));
        }
        self
    }

    /// `explained` as a copy, leaving this decision whole (copies only the listed candidates).
    pub fn explained_copy(&self, explain: Explain, record_candidates: usize) -> Decision {
        Decision {
            lead_id: self.lead_id.clone(),
            score: self.score.clone(),
            segment: self.segment.clone(),
            required_skills: self.required_skills.clone(),
            routing: self.routing.as_ref().map(|r| {
                let (candidates, omitted) =
                    routing::summary_of(&r.candidates, explain.limit(record_candidates));
                RoutingDecision {
                    status: r.status.clone(),
                    pool: r.pool.clone(),
                    candidates,
                    replayed: r.replayed,
                    reason: r.reason.clone(),
                    omitted,
                }
            }),
        }
    }
}

impl Engine {
    /// The decision as a response lists it (`explained`); a fresh routing decision is kept
    /// whole (up to `recent::KEEP_CANDIDATES` candidates) for the console's lead lookup. The
    /// kept one is moved, not copied: the response copies only what it lists.
    pub fn answer(&self, d: Decision, explain: Explain) -> Decision {
        let rc = self.parts.routing.record_candidates;
        if !self.recent.keeps(&d) {
            return d.explained(explain, rc);
        }
        let shown = d.explained_copy(explain, rc);
        self.recent.keep(d);
        shown
    }
}

/// The decision once the store has answered the claim.
pub(super) fn finish(mut decision: Decision, claim: Claim, p: Prepared) -> Decision {
    let reason = p.reason();
    let (rejected, pool) = (p.rejected, p.req.context.needs.pool);
    let (status, mut candidates, replayed) = match claim {
        Claim::Assigned {
            assignment,
            records,
            replayed,
        } => {
            let status = if assignment.is_held() {
                RoutingStatus::Assigned(assignment)
            } else {
                RoutingStatus::Closed(assignment)
            };
            (status, records, replayed)
        }
        Claim::Queued {
            position,
            records,
            replayed,
        } => (RoutingStatus::Queued { position }, records, replayed),
    };
    if !replayed {
        candidates.extend(rejected);
    }
    decision.routing = Some(RoutingDecision {
        status,
        pool,
        candidates,
        replayed,
        reason,
        omitted: Vec::new(),
    });
    decision
}

/// The decision for a lead no rep of its pool could ever take, when it is not queued.
pub(super) fn unroutable(mut decision: Decision, p: Prepared) -> Decision {
    let reason = p.reason();
    let candidates = p.rejected;
    decision.routing = Some(RoutingDecision {
        status: RoutingStatus::Unroutable,
        pool: p.req.context.needs.pool,
        candidates,
        replayed: false,
        reason,
        omitted: Vec::new(),
    });
    decision
}

impl Engine {
    /// Counts a submitted lead's routing (a replay was counted the first time) and names its
    /// lead, rep and pool on the request's span.
    pub(super) fn routed(&self, d: Decision) -> Decision {
        let Some(r) = &d.routing else {
            return d;
        };
        let (status, rep) = match &r.status {
            RoutingStatus::Assigned(a) if a.state == AssignmentState::Offered => {
                ("offered", Some(a.rep_id.as_str()))
            }
            RoutingStatus::Assigned(a) => ("assigned", Some(a.rep_id.as_str())),
            RoutingStatus::Queued { .. } => ("queued", None),
            RoutingStatus::Closed(_) => ("closed", None),
            RoutingStatus::Unroutable => ("unroutable", None),
        };
        crate::observe::annotate(&d.lead_id, rep, Some(&r.pool));
        if !r.replayed {
            self.parts
                .metrics
                .routed(&r.pool, &d.segment.segment, status);
            if r.status == RoutingStatus::Unroutable {
                self.recent.note_unroutable(&d, self.now().as_millisecond());
            }
        }
        d
    }
}
