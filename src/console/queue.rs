//! The queue board: depth and oldest wait per pool and segment, the first leads of each
//! queue with their place, and the leads no rep could take, with the reason.
use std::collections::{BTreeMap, HashMap};

use maud::{Markup, html};

use super::Console;
use super::layout::{ago, failed, num, urlencode, when};
use crate::store::ListItem;

/// Leads listed per pool with their place.
const SHOWN: usize = 50;

#[derive(Default)]
struct Depth {
    depth: usize,
    oldest: Option<i64>,
}

impl Depth {
    fn add(&mut self, at: i64) {
        self.depth += 1;
        self.oldest = Some(self.oldest.map_or(at, |o| o.min(at)));
    }
}

struct PoolQueue {
    pool: String,
    total: Depth,
    segments: BTreeMap<String, Depth>,
    first: Vec<ListItem>,
    /// The read stopped at MAX_READ.
    capped: bool,
}

async fn read(c: &Console, pool: &str) -> crate::error::Result<PoolQueue> {
    let (mut total, mut segments, mut first) = (Depth::default(), BTreeMap::new(), Vec::new());
    let capped = c
        .engine
        .each_queued(pool, |item| {
            let a = &item.assignment;
            total.add(a.assigned_at_ms);
            segments
                .entry(a.segment.clone())
                .or_insert_with(Depth::default)
                .add(a.assigned_at_ms);
            if first.len() < SHOWN {
                first.push(item.clone());
            }
        })
        .await?;
    Ok(PoolQueue {
        pool: pool.to_string(),
        total,
        segments,
        first,
        capped,
    })
}

pub async fn build(c: &Console, _q: &HashMap<String, String>) -> (Markup, Markup) {
    let now = c.engine.now().as_millisecond();
    let wait = |d: &Depth| {
        d.oldest
            .map_or("–".to_string(), |at| ago((now - at) / 1000))
    };
    let pools = c.engine.store().pools().await;
    let mut queues = Vec::new();
    let mut errors = Vec::new();
    for pool in pools.as_deref().unwrap_or_default() {
        match read(c, pool).await {
            Ok(q) => queues.push(q),
            Err(e) => errors.push((pool.clone(), e)),
        }
    }
    let unroutable = c.engine.recent().unroutable();
    let board = html! {
        @if let Err(e) = &pools { (failed("the pools", e)) }
        @for (pool, e) in &errors { (failed(&format!("pool {pool}"), e)) }
        table #queues {
            thead { tr { th { "Pool" } th { "Segment" } th.n { "Waiting" } th.n { "Oldest waiting" } } }
            tbody {
                @for q in &queues {
                    tr data-pool=(q.pool) {
                        td { b { (q.pool) } }
                        td.muted { "all" }
                        td.n data-k="depth" { (q.total.depth) @if q.capped { "+" } }
                        td.n data-k="oldest" { (wait(&q.total)) }
                    }
                    @for (segment, d) in &q.segments {
                        tr data-pool=(q.pool) data-segment=(segment) {
                            td {} td { (segment) } td.n data-k="depth" { (d.depth) } td.n { (wait(d)) }
                        }
                    }
                }
            }
        }
        @for q in queues.iter().filter(|q| !q.first.is_empty()) {
            h2 { "Queue of " (q.pool) }
            table.queue {
                thead { tr { th.n { "Place" } th { "Lead" } th { "Segment" } th.n { "Probability" } th { "Waiting since" } th.n { "Waiting" } } }
                tbody {
                    @for (i, item) in q.first.iter().enumerate() {
                        @let a = &item.assignment;
                        tr data-lead=(a.lead_id) {
                            td.n data-k="place" { (i + 1) }
                            td { a href=(format!("/ui/lead?id={}", urlencode(&a.lead_id))) { (a.lead_id) } }
                            td { (a.segment) }
                            td.n { (num(Some(a.probability), 3)) }
                            td { (when(a.assigned_at_ms)) }
                            td.n { (ago((now - a.assigned_at_ms) / 1000)) }
                        }
                    }
                }
            }
            @if q.total.depth > q.first.len() { p.muted { "… and " (q.total.depth - q.first.len()) " more." } }
        }
        h2 { "Unroutable leads" }
        @if unroutable.is_empty() {
            p.muted { "None lately on this replica." }
        } @else {
            table #unroutable {
                thead { tr { th { "When" } th { "Lead" } th { "Pool" } th { "Segment" } th { "Reason" } } }
                tbody {
                    @for u in &unroutable {
                        tr data-lead=(u.lead_id) {
                            td { (when(u.at_ms)) } td { (u.lead_id) } td { (u.pool) } td { (u.segment) } td data-k="reason" { (u.reason) }
                        }
                    }
                }
            }
            p.muted { "The newest 200 seen by this replica; unroutable leads are not stored (routing.queue_unroutable)." }
        }
    };
    (html! {}, board)
}
