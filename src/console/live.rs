//! Server-sent events for open console pages: every new assignment event of every pool, as
//! the process's event hub sees it (this replica's writes at once, other replicas' within
//! the hub's poll).
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;

use super::Console;
use crate::watch::Filter;

fn json(e: &crate::domain::event::Event) -> String {
    serde_json::json!({
        "cursor": e.cursor,
        "pool": e.pool,
        "kind": e.kind.as_str(),
        "lead_id": e.lead_id,
        "rep_id": e.assignment.as_ref().map_or(e.rep_id.as_str(), |a| a.rep_id.as_str()),
        "reason": e.reason,
        "at_ms": e.at_ms,
    })
    .to_string()
}

pub async fn events(
    State(c): State<Arc<Console>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = c.engine.hub().watch(Filter::default());
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await? {
            Ok(e) => {
                let ev = Event::default()
                    .event("assignment")
                    .id(format!("{}:{}", e.pool, e.cursor))
                    .data(json(&e));
                Some((Ok(ev), rx))
            }
            // A watcher error (retention passed it by) ends the stream; the browser's
            // EventSource reconnects and starts at the newest events.
            Err(e) => {
                tracing::debug!(error = %e, "console event stream ends");
                None
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
