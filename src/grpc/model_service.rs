//! ModelService: ops read the live model and swap in a new one.
use std::path::PathBuf;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::engine::Engine;
use crate::grpc::{convert, pb};

pub struct ModelApi {
    engine: Arc<Engine>,
}

impl ModelApi {
    pub fn new(engine: Arc<Engine>) -> ModelApi {
        ModelApi { engine }
    }
}

#[tonic::async_trait]
impl pb::model_service_server::ModelService for ModelApi {
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
        let msg = req.into_inner();
        let path = if msg.path.is_empty() {
            self.engine.model_path().ok_or_else(|| {
                crate::error::Error::invalid("path", "is required: no model path is configured")
            })?
        } else {
            PathBuf::from(msg.path)
        };
        let engine = self.engine.clone();
        // Reading and hashing a file is blocking work; keep it off the async workers.
        let previous = tokio::task::spawn_blocking(move || engine.load_model(&path))
            .await
            .map_err(|e| Status::internal(format!("model load task failed: {e}")))??;
        let model = convert::model_info(self.engine.model().as_deref());
        tracing::info!(version = %model.model_version, previous = ?previous, "model swapped");
        Ok(Response::new(pb::ReloadModelResponse {
            model: Some(model),
            previous_version: previous.unwrap_or_default(),
        }))
    }
}
