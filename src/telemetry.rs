//! Tracing subscriber: pretty for people, JSON for log pipelines.
use tracing_subscriber::{EnvFilter, fmt};

use crate::config::LogSettings;

/// Installs the global subscriber once; later calls (tests) are no-ops. RUST_LOG wins over the
/// configured filter.
pub fn init(settings: &LogSettings) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.filter));
    // Colour only on a terminal: a redirected log gets no escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = if settings.format == "json" {
        builder.json().with_current_span(true).try_init()
    } else {
        builder.try_init()
    };
}
