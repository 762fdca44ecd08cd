//! Draining a pool's queue in Redis: the best queued lead that a rep with room can take,
//! again and again, looking at one lead per required-skill group.
//!
//! Every queued lead is also in its group's queue (`gq:<group id>`, the same members): all
//! leads of a group have the same candidates, so when a group's best lead finds no room, or
//! no rep with room has the group's skills, the rest of the group is skipped without a round
//! trip. A drain therefore costs a few reads plus one claim per lead it assigns, however long
//! the queue.
use std::collections::{HashMap, HashSet};

use jiff::Timestamp;
use redis::AsyncCommands;

use crate::domain::assignment::Assignment;
use crate::domain::rep::{Rep, ZoneCache};
use crate::domain::routing;
use crate::error::Result;

use super::reply::Head;
use super::state::RepState;
use super::{RedisStore, booked, classify};

impl RedisStore {
    pub(super) async fn drain_pool(&self, pool: &str, now: Timestamp) -> Result<Vec<Assignment>> {
        let keys = self.pool(pool);
        let mut conn = self.conn();
        let reps = self.directory.load().reps.clone();
        let mut drained = Vec::new();
        // Groups skipped for the rest of this drain (room only shrinks meanwhile, apart from
        // closes on other replicas, which drain themselves).
        let mut blocked: HashSet<String> = HashSet::new();
        let mut groups: Option<HashMap<String, Vec<String>>> = None;
        let mut last_gone: Option<String> = None;
        loop {
            let free = self.reps_with_room(pool, now).await?;
            if free.is_empty() {
                break;
            }
            let groups = match &mut groups {
                Some(g) => g,
                None => {
                    let raw: HashMap<String, String> =
                        conn.hgetall(keys.k("groups")).await.map_err(classify)?;
                    groups.insert(
                        raw.into_iter()
                            .filter_map(|(g, j)| Some((g, serde_json::from_str(&j).ok()?)))
                            .collect(),
                    )
                }
            };
            let open: Vec<&String> = groups
                .iter()
                .filter(|(g, skills)| {
                    !blocked.contains(*g)
                        && free
                            .iter()
                            .any(|r| skills.iter().all(|s: &String| r.skill(s) > 0.0))
                })
                .map(|(g, _)| g)
                .collect();
            if open.is_empty() {
                break;
            }
            let mut pipe = redis::pipe();
            for g in &open {
                pipe.cmd("ZRANGE")
                    .arg(keys.group_queue(g))
                    .arg(0)
                    .arg(0)
                    .arg("WITHSCORES");
            }
            let heads: Vec<Vec<(String, f64)>> =
                pipe.query_async(&mut conn).await.map_err(classify)?;
            let mut best: Option<(f64, String, String)> = None;
            for (g, head) in open.iter().zip(heads) {
                let Some((member, score)) = head.into_iter().next() else {
                    blocked.insert((*g).clone());
                    continue;
                };
                let better = best
                    .as_ref()
                    .is_none_or(|(s, m, _)| score.total_cmp(s).then_with(|| member.cmp(m)).is_lt());
                if better {
                    best = Some((score, member, (*g).clone()));
                }
            }
            let Some((_, member, group)) = best else {
                break;
            };
            let id = member.split_once(':').map_or(member.as_str(), |(_, id)| id);
            let (bytes, excl): (Option<Vec<u8>>, Option<String>) = redis::cmd("HMGET")
                .arg(keys.lead(id))
                .arg(&["ctx", "excl"])
                .query_async(&mut conn)
                .await
                .map_err(classify)?;
            let Some(Ok(ctx)) = bytes.map(|b| crate::domain::packed::decode(&b)) else {
                // An unreadable queued lead stays queued; its group waits for the next drain.
                tracing::error!(lead = %id, "queued lead without a readable context");
                blocked.insert(group);
                continue;
            };
            // Reps whose offer of this lead ended ("rep=how" lines).
            let excluded: Vec<String> = excl
                .unwrap_or_default()
                .lines()
                .filter_map(|l| Some(l.split_once('=')?.0.to_string()))
                .collect();
            let ranking = routing::rank_after_offers(&reps, &ctx.needs, now, &excluded);
            let reply = self
                .run_claim("queued", &ctx, "", &ranking.candidates, now, &[])
                .await?;
            match reply.head {
                Head::Assigned {
                    rep,
                    at,
                    offered,
                    deadline,
                } => drained.push(booked(&ctx, rep, at, offered, deadline)),
                // Taken or closed by another call meanwhile: the head has moved on. The same
                // member twice would mean a queue entry without a queued record; skip it.
                Head::Gone if last_gone.as_deref() != Some(member.as_str()) => {
                    last_gone = Some(member);
                }
                _ => {
                    blocked.insert(group);
                }
            }
        }
        Ok(drained)
    }

    /// Reps of the pool that could take a lead now: active, on shift, not on leave, below
    /// their (ramped) capacity and every quota, from one read of the table. A cheap filter;
    /// the claim script decides for real.
    async fn reps_with_room(&self, pool: &str, now: Timestamp) -> Result<Vec<Rep>> {
        let keys = self.pool(pool);
        let table: Vec<u8> = self.conn().get(keys.k("table")).await.map_err(classify)?;
        let dir = self.directory.load();
        let mut zones = ZoneCache::default();
        Ok(dir
            .reps
            .iter()
            .filter(|r| r.pool == pool && r.active)
            .filter(|r| {
                let at = r.availability(now, &mut zones);
                if at.on_leave || !at.on_shift {
                    return false;
                }
                let stored = dir
                    .slots
                    .get(&r.id)
                    .and_then(|s| RepState::in_table(&table, *s));
                let live = RepState::live(stored, &at.periods);
                live.load < routing::ramped(r.capacity, at.ramp_permille)
                    && r.quotas()
                        .iter()
                        .zip(live.counts)
                        .all(|(q, c)| q.is_none_or(|q| c < q))
            })
            .cloned()
            .collect())
    }
}
