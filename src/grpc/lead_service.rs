//! LeadService: ScoreLead, SubmitLead and the SubmitLeads bulk stream.
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::engine::Engine;
use crate::grpc::{convert, pb, status};

pub struct LeadApi {
    engine: Arc<Engine>,
    stream_concurrency: usize,
}

impl LeadApi {
    pub fn new(engine: Arc<Engine>, stream_concurrency: usize) -> LeadApi {
        LeadApi {
            engine,
            stream_concurrency,
        }
    }
}

fn lead_span(method: &'static str, lead: Option<&pb::Lead>) -> tracing::Span {
    let id = lead.map_or("", |l| l.id.as_str());
    tracing::info_span!("rpc", method, lead_id = %id)
}

/// One lead of a stream: its decision, or its error as data so the stream goes on.
async fn submit_one(engine: Arc<Engine>, msg: pb::SubmitLeadsRequest) -> pb::SubmitLeadsResponse {
    let lead_id = msg.lead.as_ref().map(|l| l.id.clone()).unwrap_or_default();
    let span = lead_span("SubmitLeads", msg.lead.as_ref());
    let result = async {
        let lead = convert::lead(msg.lead)?;
        engine.submit(lead).await
    }
    .instrument(span)
    .await;
    let result = match result {
        Ok(d) => pb::submit_leads_response::Result::Decision(convert::decision(d)),
        Err(e) => pb::submit_leads_response::Result::Error(pb::LeadError {
            code: status::code(&e) as i32,
            message: e.to_string(),
        }),
    };
    pb::SubmitLeadsResponse {
        lead_id,
        result: Some(result),
    }
}

#[tonic::async_trait]
impl pb::lead_service_server::LeadService for LeadApi {
    async fn score_lead(
        &self,
        req: Request<pb::ScoreLeadRequest>,
    ) -> Result<Response<pb::ScoreLeadResponse>, Status> {
        let msg = req.into_inner();
        let _span = lead_span("ScoreLead", msg.lead.as_ref()).entered();
        let lead = convert::lead(msg.lead)?;
        let d = self.engine.score(&lead)?;
        Ok(Response::new(pb::ScoreLeadResponse {
            decision: Some(convert::decision(d)),
        }))
    }

    async fn submit_lead(
        &self,
        req: Request<pb::SubmitLeadRequest>,
    ) -> Result<Response<pb::SubmitLeadResponse>, Status> {
        let msg = req.into_inner();
        let span = lead_span("SubmitLead", msg.lead.as_ref());
        async {
            let lead = convert::lead(msg.lead)?;
            let d = self.engine.submit(lead).await?;
            Ok(Response::new(pb::SubmitLeadResponse {
                decision: Some(convert::decision(d)),
            }))
        }
        .instrument(span)
        .await
    }

    type SubmitLeadsStream =
        Pin<Box<dyn Stream<Item = Result<pb::SubmitLeadsResponse, Status>> + Send>>;

    async fn submit_leads(
        &self,
        req: Request<Streaming<pb::SubmitLeadsRequest>>,
    ) -> Result<Response<Self::SubmitLeadsStream>, Status> {
        let inbound = req.into_inner();
        let n = self.stream_concurrency;
        // Bounded: when the client stops reading, we stop reading its requests (backpressure).
        let (tx, rx) = tokio::sync::mpsc::channel(n);
        let engine = self.engine.clone();
        tokio::spawn(async move {
            let mut results = inbound
                .map(|msg| {
                    let engine = engine.clone();
                    async move {
                        match msg {
                            Ok(m) => Ok(submit_one(engine, m).await),
                            Err(status) => Err(status),
                        }
                    }
                })
                .buffered(n);
            while let Some(item) = results.next().await {
                let fatal = item.is_err();
                if tx.send(item).await.is_err() || fatal {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
