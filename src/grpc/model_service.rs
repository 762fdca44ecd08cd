//! ModelService: ops read the live model and swap in a new one.
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::engine::{Engine, ModelSource, NamedRows, Swap};
use crate::error::Error;
use crate::grpc::{audit, convert, pb};

pub struct ModelApi {
    engine: Arc<Engine>,
}

impl ModelApi {
    pub fn new(engine: Arc<Engine>) -> ModelApi {
        ModelApi { engine }
    }
}

type CsvStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<pb::CsvChunk, Status>> + Send + 'static>,
>;

/// Rows per ExportOutcomes chunk (~100-300 KB of CSV for typical leads).
const CHUNK_ROWS: usize = 256;

#[tonic::async_trait]
impl pb::model_service_server::ModelService for ModelApi {
    type ExportOutcomesStream = CsvStream;

    async fn export_outcomes(
        &self,
        req: Request<pb::ExportOutcomesRequest>,
    ) -> Result<Response<CsvStream>, Status> {
        let include_returned = req.into_inner().include_returned;
        let records = self.engine.outcomes().await?;
        // Building the table and its CSV is CPU work proportional to the outcomes: a task
        // feeds the stream chunk by chunk, so memory holds the table and one chunk.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let table = crate::outcomes::table(&records, include_returned);
            drop(records);
            let mut first = true;
            let mut rows = table.rows.chunks(CHUNK_ROWS).peekable();
            while first || rows.peek().is_some() {
                let chunk = rows.next().unwrap_or_default();
                let header = first.then_some(table.headers.as_slice());
                first = false;
                let msg = crate::outcomes::csv_bytes(header, chunk)
                    .map(|data| pb::CsvChunk {
                        data,
                        rows: chunk.len() as u64,
                    })
                    .map_err(|e| Status::internal(format!("export: {e}")));
                if tx.blocking_send(msg).is_err() {
                    return; // the client went away
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_model(
        &self,
        _req: Request<pb::GetModelRequest>,
    ) -> Result<Response<pb::ModelInfo>, Status> {
        Ok(Response::new(convert::model_info(
            self.engine.model().as_deref(),
        )))
    }

    async fn reload_model(
        &self,
        req: Request<pb::ReloadModelRequest>,
    ) -> Result<Response<pb::ReloadModelResponse>, Status> {
        let who = audit::who(&req);
        let msg = req.into_inner();
        let what = format!(
            "path {:?} artifact {} bytes force {}",
            msg.path,
            msg.artifact.len(),
            msg.force
        );
        let result = self.reload(msg).await;
        audit::record(&who, "ReloadModel", &what, result)
    }

    async fn get_model_health(
        &self,
        _req: Request<pb::GetModelHealthRequest>,
    ) -> Result<Response<pb::ModelHealth>, Status> {
        let health = match self.engine.drift() {
            Some((m, report)) => convert::model_health(Some(&m), Some(&report)),
            None => convert::model_health(self.engine.model().as_deref(), None),
        };
        Ok(Response::new(health))
    }
}

impl ModelApi {
    async fn reload(
        &self,
        msg: pb::ReloadModelRequest,
    ) -> Result<Response<pb::ReloadModelResponse>, Status> {
        if msg.rollback {
            if !msg.path.is_empty() || !msg.artifact.is_empty() || !msg.eval_csv.is_empty() {
                return Err(Error::invalid(
                    "rollback",
                    "goes back to the registry's previous model: give no path, artifact or rows",
                )
                .into());
            }
            let swap = self.engine.rollback().await?;
            tracing::info!(previous = swap.previous.as_deref().unwrap_or("none"), version = %swap.gate.candidate_version,
                "model rolled back (ReloadModel)");
            return Ok(self.answer(&swap, self.engine.registry_generation()));
        }
        let source = match (msg.path.is_empty(), msg.artifact.is_empty()) {
            (true, true) => ModelSource::Live,
            (false, true) => ModelSource::Path(msg.path),
            (true, false) => ModelSource::Bytes(msg.artifact),
            (false, false) => {
                return Err(
                    Error::invalid("artifact", "give a path or an artifact, not both").into(),
                );
            }
        };
        if msg.eval_csv.len() as u64 > self.engine.model_max_bytes() {
            return Err(Error::invalid("eval_csv", "larger than model.max_bytes").into());
        }
        let named = (!msg.eval_csv.is_empty()).then(|| NamedRows {
            csv: msg.eval_csv,
            label: if msg.eval_label.is_empty() {
                "outcome".into()
            } else {
                msg.eval_label
            },
            positive: Some(msg.eval_positive).filter(|p| !p.is_empty()),
        });
        let evidence = self.engine.evidence(named).await?;
        let engine = self.engine.clone();
        let force = msg.force;
        // Reading and hashing a file is blocking work; keep it off the async workers. Only
        // regular files are opened (never a FIFO or device), so the read cannot hang.
        let swap = tokio::task::spawn_blocking(move || engine.reload(source, force, &evidence))
            .await
            .map_err(|e| Status::internal(format!("model load task failed: {e}")))?
            .inspect_err(|e| tracing::warn!(error = %e, "ReloadModel refused"))?;
        tracing::info!(
            version = %swap.gate.candidate_version,
            previous = swap.previous.as_deref().unwrap_or("none"),
            forced = swap.forced,
            "model swapped (ReloadModel)"
        );
        // Live here now; the registry makes it live everywhere. If that write fails the
        // caller hears so, and a retry (same artifact: the gate passes the live version)
        // publishes it.
        let generation = self.engine.publish(&swap).await.map_err(|e| {
            Status::from(Error::Unavailable(format!(
                "the model is live on this replica but was not published to the registry ({e}); \
                 retry ReloadModel"
            )))
        })?;
        Ok(self.answer(&swap, generation))
    }

    fn answer(&self, swap: &Swap, generation: u64) -> Response<pb::ReloadModelResponse> {
        Response::new(pb::ReloadModelResponse {
            model: Some(convert::model_info(self.engine.model().as_deref())),
            previous_version: swap.previous.clone().unwrap_or_default(),
            gate: Some(convert::gate_result(swap)),
            generation,
        })
    }
}
