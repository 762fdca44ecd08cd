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
    /// Set by the server: the lead waited in the queue past `routing.queue_ttl_s`; not a
    /// training label either.
    Expired,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Won => "won",
            Outcome::Lost => "lost",
            Outcome::Disqualified => "disqualified",
            Outcome::Returned => "returned",
            Outcome::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum AssignmentState {
    /// The rep works the lead.
    #[default]
    Open,
    /// Offer mode: the rep holds the lead (and its capacity) until it accepts, declines or
    /// the offer expires.
    Offered,
    Closed(Outcome),
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
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
    /// When the offer expires (offered) or the first-touch SLA runs out (open, not contacted).
    pub deadline_ms: Option<i64>,
    /// When the rep marked the lead contacted.
    pub contacted_at_ms: Option<i64>,
    /// The first-touch SLA ran out before the lead was contacted.
    pub sla_breached: bool,
    /// Imported history (`import-history`): held outside leadrouter's capacity accounting,
    /// so it never counts against (or frees) a rep's load.
    #[serde(default)]
    pub imported: bool,
}

impl Assignment {
    /// Worked by its rep (accepted, or assigned directly).
    pub fn is_open(&self) -> bool {
        self.state == AssignmentState::Open
    }

    /// Holds its rep's capacity: open or offered.
    pub fn is_held(&self) -> bool {
        !self.is_closed()
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, AssignmentState::Closed(_))
    }
}

/// What happens after a lead reaches a rep, fixed when the lead is routed (so a queued lead
/// keeps the terms of its arrival): offer mode and first-touch SLA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Terms {
    /// Offer mode: the rep must accept within this many ms; 0 assigns directly.
    #[serde(default)]
    pub offer_ms: i64,
    /// Offers made (declined or expired) before the lead waits in the queue again with a
    /// clean slate.
    #[serde(default)]
    pub max_offers: u32,
    /// The rep must mark the lead contacted within this many ms of taking it; 0: no SLA.
    #[serde(default)]
    pub sla_ms: i64,
    /// On an SLA breach move the lead to the next best rep (else only flag it).
    #[serde(default)]
    pub sla_reassign: bool,
    /// A lead waiting in the queue this many ms is closed EXPIRED; 0: it waits forever.
    #[serde(default)]
    pub queue_ttl_ms: i64,
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
    #[serde(default)]
    pub terms: Terms,
    /// The deal's expected value (the lead's `report.value_attribute`), 0 without one.
    #[serde(default)]
    pub expected_value: f64,
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
    /// When the closing rep took the lead (None: closed while queued), when it was first
    /// contacted, and the deal's value (CloseAssignment's).
    #[serde(default)]
    pub assigned_at_ms: Option<i64>,
    #[serde(default)]
    pub contacted_at_ms: Option<i64>,
    #[serde(default)]
    pub value: Option<f64>,
}

/// A past lead from a CRM's history (`import-history`): who had it, when, and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryLead {
    pub context: LeadContext,
    pub rep_id: String,
    /// None: never assigned (only submitted).
    pub assigned_at_ms: Option<i64>,
    /// The outcome and when; None while still open.
    pub closed: Option<(Outcome, i64)>,
    /// The deal's value (for a won lead).
    pub value: Option<f64>,
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Imported {
    pub imported: u64,
    /// Already stored (an import is idempotent per lead id).
    pub skipped: u64,
}
