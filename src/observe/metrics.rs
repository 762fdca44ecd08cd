//! The service's metrics: one Prometheus recorder per server (not the process-global one, so
//! two servers in one process, as in the tests, count apart), with typed helpers for each
//! event the service counts.
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Counter, Histogram, Key, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

static META: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

pub const RPC_REQUESTS: &str = "leadrouter_grpc_requests_total";
pub const RPC_DURATION: &str = "leadrouter_grpc_request_duration_seconds";
pub const LEADS_SCORED: &str = "leadrouter_leads_scored_total";
pub const LEADS_ROUTED: &str = "leadrouter_leads_routed_total";
pub const PROBABILITY: &str = "leadrouter_lead_probability";
pub const STORE_DURATION: &str = "leadrouter_store_operation_duration_seconds";
pub const STORE_ERRORS: &str = "leadrouter_store_errors_total";

/// Latency buckets from 50 µs (a cached score) to 10 s (a stalled store).
const SECONDS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];
const DECILES: &[f64] = &[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

pub struct Metrics {
    /// Tells this server's handles apart in the per-thread cache.
    id: u64,
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Past this many cached handles a thread starts over (labels are bounded by config, but
/// pools x segments can be large).
const CACHE_MAX: usize = 4096;

/// Handles already registered, per thread, keyed "id\0name\0label values...": the hot
/// path then costs one hash of a short string instead of label vectors and two registry
/// lookups (the registry is shared and locked).
#[derive(Default)]
struct Cache {
    key: String,
    counters: HashMap<String, Counter, foldhash::fast::RandomState>,
    histograms: HashMap<String, Histogram, foldhash::fast::RandomState>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::default();
}

impl Cache {
    fn key<'a>(&mut self, id: u64, name: &str, values: impl Iterator<Item = &'a str>) {
        use std::fmt::Write;
        self.key.clear();
        let _ = write!(self.key, "{id}\0{name}");
        for v in values {
            self.key.push('\0');
            self.key.push_str(v);
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(PROBABILITY.into()), DECILES))
            .expect("bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let m = Metrics {
            id,
            recorder,
            handle,
        };
        m.describe();
        m
    }

    fn describe(&self) {
        let r = &self.recorder;
        let d = |name: &'static str, unit: Option<Unit>, help: &'static str| {
            (name, unit, SharedString::const_str(help))
        };
        for (name, unit, help) in [
            d(
                RPC_REQUESTS,
                None,
                "gRPC calls finished, by service, method and status code.",
            ),
            d(
                LEADS_SCORED,
                None,
                "Leads scored (ScoreLead, SubmitLead, SubmitLeads), by segment.",
            ),
            d(
                LEADS_ROUTED,
                None,
                "Routing decisions of submitted leads (retries not counted again), by pool, segment and status.",
            ),
            d(
                STORE_ERRORS,
                None,
                "Store operations that failed, by operation.",
            ),
        ] {
            r.describe_counter(name.into(), unit, help);
        }
        for (name, unit, help) in [
            d(
                RPC_DURATION,
                Some(Unit::Seconds),
                "gRPC call latency, from the request's headers to the end of the response.",
            ),
            d(
                PROBABILITY,
                None,
                "Scored probabilities of leads (the live model's score distribution).",
            ),
            d(
                STORE_DURATION,
                Some(Unit::Seconds),
                "Store operation latency by operation (on Redis, a claim is the claim script's round trip).",
            ),
        ] {
            r.describe_histogram(name.into(), unit, help);
        }
    }

    /// Adds `n` to a counter; `labels` are (name, value) pairs, names static.
    fn count(&self, name: &'static str, labels: &[(&'static str, &str)], n: u64) {
        CACHE.with_borrow_mut(|c| {
            c.key(self.id, name, labels.iter().map(|l| l.1));
            if let Some(h) = c.counters.get(c.key.as_str()) {
                return h.increment(n);
            }
            let h = self.recorder.register_counter(&key(name, labels), &META);
            h.increment(n);
            if c.counters.len() >= CACHE_MAX {
                c.counters.clear();
            }
            c.counters.insert(c.key.clone(), h);
        })
    }

    /// Records `v` in a histogram.
    fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], v: f64) {
        CACHE.with_borrow_mut(|c| {
            c.key(self.id, name, labels.iter().map(|l| l.1));
            if let Some(h) = c.histograms.get(c.key.as_str()) {
                return h.record(v);
            }
            let h = self.recorder.register_histogram(&key(name, labels), &META);
            h.record(v);
            if c.histograms.len() >= CACHE_MAX {
                c.histograms.clear();
            }
            c.histograms.insert(c.key.clone(), h);
        })
    }

    /// A finished gRPC call. `service` and `method` come from a fixed list, never from the
    /// request, so a client cannot mint series.
    pub fn rpc(&self, service: &'static str, method: &'static str, code: &'static str, secs: f64) {
        let labels = [("service", service), ("method", method), ("code", code)];
        self.count(RPC_REQUESTS, &labels, 1);
        self.observe(RPC_DURATION, &labels[..2], secs);
    }

    /// A lead scored into `segment` with probability `p`.
    pub fn scored(&self, segment: &str, p: f64) {
        self.count(LEADS_SCORED, &[("segment", segment)], 1);
        self.observe(PROBABILITY, &[], p);
    }

    /// A submitted lead's routing outcome (`assigned`, `offered`, `queued`, `unroutable`).
    pub fn routed(&self, pool: &str, segment: &str, status: &'static str) {
        let labels = [("pool", pool), ("segment", segment), ("status", status)];
        self.count(LEADS_ROUTED, &labels, 1);
    }

    /// One store operation: its latency, and whether it failed.
    pub fn store_op(&self, op: &'static str, secs: f64, failed: bool) {
        let labels = [("operation", op)];
        self.observe(STORE_DURATION, &labels, secs);
        if failed {
            self.count(STORE_ERRORS, &labels, 1);
        }
    }

    /// The event metrics in Prometheus text.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Folds recorded histogram samples into their buckets; run every few seconds so samples
    /// do not pile up between scrapes (or when nobody scrapes).
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// A registry key; label names are static, values copied.
fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label::new(*k, v.to_string()))
        .collect();
    Key::from_parts(name, labels)
}

/// Shared handle.
pub type SharedMetrics = Arc<Metrics>;
