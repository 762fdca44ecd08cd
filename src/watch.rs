//! WatchAssignments: hands each new event of the watched pools to each watcher, in cursor
//! order, with no gap and no repeat.
//!
//! One `Hub` per process follows every pool's event log: it reads after its cursors whenever
//! the local store ticks (a write on this replica) and at least every `POLL` (writes on other
//! replicas land in Redis without a tick here), and broadcasts what it reads. So the store is
//! polled once per pool per process, however many watchers there are. A watcher first catches
//! up from the store (from its resume cursors), then follows the broadcast; it keeps a cursor
//! per pool, skips what it has seen, and fills any hole (a lag, or a pool that appeared while
//! it caught up) from the store. Cursors are dense per pool, so a resumed watcher neither
//! misses nor repeats an event while the log still holds it; an older cursor is refused.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};

use crate::domain::event::Event;
use crate::error::{Error, Result};
use crate::store::Store;

/// Longest wait for events written by other replicas.
pub const POLL: Duration = Duration::from_millis(100);
/// Events read per pool per round.
const PAGE: usize = 512;
/// Events a watcher may fall behind the hub before it catches up from the store.
const BACKLOG: usize = 8_192;

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

    fn covers(&self, pool: &str) -> bool {
        self.pools.is_empty() || self.pools.iter().any(|p| p == pool)
    }
}

/// The process's one follower of the store's event logs.
pub struct Hub {
    store: Arc<dyn Store>,
    tx: broadcast::Sender<Arc<Event>>,
    /// The follower task runs (it stops when the last watcher leaves).
    running: AtomicBool,
}

impl Hub {
    pub fn new(store: Arc<dyn Store>) -> Arc<Hub> {
        Arc::new(Hub {
            store,
            tx: broadcast::channel(BACKLOG).0,
            running: AtomicBool::new(false),
        })
    }

    fn subscribe(self: &Arc<Hub>) -> broadcast::Receiver<Arc<Event>> {
        let rx = self.tx.subscribe();
        if !self.running.swap(true, Ordering::AcqRel) {
            tokio::spawn(follow(Arc::downgrade(self)));
        }
        rx
    }

    /// Starts a watcher; events (or one error, then the end) arrive on the receiver. It ends
    /// when the receiver is dropped.
    pub fn watch(self: &Arc<Hub>, filter: Filter) -> mpsc::Receiver<Result<Event>> {
        let (tx, rx) = mpsc::channel(PAGE);
        let live = self.subscribe();
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut w = Watcher {
                store,
                filter,
                cursors: HashMap::new(),
                out: tx,
            };
            if let Err(e) = w.run(live).await {
                let _ = w.out.send(Err(e)).await;
            }
        });
        rx
    }
}

