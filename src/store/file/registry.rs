//! The model registry on the file store: kept in the memory store's registry and written,
//! whole, to the redb table "models" in one transaction per change, so a restart serves the
//! promoted model.
use async_trait::async_trait;
use redb::TableDefinition;

use super::{FileStore, blocking, disk};
use crate::error::{Error, Result};
use crate::store::registry::{ModelRegistry, Published};

const MODELS: TableDefinition<&str, &[u8]> = TableDefinition::new("models");

type Entries = (u64, Vec<(String, String)>);

/// Loads the persisted registry into the memory store (at open).
pub(super) fn load(
    db: &redb::Database,
    mem: &crate::store::memory::MemoryStore,
) -> Result<(), String> {
    let tx = db.begin_read().map_err(|e| e.to_string())?;
    let table = match tx.open_table(MODELS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.to_string()),
    };
    let Some(row) = table.get("registry").map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let (generation, entries): Entries =
        serde_json::from_slice(row.value()).map_err(|e| format!("model registry: {e}"))?;
    let entries = entries
        .into_iter()
        .map(|(v, a)| (v, a.into_bytes()))
        .collect();
    mem.restore_registry(generation, entries);
    Ok(())
}

impl FileStore {
    /// Writes the memory store's registry to disk; the caller holds the log lock, so two
    /// changes cannot interleave their writes.
    async fn save_registry(&self) -> Result<()> {
        let (generation, entries) = self.mem.registry_entries();
        let entries: Vec<(String, String)> = entries
            .into_iter()
            .map(|(v, a)| {
                String::from_utf8(a)
                    .map(|a| (v, a))
                    .map_err(|_| Error::Internal("model registry: artifact is not UTF-8".into()))
            })
            .collect::<Result<_>>()?;
        let bytes = serde_json::to_vec(&(generation, entries))
            .map_err(|e| Error::Internal(e.to_string()))?;
        let db = self.db.clone();
        blocking(move || {
            let tx = db.begin_write().map_err(disk)?;
            {
                let mut t = tx.open_table(MODELS).map_err(disk)?;
                t.insert("registry", bytes.as_slice()).map_err(disk)?;
            }
            tx.commit().map_err(disk)
        })
        .await
    }
}

#[async_trait]
impl ModelRegistry for FileStore {
    async fn generation(&self) -> Result<u64> {
        self.mem.generation().await
    }

    async fn live(&self) -> Result<Option<Published>> {
        self.mem.live().await
    }

    async fn publish(&self, model_version: &str, artifact: &[u8], keep: usize) -> Result<u64> {
        if std::str::from_utf8(artifact).is_err() {
            return Err(Error::invalid("artifact", "is not UTF-8 JSON"));
        }
        let _log = self.log.lock().await;
        let before = self.mem.registry_entries();
        let g = self.mem.publish(model_version, artifact, keep).await?;
        if let Err(e) = self.save_registry().await {
            self.mem.restore_registry(before.0, before.1);
            return Err(e);
        }
        Ok(g)
    }

    async fn rollback(&self) -> Result<Option<Published>> {
        let _log = self.log.lock().await;
        let before = self.mem.registry_entries();
        let r = self.mem.rollback().await?;
        if r.is_some()
            && let Err(e) = self.save_registry().await
        {
            self.mem.restore_registry(before.0, before.1);
            return Err(e);
        }
        Ok(r)
    }
}
