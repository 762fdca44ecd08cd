//! Assignments, outcomes and queue entries: the records the capacity store keeps.
use serde::{Deserialize, Serialize};

use crate::domain::lead::Lead;
use crate::domain::routing::Needs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Won,
    Lost,
    Disqualified,
    /// The rep handed the lead back; it is not a training label.
    Returned,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Won => "won",
            Outcome::Lost => "lost",
            Outcome::Disqualified => "disqualified",
            Outcome::Returned => "returned",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AssignmentState {
    Open,
    Closed(Outcome),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub lead_id: String,
    /// Empty when a queued lead was closed before any rep took it.
    pub rep_id: String,
    pub pool: String,
    pub state: AssignmentState,
    pub probability: f64,
    pub segment: String,
    pub assigned_at_ms: i64,
    pub closed_at_ms: Option<i64>,
}

impl Assignment {
    pub fn is_open(&self) -> bool {
        self.state == AssignmentState::Open
    }
}

/// What the store keeps about a lead besides its assignment: enough to re-rank it and to turn
/// its outcome into a training row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeadContext {
    pub lead: Lead,
    pub needs: Needs,
    pub probability: f64,
    pub segment: String,
    pub model_version: String,
}

/// Where a lead stands.
#[derive(Debug, Clone, PartialEq)]
pub enum LeadState {
    Assigned(Assignment),
    Queued {
        pool: String,
        probability: f64,
        /// 1-based.
        position: u32,
    },
}

/// A closed lead with everything retraining needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    pub context: LeadContext,
    pub rep_id: String,
    pub outcome: Outcome,
    pub closed_at_ms: i64,
}
