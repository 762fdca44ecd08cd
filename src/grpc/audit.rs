//! The audit trail: one structured line per state-changing call, on the `audit` target (so it
//! can be shipped separately): who (key id and role, or "open"), from where, which method,
//! what it changed, and the outcome.
use std::net::SocketAddr;

use tonic::{Request, Status};

use crate::auth::Caller;

/// Who made a call, taken from the request before its body is consumed.
pub struct Who {
    key: String,
    role: &'static str,
    peer: Option<SocketAddr>,
}

pub fn who<T>(req: &Request<T>) -> Who {
    let caller = req.extensions().get::<Caller>();
    Who {
        key: caller.map_or_else(|| "-".to_string(), |c| c.key_id.clone()),
        role: caller.map_or("open", |c| c.role.as_str()),
        peer: req.remote_addr(),
    }
}

/// A caller's address as `ip:port`, or `-` when the transport has none.
struct Peer(Option<SocketAddr>);

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(a) => a.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// Logs the call and hands its result back.
pub fn record<T>(
    who: &Who,
    method: &str,
    what: &str,
    result: Result<T, Status>,
) -> Result<T, Status> {
    let outcome = match &result {
        Ok(_) => "ok".to_string(),
        Err(s) => format!("{:?}: {}", s.code(), s.message()),
    };
    tracing::info!(
        target: "audit",
        method,
        key = %who.key,
        role = who.role,
        peer = %Peer(who.peer),
        what,
        outcome = %outcome,
        "state-changing call"
    );
    result
}
