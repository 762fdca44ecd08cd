//! OTLP (gRPC) export of spans, built only with the `otlp` feature: a batch exporter to
//! `tracing.otlp_endpoint`, and the caller's W3C trace context as the request span's parent.
use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::config::TracingSettings;

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

pub fn layer(t: &TracingSettings) -> anyhow::Result<super::Boxed> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(t.otlp_endpoint.trim())
        .build()
        .map_err(|e| anyhow::anyhow!("tracing.otlp_endpoint: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(t.service_name.clone())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("leadrouter");
    let _ = PROVIDER.set(provider);
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    Ok(Box::new(tracing_opentelemetry::layer().with_tracer(tracer)))
}

pub fn shutdown() {
    if let Some(p) = PROVIDER.get() {
        let _ = p.shutdown();
    }
}

/// Makes the caller's trace (a `traceparent` header) the parent of `span`.
pub fn adopt_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    struct Headers<'a>(&'a http::HeaderMap);
    impl opentelemetry::propagation::Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
    let _ = span.set_parent(cx);
}
