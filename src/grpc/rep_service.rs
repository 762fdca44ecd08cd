//! RepService: CRM admins manage reps, their capacity and availability.
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::engine::Engine;
use crate::grpc::{audit, convert, pb};

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
        let who = audit::who(&req);
        let msg = req.into_inner().rep;
        let what = msg.as_ref().map_or(String::new(), |r| {
            format!(
                "rep {:?} pool {:?} capacity {} active {}",
                r.id, r.pool, r.capacity, r.active
            )
        });
        let result = async {
            let rep = convert::rep(msg)?;
            let (status, drained) = self.engine.upsert_rep(rep).await?;
            Ok(Response::new(pb::UpsertRepResponse {
                rep: Some(convert::rep_status(status)),
                drained: convert::assignments(drained),
            }))
        }
        .await;
        audit::record(&who, "UpsertRep", &what, result)
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
        let who = audit::who(&req);
        let id = req.into_inner().rep_id;
        let result = self.engine.delete_rep(&id).await.map_err(Status::from);
        let result = result.map(|()| Response::new(pb::DeleteRepResponse {}));
        audit::record(&who, "DeleteRep", &format!("rep {id:?}"), result)
    }

    async fn set_availability(
        &self,
        req: Request<pb::SetAvailabilityRequest>,
    ) -> Result<Response<pb::UpsertRepResponse>, Status> {
        let who = audit::who(&req);
        let msg = req.into_inner();
        let what = format!("rep {:?} active {}", msg.rep_id, msg.active);
        let result = async {
            let (status, drained) = self.engine.set_active(&msg.rep_id, msg.active).await?;
            Ok(Response::new(pb::UpsertRepResponse {
                rep: Some(convert::rep_status(status)),
                drained: convert::assignments(drained),
            }))
        }
        .await;
        audit::record(&who, "SetAvailability", &what, result)
    }
}
