//! `leadrouter bench`: a closed-loop gRPC load generator. N connections x M requests in
//! flight per connection, a warm-up, then a timed window; prints rps and latency percentiles.
//! With auth on, `$LEADROUTER_TOKEN` (a marketing or admin key) is sent with every call.
//! Leads are real rows of a CSV (bank-marketing by default), each sent with a fresh id so
//! SubmitLead never replays; requests are encoded once per row (`raw.rs`) so the generator's
//! CPU goes to HTTP/2. `--keep-open` adds a closer that keeps the pool in a steady state.

mod raw;
mod workers;

pub use raw::{RawCodec, StreamAnswer, Templates, lead_id, score_body, submit_body};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};
use workers::{Bearer, Closer, Shared};

use anyhow::Context;
use clap::{Args, ValueEnum};
use tonic::transport::Endpoint;

use crate::grpc::pb;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// grpc.health.v1 Check: the ceiling (same server and transport, no work).
    Health,
    /// ScoreLead: score and segment, nothing stored.
    Score,
    /// SubmitLead: score, segment and route (a fresh lead id per request).
    Submit,
    /// SubmitLeads, one bidirectional stream per in-flight slot, `--window` leads outstanding.
    Stream,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// gRPC address of the server to load ($LEADROUTER_TOKEN when auth is on).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// What each request does.
    #[arg(long, value_enum, default_value = "score")]
    pub mode: Mode,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Requests (or streams) in flight per connection.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Leads outstanding per stream (stream mode).
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Seconds of load before measuring starts (not counted).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// CSV of lead attributes (label and leaky columns are dropped).
    #[arg(
        long,
        default_value = "data/bank-marketing/bank-additional-full.csv.gz"
    )]
    pub leads: PathBuf,
    /// Columns of --leads not sent (comma-separated): the label and leaky ones.
    #[arg(long, value_delimiter = ',', default_value = "y,duration")]
    pub drop_columns: Vec<String>,
    /// Steady state: a closer closes the oldest submitted leads (CloseAssignment, on its own
    /// connection) so at most this many stay open; 0 (the default) closes nothing.
    #[arg(long, default_value_t = 0)]
    pub keep_open: usize,
    /// Instead of running, write one ScoreLead request as a gRPC-framed body (5-byte prefix +
    /// protobuf) to this file, for h2load -d.
    #[arg(long)]
    pub write_body: Option<PathBuf>,
}

/// What one run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub mode: String,
    pub connections: usize,
    pub concurrency: usize,
    pub seconds: f64,
    pub requests: u64,
    pub errors: u64,
    pub rps: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    /// CloseAssignment calls the closer made, and how many failed.
    pub closes: u64,
    pub close_errors: u64,
}

/// Reads the lead attributes once; requests are encoded from these rows.
pub fn read_leads(args: &BenchArgs) -> anyhow::Result<Vec<pb::Lead>> {
    let table = crate::training::data::read(&args.leads, None).map_err(anyhow::Error::msg)?;
    let skip: Vec<&str> = args.drop_columns.iter().map(String::as_str).collect();
    let leads: Vec<pb::Lead> = (0..table.rows.len())
        .filter_map(|row| table.lead(row, String::new(), &skip))
        .map(crate::grpc::convert::lead_to_pb)
        .collect();
    anyhow::ensure!(!leads.is_empty(), "no leads in {}", args.leads.display());
    Ok(leads)
}

fn percentile(sorted: &[u32], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    u64::from(sorted[i])
}

/// Writes the gRPC framing of a ScoreLead request for the first lead: flag byte 0 (not
/// compressed), big-endian u32 length, protobuf bytes.
pub fn write_body(args: &BenchArgs, path: &std::path::Path) -> anyhow::Result<()> {
    use prost::Message;
    let mut lead = read_leads(args)?.swap_remove(0);
    lead.id = "h2load".into();
    let msg = pb::ScoreLeadRequest { lead: Some(lead) }.encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&u32::try_from(msg.len())?.to_be_bytes());
    body.extend_from_slice(&msg);
    std::fs::write(path, body).with_context(|| format!("cannot write {}", path.display()))
}

/// Runs one measurement.
pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let leads = read_leads(args)?;
    let bearer = Bearer::from_env()?;
    let mut channels = Vec::with_capacity(args.connections);
    for _ in 0..args.connections.max(1) {
        let ch = Endpoint::from_shared(args.server.clone())?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("cannot connect to {}", args.server))?;
        channels.push(tonic::service::interceptor::InterceptedService::new(
            ch,
            bearer.clone(),
        ));
    }
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let templates = match args.mode {
        Mode::Score => Templates::new(&leads, run, score_body),
        _ => Templates::new(&leads, run, submit_body),
    };
    let closer = if args.keep_open > 0 {
        let ch = Endpoint::from_shared(args.server.clone())?
            .tcp_nodelay(true)
            .connect()
            .await?;
        let ch = tonic::service::interceptor::InterceptedService::new(ch, bearer.clone());
        Some(Closer::start(ch, args.keep_open, run))
    } else {
        None
    };
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let shared = Arc::new(Shared {
        templates,
        seq: AtomicU64::new(0),
        measure_from,
        end: measure_from + Duration::from_secs_f64(args.duration),
        closer: closer.as_ref().map(Closer::sender),
    });
    let mut tasks = Vec::new();
    for ch in &channels {
        for _ in 0..args.concurrency.max(1) {
            let (ch, shared) = (ch.clone(), shared.clone());
            tasks.push(match args.mode {
                Mode::Stream => tokio::spawn(workers::stream(ch, args.window.max(1), shared)),
                mode => tokio::spawn(workers::unary(ch, mode, shared)),
            });
        }
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let tally = t.await?;
        all.extend(tally.latencies_us);
        errors += tally.errors;
    }
    all.sort_unstable();
    drop(shared);
    let (closes, close_errors) = match closer {
        Some(c) => c.finish().await,
        None => (0, 0),
    };
    let seconds = args.duration;
    Ok(Report {
        mode: format!("{:?}", args.mode).to_lowercase(),
        connections: args.connections,
        concurrency: args.concurrency,
        seconds,
        requests: all.len() as u64,
        errors,
        rps: all.len() as f64 / seconds,
        p50_us: percentile(&all, 0.50),
        p90_us: percentile(&all, 0.90),
        p99_us: percentile(&all, 0.99),
        p999_us: percentile(&all, 0.999),
        closes,
        close_errors,
    })
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let v: Vec<u32> = (1..=1000).collect();
        assert_eq!(percentile(&v, 0.5), 500);
        assert_eq!(percentile(&v, 0.99), 990);
        assert_eq!(percentile(&v, 0.999), 999);
        assert_eq!(percentile(&[], 0.5), 0);
    }
}
