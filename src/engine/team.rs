//! The engine's team calls: reps in, out, on and off, within the team limits.
use crate::domain::assignment::Assignment;
use crate::domain::lead::validate_id;
use crate::domain::rep::Rep;
use crate::error::{Error, Result};
use crate::store::RepStatus;

use super::Engine;

impl Engine {
    pub async fn upsert_rep(&self, rep: Rep) -> Result<(RepStatus, Vec<Assignment>)> {
        let rep = rep.validate()?;
        self.check_team_limits(&rep).await?;
        self.parts.store.upsert_rep(rep, self.now()).await
    }

    /// `routing.max_pools` and `routing.max_reps_per_pool`, checked against this replica's
    /// snapshot of the team (replicas racing near a limit may pass it by a few).
    async fn check_team_limits(&self, rep: &Rep) -> Result<()> {
        let policy = &self.parts.routing;
        let team = self.parts.store.reps().await?;
        let others = team.iter().filter(|r| r.id != rep.id);
        let in_pool = others.clone().filter(|r| r.pool == rep.pool).count();
        if in_pool >= policy.max_reps_per_pool {
            return Err(Error::ResourceExhausted(format!(
                "pool {:?} already has {in_pool} reps (routing.max_reps_per_pool)",
                rep.pool
            )));
        }
        if in_pool == 0 {
            let mut pools: Vec<&str> = others.map(|r| r.pool.as_str()).collect();
            pools.sort_unstable();
            pools.dedup();
            if pools.len() >= policy.max_pools {
                return Err(Error::ResourceExhausted(format!(
                    "the team already spans {} pools (routing.max_pools)",
                    pools.len()
                )));
            }
        }
        Ok(())
    }

    pub async fn rep(&self, rep_id: &str) -> Result<RepStatus> {
        validate_id("rep_id", rep_id)?;
        self.parts
            .store
            .rep(rep_id, self.now())
            .await?
            .ok_or_else(|| Error::not_found("rep", rep_id))
    }

    pub async fn reps(&self, pool: Option<&str>) -> Result<Vec<RepStatus>> {
        self.parts.store.rep_statuses(pool, self.now()).await
    }

    pub async fn delete_rep(&self, rep_id: &str) -> Result<()> {
        validate_id("rep_id", rep_id)?;
        self.parts.store.delete_rep(rep_id).await
    }

    pub async fn set_active(
        &self,
        rep_id: &str,
        active: bool,
    ) -> Result<(RepStatus, Vec<Assignment>)> {
        validate_id("rep_id", rep_id)?;
        self.parts
            .store
            .set_active(rep_id, active, self.now())
            .await
    }
}
