//! What the durable file store needs of the memory store: its whole state as bytes and back,
//! and cheap answers to "would this call change anything?".
use super::MemoryStore;
use super::state::{LeadEntry, State};
use crate::domain::assignment::AssignmentState;
use crate::error::{Error, Result};
use crate::store::registry::{ModelRegistry, Published};

#[async_trait::async_trait]
impl ModelRegistry for MemoryStore {
    async fn generation(&self) -> Result<u64> {
        self.registry.generation().await
    }

    async fn live(&self) -> Result<Option<Published>> {
        self.registry.live().await
    }

    async fn publish(&self, model_version: &str, artifact: &[u8], keep: usize) -> Result<u64> {
        self.registry.publish(model_version, artifact, keep).await
    }

    async fn rollback(&self) -> Result<Option<Published>> {
        self.registry.rollback().await
    }
}

impl MemoryStore {
    /// The registry's generation and entries (newest first), for the file store to persist.
    pub fn registry_entries(&self) -> crate::store::registry::Entries {
        self.registry.entries()
    }

    pub fn restore_registry(&self, generation: u64, entries: Vec<(String, Vec<u8>)>) {
        self.registry.restore(generation, entries);
    }

    /// The whole state, serialized under the lock (so it is one consistent moment).
    pub fn snapshot(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(&*self.lock()).map_err(|e| Error::Internal(format!("snapshot: {e}")))
    }

    /// Replaces the state with a snapshot's, keeping the configured event retention.
    pub fn restore(&self, bytes: &[u8]) -> std::result::Result<(), String> {
        let mut fresh: State = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let mut s = self.lock();
        fresh.retention = s.retention;
        *s = fresh;
        Ok(())
    }

    /// Some(true) for a lead assigned, offered or queued; Some(false) for a closed one; None
    /// for one the store does not hold.
    pub fn is_open(&self, lead_id: &str) -> Option<bool> {
        self.lock().leads.get(lead_id).map(|e| match e {
            LeadEntry::Assigned(a, _) => !matches!(a.state, AssignmentState::Closed(_)),
            LeadEntry::Queued(..) => true,
        })
    }

    pub fn has_rep(&self, rep_id: &str) -> bool {
        self.lock().reps.contains_key(rep_id)
    }

    /// Leads held (open and closed); the file store snapshots no more often than this many
    /// changes, so a snapshot's cost stays proportional to the changes it saves replaying.
    pub fn lead_count(&self) -> usize {
        self.lock().leads.len()
    }
}
