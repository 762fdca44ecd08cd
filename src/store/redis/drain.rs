//! Draining a pool's queue in Redis: queued leads claimed in queue order while reps have room.
use std::collections::HashSet;

use jiff::Timestamp;
use redis::AsyncCommands;

use crate::domain::assignment::{Assignment, AssignmentState, LeadContext};
use crate::domain::routing;
use crate::error::Result;

use super::reply::num;
use super::state::RepState;
use super::{RedisStore, unavailable};

impl RedisStore {
    /// Assigns queued leads of `pool` in queue order while any rep might have room.
    pub(super) async fn drain_pool(&self, pool: &str, now: Timestamp) -> Result<Vec<Assignment>> {
        const BATCH: isize = 200;
        let keys = self.pool(pool);
        let mut conn = self.conn();
        let reps = self.directory.load().reps.clone();
        let everyone = reps.iter().filter(|r| r.pool == pool && r.active).count();
        let mut drained = Vec::new();
        let mut offset: isize = 0;
        loop {
            let room = self.reps_with_room(pool, now).await?;
            if room.is_empty() {
                break;
            }
            let members: Vec<String> = conn
                .zrange(keys.k("queue"), offset, offset + BATCH - 1)
                .await
                .map_err(unavailable)?;
            if members.is_empty() {
                break;
            }
            let mut pipe = redis::pipe();
            for m in &members {
                let id = m.split_once(':').map_or(m.as_str(), |(_, id)| id);
                pipe.hget(keys.lead(id), "ctx");
            }
            let ctxs: Vec<Option<String>> =
                pipe.query_async(&mut conn).await.map_err(unavailable)?;
            // Leads of this batch still queued afterwards; the next batch starts past them.
            let mut stayed: isize = 0;
            for json in ctxs {
                // A member without a readable record (closed meanwhile) is skipped; one that is
                // unreadable yet queued stays, and is counted so the walk moves past it.
                let Some(Ok(ctx)) = json.map(|j| serde_json::from_str::<LeadContext>(&j)) else {
                    stayed += 1;
                    continue;
                };
                let ranking = routing::rank(&reps, &ctx.needs, now, None);
                // Nobody who had room at the start of this batch can take it: no round trip.
                // (A queue of leads that need skills the free reps lack used to cost one
                // EVALSHA each, on every drain.)
                if !ranking.candidates.iter().any(|c| room.contains(&c.rep_id)) {
                    stayed += 1;
                    continue;
                }
                let reply = self
                    .run_claim("queued", &ctx, "", &ranking.candidates, now, "")
                    .await?;
                if reply.kind() == "noroom" && ranking.candidates.len() == everyone {
                    // Every rep of the pool was asked and none had room, so nobody further down
                    // the queue fits either. Stopping also keeps a lower lead from taking
                    // capacity that frees while we walk the queue.
                    return Ok(drained);
                }
                if reply.kind() == "noroom" {
                    stayed += 1;
                }
                if reply.kind() == "assigned" {
                    drained.push(Assignment {
                        lead_id: ctx.lead.id.clone(),
                        rep_id: reply.head[1].clone(),
                        pool: pool.to_string(),
                        state: AssignmentState::Open,
                        probability: ctx.probability,
                        segment: ctx.segment.clone(),
                        assigned_at_ms: num(&reply.head[2]).unwrap_or(0),
                        closed_at_ms: None,
                    });
                }
            }
            offset += stayed;
        }
        Ok(drained)
    }

    /// Active reps of the pool with both capacity and quota left, from one read of the
    /// table (a cheap filter for draining; the claim script decides for real).
    async fn reps_with_room(&self, pool: &str, now: Timestamp) -> Result<HashSet<String>> {
        let keys = self.pool(pool);
        let table: Vec<u8> = self
            .conn()
            .get(keys.k("table"))
            .await
            .map_err(unavailable)?;
        let dir = self.directory.load();
        Ok(dir
            .reps
            .iter()
            .filter(|r| r.pool == pool && r.active)
            .filter(|r| {
                let stored = dir
                    .slots
                    .get(&r.id)
                    .and_then(|s| RepState::in_table(&table, *s));
                let (load, used, _) = RepState::live(stored, r.period(now));
                load < r.capacity && r.daily_quota.is_none_or(|q| used < q)
            })
            .map(|r| r.id.clone())
            .collect())
    }
}
