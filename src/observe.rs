//! Operability: Prometheus metrics, the admin HTTP listener (/metrics, /healthz, /readyz) and
//! the one tower layer that gives every RPC a span, a log line and its metrics.
pub mod admin;
pub mod collect;
pub mod layer;
pub mod metrics;
pub mod traceparent;

pub use metrics::Metrics;

/// Notes the lead, rep and pool a request is about on its span (the layer's), so the request's
/// log line names them. Costs nothing when no subscriber wants the span.
pub fn annotate(lead_id: &str, rep_id: Option<&str>, pool: Option<&str>) {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return;
    }
    if !lead_id.is_empty() {
        span.record("lead_id", lead_id);
    }
    if let Some(r) = rep_id.filter(|r| !r.is_empty()) {
        span.record("rep_id", r);
    }
    if let Some(p) = pool.filter(|p| !p.is_empty()) {
        span.record("pool", p);
    }
}
