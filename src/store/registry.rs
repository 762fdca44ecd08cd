//! The model registry: which artifact is live for every replica sharing a store, with the
//! versions before it for a rollback. Promotion publishes; replicas poll the generation.
use async_trait::async_trait;

use crate::error::Result;

/// A live artifact as the registry holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// Bumped by every publish and rollback; replicas compare it to what they last loaded.
    pub generation: u64,
    pub model_version: String,
    pub artifact: Vec<u8>,
}

#[async_trait]
pub trait ModelRegistry: Send + Sync {
    /// The current generation; 0 when nothing was ever published. One cheap read (polled).
    async fn generation(&self) -> Result<u64>;
    /// The live entry, or None when the registry is empty.
    async fn live(&self) -> Result<Option<Published>>;
    /// Makes `artifact` live (it moves to the front if it was kept already) and keeps at
    /// most `keep` entries in all. Returns the new generation.
    async fn publish(&self, model_version: &str, artifact: &[u8], keep: usize) -> Result<u64>;
    /// Drops the live entry and makes the one before it live; None (and no change) when
    /// there is no earlier entry.
    async fn rollback(&self) -> Result<Option<Published>>;
}

/// A generation and the kept (version, artifact) entries, newest first.
pub type Entries = (u64, Vec<(String, Vec<u8>)>);

/// The registry of one process (memory://): an empty one until the first publish.
#[derive(Default)]
pub struct LocalRegistry {
    state: std::sync::Mutex<Entries>,
}

impl LocalRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entries, newest first (the file store persists them).
    pub fn entries(&self) -> Entries {
        self.lock().clone()
    }

    pub fn restore(&self, generation: u64, entries: Vec<(String, Vec<u8>)>) {
        *self.lock() = (generation, entries);
    }
}

fn head(generation: u64, entries: &[(String, Vec<u8>)]) -> Option<Published> {
    entries.first().map(|(v, a)| Published {
        generation,
        model_version: v.clone(),
        artifact: a.clone(),
    })
}

#[async_trait]
impl ModelRegistry for LocalRegistry {
    async fn generation(&self) -> Result<u64> {
        Ok(self.lock().0)
    }

    async fn live(&self) -> Result<Option<Published>> {
        let s = self.lock();
        Ok(head(s.0, &s.1))
    }

    async fn publish(&self, model_version: &str, artifact: &[u8], keep: usize) -> Result<u64> {
        let mut s = self.lock();
        s.1.retain(|(v, _)| v != model_version);
        s.1.insert(0, (model_version.to_string(), artifact.to_vec()));
        s.1.truncate(keep.max(1));
        s.0 += 1;
        Ok(s.0)
    }

    async fn rollback(&self) -> Result<Option<Published>> {
        let mut s = self.lock();
        if s.1.len() < 2 {
            return Ok(None);
        }
        s.1.remove(0);
        s.0 += 1;
        Ok(head(s.0, &s.1))
    }
}
