//! LeadService: ScoreLead, SubmitLead and the SubmitLeads bulk stream.
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::engine::{Decision, Engine};
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

/// Stream leads per batch for each unit of `server.stream_concurrency`.
const BATCH_PER_SLOT: usize = 4;

/// Names the request's lead on its span (the request layer's) before it is checked.
fn note_lead(lead: Option<&pb::Lead>) {
    crate::observe::annotate(lead.map_or("", |l| l.id.as_str()), None, None);
}

/// One lead's answer in a stream: its decision, or its error as data so the stream goes on.
fn stream_answer(
    lead_id: String,
    result: crate::error::Result<Decision>,
) -> pb::SubmitLeadsResponse {
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

/// A batch of stream messages through Engine::submit_batch; answers in arrival order.
async fn submit_batch(
    engine: &Engine,
    batch: Vec<pb::SubmitLeadsRequest>,
) -> Vec<pb::SubmitLeadsResponse> {
    let span = tracing::info_span!("rpc", method = "SubmitLeads", batch = batch.len());
    async {
        let mut ids = Vec::with_capacity(batch.len());
        let mut converted = Vec::with_capacity(batch.len());
        let mut leads = Vec::with_capacity(batch.len());
        for m in batch {
            ids.push(m.lead.as_ref().map(|l| l.id.clone()).unwrap_or_default());
            match convert::lead(m.lead).and_then(|l| Ok((l, convert::explain(m.explain)?))) {
                Ok((l, explain)) => {
                    leads.push(l);
                    converted.push(Ok(explain));
                }
                Err(e) => converted.push(Err(e)),
            }
        }
        let mut results = engine.submit_batch(leads).await.into_iter();
        ids.into_iter()
            .zip(converted)
            .map(|(id, explain)| {
                let r = explain.and_then(|explain| {
                    let r = results.next().unwrap_or_else(|| {
                        Err(crate::error::Error::Internal("missing result".into()))
                    });
                    r.map(|d| engine.answer(d, explain))
                });
                stream_answer(id, r)
            })
            .collect()
    }
    .instrument(span)
    .await
}

#[tonic::async_trait]
impl pb::lead_service_server::LeadService for LeadApi {
    async fn score_lead(
        &self,
        req: Request<pb::ScoreLeadRequest>,
    ) -> Result<Response<pb::ScoreLeadResponse>, Status> {
        let msg = req.into_inner();
        note_lead(msg.lead.as_ref());
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
        note_lead(msg.lead.as_ref());
        let lead = convert::lead(msg.lead)?;
        let explain = convert::explain(msg.explain)?;
        let d = self.engine.submit(lead).await?;
        let d = self.engine.answer(d, explain);
        Ok(Response::new(pb::SubmitLeadResponse {
            decision: Some(convert::decision(d)),
        }))
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
        let (tx, rx) = tokio::sync::mpsc::channel(n * BATCH_PER_SLOT);
        let engine = self.engine.clone();
        tokio::spawn(async move {
            // Whatever has arrived (up to a batch) is scored in one pass and claimed in one
            // store round trip; two batches are in flight so reading overlaps the work.
            let mut batches = inbound
                .ready_chunks(n * BATCH_PER_SLOT)
                .map(|chunk| {
                    let engine = engine.clone();
                    async move {
                        let mut ok = Vec::with_capacity(chunk.len());
                        let mut fatal = None;
                        for m in chunk {
                            match m {
                                Ok(m) => ok.push(m),
                                Err(status) => {
                                    fatal = Some(status);
                                    break;
                                }
                            }
                        }
                        (submit_batch(&engine, ok).await, fatal)
                    }
                })
                .buffered(2);
            while let Some((answers, fatal)) = batches.next().await {
                for a in answers {
                    if tx.send(Ok(a)).await.is_err() {
                        return;
                    }
                }
                if let Some(status) = fatal {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
