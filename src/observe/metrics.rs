//! The service's metrics: one Prometheus recorder per server (not the process-global one, so
//! two servers in one process, as in the tests, count apart), with typed helpers for each
//! event the service counts.
use std::sync::Arc;

use metrics::{Key, Label, Metadata, Recorder, SharedString, Unit};
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
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
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
        let m = Metrics { recorder, handle };
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

    fn counter(&self, name: &'static str, labels: Vec<Label>) -> metrics::Counter {
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &META)
    }

    fn histogram(&self, name: &'static str, labels: Vec<Label>) -> metrics::Histogram {
        self.recorder
            .register_histogram(&Key::from_parts(name, labels), &META)
    }

    /// A finished gRPC call. `service` and `method` come from a fixed list, never from the
    /// request, so a client cannot mint series.
    pub fn rpc(&self, service: &'static str, method: &'static str, code: &'static str, secs: f64) {
        let labels = |code: Option<&'static str>| {
            let mut l = vec![
                Label::from_static_parts("service", service),
                Label::from_static_parts("method", method),
            ];
            if let Some(c) = code {
                l.push(Label::from_static_parts("code", c));
            }
            l
        };
        self.counter(RPC_REQUESTS, labels(Some(code))).increment(1);
        self.histogram(RPC_DURATION, labels(None)).record(secs);
    }

    /// A lead scored into `segment` with probability `p`.
    pub fn scored(&self, segment: &str, p: f64) {
        self.counter(
            LEADS_SCORED,
            vec![Label::new("segment", segment.to_string())],
        )
        .increment(1);
        self.histogram(PROBABILITY, Vec::new()).record(p);
    }

    /// A submitted lead's routing outcome (`assigned`, `offered`, `queued`, `unroutable`).
    pub fn routed(&self, pool: &str, segment: &str, status: &'static str) {
        let labels = vec![
            Label::new("pool", pool.to_string()),
            Label::new("segment", segment.to_string()),
            Label::from_static_parts("status", status),
        ];
        self.counter(LEADS_ROUTED, labels).increment(1);
    }

    /// One store operation: its latency, and whether it failed.
    pub fn store_op(&self, op: &'static str, secs: f64, failed: bool) {
        let labels = || vec![Label::from_static_parts("operation", op)];
        self.histogram(STORE_DURATION, labels()).record(secs);
        if failed {
            self.counter(STORE_ERRORS, labels()).increment(1);
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

/// Shared handle.
pub type SharedMetrics = Arc<Metrics>;
