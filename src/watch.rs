//! WatchAssignments: follows the pools' event logs and hands each new event to a watcher.
//!
//! A watcher keeps a cursor per pool. It reads after its cursors whenever the local store
//! ticks (a write on this replica) and at least every `POLL` (writes on other replicas land
//! in Redis without a tick here). Cursors are dense per pool, so a resumed watcher neither
//! misses nor repeats an event while the log still holds it; an older cursor is refused.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::domain::event::Event;
use crate::error::{Error, Result};
use crate::store::Store;

/// Longest wait for events written by other replicas.
pub const POLL: Duration = Duration::from_millis(100);
/// Events read per pool per round.
const PAGE: usize = 512;

/// What a watcher wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Empty: every pool, including pools that appear later.
    pub pools: Vec<String>,
    /// Empty: all reps; else events about (or held by) one of these.
    pub reps: Vec<String>,
    /// Resume after these cursors; pools not named start at their newest event.
    pub after: HashMap<String, u64>,
}

impl Filter {
    fn wants(&self, e: &Event) -> bool {
        self.reps.is_empty()
            || self
                .reps
                .iter()
                .any(|r| *r == e.rep_id || e.assignment.as_ref().is_some_and(|a| a.rep_id == *r))
    }
}

/// Starts a watcher; events (or one error, then the end) arrive on the receiver. The task
/// ends when the receiver is dropped.
pub fn watch(store: Arc<dyn Store>, filter: Filter) -> mpsc::Receiver<Result<Event>> {
    let (tx, rx) = mpsc::channel(PAGE);
    tokio::spawn(async move {
        if let Err(e) = follow(store, filter, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    rx
}

async fn follow(
    store: Arc<dyn Store>,
    filter: Filter,
    tx: &mpsc::Sender<Result<Event>>,
) -> Result<()> {
    let mut ticks = store.changes();
    let mut cursors = filter.after.clone();
    // Pools present now start at their newest event unless resumed; pools that appear later
    // start at their first.
    let initial = if filter.pools.is_empty() {
        store.pools().await?
    } else {
        filter.pools.clone()
    };
    for pool in initial {
        if let std::collections::hash_map::Entry::Vacant(v) = cursors.entry(pool) {
            let last = store.events_after(v.key(), u64::MAX, 0).await?.last;
            v.insert(last);
        }
    }
    loop {
        ticks.borrow_and_update();
        let pools = if filter.pools.is_empty() {
            store.pools().await?
        } else {
            filter.pools.clone()
        };
        for pool in pools {
            let cursor = cursors.entry(pool.clone()).or_insert(0);
            loop {
                let page = store.events_after(&pool, *cursor, PAGE).await?;
                if page.oldest > cursor.saturating_add(1) {
                    return Err(Error::OutOfRange(format!(
                        "pool {pool:?}: events after cursor {cursor} are no longer kept (the \
                         oldest is {}); resume from a newer cursor, or omit it to start now",
                        page.oldest
                    )));
                }
                let full = page.events.len() == PAGE;
                for e in page.events {
                    *cursor = e.cursor;
                    if filter.wants(&e) && tx.send(Ok(e)).await.is_err() {
                        return Ok(());
                    }
                }
                if !full {
                    break;
                }
            }
        }
        tokio::select! {
            _ = ticks.changed() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = tx.closed() => return Ok(()),
        }
    }
}
