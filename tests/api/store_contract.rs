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
        zone: jiff::tz::TimeZone::UTC,
    };
    RedisStore::open(config).await.expect("store opens") as Arc<dyn Store>
}

mod memory {
    use super::*;
    leadrouter::store_contract_tests!(async {
        (Arc::new(MemoryStore::default()) as Arc<dyn Store>, ())
    });
}

mod file {
    use super::*;
    leadrouter::store_contract_tests!(async {
        let dir = tempfile::tempdir().unwrap();
        let store = leadrouter::store::file::FileStore::open(
            &dir.path().join("lr.db"),
            MemoryStore::default(),
            // Snapshots every few changes, so every case runs across compactions too.
            3,
        )
        .await
        .unwrap();
        (Arc::new(store) as Arc<dyn Store>, dir)
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

/// Event retention by age on every backend: after events 64 (Redis trims every 64th append),
/// those older than the age limit are gone and the cursors left are still dense.
mod retention {
    use jiff::ToSpan;
    use leadrouter::domain::event::Retention;
    use leadrouter::store::contract::{claim, rep, t0};

    use super::*;

    const KEEP: Retention = Retention {
        count: 10_000,
        age_ms: 60_000,
    };

    async fn old_events_are_dropped_by_age(store: Arc<dyn Store>) {
        store.upsert_rep(rep("r", 1), t0()).await.unwrap();
        // 30 events at t0 (1 assigned, 29 queued), then 70 two minutes later.
        for i in 0..30 {
            claim(&*store, &format!("a{i}"), 0.5, t0()).await;
        }
        let later = t0() + 2.minutes();
        for i in 0..70 {
            claim(&*store, &format!("b{i}"), 0.5, later).await;
        }
        let page = store.events_after("default", 0, 1_000).await.unwrap();
        assert_eq!(page.oldest, 31, "events older than 60 s are dropped");
        assert_eq!(page.last, 100);
        assert_eq!(page.events.len(), 70);
        assert!(
            page.events
                .iter()
                .all(|e| e.at_ms == later.as_millisecond())
        );
    }

    #[tokio::test]
    async fn on_memory() {
        old_events_are_dropped_by_age(Arc::new(MemoryStore::default().retain(KEEP))).await;
    }

    async fn redis_with(url: String, cluster: bool) -> Arc<dyn Store> {
        let config = RedisConfig {
            urls: url.split(',').map(str::to_string).collect(),
            cluster,
            prefix: "lr".into(),
            tls_ca_file: None,
            retention: KEEP,
            zone: jiff::tz::TimeZone::UTC,
        };
        RedisStore::open(config).await.unwrap() as Arc<dyn Store>
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_redis() {
        let server = RedisServer::start();
        old_events_are_dropped_by_age(redis_with(server.url(), false).await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_cluster() {
        let cluster = RedisCluster::start();
        old_events_are_dropped_by_age(redis_with(cluster.url(), true).await).await;
    }
}
