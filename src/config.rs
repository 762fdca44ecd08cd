//! Layered settings: compiled-in defaults, then an optional file, then LEADROUTER__* env vars.
#[cfg(test)]
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::domain::event::Retention;
use crate::domain::routing::RoutingPolicy;
use crate::domain::segment::SegmentRules;
use crate::domain::terms::{self, SlaPolicy};

mod load;
pub use load::ConfigError;

const DEFAULTS: &str = include_str!("defaults.toml");

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub log: LogSettings,
    pub model: ModelSettings,
    pub store: StoreSettings,
    pub reps: RepSettings,
    pub routing: RoutingPolicy,
    pub segments: SegmentRules,
    #[serde(default)]
    pub sla: SlaPolicy,
    pub events: EventSettings,
    pub auth: AuthSettings,
    pub drift: DriftSettings,
    pub report: ReportSettings,
    pub admin: AdminSettings,
    pub tracing: TracingSettings,
}

/// `[tracing]`: export of request spans.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TracingSettings {
    /// OTLP/gRPC collector, e.g. http://otel-collector:4317; empty: no export. Needs a binary
    /// built with the `otlp` feature.
    pub otlp_endpoint: String,
    /// `service.name` of the exported spans.
    pub service_name: String,
}

/// `[admin]`: the HTTP listener for Prometheus and load-balancer probes.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AdminSettings {
    /// host:port of /metrics, /healthz and /readyz; empty: no admin listener.
    pub addr: String,
    /// Per-rep series (load, capacity, quota use) only for pools of at most this many reps.
    pub per_rep_max_reps: usize,
    /// Decision records (candidates and verdicts) the console's lead lookup keeps, newest.
    pub console_decisions: usize,
}

/// `[report]`: how reports count.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ReportSettings {
    /// IANA zone of report days and periods.
    pub timezone: String,
    /// The lead attribute holding its expected deal value.
    pub value_attribute: String,
    pub currency: String,
    /// Queued longer than this counts as a leak in the funnel.
    pub stale_queue_s: u64,
}

impl ReportSettings {
    pub fn zone(&self) -> Result<jiff::tz::TimeZone, String> {
        jiff::tz::TimeZone::get(self.timezone.trim()).map_err(|e| {
            format!(
                "report.timezone: {:?} is not a time zone ({e})",
                self.timezone
            )
        })
    }
}

/// `[drift]`: when live feature distributions may raise an alert.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DriftSettings {
    /// Live observations (distinct leads) a feature needs before its PSI can alert or warn.
    pub min_observations: u64,
}

/// `[auth]`: keys per role (see `auth.rs`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AuthSettings {
    /// TOML file of `[[key]]` tables (id, role, sha256 of the token); empty: no keys.
    pub keys_file: String,
    /// Serve without keys on a non-loopback address (never the default).
    pub allow_anonymous: bool,
    /// Server reflection answers without a key.
    pub open_reflection: bool,
    /// Requests per second per key, by role (0: unlimited); RESOURCE_EXHAUSTED past it.
    pub rate_per_s: crate::auth::RoleRates,
    /// A key may burst to rate x burst_s requests.
    pub burst_s: f64,
}

/// `[events]`: how long each pool's assignment event log keeps events for resuming watchers.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct EventSettings {
    /// Events kept per pool (at least; Redis trims in blocks).
    pub retention: u64,
    /// Events older than this are dropped; 0 keeps them until the count limit.
    pub retention_age_s: u64,
}

