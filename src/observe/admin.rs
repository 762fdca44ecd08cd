//! The admin HTTP listener (`admin.addr`): Prometheus text on /metrics, /healthz and /readyz
//! for load balancers and orchestrators that do not speak gRPC health, and the web console
//! (`/ui`, `crate::console`).
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::Metrics;
use crate::engine::Engine;

/// What the admin endpoints read.
#[derive(Clone)]
pub struct Admin {
    pub engine: Arc<Engine>,
    pub metrics: Arc<Metrics>,
    /// Serving: set once the server is up, cleared when it starts draining.
    pub ready: Arc<AtomicBool>,
    /// Per-rep series only for pools of at most this many reps.
    pub per_rep_max: usize,
    /// The web console's state (None: no /ui routes).
    pub console: Option<Arc<crate::console::Console>>,
}

impl Admin {
    /// Ready: serving, and the store answers.
    async fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.engine.store().ping().await.is_ok()
    }
}

pub fn router(admin: Admin) -> axum::Router {
    let console = admin.console.clone();
    let probes = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(admin);
    match console {
        Some(c) => probes.merge(crate::console::router(c)),
        None => probes,
    }
}

async fn metrics(State(a): State<Admin>) -> impl IntoResponse {
    let ready = a.is_ready().await;
    let mut body = a.metrics.render();
    body.push_str(&super::collect::render(&a.engine, a.per_rep_max, ready).await);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

async fn readyz(State(a): State<Admin>) -> impl IntoResponse {
    if a.is_ready().await {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Serves the admin endpoints on `listener` until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    admin: Admin,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(admin))
        .with_graceful_shutdown(stop)
        .await
}
