//! A pool's event log in memory: numbered events, trimmed by count and age.
use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::domain::event::{Event, EventPage, Retention};

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct EventLog {
    last: u64,
    events: VecDeque<Event>,
}

impl EventLog {
    /// Numbers `e`, appends it and trims what retention no longer keeps.
    pub(super) fn push(&mut self, mut e: Event, retention: Retention) {
        self.last += 1;
        e.cursor = self.last;
        let cutoff = e.at_ms.saturating_sub(retention.age_ms);
        self.events.push_back(e);
        while self.events.len() as u64 > retention.count.max(1) {
            self.events.pop_front();
        }
        while retention.age_ms > 0 && self.events.front().is_some_and(|f| f.at_ms < cutoff) {
            self.events.pop_front();
        }
    }

    pub(super) fn after(&self, after: u64, limit: usize) -> EventPage {
        let oldest = self.events.front().map_or(0, |e| e.cursor);
        // Cursors are dense, so the first event after `after` sits at a computed index.
        let skip = usize::try_from(after.saturating_add(1).saturating_sub(oldest.max(1)))
            .unwrap_or(usize::MAX);
        EventPage {
            events: self.events.iter().skip(skip).take(limit).cloned().collect(),
            oldest,
            last: self.last,
        }
    }
}
