//! The team in Redis: rep profiles, availability and slots per pool, the pool list, and each
//! replica's ranking snapshot (reloaded when the `dirver` counter moves).
use std::collections::HashMap;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use jiff::Timestamp;
use redis::AsyncCommands;

use crate::domain::assignment::Assignment;
use crate::domain::rep::Rep;
use crate::error::{Error, Result};
use crate::store::{RepDirectory, RepStatus};

use super::state::RepState;
use super::{DIRECTORY_POLL, RedisStore, classify};

pub(super) struct Directory {
    pub(super) reps: Arc<[Rep]>,
    /// Rep id -> (slot, generation) in its pool's table.
    pub(super) slots: HashMap<String, (u32, u32)>,
    pub(super) version: Option<i64>,
}

/// A "slot:generation" value of a pool's `slots` hash.
pub(super) fn parse_slot(v: &str) -> Option<(u32, u32)> {
    let (slot, generation) = v.split_once(':')?;
    Some((slot.parse().ok()?, generation.parse().ok()?))
}

impl RedisStore {
    pub(super) async fn pools(&self) -> Result<Vec<String>> {
        let mut pools: Vec<String> = self
            .conn()
            .smembers(self.global("pools"))
            .await
            .map_err(classify)?;
        pools.sort();
        Ok(pools)
    }

    /// Registers a pool in the global set, once per process (the claim itself cannot: the set
    /// lives in another slot).
    pub(super) async fn register_pool(&self, pool: &str) -> Result<()> {
        let known = self
            .known_pools
            .lock()
            .map(|k| k.contains(pool))
            .unwrap_or(false);
        if !known {
            let _: i64 = self
                .conn()
                .sadd(self.global("pools"), pool)
                .await
                .map_err(classify)?;
            if let Ok(mut k) = self.known_pools.lock() {
                k.insert(pool.to_string());
            }
        }
        Ok(())
    }

    /// Reloads every rep profile (with its availability) into the local snapshot.
    pub(super) async fn refresh(&self) -> Result<()> {
        let mut conn = self.conn();
        let version: Option<i64> = conn.get(self.global("dirver")).await.map_err(classify)?;
        let mut reps = Vec::new();
        let mut slots = HashMap::new();
        for pool in self.pools().await? {
            let keys = self.pool(&pool);
            // One pipeline; rep.lua writes profile and slot together, and a rep seen without
            // its slot is left out of claims until the next refresh.
            let (profiles, active, pool_slots): (
                HashMap<String, String>,
                HashMap<String, String>,
                HashMap<String, String>,
            ) = redis::pipe()
                .hgetall(keys.k("reps"))
                .hgetall(keys.k("active"))
                .hgetall(keys.k("slots"))
                .query_async(&mut conn)
                .await
                .map_err(classify)?;
            slots.extend(
                pool_slots
                    .into_iter()
                    .filter_map(|(id, v)| Some((id, parse_slot(&v)?))),
            );
            for (id, json) in profiles {
                match serde_json::from_str::<Rep>(&json) {
                    Ok(mut r) => {
                        r.active = active.get(&id).is_none_or(|a| a == "1");
                        reps.push(r);
                    }
                    Err(e) => {
                        tracing::error!(rep = %id, error = %e, "unreadable rep profile in Redis")
                    }
                }
            }
        }
        reps.sort_by(|a, b| a.id.cmp(&b.id));
        self.directory.store(Arc::new(Directory {
            reps: reps.into(),
            slots,
            version,
        }));
        Ok(())
    }

    /// Restores registrations of pools that reps name but the pool set lost (a partial restore,
    /// an operator's SREM): without it their leads answer NOT_FOUND and their reps drop out of
    /// routing. Returns the pools restored.
    pub(super) async fn heal_pools(&self) -> Result<Vec<String>> {
        let named: Vec<String> = self
            .conn()
            .hvals(self.global("rep-pool"))
            .await
            .map_err(classify)?;
        let registered: std::collections::HashSet<String> =
            self.pools().await?.into_iter().collect();
        let mut missing: Vec<String> = named
            .into_iter()
            .filter(|p| !registered.contains(p))
            .collect();
        missing.sort();
        missing.dedup();
        if !missing.is_empty() {
            let _: i64 = self
                .conn()
                .sadd(self.global("pools"), &missing)
                .await
                .map_err(classify)?;
            tracing::warn!(pools = ?missing, "restored lost pool registrations");
        }
        Ok(missing)
    }

    async fn bump_directory(&self) -> Result<()> {
        let _: i64 = self
            .conn()
            .incr(self.global("dirver"), 1)
            .await
            .map_err(classify)?;
        self.refresh().await
    }

