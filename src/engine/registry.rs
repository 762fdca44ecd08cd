//! The live model as state of the cluster: a promotion publishes to the store's registry,
//! every replica polls its generation and swaps to what it names, a restart serves it, and a
//! rollback goes back one kept version.
use std::sync::atomic::Ordering;

use crate::domain::gate::{GatePolicy, judge};
use crate::domain::model::Artifact;
use crate::error::{Error, Result};

use super::{Engine, Swap};

impl Engine {
    /// Publishes a swap this replica made (after its gate), so every replica serves it.
    pub async fn publish(&self, swap: &Swap) -> Result<u64> {
        let g = self
            .parts
            .store
            .publish(
                &swap.gate.candidate_version,
                &swap.artifact,
                self.parts.registry_keep,
            )
            .await?;
        self.registry_seen.fetch_max(g, Ordering::Relaxed);
        Ok(g)
    }

    /// The registry generation this replica serves.
    pub fn registry_generation(&self) -> u64 {
        self.registry_seen.load(Ordering::Relaxed)
    }

    /// Loads the registry's live model when its generation moved since this replica last
    /// looked; returns the swap when the live version changed. No gate: the replica that
    /// published it ran the gate (or was forced) already.
    pub async fn sync_from_registry(&self) -> Result<Option<Swap>> {
        let g = self.parts.store.generation().await?;
        if g == 0 || g == self.registry_seen.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let Some(live) = self.parts.store.live().await? else {
            return Ok(None);
        };
        let swap = self.adopt(live.model_version, live.artifact)?;
        self.registry_seen.store(live.generation, Ordering::Relaxed);
        Ok(swap)
    }

    /// `promote --rollback`: the registry drops its live entry and the one before goes live
    /// here (and on every replica at its next poll). No gate: going back is the operator's
    /// decision.
    pub async fn rollback(&self) -> Result<Swap> {
        let Some(back) = self.parts.store.rollback().await? else {
            return Err(Error::FailedPrecondition(
                "no earlier model is kept in the registry to roll back to".into(),
            ));
        };
        self.registry_seen.store(back.generation, Ordering::Relaxed);
        let version = back.model_version.clone();
        match self.adopt(back.model_version, back.artifact)? {
            Some(swap) => Ok(swap),
            None => Err(Error::FailedPrecondition(format!(
                "the registry's previous model {version} is already live here"
            ))),
        }
    }

    /// Swaps to `bytes` unless that version is live already; keeps the live model's file
    /// path and time, so the file watch does not mistake the swap for a new file.
    fn adopt(&self, version: String, bytes: Vec<u8>) -> Result<Option<Swap>> {
        let live = self.model();
        if live.as_ref().is_some_and(|m| m.model.version() == version) {
            return Ok(None);
        }
        let artifact = Artifact::from_json(&bytes)?;
        let gate = judge(
            None,
            &artifact,
            Err("from the registry".into()),
            GatePolicy::default(),
        );
        let (path, modified) = match &live {
            Some(m) => (m.path.clone(), m.modified),
            None => (self.parts.model_path.clone().unwrap_or_default(), None),
        };
        Ok(Some(self.swap_in(artifact, bytes, path, modified, gate)))
    }
}
