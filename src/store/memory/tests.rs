//! The memory store's own cases (the shared ones are in store::contract).
use super::*;
use crate::store::contract::{claim, rep, t0};

/// At the limit the oldest closed lead is forgotten; with none closed, a new lead is
/// refused (RESOURCE_EXHAUSTED) and nothing changes. Replays of held leads still answer.
#[tokio::test]
async fn the_lead_limit_forgets_closed_leads_then_refuses() {
    let store = MemoryStore::with_max_leads(3);
    store.upsert_rep(rep("r", 1), t0()).await.unwrap();
    for id in ["a", "b", "c"] {
        claim(&store, id, 0.5, t0()).await;
    }
    let full = crate::store::contract::try_claim(&store, "d", 0.5, t0()).await;
    assert!(matches!(full, Err(Error::ResourceExhausted(_))), "{full:?}");
    assert_eq!(store.lock().leads.len(), 3);
    assert!(matches!(
        claim(&store, "b", 0.5, t0()).await,
        Claim::Queued { .. }
    ));
    store.close("a", Outcome::Won, t0()).await.unwrap();
    // "a" is closed (and "b" was drained onto r): "d" fits once "a" is forgotten.
    claim(&store, "d", 0.5, t0()).await;
    assert_eq!(store.lookup("a").await.unwrap(), None);
    assert!(store.lookup("d").await.unwrap().is_some());
    assert_eq!(store.outcomes().await.unwrap().len(), 1);
}

/// The byte limit counts each lead's context: big leads fill it long before the lead
/// count does; closing one and forgetting it (and its kept outcome) makes room again.
#[tokio::test]
async fn the_byte_limit_counts_lead_contexts() {
    use crate::domain::lead::AttrValue;
    use crate::store::contract::{claim_context, context};
    let big = |id: &str| {
        let mut ctx = context(id, 0.5);
        for a in 0..100 {
            ctx.lead
                .attributes
                .insert(format!("a{a}"), AttrValue::String("x".repeat(1000)));
        }
        ctx
    };
    let one = crate::domain::packed::PackedContext::pack(&big("x")).heap_bytes();
    assert!(one > 100_000, "{one}");
    // Room for three big leads (and a kept outcome's worth less than one more).
    let store = MemoryStore::with_limits(1000, 3 * one + one / 2);
    store.upsert_rep(rep("r", 1), t0()).await.unwrap();
    for id in ["a", "b", "c"] {
        claim_context(&store, big(id), t0()).await.unwrap();
    }
    let full = claim_context(&store, big("d"), t0()).await;
    let Err(Error::ResourceExhausted(m)) = full else {
        panic!("{full:?}")
    };
    assert!(m.contains("store.memory_max_bytes"), "{m}");
    // Small leads still fit in what is left.
    claim(&store, "small", 0.5, t0()).await;
    store.close("a", Outcome::Won, t0()).await.unwrap();
    claim_context(&store, big("d"), t0()).await.unwrap();
    assert_eq!(store.lookup("a").await.unwrap(), None, "a was forgotten");
    let s = store.lock();
    let counted: usize = s
        .leads
        .values()
        .map(|e| match e {
            LeadEntry::Assigned(_, c) | LeadEntry::Queued(_, c) => c.heap_bytes(),
        })
        .sum::<usize>()
        + s.outcomes
            .iter()
            .map(|o| o.context.heap_bytes())
            .sum::<usize>();
    assert_eq!(s.bytes, counted, "the running count matches the contents");
}