impl EventSettings {
    pub fn retention(&self) -> Retention {
        Retention {
            count: self.retention,
            age_ms: i64::try_from(self.retention_age_s.saturating_mul(1000)).unwrap_or(i64::MAX),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ServerSettings {
    /// host:port; port 0 picks a free one (tests).
    pub addr: String,
    pub max_message_bytes: usize,
    pub shutdown_grace_ms: u64,
    pub stream_concurrency: usize,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// A connection must send its HTTP/2 preface within this long, or it is closed.
    pub preface_timeout_ms: u64,
    /// Concurrent HTTP/2 streams (calls) per connection.
    pub max_concurrent_streams: u32,
    /// A request message that has started arriving must be whole within this long, else
    /// DEADLINE_EXCEEDED (a stream may idle between messages).
    pub request_timeout_ms: u64,
    /// Request bytes held server-wide for messages not yet whole; past it, RESOURCE_EXHAUSTED.
    pub max_partial_bytes: usize,
    /// PEM certificate chain and private key: TLS on the gRPC port (re-read when they change).
    pub tls_cert: String,
    pub tls_key: String,
    /// PEM CA: clients must present a certificate it signed (mutual TLS).
    pub tls_client_ca: String,
    /// How often the TLS files and the keys file are checked for changes.
    pub file_poll_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LogSettings {
    pub format: String,
    pub filter: String,
    /// One info line per finished request (method, lead, rep, pool, code, latency).
    pub requests: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ModelSettings {
    /// Artifact loaded at start and by an empty ReloadModel; empty string for none (cold start).
    pub path: String,
    pub cold_start_base_rate: f64,
    /// Largest AUC drop (on the same rows) a reload accepts without force.
    pub gate_margin: f64,
    /// Fewer labelled rows than this, or fewer than `gate_min_positives` of either class, and
    /// the gate refuses (unless forced): such a comparison says nothing.
    pub gate_min_rows: u64,
    pub gate_min_positives: u64,
    /// Model versions the store's registry keeps (the live one included) for rollbacks.
    pub registry_keep: usize,
    /// How often each replica checks the registry for another replica's promotion.
    pub registry_poll_ms: u64,
    /// Poll the live model's file this often and reload it when it changes; 0 = off.
    pub watch_ms: u64,
    /// ReloadModel reads artifacts only from regular files under this directory; empty: only
    /// the live model's own file (and artifacts sent in the request are refused).
    pub dir: String,
    /// Largest artifact ReloadModel reads or accepts.
    pub max_bytes: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct StoreSettings {
    pub url: String,
    /// The URL lists seed nodes of a Redis Cluster.
    pub cluster: bool,
    /// Prefix of every Redis key.
    pub prefix: String,
    /// PEM CA certificate for rediss:// servers the system trust store does not know; empty for
    /// the system store.
    pub tls_ca_file: String,
    /// memory:// only: leads held at most (open, queued and closed). At the limit the oldest
    /// closed lead is forgotten to make room; with none closed, new leads are refused with
    /// RESOURCE_EXHAUSTED. Outcomes kept for export are capped at the same number.
    pub memory_max_leads: usize,
    /// memory:// only: bytes of lead contexts (stored leads and kept outcomes, as packed by
    /// `domain::packed`) at most; the same forgetting, then RESOURCE_EXHAUSTED.
    pub memory_max_bytes: usize,
    /// How often the store is pinged for health (routing NOT_SERVING while it fails).
    pub health_poll_ms: u64,
    /// file:// only: journaled changes between snapshots of the whole state, at least (the
    /// spacing also grows with the leads held); a restart replays only what came after.
    pub snapshot_every: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RepSettings {
    pub file: String,
}

impl Settings {
    pub(crate) fn validate(&self) -> Result<(), String> {
        self.segments.validate()?;
        if !matches!(self.log.format.as_str(), "pretty" | "json") {
            return Err(format!(
                "log.format must be \"pretty\" or \"json\", not {:?}",
                self.log.format
            ));
        }
        if !(0.0..=1.0).contains(&self.model.cold_start_base_rate) {
            return Err("model.cold_start_base_rate must be within [0, 1]".into());
        }
        if !(0.0..=1.0).contains(&self.model.gate_margin) {
            return Err("model.gate_margin must be within [0, 1]".into());
        }
        terms::validate(
            self.routing.offer_timeout_s,
            self.routing.max_offers,
            &self.routing.pools,
            &self.sla,
        )?;
        if !(self.routing.queue_ttl_s >= 0.0 && self.routing.queue_ttl_s.is_finite()) {
            return Err("routing.queue_ttl_s must be a number of seconds, 0 for none".into());
        }
        if self.events.retention == 0 {
            return Err("events.retention must be at least 1".into());
        }
        if self.server.stream_concurrency == 0 {
            return Err("server.stream_concurrency must be at least 1".into());
        }
        if self.server.max_partial_bytes < self.server.max_message_bytes {
            return Err(
                "server.max_partial_bytes must be at least server.max_message_bytes".into(),
            );
        }
        if self.server.request_timeout_ms == 0 || self.server.max_concurrent_streams == 0 {
            return Err(
                "server.request_timeout_ms and server.max_concurrent_streams must be at least 1"
                    .into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_a_file_overrides_them() {
        let s = Settings::load(None).unwrap();
        assert_eq!(s.server.addr, "127.0.0.1:50051");
        assert_eq!(s.segments.rules.len(), 4);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[server]\naddr = \"0.0.0.0:1\"\n[log]\nformat = \"json\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&f)).unwrap();
        assert_eq!(s.server.addr, "0.0.0.0:1");
        assert_eq!(s.log.format, "json");
        assert_eq!(s.server.max_message_bytes, 1 << 20);
        std::fs::write(&f, "[log]\nformat = \"xml\"\n").unwrap();
        assert!(
            Settings::load(Some(&f))
                .unwrap_err()
                .to_string()
                .contains("log.format")
        );
        assert!(Settings::load(Some(&dir.path().join("nope.toml"))).is_err());
    }

    #[test]
    fn the_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/leadrouter.example.toml");
        let s = Settings::load(Some(&path)).unwrap();
        assert_eq!(s.log.format, "json");
        assert_eq!(s.segments.skills_for("price_sensitive"), ["negotiation"]);
        assert_eq!(s.routing.preferred.len(), 3);
        assert_eq!(
            s.routing.pools["enterprise"].mode,
            Some(crate::domain::terms::Mode::Offer)
        );
        assert_eq!(s.sla.first_touch_s["qualified"], 300.0);
        assert_eq!(s.auth.keys_file, "/etc/leadrouter/keys.toml");
        assert_eq!(s.auth.rate_per_s.ops, 100.0);
        // Its relative paths are taken from deploy/, wherever the binary runs.
        assert!(Path::new(&s.model.path).is_file(), "{}", s.model.path);
        assert!(Path::new(&s.reps.file).is_file(), "{}", s.reps.file);
        assert!(Path::new(&s.model.dir).is_dir(), "{}", s.model.dir);
    }

    /// The example config documents every setting: each key the settings struct has (as
    /// serialized from the defaults) appears in it, uncommented.
    #[test]
    fn the_example_config_lists_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/leadrouter.example.toml");
        let example: toml::Value =
            toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut listed = Vec::new();
        load::flatten("", &example, &mut listed);
        let defaults = toml::Value::try_from(Settings::load(None).unwrap()).unwrap();
        let mut every = Vec::new();
        load::flatten("", &defaults, &mut every);
        assert!(every.len() > 60, "{every:?}");
        let missing: Vec<&String> = every.iter().filter(|k| !listed.contains(k)).collect();
        assert!(
            missing.is_empty(),
            "deploy/leadrouter.example.toml lacks {missing:?}"
        );
    }

    /// (The environment variables LEADROUTER__ROUTING__MODE / __OFFER_TIMEOUT_S are exercised
    /// by `crm::an_unanswered_offer_expires_to_the_next_rep_within_two_seconds`, in a child
    /// process: setting them here would race other tests' loads.)
    #[test]
    fn offer_settings_load_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[routing]\nmode = \"offer\"\noffer_timeout_s = 1\n").unwrap();
        let s = Settings::load(Some(&f)).unwrap();
        assert_eq!(s.routing.mode, crate::domain::terms::Mode::Offer);
        assert_eq!(s.routing.offer_timeout_s, 1.0);
        std::fs::write(&f, "[routing]\noffer_timeout_s = 0\n").unwrap();
        let bad = Settings::load(Some(&f)).unwrap_err().to_string();
        assert!(bad.contains("routing.offer_timeout_s"), "{bad}");
        std::fs::write(&f, "[routing]\nmode = \"sometimes\"\n").unwrap();
        assert!(Settings::load(Some(&f)).is_err());
        std::fs::write(&f, "[sla.first_touch_s]\nqualified = -5\n").unwrap();
        let bad = Settings::load(Some(&f)).unwrap_err().to_string();
        assert!(bad.contains("sla.first_touch_s.qualified"), "{bad}");
    }
}
