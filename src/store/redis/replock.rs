//! A per-rep lease in Redis that serialises directory changes to one rep across replicas.
//!
//! A rep's pool is read from `rep-pool`, then the rep is removed from the old pool's table and
//! written to the new one: separate pools live in separate Cluster slots, so no single script
//! can do it. Without the lease, two concurrent moves of one rep both saw the old pool and each
//! wrote the rep into its own new pool (a "ghost": two slots, two pools, unreachable by id).
//! The lease is `SET NX PX` with a random token, released by a compare-and-delete script; if a
//! holder dies mid-change the lease lapses after `LEASE`.
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::Script;

use crate::error::{Error, Result};

use super::{RedisStore, classify};

/// How long a lease lives if its holder never releases it.
const LEASE: Duration = Duration::from_secs(10);
/// How long a call waits for another's lease before answering UNAVAILABLE.
const WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A held lease; give it back with [`RedisStore::unlock_rep`].
pub(super) struct RepLock {
    key: String,
    token: String,
}

fn token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

impl RedisStore {
    pub(super) async fn lock_rep(&self, rep_id: &str) -> Result<RepLock> {
        let key = self.global(&format!("replock:{rep_id}"));
        let token = token();
        let started = tokio::time::Instant::now();
        loop {
            let got: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(LEASE.as_millis() as u64)
                .query_async(&mut self.conn())
                .await
                .map_err(classify)?;
            if got.is_some() {
                return Ok(RepLock { key, token });
            }
            if started.elapsed() >= WAIT {
                return Err(Error::Unavailable(format!(
                    "rep {rep_id:?} is being changed by another call; retry"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Releases the lease if it is still ours (a failure leaves it to lapse).
    pub(super) async fn unlock_rep(&self, lock: RepLock) {
        let released: redis::RedisResult<i64> = Script::new(RELEASE)
            .key(&lock.key)
            .arg(&lock.token)
            .invoke_async(&mut self.conn())
            .await;
        if let Err(e) = released {
            tracing::warn!(error = %super::redact(&e.to_string()), "rep lease not released; it lapses");
        }
    }
}
