//! Close latency with a long queue that no free rep can take (issue: "a drain must not walk
//! the whole queue"), and the p99 of concurrent lookups before and during the closes.
//!
//! `cargo bench --bench drain` measures the memory store; with `DRAIN_REDIS_URL` set (e.g.
//! `redis://127.0.0.1:6390`, an empty server) it measures that Redis too. `DRAIN_QUEUED`
//! sets the queue length (default 100,000).
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use leadrouter::domain::assignment::{LeadContext, Outcome};
use leadrouter::domain::lead::Lead;
use leadrouter::domain::rep::{Rep, Shift};
use leadrouter::domain::routing::{self, Needs};
use leadrouter::store::redis::{RedisConfig, RedisStore};
use leadrouter::store::{Claim, ClaimRequest, Store, memory::MemoryStore};

fn now() -> jiff::Timestamp {
    "2026-11-27T12:00:00Z".parse().unwrap()
}

fn request(reps: &[Rep], id: &str, p: f64, skill: &str) -> ClaimRequest {
    let needs = Needs {
        pool: "default".into(),
        required_skills: vec![skill.into()],
        preferred: vec![],
    };
    ClaimRequest {
        candidates: routing::rank(reps, &needs, now(), &[]).candidates,
        context: LeadContext {
            lead: Lead {
                id: id.into(),
                attributes: Default::default(),
            },
            needs,
            probability: p,
            segment: "qualified".into(),
            model_version: "bench".into(),
            terms: Default::default(),
            expected_value: 0.0,
        },
        now: now(),
    }
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * q) as usize]
}

/// Lookup latencies (ms) from one task for `for_how_long`.
async fn lookups(store: Arc<dyn Store>, stop: Arc<AtomicBool>) -> Vec<f64> {
    let mut out = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let _ = store.lookup(&format!("q{}", i % 1000)).await;
        out.push(t.elapsed().as_secs_f64() * 1e3);
        i += 1;
        tokio::task::yield_now().await;
    }
    out
}

async fn run(name: &str, store: Arc<dyn Store>, queued: usize) {
    // One German rep with room for one lead; twelve reps off shift who have every skill.
    let mut de = Rep::new("de", 1);
    de.skills.insert("language:de".into(), 1.0);
    store.upsert_rep(de, now()).await.unwrap();
    for i in 0..12 {
        let mut r = Rep::new(&format!("night{i}"), 50);
        r.skills.insert("language:xx".into(), 1.0);
        r.skills.insert("language:de".into(), 1.0);
        r.shift = Some(Shift {
            timezone: "UTC".into(),
            start: "22:00".into(),
            end: "06:00".into(),
            days: vec![],
        });
        store.upsert_rep(r, now()).await.unwrap();
    }
    let reps = store.reps().await.unwrap();
    store
        .claim(request(&reps, "open0", 0.5, "language:de"))
        .await
        .unwrap();
    let t = Instant::now();
    for chunk in 0..queued.div_ceil(1000) {
        let reqs = (chunk * 1000..((chunk + 1) * 1000).min(queued))
            .map(|i| request(&reps, &format!("q{i}"), 0.9, "language:xx"))
            .collect();
        for c in store.claim_many(reqs).await {
            assert!(matches!(c.unwrap(), Claim::Queued { .. }));
        }
    }
    eprintln!(
        "{name}: queued {queued} in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn(lookups(store.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut before = probe.await.unwrap();
    // Each round: a German lead joins the queue, the open one closes and the drain hands the
    // new one over, past the whole queue of leads only off-shift reps could take.
    let stop = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn(lookups(store.clone(), stop.clone()));
    let mut closes = Vec::new();
    for i in 0..300 {
        store
            .claim(request(
                &reps,
                &format!("open{}", i + 1),
                0.5,
                "language:de",
            ))
            .await
            .unwrap();
        let t = Instant::now();
        let closed = store
            .close(&format!("open{i}"), Outcome::Won, now())
            .await
            .unwrap();
        closes.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(
            closed.drained.len(),
            1,
            "the drain hands over the German lead"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut during = probe.await.unwrap();
    println!(
        "{name}: close with {queued} queued: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; \
         lookup p99 before {:.3} ms, during closes {:.3} ms",
        percentile(&mut closes.clone(), 0.5),
        percentile(&mut closes.clone(), 0.99),
        percentile(&mut closes, 1.0),
        percentile(&mut before, 0.99),
        percentile(&mut during, 0.99),
    );
}

fn main() {
    let queued: usize = std::env::var("DRAIN_QUEUED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let memory = Arc::new(MemoryStore::with_max_leads(queued + 1000)) as Arc<dyn Store>;
        run("memory", memory, queued).await;
        if let Ok(url) = std::env::var("DRAIN_REDIS_URL") {
            let config = RedisConfig {
                urls: vec![url],
                cluster: false,
                prefix: "drainbench".into(),
                tls_ca_file: None,
                retention: Default::default(),
                zone: jiff::tz::TimeZone::UTC,
            };
            let redis = RedisStore::open(config).await.unwrap() as Arc<dyn Store>;
            run("redis", redis, queued).await;
        }
    });
}
