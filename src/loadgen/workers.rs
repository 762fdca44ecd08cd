//! The generator's tasks: unary and stream workers, and the closer that keeps a steady state.
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::uri::PathAndQuery;
use prost::Message;
use tonic::client::Grpc;
use tonic::transport::Channel;

use super::Mode;
use super::raw::{RawCodec, StreamAnswer, Templates, lead_id};
use crate::grpc::pb;

pub struct Shared {
    pub templates: Templates,
    pub seq: AtomicU64,
    /// Requests before this instant are warm-up; none start after `end`.
    pub measure_from: Instant,
    pub end: Instant,
    /// Sequence numbers of submitted leads, for the closer.
    pub closer: Option<tokio::sync::mpsc::UnboundedSender<u64>>,
}

impl Shared {
    fn next(&self) -> (u64, Bytes) {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        (n, self.templates.request(n))
    }

    fn submitted(&self, n: u64) {
        if let Some(c) = &self.closer {
            let _ = c.send(n);
        }
    }
}

#[derive(Default)]
pub struct Tally {
    pub latencies_us: Vec<u32>,
    pub errors: u64,
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
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl Bearer {
    pub fn from_env() -> anyhow::Result<Bearer> {
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

pub type Authed = tonic::service::interceptor::InterceptedService<Channel, Bearer>;

/// One raw unary call; Ok when the server answered OK.
async fn call(grpc: &mut Grpc<Authed>, path: &PathAndQuery, body: Bytes) -> bool {
    if grpc.ready().await.is_err() {
        return false;
    }
    let codec = RawCodec::<()>::default();
    grpc.unary(tonic::Request::new(body), path.clone(), codec)
        .await
        .is_ok()
}

pub async fn unary(channel: Authed, mode: Mode, shared: Arc<Shared>) -> Tally {
    let mut tally = Tally::default();
    let mut grpc = Grpc::new(channel);
    let path = PathAndQuery::from_static(match mode {
        Mode::Health => "/grpc.health.v1.Health/Check",
        Mode::Score => "/leadrouter.v1.LeadService/ScoreLead",
        _ => "/leadrouter.v1.LeadService/SubmitLead",
    });
    while Instant::now() < shared.end {
        let started = Instant::now();
        let (n, body) = match mode {
            // An empty HealthCheckRequest is zero bytes.
            Mode::Health => (0, Bytes::new()),
            _ => shared.next(),
        };
        let ok = call(&mut grpc, &path, body).await;
        if ok && mode == Mode::Submit {
            shared.submitted(n);
        }
        tally.record(&shared, started, ok);
    }
    tally
}

/// The sequence number at the end of a bench lead id.
fn seq_of(lead_id: &str) -> Option<u64> {
    lead_id.rsplit('-').next()?.parse().ok()
}

pub async fn stream(channel: Authed, window: usize, shared: Arc<Shared>) -> Tally {
    let mut tally = Tally::default();
    let mut grpc = Grpc::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(window);
    let sent: Arc<std::sync::Mutex<HashMap<u64, Instant>>> = Arc::default();
    let permits = Arc::new(tokio::sync::Semaphore::new(window));
    let feeder = {
        let (shared, sent, permits) = (shared.clone(), sent.clone(), permits.clone());
        tokio::spawn(async move {
            while Instant::now() < shared.end {
                let Ok(p) = permits.clone().acquire_owned().await else {
                    break;
                };
                p.forget();
                let (n, body) = shared.next();
                sent.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(n, Instant::now());
                if tx.send(body).await.is_err() {
                    break;
                }
            }
        })
    };
    let path = PathAndQuery::from_static("/leadrouter.v1.LeadService/SubmitLeads");
    let codec = RawCodec::<StreamAnswer>::default();
    let request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let answer = match grpc.ready().await {
        Ok(()) => grpc.streaming(request, path, codec).await,
        Err(e) => Err(tonic::Status::unavailable(e.to_string())),
    };
    match answer {
        Ok(resp) => {
            let mut inbound = resp.into_inner();
            while let Ok(Some(msg)) = inbound.message().await {
                permits.add_permits(1);
                let Some(n) = seq_of(&msg.lead_id) else {
                    continue;
                };
                let started = sent.lock().unwrap_or_else(|e| e.into_inner()).remove(&n);
                if let Some(started) = started {
                    let ok = msg.error.is_none();
                    if ok {
                        shared.submitted(n);
                    }
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

/// Closes the oldest submitted leads so at most `keep_open` stay open: the pool then sits at
/// the utilisation `keep_open / capacity` instead of filling up and queueing every lead.
pub struct Closer {
    tx: tokio::sync::mpsc::UnboundedSender<u64>,
    task: tokio::task::JoinHandle<(u64, u64)>,
}

/// CloseAssignment calls in flight at once: enough that closes keep pace with 64 submits in
/// flight on a loaded server (with 16 the closer fell behind at c16 and the pool filled).
const CLOSES_IN_FLIGHT: usize = 128;

impl Closer {
    pub fn start(channel: Authed, keep_open: usize, run: u64) -> Closer {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let task = tokio::spawn(async move {
            let done = Arc::new(AtomicU64::new(0));
            let failed = Arc::new(AtomicU64::new(0));
            let slots = Arc::new(tokio::sync::Semaphore::new(CLOSES_IN_FLIGHT));
            let path = PathAndQuery::from_static("/leadrouter.v1.RoutingService/CloseAssignment");
            let mut open = VecDeque::new();
            // When the load stops (the channel closes), everything still open is closed too,
            // so the next run starts from an empty pool.
            let mut keep = keep_open;
            loop {
                match rx.recv().await {
                    Some(n) => open.push_back(n),
                    None if open.is_empty() => break,
                    None => keep = 0,
                }
                while open.len() > keep {
                    let Some(old) = open.pop_front() else { break };
                    let Ok(slot) = slots.clone().acquire_owned().await else {
                        break;
                    };
                    let (mut grpc, path) = (Grpc::new(channel.clone()), path.clone());
                    let (done, failed) = (done.clone(), failed.clone());
                    tokio::spawn(async move {
                        let body = pb::CloseAssignmentRequest {
                            lead_id: lead_id(run, old),
                            outcome: if old % 3 == 0 {
                                pb::Outcome::Won
                            } else {
                                pb::Outcome::Lost
                            } as i32,
                            value: None,
                        }
                        .encode_to_vec();
                        let ok = call(&mut grpc, &path, body.into()).await;
                        done.fetch_add(1, Ordering::Relaxed);
                        if !ok {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        drop(slot);
                    });
                }
            }
            let _ = slots.acquire_many(CLOSES_IN_FLIGHT as u32).await;
            (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed))
        });
        Closer { tx, task }
    }

    pub fn sender(&self) -> tokio::sync::mpsc::UnboundedSender<u64> {
        self.tx.clone()
    }

    /// Closes what is left open once the load has stopped; returns (closes, failed closes).
    pub async fn finish(self) -> (u64, u64) {
        drop(self.tx);
        self.task.await.unwrap_or_default()
    }
}
