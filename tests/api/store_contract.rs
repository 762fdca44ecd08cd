//! The store contract suite, run against every backend: memory, one Redis, a Redis Cluster.
use std::sync::Arc;

use leadrouter::store::redis::{RedisConfig, RedisStore};
use leadrouter::store::{Store, memory::MemoryStore};

use crate::redis_server::{RedisCluster, RedisServer};

pub async fn redis_store(urls: String, cluster: bool) -> Arc<dyn Store> {
    let config = RedisConfig {
        urls: urls.split(',').map(str::to_string).collect(),
        cluster,
        prefix: "lr".into(),
        tls_ca_file: None,
        retention: Default::default(),
    };
    RedisStore::open(config).await.expect("store opens") as Arc<dyn Store>
}

mod memory {
    use super::*;
    leadrouter::store_contract_tests!(async {
        (Arc::new(MemoryStore::default()) as Arc<dyn Store>, ())
    });
}

mod redis {
    use super::*;
    leadrouter::store_contract_tests!(async {
        let server = RedisServer::start();
        (redis_store(server.url(), false).await, server)
    });
}

mod redis_cluster {
    use super::*;
    leadrouter::store_contract_tests!(async {
        let cluster = RedisCluster::start();
        (redis_store(cluster.url(), true).await, cluster)
    });
}
