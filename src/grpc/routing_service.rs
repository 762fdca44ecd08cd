//! RoutingService: CRMs assign, read, close and move assignments.
use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::domain::assignment::LeadState;
use crate::engine::Engine;
use crate::grpc::{convert, pb};

pub struct RoutingApi {
    engine: Arc<Engine>,
}

impl RoutingApi {
    pub fn new(engine: Arc<Engine>) -> RoutingApi {
        RoutingApi { engine }
    }
}

fn span(method: &'static str, lead_id: &str) -> tracing::Span {
    tracing::info_span!("rpc", method, lead_id = %lead_id)
}

#[tonic::async_trait]
impl pb::routing_service_server::RoutingService for RoutingApi {
    async fn assign_lead(
        &self,
        req: Request<pb::AssignLeadRequest>,
    ) -> Result<Response<pb::AssignLeadResponse>, Status> {
        let msg = req.into_inner();
        let id = msg.lead.as_ref().map(|l| l.id.clone()).unwrap_or_default();
        async {
            let lead = convert::lead(msg.lead)?;
            let d = self.engine.submit(lead).await?;
            Ok(Response::new(pb::AssignLeadResponse {
                decision: Some(convert::decision(d)),
            }))
        }
        .instrument(span("AssignLead", &id))
        .await
    }

    async fn get_assignment(
        &self,
        req: Request<pb::GetAssignmentRequest>,
    ) -> Result<Response<pb::GetAssignmentResponse>, Status> {
        let msg = req.into_inner();
        async {
            let resp = match self.engine.lookup(&msg.lead_id).await? {
                LeadState::Assigned(a) => pb::GetAssignmentResponse {
                    status: if a.is_open() {
                        pb::RoutingStatus::Assigned
                    } else {
                        pb::RoutingStatus::Closed
                    }
                    .into(),
                    pool: a.pool.clone(),
                    probability: a.probability,
                    assignment: Some(convert::assignment(a)),
                    queue_position: 0,
                },
                LeadState::Queued {
                    pool,
                    probability,
                    position,
                } => pb::GetAssignmentResponse {
                    status: pb::RoutingStatus::Queued.into(),
                    assignment: None,
                    queue_position: position,
                    pool,
                    probability,
                },
            };
            Ok(Response::new(resp))
        }
        .instrument(span("GetAssignment", &msg.lead_id))
        .await
    }

    async fn close_assignment(
        &self,
        req: Request<pb::CloseAssignmentRequest>,
    ) -> Result<Response<pb::CloseAssignmentResponse>, Status> {
        let msg = req.into_inner();
        async {
            let outcome = convert::outcome(msg.outcome)?;
            let closed = self.engine.close(&msg.lead_id, outcome).await?;
            Ok(Response::new(pb::CloseAssignmentResponse {
                assignment: Some(convert::assignment(closed.assignment)),
                drained: convert::assignments(closed.drained),
            }))
        }
        .instrument(span("CloseAssignment", &msg.lead_id))
        .await
    }

    async fn reassign_lead(
        &self,
        req: Request<pb::ReassignLeadRequest>,
    ) -> Result<Response<pb::ReassignLeadResponse>, Status> {
        let msg = req.into_inner();
        async {
            let target = Some(msg.rep_id.as_str()).filter(|s| !s.is_empty());
            let moved = self.engine.reassign(&msg.lead_id, target).await?;
            Ok(Response::new(pb::ReassignLeadResponse {
                assignment: Some(convert::assignment(moved.assignment)),
                previous: Some(convert::assignment(moved.previous)),
                candidates: convert::candidates(moved.records),
                drained: convert::assignments(moved.drained),
            }))
        }
        .instrument(span("ReassignLead", &msg.lead_id))
        .await
    }
}
