//! One connection type over a single Redis (ConnectionManager, reconnecting by itself) or a
//! Redis Cluster (ClusterConnection, which follows slot moves and reconnects too).
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Bounded waits everywhere: a dead Redis must turn into an error quickly, never a hang.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_millis(1000);
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

impl Conn {
    /// `urls` holds one URL, or for a cluster any number of seed nodes. `tls_ca` is a PEM root
    /// certificate for `rediss://` servers whose certificate the system store does not trust.
    pub async fn open(
        urls: &[String],
        cluster: bool,
        tls_ca: Option<Vec<u8>>,
    ) -> redis::RedisResult<Conn> {
        if cluster {
            let client = ClusterClientBuilder::new(urls.to_vec())
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .retries(2)
                .max_retry_wait(200)
                .build()?;
            return Ok(Conn::Cluster(client.get_async_connection().await?));
        }
        let client = match tls_ca {
            Some(pem) => redis::Client::build_with_tls(
                urls[0].as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )?,
            None => redis::Client::open(urls[0].as_str())?,
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(250));
        Ok(Conn::Single(
            ConnectionManager::new_with_config(client, config).await?,
        ))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// A Redis URL (or any text holding one) with the password replaced by `***`: secrets never
/// reach a log line or an error message.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first '/', whitespace or quote; a password sits between
        // the first ':' and the last '@' within it.
        let end = tail
            .find(|c: char| c == '/' || c == '"' || c == '\'' || c.is_whitespace() || c == ',')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon + 1]);
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    // `redis+unix:///path?pass=secret`
    if let Some(i) = out.find("pass=") {
        let end = out[i..]
            .find(|c: char| c == '&' || c == '"' || c.is_whitespace())
            .map_or(out.len(), |e| i + e);
        out.replace_range(i + 5..end, "***");
    }
    out
}

/// Every Redis error becomes one of ours here, once. States Redis leaves by itself (loading
/// its AOF, a busy script, a failover, a cluster reshard) and lost connections are UNAVAILABLE
/// with a retry hint; out of memory is RESOURCE_EXHAUSTED. The message names the state, never
/// a script's hash, a line number or a URL; the full error goes to the log (redacted).
pub fn classify(e: redis::RedisError) -> crate::error::Error {
    use crate::error::Error;
    const RETRY: &str = "retry; a routing call that failed this way may have been applied, and \
                         a retry with the same lead id replays it";
    let state = match e.code() {
        Some("OOM") => {
            tracing::warn!(error = %redact(&e.to_string()), "Redis is out of memory");
            return Error::ResourceExhausted(
                "the routing store is out of memory (Redis maxmemory); retry later".into(),
            );
        }
        Some(
            code @ ("LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN" | "READONLY" | "CLUSTERDOWN"
            | "NOREPLICAS" | "MOVED" | "ASK"),
        ) => Some(code.to_string()),
        _ if e.is_timeout() => Some("timeout".into()),
        _ if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_unrecoverable_error()
            || e.is_cluster_error()
            || e.kind() == redis::ErrorKind::ClusterConnectionNotFound =>
        {
            Some("connection lost".into())
        }
        _ => None,
    };
    match state {
        Some(state) => {
            tracing::debug!(error = %redact(&e.to_string()), "Redis unavailable");
            Error::Unavailable(format!("routing store unavailable ({state}); {RETRY}"))
        }
        None => {
            tracing::error!(error = %redact(&e.to_string()), "unexpected Redis error");
            Error::Internal("unexpected routing store error (details in the server log)".into())
        }
    }
}

#[cfg(test)]
mod redact_tests {
    use super::redact;

    #[test]
    fn passwords_never_survive() {
        let cases = [
            (
                "redis://:WrongPassw0rd@127.0.0.1:6379/0",
                "redis://:***@127.0.0.1:6379/0",
            ),
            (
                "rediss://user:p%40ss@host:6380",
                "rediss://user:***@host:6380",
            ),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            (
                "[\"redis://:a@h:1\", \"redis://:b@h:2\"]",
                "[\"redis://:***@h:1\", \"redis://:***@h:2\"]",
            ),
            (
                "redis+unix:///run/r.sock?pass=hunter2&db=1",
                "redis+unix:///run/r.sock?pass=***&db=1",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want, "{input}");
        }
    }
}
