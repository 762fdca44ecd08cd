//! The engine after a decision: offers, first touch, deadlines and listings.
use std::collections::HashMap;

use crate::domain::assignment::Assignment;
use crate::domain::lead::{validate_id, validate_pool};
use crate::error::{Error, Result};
use crate::store::{DueKind, ListItem, ListPage, ListQuery, Listed, Release, Released};

use super::Engine;

/// Deadlines handled per pool per pass.
const DUE_BATCH: usize = 256;

/// Longest reason a rep may give when declining.
const MAX_REASON: usize = 512;

/// Most queued leads one reading visits per pool (the queue gauges, the stale-queue count, the
/// console's queue board): bounded so a huge queue cannot stall a scrape, a report or a page.
pub const MAX_QUEUE_READ: usize = 100_000;

impl Engine {
    pub async fn accept(&self, lead_id: &str, rep_id: &str) -> Result<Assignment> {
        validate_id("lead_id", lead_id)?;
        validate_id("rep_id", rep_id)?;
        crate::observe::annotate(lead_id, Some(rep_id), None);
        self.store().accept(lead_id, rep_id, self.now()).await
    }

    pub async fn decline(&self, lead_id: &str, rep_id: &str, reason: &str) -> Result<Released> {
        validate_id("lead_id", lead_id)?;
        validate_id("rep_id", rep_id)?;
        crate::observe::annotate(lead_id, Some(rep_id), None);
        if reason.len() > MAX_REASON {
            return Err(Error::invalid(
                "reason",
                format!("has more than {MAX_REASON} bytes"),
            ));
        }
        let reason = if reason.trim().is_empty() {
            "declined".to_string()
        } else {
            reason.trim().to_string()
        };
        self.store()
            .release(lead_id, rep_id, Release::Declined(reason), self.now())
            .await
    }

    /// `rep_id` may be empty (whoever holds the lead).
    pub async fn mark_contacted(&self, lead_id: &str, rep_id: &str) -> Result<Assignment> {
        validate_id("lead_id", lead_id)?;
        if !rep_id.is_empty() {
            validate_id("rep_id", rep_id)?;
        }
        self.store().contacted(lead_id, rep_id, self.now()).await
    }

    /// A rep's inbox (when `rep_id` is set) or a pool's leads.
    pub async fn list(
        &self,
        pool: &str,
        rep_id: &str,
        states: Vec<Listed>,
        offset: usize,
        limit: usize,
    ) -> Result<ListPage> {
        let (pool, rep) = match (pool.is_empty(), rep_id.is_empty()) {
            (true, true) => return Err(Error::invalid("pool", "give a pool or a rep_id")),
            (_, false) => {
                validate_id("rep_id", rep_id)?;
                let reps = self.store().reps().await?;
                let rep = reps
                    .iter()
                    .find(|r| r.id == rep_id)
                    .ok_or_else(|| Error::not_found("rep", rep_id))?;
                if !pool.is_empty() && pool != rep.pool {
                    return Err(Error::invalid(
                        "pool",
                        format!("rep {rep_id:?} is in pool {:?}", rep.pool),
                    ));
                }
                (rep.pool.clone(), Some(rep_id.to_string()))
            }
            (false, true) => {
                validate_pool("pool", pool)?;
                (pool.to_string(), None)
            }
        };
        let q = ListQuery {
            pool,
            rep_id: rep,
            states,
            offset,
            limit,
        };
        self.store().list(&q).await
    }

    /// Calls `f` on each queued lead of `pool`, in queue order, at most `MAX_QUEUE_READ` of
    /// them; true when it stopped at that bound with more left.
    pub async fn each_queued(&self, pool: &str, mut f: impl FnMut(&ListItem)) -> Result<bool> {
        const PAGE: usize = 1000;
        let mut offset = 0;
        loop {
            let q = ListQuery {
                pool: pool.to_string(),
                rep_id: None,
                states: vec![Listed::Queued],
                offset,
                limit: PAGE,
            };
            let page = self.store().list(&q).await?;
            page.items.iter().for_each(&mut f);
            offset += PAGE;
            if !page.more {
                return Ok(false);
            }
            if offset >= MAX_QUEUE_READ {
                return Ok(true);
            }
        }
    }

    /// Expires due offers and flags (or reassigns) due SLA breaches in `pool`; returns the
    /// next deadline. Several replicas may run this at once: each step checks the deadline
    /// inside the store, so a lead is expired or flagged once.
    pub async fn run_deadlines(&self, pool: &str) -> Result<Option<i64>> {
        loop {
            let now = self.now();
            let due = self.store().due(pool, now, DUE_BATCH).await?;
            let n = due.leads.len();
            let mut contexts = HashMap::new();
            for (lead, kind) in due.leads {
                let done = match kind {
                    DueKind::Offer => self
                        .store()
                        .release(&lead, "", Release::Expired, now)
                        .await
                        .map(|r| {
                            tracing::info!(lead, rep = %r.rep_id, "offer expired");
                        }),
                    DueKind::Sla => self.breach(&lead, &mut contexts).await,
                    DueKind::QueueTtl => {
                        self.store().expire_queued(&lead, now).await.map(|closed| {
                            if closed.is_some() {
                                tracing::info!(lead, "queued lead expired (routing.queue_ttl_s)");
                            }
                        })
                    }
                };
                match done {
                    Ok(()) | Err(Error::FailedPrecondition(_) | Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            if n < DUE_BATCH {
                return Ok(due.next_ms);
            }
        }
    }

    async fn breach(&self, lead: &str, contexts: &mut HashMap<String, bool>) -> Result<()> {
        let Some(a) = self.store().breach(lead, self.now()).await? else {
            return Ok(());
        };
        tracing::warn!(lead, rep = %a.rep_id, "first-touch SLA breached");
        let reassign = match contexts.get(lead) {
            Some(r) => *r,
            None => self
                .store()
                .context(lead)
                .await?
                .is_some_and(|c| c.terms.sla_reassign),
        };
        contexts.insert(lead.to_string(), reassign);
        if reassign {
            match self.reassign(lead, None).await {
                Ok(_) | Err(Error::FailedPrecondition(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