    /// Finds the pool holding a lead and the lead's record fields.
    async fn rep_pool(&self, rep_id: &str) -> Result<Option<String>> {
        self.conn()
            .hget(self.global("rep-pool"), rep_id)
            .await
            .map_err(classify)
    }

    async fn statuses_of_pool(
        &self,
        pool: &str,
        only: Option<&str>,
        now: Timestamp,
    ) -> Result<Vec<RepStatus>> {
        let keys = self.pool(pool);
        type Maps = (
            HashMap<String, String>,
            HashMap<String, String>,
            HashMap<String, String>,
            Vec<u8>,
            HashMap<String, u32>,
        );
        let (profiles, active, slots, table, breaches): Maps = redis::pipe()
            .hgetall(keys.k("reps"))
            .hgetall(keys.k("active"))
            .hgetall(keys.k("slots"))
            .get(keys.k("table"))
            .hgetall(keys.k("breaches"))
            .query_async(&mut self.conn())
            .await
            .map_err(classify)?;
        let mut out = Vec::new();
        for (id, json) in profiles {
            if only.is_some_and(|o| o != id) {
                continue;
            }
            let mut rep: Rep = serde_json::from_str(&json)
                .map_err(|e| Error::Internal(format!("rep {id}: {e}")))?;
            rep.active = active.get(&id).is_none_or(|a| a == "1");
            let stored = slots
                .get(&id)
                .and_then(|v| parse_slot(v))
                .and_then(|s| RepState::in_table(&table, s));
            let live = RepState::live(stored, &rep.periods(now));
            let mut status = RepStatus::new(rep, live, now);
            status.sla_breaches = breaches.get(&id).copied().unwrap_or(0);
            out.push(status);
        }
        out.sort_by(|a, b| a.rep.id.cmp(&b.rep.id));
        Ok(out)
    }

    async fn rep_op(&self, pool: &str, args: &[&str]) -> Result<Vec<String>> {
        let mut inv = self.rep.prepare_invoke();
        for k in self.pool(pool).rep() {
            inv.key(k);
        }
        for a in args {
            inv.arg(*a);
        }
        inv.invoke_async(&mut self.conn()).await.map_err(classify)
    }
}

/// Polls the directory version and reloads the snapshot when another replica changed it.
pub(super) async fn watch_directory(store: Weak<RedisStore>) {
    // Every HEAL_EVERY polls (2 s), check that every pool a rep names is registered.
    const HEAL_EVERY: u32 = 8;
    let mut tick = 0u32;
    loop {
        tokio::time::sleep(DIRECTORY_POLL).await;
        let Some(s) = store.upgrade() else { return };
        tick = tick.wrapping_add(1);
        let healed = tick.is_multiple_of(HEAL_EVERY)
            && s.heal_pools()
                .await
                .is_ok_and(|restored| !restored.is_empty());
        let current: redis::RedisResult<Option<i64>> = s.conn().get(s.global("dirver")).await;
        if let Ok(v) = current
            && (healed || v != s.directory.load().version)
            && let Err(e) = s.refresh().await
        {
            tracing::warn!(error = %e, "directory refresh failed");
        }
    }
}

/// An error after a rep was written says so: retrying the same UpsertRep is safe.
fn saved_but(e: Error, rep_id: &str) -> Error {
    let done = format!("rep {rep_id:?} was saved, but telling the other replicas failed");
    match e {
        Error::Unavailable(m) => Error::Unavailable(format!("{done}: {m}")),
        Error::ResourceExhausted(m) => Error::ResourceExhausted(format!("{done}: {m}")),
        other => other,
    }
}

/// Directory changes to one rep, each run under that rep's lease (`replock.rs`).
impl RedisStore {
    async fn upsert_rep_held(
        &self,
        rep: Rep,
        now: Timestamp,
    ) -> Result<(RepStatus, Vec<Assignment>)> {
        if let Some(old) = self.rep_pool(&rep.id).await?
            && old != rep.pool
        {
            let r = self.rep_op(&old, &["delete", &rep.id]).await?;
            if r.first().map(String::as_str) == Some("busy") {
                return Err(Error::FailedPrecondition(format!(
                    "rep {:?} holds open assignments; close or reassign them before changing its pool",
                    rep.id
                )));
            }
        }
        let json = serde_json::to_string(&rep).map_err(|e| Error::Internal(e.to_string()))?;
        let quotas = rep
            .quotas()
            .map(|q| q.map(|q| q.to_string()).unwrap_or_default());
        let active = if rep.active { "1" } else { "0" };
        self.register_pool(&rep.pool).await?;
        let _: i64 = self
            .conn()
            .hset(self.global("rep-pool"), &rep.id, &rep.pool)
            .await
            .map_err(classify)?;
        self.rep_op(
            &rep.pool,
            &[
                "upsert",
                &rep.id,
                &json,
                &rep.capacity.to_string(),
                &quotas[0],
                &quotas[1],
                &quotas[2],
                &quotas[3],
                active,
            ],
        )
        .await?;
        // The rep is saved; what follows only tells the other replicas and drains the queue,
        // so an error from here on says the change itself is in.
        let after = async {
            self.bump_directory().await?;
            let drained = self.drain_pool(&rep.pool, now).await?;
            let status = self
                .rep(&rep.id, now)
                .await?
                .ok_or_else(|| Error::Internal("rep vanished".into()))?;
            Ok((status, drained))
        };
        after.await.map_err(|e| saved_but(e, &rep.id))
    }