/// The hub's loop: reads every pool after its cursors and broadcasts. Pools present at start
/// begin at their newest event (watchers catch up from the store themselves).
async fn follow(hub: Weak<Hub>) {
    let mut cursors: Option<HashMap<String, u64>> = None;
    loop {
        let Some(h) = hub.upgrade() else { return };
        if h.tx.receiver_count() == 0 {
            h.running.store(false, Ordering::Release);
            // A watcher that subscribed meanwhile found `running` still set: keep going.
            if h.tx.receiver_count() == 0 || h.running.swap(true, Ordering::AcqRel) {
                return;
            }
        }
        let mut ticks = h.store.changes();
        ticks.borrow_and_update();
        if let Err(e) = round(&h, &mut cursors).await {
            tracing::warn!(error = %e, "event follower cannot read the store; retrying");
        }
        drop(h);
        tokio::select! {
            _ = ticks.changed() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

async fn round(hub: &Hub, cursors: &mut Option<HashMap<String, u64>>) -> Result<()> {
    let pools = hub.store.pools().await?;
    let cursors = match cursors {
        Some(c) => c,
        None => {
            let mut c = HashMap::new();
            for p in &pools {
                c.insert(
                    p.clone(),
                    hub.store.events_after(p, u64::MAX, 0).await?.last,
                );
            }
            cursors.insert(c)
        }
    };
    for pool in pools {
        let cursor = cursors.entry(pool.clone()).or_insert(0);
        loop {
            let page = hub.store.events_after(&pool, *cursor, PAGE).await?;
            // Trimmed past our cursor (a long outage): go on from what is kept; watchers
            // fill or refuse for themselves.
            let full = page.events.len() == PAGE;
            for e in page.events {
                *cursor = e.cursor;
                let _ = hub.tx.send(Arc::new(e));
            }
            if !full {
                break;
            }
        }
    }
    Ok(())
}

struct Watcher {
    store: Arc<dyn Store>,
    filter: Filter,
    cursors: HashMap<String, u64>,
    out: mpsc::Sender<Result<Event>>,
}

/// The watcher's client went away.
struct Gone;

impl Watcher {
    async fn run(&mut self, mut live: broadcast::Receiver<Arc<Event>>) -> Result<()> {
        let initial = if self.filter.pools.is_empty() {
            self.store.pools().await?
        } else {
            self.filter.pools.clone()
        };
        for pool in initial {
            let start = match self.filter.after.get(&pool) {
                Some(c) => *c,
                None => self.store.events_after(&pool, u64::MAX, 0).await?.last,
            };
            self.cursors.insert(pool, start);
        }
        if self.catch_up().await?.is_err() {
            return Ok(());
        }
        loop {
            let got = tokio::select! {
                got = live.recv() => got,
                _ = self.out.closed() => return Ok(()),
            };
            let step = match got {
                Ok(e) if self.filter.covers(&e.pool) => self.take(&e).await?,
                Ok(_) => Ok(()),
                Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up().await?,
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            };
            if step.is_err() {
                return Ok(());
            }
        }
    }

    /// Delivers a broadcast event, first filling any hole before it from the store.
    async fn take(&mut self, e: &Event) -> Result<Result<(), Gone>> {
        // A pool this watcher has not seen yet appeared after it started: from its start.
        let cursor = *self.cursors.entry(e.pool.clone()).or_insert(0);
        if e.cursor <= cursor {
            return Ok(Ok(()));
        }
        if e.cursor > cursor + 1 {
            return self.fill(&e.pool, e.cursor).await;
        }
        self.cursors.insert(e.pool.clone(), e.cursor);
        Ok(self.deliver(e.clone()).await)
    }

    /// Reads every known pool (and, unfiltered, every pool) from the store to its end.
    async fn catch_up(&mut self) -> Result<Result<(), Gone>> {
        if self.filter.pools.is_empty() {
            for p in self.store.pools().await? {
                self.cursors.entry(p).or_insert(0);
            }
        }
        let pools: Vec<String> = self.cursors.keys().cloned().collect();
        for pool in pools {
            if self.fill(&pool, u64::MAX).await?.is_err() {
                return Ok(Err(Gone));
            }
        }
        Ok(Ok(()))
    }

    /// Delivers `pool`'s events from the store after the cursor, up to `until` (inclusive).
    async fn fill(&mut self, pool: &str, until: u64) -> Result<Result<(), Gone>> {
        loop {
            let cursor = self.cursors.get(pool).copied().unwrap_or(0);
            if cursor >= until {
                return Ok(Ok(()));
            }
            let page = self.store.events_after(pool, cursor, PAGE).await?;
            if page.oldest > cursor.saturating_add(1) {
                return Err(Error::OutOfRange(format!(
                    "pool {pool:?}: events after cursor {cursor} are no longer kept (the oldest \
                     is {}); resume from a newer cursor, or omit it to start now",
                    page.oldest
                )));
            }
            let full = page.events.len() == PAGE;
            for e in page.events.into_iter().take_while(|e| e.cursor <= until) {
                self.cursors.insert(pool.to_string(), e.cursor);
                if self.deliver(e).await.is_err() {
                    return Ok(Err(Gone));
                }
            }
            if !full {
                return Ok(Ok(()));
            }
        }
    }

    async fn deliver(&self, e: Event) -> Result<(), Gone> {
        if !self.filter.wants(&e) {
            return Ok(());
        }
        self.out.send(Ok(e)).await.map_err(|_| Gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract::{claim_context, context, rep, t0};
    use crate::store::memory::MemoryStore;

    async fn lead(store: &dyn Store, pool: &str, id: &str) {
        let mut ctx = context(id, 0.5);
        ctx.needs.pool = pool.into();
        claim_context(store, ctx, t0()).await.unwrap();
    }

    /// A watcher that reads nothing while 20,000 events pass the hub lags behind the
    /// broadcast; it then catches up from the store and still sees every cursor once. A pool
    /// that appears later is followed from its first event.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lagging_watcher_misses_nothing_and_new_pools_start_at_one() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        store.upsert_rep(rep("r", 1), t0()).await.unwrap();
        lead(&*store, "default", "first").await;
        let hub = Hub::new(store.clone());
        let mut rx = hub.watch(Filter {
            after: HashMap::from([("default".to_string(), 0)]),
            ..Filter::default()
        });
        let n = 20_000;
        for i in 0..n {
            lead(&*store, "default", &format!("l{i}")).await;
        }
        lead(&*store, "later", "x").await;
        let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
        while seen.values().map(Vec::len).sum::<usize>() < n + 2 {
            let e = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("events keep coming")
                .unwrap()
                .unwrap();
            seen.entry(e.pool).or_default().push(e.cursor);
        }
        let want: Vec<u64> = (1..=n as u64 + 1).collect();
        assert_eq!(seen["default"], want);
        assert_eq!(seen["later"], [1]);
    }
}
