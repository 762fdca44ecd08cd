//! The server's background tasks, each a loop the supervisor owns: metric upkeep, the model
//! registry poll, SIGHUP and model-file reloads (through the gate), and store health.
use std::sync::Arc;
use std::time::Duration;

use tonic_health::ServingStatus;

use crate::engine::Engine;

/// Folds histogram samples into buckets every few seconds, scraped or not.
pub(super) async fn upkeep(metrics: Arc<crate::observe::Metrics>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        metrics.upkeep();
    }
}

/// SIGHUPs seen so far, for the watchers of files that SIGHUP re-reads.
pub type Hangups = tokio::sync::watch::Receiver<u64>;

/// Waits `every`, or less if a SIGHUP comes first; returns whether one did.
pub async fn tick_or_hangup(every: Duration, hup: &mut Hangups) -> bool {
    tokio::select! {
        () = tokio::time::sleep(every) => false,
        r = hup.changed() => {
            if r.is_err() {
                // No more SIGHUPs (the handler ended): plain polling from here.
                tokio::time::sleep(every).await;
                return false;
            }
            true
        }
    }
}

/// Reloads the live model's file through the gate (SIGHUP, file watch). A refusal is logged
/// and the live model keeps serving. Returns the swap when a new model went live.
fn reload(
    engine: &Engine,
    trigger: &'static str,
    evidence: &crate::engine::Evidence,
) -> Option<crate::engine::Swap> {
    let Some(path) = engine.model_path() else {
        tracing::warn!(trigger, "reload asked for, but no model file is configured");
        return None;
    };
    match engine.load_model(&path, false, evidence) {
        Ok(swap) => {
            tracing::info!(
                trigger,
                path = %path.display(),
                version = %swap.gate.candidate_version,
                previous = swap.previous.as_deref().unwrap_or("none"),
                "model swapped"
            );
            Some(swap)
        }
        Err(e) => {
            tracing::error!(trigger, path = %path.display(), error = %e, "model reload refused");
            None
        }
    }
}

/// Publishes a swap to the registry, so every replica (and a restart) serves it.
pub(super) async fn publish(engine: &Engine, swap: Option<crate::engine::Swap>) -> bool {
    let Some(swap) = swap else {
        return false;
    };
    if let Err(e) = engine.publish(&swap).await {
        tracing::error!(error = %e, "the new model is live here but not in the registry");
    }
    true
}

/// Follows the registry: another replica's promotion or rollback goes live here within one
/// poll.
pub(super) async fn follow_registry(engine: Arc<Engine>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        match engine.sync_from_registry().await {
            Ok(Some(swap)) => tracing::info!(
                version = %swap.gate.candidate_version,
                previous = swap.previous.as_deref().unwrap_or("none"),
                "model swapped (registry)"
            ),
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "model registry poll failed"),
        }
    }
}

/// The recorded outcomes for the gate of an operator-triggered reload.
async fn gate_rows(engine: &Engine) -> crate::engine::Evidence {
    engine
        .evidence(None)
        .await
        .unwrap_or_else(|e| crate::engine::Evidence::Missing(e.to_string()))
}

/// SIGHUP reloads the live model's file (e.g. after `train --out` replaced it), and tells the
/// TLS and keys-file watchers to re-read theirs at once.
pub(super) async fn reload_on_sighup(
    engine: Arc<Engine>,
    hup: Arc<tokio::sync::watch::Sender<u64>>,
) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut signals) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload with ReloadModel instead");
            return;
        };
        while signals.recv().await.is_some() {
            // The TLS certificate and the keys file are re-read too.
            hup.send_modify(|n| *n += 1);
            let engine = engine.clone();
            let evidence = gate_rows(&engine).await;
            let e = engine.clone();
            let swap = tokio::task::spawn_blocking(move || reload(&e, "SIGHUP", &evidence)).await;
            publish(&engine, swap.ok().flatten()).await;
        }
    }
    #[cfg(not(unix))]
    let _ = engine;
}

/// Polls the live model's file; a new modification time triggers a gated reload. A refused
/// file is not retried until it changes again.
pub(super) async fn watch_model_file(engine: Arc<Engine>, every: Duration) {
    let mut refused: Option<std::time::SystemTime> = None;
    loop {
        tokio::time::sleep(every).await;
        let Some(path) = engine.model_path() else {
            continue;
        };
        let Ok(modified) = std::fs::metadata(&path).and_then(|m| m.modified()) else {
            continue;
        };
        let live = engine.model().and_then(|m| m.modified);
        if live == Some(modified) || refused == Some(modified) {
            continue;
        }
        let e = engine.clone();
        let evidence = gate_rows(&e).await;
        let swap = tokio::task::spawn_blocking(move || reload(&e, "file watch", &evidence)).await;
        let ok = publish(&engine, swap.ok().flatten()).await;
        refused = (!ok).then_some(modified);
    }
}

/// Reports the store's state in health: routing and rep services go NOT_SERVING while the
/// store cannot be reached (scoring keeps answering), and SERVING again once it is back.
pub(super) async fn watch_store(
    engine: Arc<Engine>,
    health: tonic_health::server::HealthReporter,
    every: Duration,
) {
    let mut up = true;
    loop {
        tokio::time::sleep(every).await;
        let now_up = engine.store().ping().await.is_ok();
        if now_up != up {
            let status = if now_up {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            for name in ["leadrouter.v1.RoutingService", "leadrouter.v1.RepService"] {
                health.set_service_status(name, status).await;
            }
            if now_up {
                tracing::info!("routing store reachable again");
            } else {
                tracing::warn!(
                    "routing store unreachable: routing answers UNAVAILABLE, scoring continues"
                );
            }
            up = now_up;
        }
    }
}