    async fn delete_rep_held(&self, rep_id: &str) -> Result<()> {
        let recorded = self.rep_pool(rep_id).await?;
        // The recorded pool first; any other pool holds the rep only if a race before the
        // per-rep lease left a ghost there, and deleting heals it.
        let mut pools = self.pools().await?;
        if let Some(p) = &recorded {
            pools.retain(|x| x != p);
            pools.insert(0, p.clone());
        }
        let mut found = recorded.is_some();
        for pool in &pools {
            let r = self.rep_op(pool, &["delete", rep_id]).await?;
            match r.first().map(String::as_str) {
                Some("busy") => {
                    return Err(Error::FailedPrecondition(format!(
                        "rep {rep_id:?} holds {} open assignments in pool {pool:?}; close or \
                         reassign them first",
                        r[1]
                    )));
                }
                Some("missing") => {}
                _ => found = true,
            }
        }
        if !found {
            return Err(Error::not_found("rep", rep_id));
        }
        let _: i64 = self
            .conn()
            .hdel(self.global("rep-pool"), rep_id)
            .await
            .map_err(classify)?;
        self.bump_directory().await
    }

    async fn set_active_held(
        &self,
        rep_id: &str,
        active: bool,
        now: Timestamp,
    ) -> Result<(RepStatus, Vec<Assignment>)> {
        let pool = self
            .rep_pool(rep_id)
            .await?
            .ok_or_else(|| Error::not_found("rep", rep_id))?;
        let r = self
            .rep_op(&pool, &["active", rep_id, if active { "1" } else { "0" }])
            .await?;
        if r.first().map(String::as_str) == Some("missing") {
            return Err(Error::not_found("rep", rep_id));
        }
        self.bump_directory().await?;
        let drained = if active {
            self.drain_pool(&pool, now).await?
        } else {
            vec![]
        };
        let status = self
            .rep(rep_id, now)
            .await?
            .ok_or_else(|| Error::not_found("rep", rep_id))?;
        Ok((status, drained))
    }
}

#[async_trait]
impl RepDirectory for RedisStore {
    async fn upsert_rep(&self, rep: Rep, now: Timestamp) -> Result<(RepStatus, Vec<Assignment>)> {
        let lock = self.lock_rep(&rep.id).await?;
        let r = self.upsert_rep_held(rep, now).await;
        self.unlock_rep(lock).await;
        r
    }

    async fn delete_rep(&self, rep_id: &str) -> Result<()> {
        let lock = self.lock_rep(rep_id).await?;
        let r = self.delete_rep_held(rep_id).await;
        self.unlock_rep(lock).await;
        r
    }

    async fn set_active(
        &self,
        rep_id: &str,
        active: bool,
        now: Timestamp,
    ) -> Result<(RepStatus, Vec<Assignment>)> {
        let lock = self.lock_rep(rep_id).await?;
        let r = self.set_active_held(rep_id, active, now).await;
        self.unlock_rep(lock).await;
        r
    }
    async fn rep(&self, rep_id: &str, now: Timestamp) -> Result<Option<RepStatus>> {
        let Some(pool) = self.rep_pool(rep_id).await? else {
            return Ok(None);
        };
        Ok(self
            .statuses_of_pool(&pool, Some(rep_id), now)
            .await?
            .into_iter()
            .next())
    }

    async fn reps(&self) -> Result<Arc<[Rep]>> {
        Ok(self.directory.load().reps.clone())
    }

    async fn rep_statuses(&self, pool: Option<&str>, now: Timestamp) -> Result<Vec<RepStatus>> {
        let mut out = Vec::new();
        for p in self.pools().await? {
            if pool.is_none_or(|want| want == p) {
                out.extend(self.statuses_of_pool(&p, None, now).await?);
            }
        }
        out.sort_by(|a, b| a.rep.id.cmp(&b.rep.id));
        Ok(out)
    }
}
