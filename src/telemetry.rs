//! Tracing subscriber: pretty for people, JSON for log pipelines, and (with the `otlp`
//! feature) the request spans exported to an OpenTelemetry collector.
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, fmt};

use crate::config::{LogSettings, TracingSettings};

#[cfg(feature = "otlp")]
pub(crate) mod otlp;

/// Installs the global subscriber once; later calls (tests) are no-ops. RUST_LOG wins over the
/// configured filter. Fails only when OTLP export is asked for and cannot be set up.
pub fn init(settings: &LogSettings, tracing: &TracingSettings) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.filter));
    // Colour only on a terminal: a redirected log gets no escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt_layer = fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let mut layers: Vec<Boxed> = vec![if settings.format == "json" {
        // A request is one span deep, so the span list would repeat `span`, and each span
        // printed costs a parse of its formatted fields.
        fmt_layer
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed()
    } else {
        fmt_layer.boxed()
    }];
    layers.extend(export_layer(tracing)?);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layers)
        .try_init();
    Ok(())
}

/// Flushes exported spans (at shutdown).
pub fn shutdown() {
    #[cfg(feature = "otlp")]
    otlp::shutdown();
}

/// The subscriber the output layers sit on: the registry behind the level filter.
type Base = tracing_subscriber::layer::Layered<EnvFilter, tracing_subscriber::Registry>;
type Boxed = Box<dyn Layer<Base> + Send + Sync>;

#[cfg(feature = "otlp")]
fn export_layer(t: &TracingSettings) -> anyhow::Result<Option<Boxed>> {
    if t.otlp_endpoint.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(otlp::layer(t)?))
}

#[cfg(not(feature = "otlp"))]
fn export_layer(t: &TracingSettings) -> anyhow::Result<Option<Boxed>> {
    if t.otlp_endpoint.trim().is_empty() {
        return Ok(None);
    }
    anyhow::bail!(
        "tracing.otlp_endpoint is set, but this binary was built without OTLP export; build it \
         with `cargo build --release --features otlp` (or unset the endpoint)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(feature = "otlp"))]
    #[test]
    fn an_otlp_endpoint_without_the_feature_is_refused_not_ignored() {
        let t = TracingSettings {
            otlp_endpoint: "http://127.0.0.1:4317".into(),
            service_name: "leadrouter".into(),
        };
        let err = export_layer(&t).err().expect("refused").to_string();
        assert!(err.contains("--features otlp"), "{err}");
        let off = TracingSettings {
            otlp_endpoint: String::new(),
            ..t
        };
        assert!(export_layer(&off).unwrap().is_none());
    }
}
