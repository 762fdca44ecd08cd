//! The model registry on Redis: `<prefix>:{model}:gen`, `:history` (versions, newest first)
//! and `:a:<version>` (artifact bytes), changed only by registry.lua (one slot, atomic).
use std::sync::LazyLock;

use async_trait::async_trait;
use redis::Script;

use super::{RedisStore, conn::classify};
use crate::error::{Error, Result};
use crate::store::registry::{ModelRegistry, Published};

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("registry.lua")));

type Reply = (i64, Option<String>, Option<Vec<u8>>);

impl RedisStore {
    fn model_key(&self, what: &str) -> String {
        format!("{}:{{model}}:{what}", self.prefix)
    }

    async fn registry(&self, args: &[&[u8]]) -> Result<Reply> {
        let mut inv = SCRIPT.prepare_invoke();
        inv.key(self.model_key("gen"))
            .key(self.model_key("history"))
            .key(self.model_key("a:"));
        for a in args {
            inv.arg(*a);
        }
        let reply: Vec<redis::Value> =
            inv.invoke_async(&mut self.conn()).await.map_err(classify)?;
        let bad = || Error::Internal("model registry: unexpected reply".into());
        let mut it = reply.into_iter();
        let generation: i64 =
            redis::from_redis_value(it.next().ok_or_else(bad)?).map_err(|_| bad())?;
        let version: Option<String> = it
            .next()
            .map(redis::from_redis_value)
            .transpose()
            .map_err(|_| bad())?;
        let artifact: Option<Vec<u8>> = it
            .next()
            .map(redis::from_redis_value)
            .transpose()
            .map_err(|_| bad())?;
        Ok((generation, version, artifact))
    }
}

fn published((generation, version, artifact): Reply) -> Option<Published> {
    Some(Published {
        generation: u64::try_from(generation).ok()?,
        model_version: version?,
        artifact: artifact?,
    })
}

#[async_trait]
impl ModelRegistry for RedisStore {
    async fn generation(&self) -> Result<u64> {
        let g: Option<u64> = redis::cmd("GET")
            .arg(self.model_key("gen"))
            .query_async(&mut self.conn())
            .await
            .map_err(classify)?;
        Ok(g.unwrap_or(0))
    }

    async fn live(&self) -> Result<Option<Published>> {
        Ok(published(self.registry(&[b"live"]).await?))
    }

    async fn publish(&self, model_version: &str, artifact: &[u8], keep: usize) -> Result<u64> {
        let keep = keep.max(1).to_string();
        let r = self
            .registry(&[
                b"publish",
                model_version.as_bytes(),
                artifact,
                keep.as_bytes(),
            ])
            .await?;
        Ok(u64::try_from(r.0).unwrap_or(0))
    }

    async fn rollback(&self) -> Result<Option<Published>> {
        Ok(published(self.registry(&[b"rollback"]).await?))
    }
}
