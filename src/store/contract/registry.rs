//! Contract cases for the model registry.
use std::sync::Arc;

use crate::store::Store;

/// Publish, republish, trim to `keep`, roll back to the step before, and refuse a rollback
/// with nothing before it; the generation moves with every change.
pub async fn the_model_registry_publishes_keeps_and_rolls_back(store: Arc<dyn Store>) {
    assert_eq!(store.generation().await.unwrap(), 0);
    assert!(store.live().await.unwrap().is_none());
    assert!(store.rollback().await.unwrap().is_none());
    let g1 = store.publish("v1", b"{\"a\":1}", 3).await.unwrap();
    let g2 = store.publish("v2", b"{\"a\":2}", 3).await.unwrap();
    assert!(g2 > g1 && g1 > 0);
    let live = store.live().await.unwrap().unwrap();
    assert_eq!(
        (
            live.generation,
            live.model_version.as_str(),
            live.artifact.as_slice()
        ),
        (g2, "v2", &b"{\"a\":2}"[..])
    );
    store.publish("v3", b"{\"a\":3}", 3).await.unwrap();
    store.publish("v4", b"{\"a\":4}", 3).await.unwrap();
    // Kept: v4, v3, v2 (v1 fell off). Republishing v3 moves it to the front.
    store.publish("v3", b"{\"a\":3}", 3).await.unwrap();
    let back = store.rollback().await.unwrap().unwrap();
    assert_eq!(back.model_version, "v4");
    assert_eq!(store.generation().await.unwrap(), back.generation);
    let back = store.rollback().await.unwrap().unwrap();
    assert_eq!(
        (back.model_version.as_str(), back.artifact.as_slice()),
        ("v2", &b"{\"a\":2}"[..])
    );
    assert!(store.rollback().await.unwrap().is_none(), "v1 was not kept");
    assert_eq!(store.live().await.unwrap().unwrap().model_version, "v2");
}
