//! The same-bytes ceiling: a bare tonic LeadService that decodes every request like the real
//! server and answers the very response the real server gave, captured at start, so a method's
//! rate against it is the cost of leadrouter's own work and nothing else. No request layer,
//! no store, no scoring; mimalloc like the real server.
//!
//! `cargo build --release --example ceiling`, then
//! `target/release/examples/ceiling --from http://127.0.0.1:50051 [--addr 127.0.0.1:0]`:
//! captures ScoreLead, SubmitLead (then closes that lead again) and one SubmitLeads answer for
//! the first bench lead, prints `ceiling listening on ADDR` and serves until killed.
//! Of RoutingService only CloseAssignment is served (the steady-state closer's call), with the
//! captured answer to a real close.
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use clap::Parser;
use futures::{Stream, StreamExt};
use leadrouter::grpc::pb;
use leadrouter::loadgen::{BenchArgs, Mode, lead_id, read_leads};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// The real server whose answers are served.
    #[arg(long)]
    from: String,
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: std::net::SocketAddr,
    /// The bench's lead rows (the first one is captured).
    #[arg(
        long,
        default_value = "data/bank-marketing/bank-additional-full.csv.gz"
    )]
    leads: std::path::PathBuf,
}

struct Canned {
    score: pb::ScoreLeadResponse,
    submit: pb::SubmitLeadResponse,
    stream: pb::SubmitLeadsResponse,
    close: pb::CloseAssignmentResponse,
}

/// RoutingService with only CloseAssignment: decodes the request like tonic's generated
/// server does and answers the captured close.
#[derive(Clone)]
struct Close(Arc<pb::CloseAssignmentResponse>);

impl tonic::server::NamedService for Close {
    const NAME: &'static str = "leadrouter.v1.RoutingService";
}

impl tonic::server::UnaryService<pb::CloseAssignmentRequest> for Close {
    type Response = pb::CloseAssignmentResponse;
    type Future = std::future::Ready<Result<Response<Self::Response>, Status>>;
    fn call(&mut self, req: Request<pb::CloseAssignmentRequest>) -> Self::Future {
        drop(req.into_inner());
        std::future::ready(Ok(Response::new((*self.0).clone())))
    }
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl tower::Service<http::Request<tonic::body::Body>> for Close {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let svc = self.clone();
        Box::pin(async move {
            if req.uri().path() != "/leadrouter.v1.RoutingService/CloseAssignment" {
                return Ok(Status::unimplemented("ceiling").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(svc, req).await)
        })
    }
}

#[tonic::async_trait]
impl pb::lead_service_server::LeadService for Canned {
    async fn score_lead(
        &self,
        req: Request<pb::ScoreLeadRequest>,
    ) -> Result<Response<pb::ScoreLeadResponse>, Status> {
        drop(req.into_inner());
        Ok(Response::new(self.score.clone()))
    }

    async fn submit_lead(
        &self,
        req: Request<pb::SubmitLeadRequest>,
    ) -> Result<Response<pb::SubmitLeadResponse>, Status> {
        drop(req.into_inner());
        Ok(Response::new(self.submit.clone()))
    }

    type SubmitLeadsStream =
        Pin<Box<dyn Stream<Item = Result<pb::SubmitLeadsResponse, Status>> + Send>>;

    async fn submit_leads(
        &self,
        req: Request<Streaming<pb::SubmitLeadsRequest>>,
    ) -> Result<Response<Self::SubmitLeadsStream>, Status> {
        let canned = self.stream.clone();
        let answers = req.into_inner().map(move |m| {
            m.map(|m| {
                let mut a = canned.clone();
                a.lead_id = m.lead.map(|l| l.id).unwrap_or_default();
                a
            })
        });
        Ok(Response::new(Box::pin(answers)))
    }
}

/// The real server's answers for the first bench lead, with an id as long as the bench's.
async fn capture(args: &Args) -> anyhow::Result<Canned> {
    let bench = BenchArgs {
        server: args.from.clone(),
        mode: Mode::Submit,
        connections: 1,
        concurrency: 1,
        window: 1,
        warmup: 0.0,
        duration: 0.0,
        leads: args.leads.clone(),
        drop_columns: vec!["y".into(), "duration".into()],
        keep_open: 0,
        write_body: None,
    };
    let mut lead = read_leads(&bench)?.swap_remove(0);
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let channel = tonic::transport::Endpoint::from_shared(args.from.clone())?
        .connect()
        .await?;
    let mut leads = pb::lead_service_client::LeadServiceClient::new(channel.clone());
    let mut routing = pb::routing_service_client::RoutingServiceClient::new(channel);
    lead.id = lead_id(run, 0);
    let score = leads
        .score_lead(pb::ScoreLeadRequest {
            lead: Some(lead.clone()),
        })
        .await?
        .into_inner();
    let submit = leads
        .submit_lead(pb::SubmitLeadRequest {
            lead: Some(lead.clone()),
            ..Default::default()
        })
        .await?
        .into_inner();
    lead.id = lead_id(run, 1);
    let mut answers = leads
        .submit_leads(futures::stream::iter([pb::SubmitLeadsRequest {
            lead: Some(lead),
            ..Default::default()
        }]))
        .await?
        .into_inner();
    let stream = answers
        .message()
        .await?
        .ok_or_else(|| anyhow::anyhow!("no SubmitLeads answer"))?;
    // Leave the pool as it was.
    let mut closes = Vec::new();
    for n in 0..2 {
        let closed = routing
            .close_assignment(pb::CloseAssignmentRequest {
                lead_id: lead_id(run, n),
                outcome: pb::Outcome::Lost as i32,
                value: None,
            })
            .await?;
        closes.push(closed.into_inner());
    }
    let close = closes.swap_remove(0);
    eprintln!(
        "captured: ScoreLead {} B, SubmitLead {} B, SubmitLeads {} B, CloseAssignment {} B",
        score.encoded_len(),
        submit.encoded_len(),
        stream.encoded_len(),
        close.encoded_len()
    );
    Ok(Canned {
        score,
        submit,
        stream,
        close,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut canned = capture(&args).await?;
    let close = Close(Arc::new(std::mem::take(&mut canned.close)));
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    println!("ceiling listening on {}", listener.local_addr()?);
    // `Server::tcp_nodelay` only covers `serve(addr)`; set it on each accepted socket, as
    // the real server's listener does, or every small answer waits on Nagle.
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|tcp| {
        tcp.inspect(|t| {
            let _ = t.set_nodelay(true);
        })
    });
    tonic::transport::Server::builder()
        .add_service(pb::lead_service_server::LeadServiceServer::new(canned))
        .add_service(close)
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}
