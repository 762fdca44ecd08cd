//! The queue moves by itself: when a shift starts, or at a local midnight for reps with
//! quotas or time off (a period rolls over, a leave or a ramp day ends), every pool with reps
//! is drained, with no call from outside.
//!
//! Each replica works out the instants from its own directory snapshot; nothing scans the
//! queue on a timer. It sleeps until the next instant, at most `MAX_SLEEP` at a time, so a rep
//! added meanwhile (or a clock moved by a test) counts within that. On Redis several replicas
//! may drain at once; the claim script takes a lead only while it is still queued, so none is
//! assigned twice.
//!
//! Offer and SLA deadlines live in the store (a sorted set per pool on Redis), so any replica
//! can act on them and they survive restarts. Each pass reads the due ones per pool (one
//! range read of the head) and expires or flags them; the store checks each deadline again
//! inside its atomic step, so two replicas never expire the same offer twice.
use std::collections::BTreeSet;
use std::sync::Weak;
use std::time::Duration;

use jiff::Timestamp;

use crate::engine::Engine;

/// Longest single sleep: how late a deadline set by another replica may be acted on.
pub const MAX_SLEEP: Duration = Duration::from_millis(250);

/// Runs until the engine is dropped.
pub async fn run(engine: Weak<Engine>) {
    let mut last: Option<Timestamp> = None;
    loop {
        let Some(e) = engine.upgrade() else { return };
        let now = e.now();
        let next = match e.store().reps().await {
            Ok(reps) => {
                // Due: some rep changed between the last look and now (a rep added meanwhile
                // counts too: its change is measured from the last look).
                let from = last.unwrap_or(now);
                let due = reps.iter().filter_map(|r| r.next_change(from)).min();
                if due.is_some_and(|d| d <= now) {
                    let pools: BTreeSet<&str> = reps.iter().map(|r| r.pool.as_str()).collect();
                    for pool in pools {
                        match e.store().drain(pool, now).await {
                            Ok(d) if !d.is_empty() => {
                                tracing::info!(pool, drained = d.len(), "queue moved on schedule")
                            }
                            Ok(_) => {}
                            Err(err) => {
                                tracing::warn!(pool, error = %err, "scheduled drain failed")
                            }
                        }
                    }
                }
                last = Some(now);
                let shifts = reps.iter().filter_map(|r| r.next_change(now)).min();
                let deadline = deadlines(&e).await;
                match (shifts, deadline) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "scheduler cannot read the team");
                None
            }
        };
        drop(e);
        let wait = next
            .and_then(|n| Duration::try_from(n.duration_since(now)).ok())
            .map_or(MAX_SLEEP, |d| d.min(MAX_SLEEP));
        tokio::time::sleep(wait).await;
    }
}

/// Acts on every pool's due deadlines; returns the next one.
async fn deadlines(e: &Engine) -> Option<Timestamp> {
    let pools = match e.store().pools().await {
        Ok(p) => p,
        Err(err) => {
            tracing::warn!(error = %err, "scheduler cannot list pools");
            return None;
        }
    };
    let mut next: Option<i64> = None;
    for pool in pools {
        match e.run_deadlines(&pool).await {
            // The earliest of the pools' next deadlines (None when no pool has one).
            Ok(Some(n)) => next = Some(next.map_or(n, |m| m.min(n))),
            Ok(None) => {}
            Err(err) => tracing::warn!(pool, error = %err, "deadlines failed"),
        }
    }
    next.and_then(|ms| Timestamp::from_millisecond(ms).ok())
}
