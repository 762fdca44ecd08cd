//! `leadrouter bench`: a closed-loop gRPC load generator. N connections x M requests in
//! flight per connection, a warm-up, then a timed window; prints rps and latency percentiles.
//! With auth on, `$LEADROUTER_TOKEN` (a marketing or admin key) is sent with every call.
//! Leads are real rows of a CSV (bank-marketing by default), each sent with a fresh id so
//! SubmitLead never replays.
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use tonic::transport::{Channel, Endpoint};

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
}

/// Reads the lead attributes once; requests clone a row and set a fresh id.
fn read_leads(args: &BenchArgs) -> anyhow::Result<Vec<pb::Lead>> {
    let table = crate::training::data::read(&args.leads, None).map_err(anyhow::Error::msg)?;
    let skip: Vec<&str> = args.drop_columns.iter().map(String::as_str).collect();
    let leads: Vec<pb::Lead> = (0..table.rows.len())
        .filter_map(|row| table.lead(row, String::new(), &skip))
        .map(crate::grpc::convert::lead_to_pb)
        .collect();
    anyhow::ensure!(!leads.is_empty(), "no leads in {}", args.leads.display());
    Ok(leads)
}

struct Shared {
    leads: Vec<pb::Lead>,
    seq: AtomicU64,
    run: u64,
    /// Requests before this instant are warm-up; none start after `end`.
    measure_from: Instant,
    end: Instant,
}

impl Shared {
    fn next_lead(&self) -> pb::Lead {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut lead = self.leads[(n % self.leads.len() as u64) as usize].clone();
        lead.id = format!("bench-{}-{n}", self.run);
        lead
    }
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: u64,
}

impl Tally {
    fn record(&mut self, shared: &Shared, started: Instant, ok: bool) {
        if started < shared.measure_from {
            return;
        }
        if ok {
            let us = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
            self.latencies_us.push(us);
        } else {
            self.errors += 1;
        }
    }
}

/// Adds `authorization: Bearer $LEADROUTER_TOKEN` to every call when the variable is set (a
/// server with keys on wants a marketing or admin key).
#[derive(Clone)]
struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl Bearer {
    fn from_env() -> anyhow::Result<Bearer> {
        let Ok(token) = std::env::var("LEADROUTER_TOKEN") else {
            return Ok(Bearer(None));
        };
        let value = format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| anyhow::anyhow!("LEADROUTER_TOKEN is not a valid header value"))?;
        Ok(Bearer(Some(value)))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

type Authed = tonic::service::interceptor::InterceptedService<Channel, Bearer>;

async fn unary_worker(channel: Authed, mode: Mode, shared: Arc<Shared>) -> Tally {
    let mut tally = Tally::default();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let mut leads = pb::lead_service_client::LeadServiceClient::new(channel);
    while Instant::now() < shared.end {
        let started = Instant::now();
        let ok = match mode {
            Mode::Health => health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .is_ok(),
            Mode::Score => leads
                .score_lead(pb::ScoreLeadRequest {
                    lead: Some(shared.next_lead()),
                })
                .await
                .is_ok(),
            _ => leads
                .submit_lead(pb::SubmitLeadRequest {
                    lead: Some(shared.next_lead()),
                    ..Default::default()
                })
                .await
                .is_ok(),
        };
        tally.record(&shared, started, ok);
    }
    tally
}

async fn stream_worker(channel: Authed, window: usize, shared: Arc<Shared>) -> Tally {
    let mut tally = Tally::default();
    let mut client = pb::lead_service_client::LeadServiceClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::SubmitLeadsRequest>(window);
    let sent: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
    let permits = Arc::new(tokio::sync::Semaphore::new(window));
    let feeder = {
        let (shared, sent, permits) = (shared.clone(), sent.clone(), permits.clone());
        tokio::spawn(async move {
            while Instant::now() < shared.end {
                let Ok(p) = permits.clone().acquire_owned().await else {
                    break;
                };
                p.forget();
                let lead = shared.next_lead();
                sent.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(lead.id.clone(), Instant::now());
                if tx
                    .send(pb::SubmitLeadsRequest {
                        lead: Some(lead),
                        ..Default::default()
                    })
                    .await
                    .is_err()
                {
                    break;
                }
            }
        })
    };
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    match client.submit_leads(stream).await {
        Ok(resp) => {
            let mut inbound = resp.into_inner();
            while let Ok(Some(msg)) = inbound.message().await {
                permits.add_permits(1);
                let started = sent
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&msg.lead_id);
                if let Some(started) = started {
                    let ok = matches!(
                        msg.result,
                        Some(pb::submit_leads_response::Result::Decision(_))
                    );
                    tally.record(&shared, started, ok);
                }
                if Instant::now() >= shared.end && sent.lock().map(|s| s.is_empty()).unwrap_or(true)
                {
                    break;
                }
            }
        }
        Err(_) => tally.errors += 1,
    }
    feeder.abort();
    tally
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
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let shared = Arc::new(Shared {
        leads,
        seq: AtomicU64::new(0),
        run: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default(),
        measure_from,
        end: measure_from + Duration::from_secs_f64(args.duration),
    });
    let mut tasks = Vec::new();
    for ch in &channels {
        for _ in 0..args.concurrency.max(1) {
            let (ch, shared) = (ch.clone(), shared.clone());
            tasks.push(match args.mode {
                Mode::Stream => tokio::spawn(stream_worker(ch, args.window.max(1), shared)),
                mode => tokio::spawn(unary_worker(ch, mode, shared)),
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
