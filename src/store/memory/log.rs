//! A pool's event log in memory: numbered events, trimmed by count and age.
use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::domain::assignment::Assignment;
use crate::domain::event::{Event, EventKind, EventPage, Retention};

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct EventLog {
    last: u64,
    events: VecDeque<Logged>,
}

/// An [`Event`] as a log keeps it: without its pool (the log's) and with the assignment boxed,
/// ~110 B instead of ~330 B (a log holds up to `retention.count` of them per pool). Serialized
/// with the event's field names, so snapshots that still carry `pool` read back.
#[derive(Debug, Serialize, Deserialize)]
struct Logged {
    cursor: u64,
    kind: EventKind,
    lead_id: String,
    rep_id: String,
    assignment: Option<Box<Assignment>>,
    reason: String,
    at_ms: i64,
}

impl Logged {
    fn event(&self, pool: &str) -> Event {
        Event {
            cursor: self.cursor,
            pool: pool.to_string(),
            kind: self.kind,
            lead_id: self.lead_id.clone(),
            rep_id: self.rep_id.clone(),
            assignment: self.assignment.as_deref().cloned(),
            reason: self.reason.clone(),
            at_ms: self.at_ms,
        }
    }
}

impl EventLog {
    /// Numbers `e`, appends it and trims what retention no longer keeps.
    pub(super) fn push(&mut self, e: Event, retention: Retention) {
        self.last += 1;
        let cutoff = e.at_ms.saturating_sub(retention.age_ms);
        self.events.push_back(Logged {
            cursor: self.last,
            kind: e.kind,
            lead_id: e.lead_id,
            rep_id: e.rep_id,
            assignment: e.assignment.map(Box::new),
            reason: e.reason,
            at_ms: e.at_ms,
        });
        while self.events.len() as u64 > retention.count.max(1) {
            self.events.pop_front();
        }
        while retention.age_ms > 0 && self.events.front().is_some_and(|f| f.at_ms < cutoff) {
            self.events.pop_front();
        }
    }

    /// Events after cursor `after`, at most `limit`, as events of `pool` (this log's).
    pub(super) fn after(&self, pool: &str, after: u64, limit: usize) -> EventPage {
        let oldest = self.events.front().map_or(0, |e| e.cursor);
        // Cursors are dense, so the first event after `after` sits at a computed index.
        let skip = usize::try_from(after.saturating_add(1).saturating_sub(oldest.max(1)))
            .unwrap_or(usize::MAX);
        EventPage {
            events: self
                .events
                .iter()
                .skip(skip)
                .take(limit)
                .map(|e| e.event(pool))
                .collect(),
            oldest,
            last: self.last,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Snapshots written before events were logged without their pool still read back, and
    /// the log answers with the same events.
    #[test]
    fn reads_logs_that_carry_the_pool_and_answers_the_same_events() {
        let mut log = EventLog::default();
        let a = Assignment {
            lead_id: "l1".into(),
            rep_id: "r1".into(),
            pool: "emea".into(),
            ..Assignment::default()
        };
        for (i, assignment) in [None, Some(a)].into_iter().enumerate() {
            let e = Event {
                cursor: 0,
                pool: "emea".into(),
                kind: EventKind::Assigned,
                lead_id: "l1".into(),
                rep_id: "r1".into(),
                assignment,
                reason: format!("reason {i}"),
                at_ms: 5,
            };
            log.push(e, Retention::default());
        }
        let page = log.after("emea", 0, 10);
        assert_eq!(page.events.len(), 2);
        let old = serde_json::json!({"last": 2, "events": page.events});
        let back: EventLog = serde_json::from_value(old).unwrap();
        assert_eq!(back.after("emea", 0, 10), page);
        assert_eq!(page.events[1].assignment.as_ref().unwrap().rep_id, "r1");
    }
}
