//! Feature extraction and scoring of a lead allocate nothing per request (issue: performance).
//! A counting global allocator counts this thread's allocations around the hot path.
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use leadrouter::domain::assignment::{LeadContext, Terms};
use leadrouter::domain::lead::Lead;
use leadrouter::domain::model::{Artifact, Model};
use leadrouter::domain::routing::Needs;
use leadrouter::store::memory::MemoryStore;
use leadrouter::store::{CapacityStore, Claim, ClaimRequest};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// Bytes allocated and not yet freed by this thread (frees of another thread's blocks are
    /// not seen; the tests keep everything on one thread).
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

fn add_live(delta: i64) {
    // `try_with`: the allocator runs while thread-locals are torn down too.
    let _ = LIVE.try_with(|c| c.set(c.get() + delta));
}

// SAFETY: defers every call to the system allocator; only counts on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        add_live(layout.size() as i64);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add_live(-(layout.size() as i64));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        add_live(new_size as i64 - layout.size() as i64);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Real bank rows as leads, typed as a form would send them: numbers as numbers (including the
/// macro columns the shipped spec treats as categories), words as strings.
fn leads() -> Vec<Lead> {
    let root = env!("CARGO_MANIFEST_DIR");
    let table = leadrouter::training::data::read(
        &std::path::Path::new(root).join("data/bank-marketing/bank-additional-full.csv.gz"),
        None,
    )
    .unwrap();
    (0..table.rows.len())
        .step_by(41)
        .enumerate()
        .filter_map(|(i, row)| table.lead(row, format!("l{i}"), &["y", "duration"]))
        .collect()
}

#[test]
fn extracting_and_scoring_a_lead_allocates_nothing() {
    let root = env!("CARGO_MANIFEST_DIR");
    let bytes = std::fs::read(format!("{root}/models/bank-default.json")).unwrap();
    let model = Model::new(Artifact::from_json(&bytes).unwrap());
    let spec = &model.artifact().spec;
    let leads = leads();
    assert!(leads.len() > 900);
    let mut row = vec![0.0; spec.n_columns()];
    let mut total = 0.0;
    let before = allocations();
    for lead in &leads {
        spec.extract_into(lead, &mut row).unwrap();
        total += model.predict_row(&row);
    }
    let after = allocations();
    assert_eq!(
        after - before,
        0,
        "allocations while scoring {} leads",
        leads.len()
    );
    assert!(total > 0.0);
    // The counter works: a scored explanation (attribute names as Strings) does allocate.
    let before = allocations();
    let s = model.score(&leads[0]).unwrap();
    assert!(allocations() > before, "{s:?}");
}

fn live_bytes() -> i64 {
    LIVE.with(Cell::get)
}

/// A bank lead as the engine hands it to a store: scored, segmented, with the default needs.
fn context(lead: Lead, probability: f64) -> LeadContext {
    LeadContext {
        lead,
        needs: Needs {
            pool: "default".into(),
            required_skills: vec![],
            preferred: vec![],
        },
        probability,
        segment: "nurture".into(),
        model_version: "bank-default-4f1c2a9e".into(),
        terms: Terms::default(),
        expected_value: 0.0,
    }
}

/// Issue 16, target 4: a queued lead costs at most 1 KiB of the memory store's heap. Counted
/// with the allocator (what the store keeps, without allocator slack; BENCHMARKS.md has RSS).
#[test]
fn a_queued_lead_costs_at_most_a_kibibyte_in_the_memory_store() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let leads = leads();
    let n = leads.len() as i64;
    let contexts: Vec<LeadContext> = leads
        .into_iter()
        .enumerate()
        .map(|(i, l)| context(l, (i % 97) as f64 / 100.0))
        .collect();
    // Warm-up lead: the pool's queue, event log and report period exist before counting.
    let store = MemoryStore::default();
    let now = jiff::Timestamp::now();
    let claim = |ctx: LeadContext| ClaimRequest {
        context: ctx,
        candidates: vec![],
        now,
    };
    let mut warm = contexts[0].clone();
    warm.lead.id = "warm-up".into();
    rt.block_on(store.claim(claim(warm))).unwrap();
    let packed: usize = contexts
        .iter()
        .map(|c| leadrouter::domain::packed::encode(c).len())
        .sum();
    // The contexts themselves move into the store: count them as they stood outside it.
    let before = live_bytes();
    let outside = {
        let copies = contexts.clone();
        let b = live_bytes() - before;
        drop(copies);
        b
    };
    let before = live_bytes();
    for ctx in contexts {
        let c = rt.block_on(store.claim(claim(ctx))).unwrap();
        assert!(matches!(c, Claim::Queued { .. }), "{c:?}");
    }
    let kept = live_bytes() - before + outside;
    let per_lead = kept / n;
    println!(
        "{n} queued bank leads: {per_lead} B each (the context outside the store: {} B, \
         packed: {} B)",
        outside / n,
        packed as i64 / n
    );
    assert!(per_lead <= 1024, "{per_lead} B per queued lead");
    // The counter works: the store does hold them.
    assert!(per_lead > 100, "{per_lead}");
}
