//! Operability: Prometheus metrics, the admin HTTP listener (/metrics, /healthz, /readyz) and
//! the one tower layer that gives every RPC a span, a log line and its metrics.
pub mod admin;
pub mod collect;
pub mod layer;
pub mod metrics;
pub mod traceparent;

pub use metrics::Metrics;

/// What a request is about, gathered while it runs and written on its span once, when it
/// ends (`layer::Finish`): every `Span::record` makes the JSON formatter parse and rewrite the
/// span's fields, which cost ~6 % of a SubmitLead when it ran four times per request.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Notes {
    pub lead_id: String,
    pub rep_id: String,
    pub pool: String,
}

/// Notes the lead, rep and pool a request is about (kept with its span, the layer's), so the
/// request's log line and trace name them. Costs nothing when no subscriber wants the span.
pub fn annotate(lead_id: &str, rep_id: Option<&str>, pool: Option<&str>) {
    with_notes(&tracing::Span::current(), |n| {
        if !lead_id.is_empty() && n.lead_id != lead_id {
            lead_id.clone_into(&mut n.lead_id);
        }
        if let Some(r) = rep_id.filter(|r| !r.is_empty()) {
            r.clone_into(&mut n.rep_id);
        }
        if let Some(p) = pool.filter(|p| !p.is_empty()) {
            p.clone_into(&mut n.pool);
        }
    });
}

/// Runs `f` on the span's notes (made on first use); nothing when the span is disabled or the
/// subscriber keeps no span data.
pub(crate) fn with_notes(span: &tracing::Span, f: impl FnOnce(&mut Notes)) {
    use tracing_subscriber::registry::LookupSpan;
    span.with_subscriber(|(id, dispatch)| {
        let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>() else {
            return;
        };
        let Some(data) = registry.span(id) else {
            return;
        };
        let mut ext = data.extensions_mut();
        if ext.get_mut::<Notes>().is_none() {
            ext.insert(Notes::default());
        }
        if let Some(n) = ext.get_mut::<Notes>() {
            f(n);
        }
    });
}
