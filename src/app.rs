//! Application wiring: build from settings (store, reps, model, socket), then serve until told
//! to stop, draining in-flight requests for a bounded time.
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tonic_health::ServingStatus;

use crate::config::Settings;
use crate::engine::{Clock, Engine, EngineParts};
use crate::grpc;

pub struct App {
    listener: TcpListener,
    /// The admin HTTP listener (`admin.addr`), if any.
    admin: Option<TcpListener>,
    metrics: Arc<crate::observe::Metrics>,
    engine: Arc<Engine>,
    settings: Settings,
    gate: Arc<crate::auth::Gate>,
    tls: Option<Arc<crate::tls::Tls>>,
}

pub use crate::team::{read_reps, read_team};
pub use background::{Hangups, tick_or_hangup};
use supervisor::Supervisor;

mod background;
pub mod supervisor;

impl App {
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        App::build_with_clock(settings, Engine::system_clock()).await
    }

    /// Opens the store, seeds reps, loads the model and binds the socket.
    pub async fn build_with_clock(settings: Settings, clock: Clock) -> anyhow::Result<App> {
        let zone = settings.report.zone().map_err(anyhow::Error::msg)?;
        let metrics = Arc::new(crate::observe::Metrics::new());
        let store = crate::store::open(&settings.store, settings.events.retention(), zone.clone())
            .await
            .map_err(anyhow::Error::msg)?;
        let store = crate::store::observed::Observed::wrap(store, metrics.clone());
        let model_path =
            Some(PathBuf::from(&settings.model.path)).filter(|p| !p.as_os_str().is_empty());
        let model_dir = match settings.model.dir.trim() {
            "" => None,
            d => {
                // A fresh machine or container has no model directory yet: make it, so the
                // binary runs from any directory and a promoted artifact has somewhere to go.
                if !Path::new(d).exists() {
                    std::fs::create_dir_all(d)
                        .with_context(|| format!("cannot create model.dir {d}"))?;
                    tracing::info!(dir = d, "created model.dir");
                }
                Some(
                    crate::model_dir::ModelDir::new(Path::new(d), settings.model.max_bytes)
                        .map_err(anyhow::Error::msg)?,
                )
            }
        };
        let engine = Arc::new(Engine::new(EngineParts {
            model_dir,
            segments: settings.segments.clone(),
            routing: settings.routing.clone(),
            store,
            cold_start_base_rate: settings.model.cold_start_base_rate,
            clock,
            model_path: model_path.clone(),
            drift_min_observations: settings.drift.min_observations,
            registry_keep: settings.model.registry_keep.max(1),
            gate: crate::domain::gate::GatePolicy {
                margin: settings.model.gate_margin,
                min_rows: settings.model.gate_min_rows,
                min_positives: settings.model.gate_min_positives,
            },
            sla: settings.sla.clone(),
            report: crate::engine::ReportPolicy {
                zone,
                value_attribute: settings.report.value_attribute.clone(),
                currency: settings.report.currency.clone(),
                stale_queue_ms: i64::try_from(settings.report.stale_queue_s)
                    .unwrap_or(i64::MAX / 2_000)
                    .saturating_mul(1000),
            },
            metrics: metrics.clone(),
            recent_decisions: if settings.admin.addr.trim().is_empty() {
                0
            } else {
                settings.admin.console_decisions
            },
        }));
        if !settings.reps.file.is_empty() {
            let (reps, targets) = read_team(Path::new(&settings.reps.file))?;
            let n = reps.len();
            for t in targets {
                engine.set_target(t).await?;
            }
            let mut changed = 0;
            for rep in reps {
                // A restart against a shared store usually finds every rep as the file says;
                // rewriting them would drain each pool's queue once per rep for nothing.
                let rep = rep.validate()?;
                let stored = match engine.rep(&rep.id).await {
                    Ok(s) => Some(s.rep),
                    Err(crate::error::Error::NotFound { .. }) => None,
                    Err(e) => return Err(e.into()),
                };
                if stored.as_ref() != Some(&rep) {
                    engine.upsert_rep(rep).await?;
                    changed += 1;
                }
            }
            tracing::info!(reps = n, changed, file = %settings.reps.file, "reps seeded");
        }
        // The registry's live model wins; model.path only seeds an empty registry.
        match engine.sync_from_registry().await {
            Ok(Some(swap)) => tracing::info!(
                version = %swap.gate.candidate_version,
                "serving the registry's live model"
            ),
            other => {
                if let Err(e) = other {
                    tracing::warn!(error = %e, "model registry unreadable; loading model.path");
                }
                match &model_path {
                    Some(p) => {
                        let cold = crate::engine::Evidence::Missing("start-up".into());
                        let swap = engine
                            .load_model(p, true, &cold)
                            .with_context(|| format!("loading model {}", p.display()))?;
                        background::publish(&engine, Some(swap)).await;
                    }
                    None => tracing::warn!(
                        "no model configured: scoring every lead with the cold-start base rate"
                    ),
                }
            }
        }
        let listener = TcpListener::bind(&settings.server.addr)
            .await
            .with_context(|| format!("cannot bind {}", settings.server.addr))?;
        let admin = match settings.admin.addr.trim() {
            "" => None,
            a => Some(TcpListener::bind(a).await.with_context(|| {
                format!("cannot bind admin.addr {a} (set another, or \"\" for no admin listener)")
            })?),
        };
        let gate = auth_gate(&settings, listener.local_addr()?)?;
        let tls = tls(&settings.server)?;
        Ok(App {
            listener,
            admin,
            metrics,
            engine,
            settings,
            gate,
            tls,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The admin listener's address (/metrics, /healthz, /readyz), when there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn engine(&self) -> Arc<Engine> {
        self.engine.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting, reports NOT_SERVING and gives
    /// in-flight requests `server.shutdown_grace_ms` to finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (health, health_service) = tonic_health::server::health_reporter();
        for name in grpc::SERVICE_NAMES.into_iter().chain([""]) {
            health
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(grpc::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(grpc::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;
        let s = &self.settings.server;
        let routes = grpc::routes(
            self.engine.clone(),
            s.max_message_bytes,
            s.stream_concurrency,
        )
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha);
        let grace = Duration::from_millis(s.shutdown_grace_ms);
        let stopping = Arc::new(tokio::sync::Notify::new());
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let signal = {
            let (health, stopping, ready) = (health.clone(), stopping.clone(), ready.clone());
            async move {
                shutdown.await;
                tracing::info!("shutting down: draining in-flight requests");
                ready.store(false, std::sync::atomic::Ordering::Release);
                let _ = admin_stop.send(());
                for name in grpc::SERVICE_NAMES.into_iter().chain([""]) {
                    health
                        .set_service_status(name, ServingStatus::NotServing)
                        .await;
                }
                stopping.notify_one();
            }
        };
        let addr = self.local_addr();
        let admin_addr = self.admin_addr();
        let (hup_tx, hup) = tokio::sync::watch::channel(0u64);
        let hup_tx = Arc::new(hup_tx);
        let mut tasks = Supervisor::new(Duration::from_secs(1));
        let file_poll = Duration::from_millis(s.file_poll_ms.max(10));
        if let Some(tls) = &self.tls {
            let (tls, hup) = (tls.clone(), hup.clone());
            tasks.spawn("tls-files", move || {
                crate::tls::watch(tls.clone(), file_poll, hup.clone())
            });
        }
        let incoming = crate::listener::incoming(
            self.listener,
            crate::listener::Limits {
                max_connections: s.max_connections,
                preface_timeout: Duration::from_millis(s.preface_timeout_ms),
            },
            self.tls.clone(),
            self.gate.peers.clone(),
        );
        if !self.gate.is_open() {
            let path = PathBuf::from(self.settings.auth.keys_file.trim());
            let (gate, hup) = (self.gate.clone(), hup.clone());
            tasks.spawn("keys-file", move || {
                crate::auth::watch_keys(gate.clone(), path.clone(), file_poll, hup.clone())
            });
        }
        let server = tonic::transport::Server::builder()
            // Outermost: refusals by auth and limits are logged and counted too.
            .layer(crate::observe::layer::ObserveLayer {
                metrics: self.metrics.clone(),
                log_requests: self.settings.log.requests,
            })
            .layer(crate::auth::AuthLayer {
                gate: self.gate.clone(),
            })
            .layer(crate::budget::BudgetLayer(crate::budget::Limits {
                budget: crate::budget::Budget::new(s.max_partial_bytes),
                message_timeout: Duration::from_millis(s.request_timeout_ms),
            }))
            .tcp_nodelay(true)
            .max_concurrent_streams(Some(s.max_concurrent_streams))
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, signal);
        // The model is loaded and the store answers: only now do we report SERVING.
        for name in grpc::SERVICE_NAMES.into_iter().chain([""]) {
            health
                .set_service_status(name, ServingStatus::Serving)
                .await;
        }
        ready.store(true, std::sync::atomic::Ordering::Release);
        if let Some(listener) = self.admin {
            let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
            let admin = crate::observe::admin::Admin {
                engine: self.engine.clone(),
                metrics: self.metrics.clone(),
                ready: ready.clone(),
                per_rep_max: self.settings.admin.per_rep_max_reps,
                console: Some(crate::console::Console::new(
                    self.engine.clone(),
                    self.gate.clone(),
                    loopback,
                )),
            };
            let stop = async move {
                let _ = admin_stopped.await;
            };
            tasks.spawn_once("admin-listener", async move {
                if let Err(e) = crate::observe::admin::serve(listener, admin, stop).await {
                    tracing::error!(error = %e, "admin listener failed");
                }
            });
        }
        let (engine, metrics) = (self.engine.clone(), self.metrics.clone());
        tasks.spawn("metrics-upkeep", move || {
            background::upkeep(metrics.clone(), Duration::from_secs(5))
        });
        let every = Duration::from_millis(self.settings.store.health_poll_ms.max(10));
        let (e, h) = (engine.clone(), health.clone());
        tasks.spawn("store-health", move || {
            background::watch_store(e.clone(), h.clone(), every)
        });
        let e = engine.clone();
        tasks.spawn("sighup", move || {
            background::reload_on_sighup(e.clone(), hup_tx.clone())
        });
        let every = Duration::from_millis(self.settings.model.registry_poll_ms.max(50));
        let e = engine.clone();
        tasks.spawn("model-registry", move || {
            background::follow_registry(e.clone(), every)
        });
        let e = Arc::downgrade(&engine);
        tasks.spawn("scheduler", move || crate::scheduler::run(e.clone()));
        if self.settings.model.watch_ms > 0 {
            let every = Duration::from_millis(self.settings.model.watch_ms);
            let e = engine.clone();
            tasks.spawn("model-file", move || {
                background::watch_model_file(e.clone(), every)
            });
        }
        let model = self.engine.model().map(|m| m.model.version().to_string());
        let model = model.as_deref().unwrap_or("none");
        let admin = admin_addr.map_or_else(|| "none".to_string(), |a| a.to_string());
        tracing::info!(%addr, admin, model, "leadrouter serving");
        tokio::pin!(server);
        let served = tokio::select! {
            r = &mut server => r.context("server failed"),
            () = async { stopping.notified().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(grace_ms = s.shutdown_grace_ms, "drain timed out; dropping remaining requests");
                Ok(())
            }
        };
        tasks.shutdown().await;
        served
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when the
/// future is first polled, so a signal that arrives while the server starts is not lost (and
/// does not kill the process with the default action).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(term) => {},
                () = wait(int) => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The keys in force, or open mode: only on a loopback address, or with
/// `auth.allow_anonymous`.
fn auth_gate(settings: &Settings, addr: SocketAddr) -> anyhow::Result<Arc<crate::auth::Gate>> {
    let a = &settings.auth;
    let file = a.keys_file.trim();
    if !file.is_empty() {
        let keys = crate::auth::read_keys(Path::new(file)).map_err(anyhow::Error::msg)?;
        tracing::info!(keys = keys.len(), "auth: keys per role in force");
        return Ok(crate::auth::Gate::with_rates(
            Some(keys),
            a.open_reflection,
            a.rate_per_s,
            a.burst_s,
        ));
    }
    if addr.ip().is_loopback() {
        tracing::warn!(%addr, "auth: no auth.keys_file; serving without keys on a loopback address only");
    } else if a.allow_anonymous {
        tracing::warn!(%addr, "auth: no auth.keys_file and auth.allow_anonymous = true: anyone who reaches this address may call everything");
    } else {
        anyhow::bail!(
            "refusing to serve on {addr} without keys: set auth.keys_file (see `leadrouter keys new`), \
             bind a loopback address, or set auth.allow_anonymous = true"
        );
    }
    Ok(crate::auth::Gate::new(None, a.open_reflection))
}

/// TLS when `server.tls_cert` and `server.tls_key` are set (both or neither).
fn tls(s: &crate::config::ServerSettings) -> anyhow::Result<Option<Arc<crate::tls::Tls>>> {
    let (cert, key, ca) = (s.tls_cert.trim(), s.tls_key.trim(), s.tls_client_ca.trim());
    match (cert.is_empty(), key.is_empty()) {
        (true, true) if ca.is_empty() => Ok(None),
        (true, true) => {
            anyhow::bail!("server.tls_client_ca needs server.tls_cert and server.tls_key")
        }
        (false, false) => {
            let files = crate::tls::TlsFiles {
                cert: cert.into(),
                key: key.into(),
                client_ca: Some(ca).filter(|c| !c.is_empty()).map(Into::into),
            };
            let t = crate::tls::Tls::new(files).map_err(anyhow::Error::msg)?;
            tracing::info!(mutual = !ca.is_empty(), "TLS on the gRPC port");
            Ok(Some(Arc::new(t)))
        }
        _ => anyhow::bail!("set both server.tls_cert and server.tls_key, or neither"),
    }
}
