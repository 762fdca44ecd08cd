//! RepService: CRM admins manage reps, their capacity and availability.
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::engine::Engine;
use crate::grpc::{convert, pb};

pub struct RepApi {
    engine: Arc<Engine>,
}

impl RepApi {
    pub fn new(engine: Arc<Engine>) -> RepApi {
        RepApi { engine }
    }
}

#[tonic::async_trait]
impl pb::rep_service_server::RepService for RepApi {
    async fn upsert_rep(
        &self,
        req: Request<pb::UpsertRepRequest>,
    ) -> Result<Response<pb::UpsertRepResponse>, Status> {
        let rep = convert::rep(req.into_inner().rep)?;
        let (status, drained) = self.engine.upsert_rep(rep).await?;
        Ok(Response::new(pb::UpsertRepResponse {
            rep: Some(convert::rep_status(status)),
            drained: convert::assignments(drained),
        }))
    }

    async fn get_rep(
        &self,
        req: Request<pb::GetRepRequest>,
    ) -> Result<Response<pb::RepStatus>, Status> {
        let status = self.engine.rep(&req.into_inner().rep_id).await?;
        Ok(Response::new(convert::rep_status(status)))
    }

    async fn list_reps(
        &self,
        req: Request<pb::ListRepsRequest>,
    ) -> Result<Response<pb::ListRepsResponse>, Status> {
        let msg = req.into_inner();
        let pool = Some(msg.pool.as_str()).filter(|p| !p.is_empty());
        let reps = self.engine.reps(pool).await?;
        Ok(Response::new(pb::ListRepsResponse {
            reps: reps.into_iter().map(convert::rep_status).collect(),
        }))
    }

    async fn delete_rep(
        &self,
        req: Request<pb::DeleteRepRequest>,
    ) -> Result<Response<pb::DeleteRepResponse>, Status> {
        self.engine.delete_rep(&req.into_inner().rep_id).await?;
        Ok(Response::new(pb::DeleteRepResponse {}))
    }

    async fn set_availability(
        &self,
        req: Request<pb::SetAvailabilityRequest>,
    ) -> Result<Response<pb::UpsertRepResponse>, Status> {
        let msg = req.into_inner();
        let (status, drained) = self.engine.set_active(&msg.rep_id, msg.active).await?;
        Ok(Response::new(pb::UpsertRepResponse {
            rep: Some(convert::rep_status(status)),
            drained: convert::assignments(drained),
        }))
    }
}
