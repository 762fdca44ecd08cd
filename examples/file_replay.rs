//! How long the file store takes to open after N changes, with snapshots (the default spacing)
//! and with the journal alone. Writes N claims in batches of 64 (as SubmitLeads does), closes
//! every other lead, then reopens each database and times it.
//! Run: `cargo run --release --example file_replay -- 100000` (BENCHMARKS.md, "File store").
use std::time::Instant;

use leadrouter::domain::assignment::Outcome;
use leadrouter::domain::routing;
use leadrouter::store::contract::{context, rep, t0};
use leadrouter::store::file::FileStore;
use leadrouter::store::memory::MemoryStore;
use leadrouter::store::{CapacityStore, ClaimRequest, RepDirectory};

/// Returns (seconds writing, the slowest batch's seconds: a snapshot pause shows there).
async fn fill(path: &std::path::Path, snapshot_every: u64, n: usize) -> (f64, f64) {
    let store = FileStore::open(path, MemoryStore::default(), snapshot_every)
        .await
        .unwrap();
    for i in 0..50 {
        store
            .upsert_rep(rep(&format!("r{i}"), 1_000_000), t0())
            .await
            .unwrap();
    }
    let reps = store.reps().await.unwrap();
    let started = Instant::now();
    let mut slowest = 0f64;
    for batch in (0..n).collect::<Vec<_>>().chunks(64) {
        let reqs = batch
            .iter()
            .map(|i| {
                let ctx = context(&format!("lead-{i}"), 0.5);
                let candidates = routing::rank(&reps, &ctx.needs, t0(), &[]).candidates;
                ClaimRequest {
                    context: ctx,
                    candidates,
                    now: t0(),
                }
            })
            .collect();
        let t = Instant::now();
        for r in store.claim_many(reqs).await {
            r.unwrap();
        }
        slowest = slowest.max(t.elapsed().as_secs_f64());
    }
    for i in (0..n).step_by(2) {
        store
            .close(&format!("lead-{i}"), Outcome::Won, t0())
            .await
            .unwrap();
    }
    (started.elapsed().as_secs_f64(), slowest)
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(100_000, |a| a.parse().expect("N is a number"));
    let dir = tempfile::tempdir().unwrap();
    for (name, every) in [
        ("snapshots (default spacing)", 10_000),
        ("journal alone", u64::MAX),
    ] {
        let path = dir.path().join(format!("{every}.db"));
        let (wrote, slowest) = fill(&path, every, n).await;
        let size = std::fs::metadata(&path).unwrap().len();
        let started = Instant::now();
        let (_, opened) = FileStore::open_counted(&path, MemoryStore::default(), every)
            .await
            .unwrap();
        let open_s = started.elapsed().as_secs_f64();
        let after = std::fs::metadata(&path).unwrap().len();
        println!(
            "{name}: {n} claims + {} closes written in {wrote:.1} s (slowest batch {:.0} ms); file {:.1} MB ({:.1} MB after open); open {open_s:.2} s (snapshot: {}, journal rows replayed: {})",
            n / 2,
            slowest * 1000.0,
            size as f64 / 1e6,
            after as f64 / 1e6,
            opened.snapshot_loaded,
            opened.replayed
        );
    }
}
