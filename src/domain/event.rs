//! Assignment events: every change to a lead after routing, numbered per pool so a watcher
//! can resume where it stopped.
use serde::{Deserialize, Serialize};

use crate::domain::assignment::Assignment;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Assigned,
    Queued,
    Offered,
    Accepted,
    Declined,
    Expired,
    Reassigned,
    Closed,
    SlaBreached,
    Contacted,
}

impl EventKind {
    pub const ALL: [EventKind; 10] = [
        EventKind::Assigned,
        EventKind::Queued,
        EventKind::Offered,
        EventKind::Accepted,
        EventKind::Declined,
        EventKind::Expired,
        EventKind::Reassigned,
        EventKind::Closed,
        EventKind::SlaBreached,
        EventKind::Contacted,
    ];

    /// The name stored in Redis streams (and logs).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Assigned => "assigned",
            EventKind::Queued => "queued",
            EventKind::Offered => "offered",
            EventKind::Accepted => "accepted",
            EventKind::Declined => "declined",
            EventKind::Expired => "expired",
            EventKind::Reassigned => "reassigned",
            EventKind::Closed => "closed",
            EventKind::SlaBreached => "sla_breached",
            EventKind::Contacted => "contacted",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One change to one lead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// 1, 2, 3, ... per pool, with no gaps.
    pub cursor: u64,
    pub pool: String,
    pub kind: EventKind,
    pub lead_id: String,
    /// The rep the event is about (the one who declined, let an offer expire, breached...);
    /// empty for QUEUED.
    pub rep_id: String,
    /// The lead's assignment after the event; None while it waits in the queue.
    pub assignment: Option<Assignment>,
    pub reason: String,
    pub at_ms: i64,
}

/// Events of one pool after a cursor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// The oldest cursor still retained (0 when the log is empty).
    pub oldest: u64,
    /// The newest cursor written (0 when none was).
    pub last: u64,
}

/// How long event logs keep events, per pool: at least `count` events (the newest), and
/// none older than `age_ms` (0: no age limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub count: u64,
    pub age_ms: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            count: 100_000,
            age_ms: 7 * 24 * 3_600_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EventKind::parse("nope"), None);
    }
}
