//! Feature extraction and scoring of a lead allocate nothing per request (issue: performance).
//! A counting global allocator counts this thread's allocations around the hot path.
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use leadrouter::domain::lead::Lead;
use leadrouter::domain::model::{Artifact, Model};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers every call to the system allocator; only counts on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
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
