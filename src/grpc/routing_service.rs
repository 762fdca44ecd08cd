//! RoutingService: CRMs assign, read, close and move assignments.
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::domain::assignment::LeadState;
use crate::domain::lead::{validate_id, validate_pool};
use crate::domain::routing;
use crate::engine::Engine;
use crate::error::Error;
use crate::grpc::{audit, convert, pb};

pub struct RoutingApi {
    engine: Arc<Engine>,
    /// Follows the event logs once for every WatchAssignments of this process.
    hub: Arc<crate::watch::Hub>,
}

impl RoutingApi {
    pub fn new(engine: Arc<Engine>) -> RoutingApi {
        let hub = engine.hub().clone();
        RoutingApi { engine, hub }
    }
}

/// ListAssignments pages hold at most this many items.
const MAX_PAGE: u32 = 1000;

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::AssignmentEvent, Status>> + Send>>;

fn watch_filter(msg: pb::WatchAssignmentsRequest) -> Result<crate::watch::Filter, Error> {
    for (i, p) in msg.pools.iter().enumerate() {
        validate_pool(&format!("pools[{i}]"), p)?;
    }
    for (i, r) in msg.rep_ids.iter().enumerate() {
        validate_id(&format!("rep_ids[{i}]"), r)?;
    }
    for p in msg.after.keys() {
        validate_pool(&format!("after[{p}]"), p)?;
    }
    Ok(crate::watch::Filter {
        pools: msg.pools,
        reps: msg.rep_ids,
        after: msg.after.into_iter().collect(),
    })
}

#[tonic::async_trait]
impl pb::routing_service_server::RoutingService for RoutingApi {
    type WatchAssignmentsStream = EventStream;

    async fn watch_assignments(
        &self,
        req: Request<pb::WatchAssignmentsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let filter = watch_filter(req.into_inner())?;
        let rx = self.hub.watch(filter);
        let stream = ReceiverStream::new(rx).map(|r| r.map(convert::event).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_assignments(
        &self,
        req: Request<pb::ListAssignmentsRequest>,
    ) -> Result<Response<pb::ListAssignmentsResponse>, Status> {
        let msg = req.into_inner();
        let states = convert::list_states(&msg.states)?;
        if msg.page_size > MAX_PAGE {
            return Err(Error::invalid("page_size", format!("is above {MAX_PAGE}")).into());
        }
        let limit = if msg.page_size == 0 {
            100
        } else {
            msg.page_size
        } as usize;
        let offset: usize = if msg.page_token.is_empty() {
            0
        } else {
            msg.page_token
                .parse()
                .map_err(|_| Error::invalid("page_token", "is not a token this server gave"))?
        };
        let page = self
            .engine
            .list(&msg.pool, &msg.rep_id, states, offset, limit)
            .await?;
        let now = self.engine.now().as_millisecond();
        let next = if page.more {
            (offset + page.items.len()).to_string()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListAssignmentsResponse {
            assignments: page
                .items
                .into_iter()
                .map(|i| convert::listed(i, now))
                .collect(),
            next_page_token: next,
        }))
    }

    async fn accept_lead(
        &self,
        req: Request<pb::AcceptLeadRequest>,
    ) -> Result<Response<pb::AcceptLeadResponse>, Status> {
        let who = audit::who(&req);
        let msg = req.into_inner();
        let what = format!("lead {:?} rep {:?}", msg.lead_id, msg.rep_id);
        crate::observe::annotate(&msg.lead_id, None, None);
        let result = async {
            let a = self.engine.accept(&msg.lead_id, &msg.rep_id).await?;
            Ok(Response::new(pb::AcceptLeadResponse {
                assignment: Some(convert::assignment(a)),
            }))
        }
        .await;
        audit::record(&who, "AcceptLead", &what, result)
    }

    async fn decline_lead(
        &self,
        req: Request<pb::DeclineLeadRequest>,
    ) -> Result<Response<pb::DeclineLeadResponse>, Status> {
        let who = audit::who(&req);
        let msg = req.into_inner();
        let what = format!("lead {:?} rep {:?}", msg.lead_id, msg.rep_id);
        crate::observe::annotate(&msg.lead_id, None, None);
        let result = async {
            let r = self
                .engine
                .decline(&msg.lead_id, &msg.rep_id, &msg.reason)
                .await?;
            Ok(Response::new(pb::DeclineLeadResponse {
                drained: convert::assignments(r.drained),
            }))
        }
        .await;
        audit::record(&who, "DeclineLead", &what, result)
    }

    async fn mark_contacted(
        &self,
        req: Request<pb::MarkContactedRequest>,
    ) -> Result<Response<pb::MarkContactedResponse>, Status> {
        let who = audit::who(&req);
        let msg = req.into_inner();
        let what = format!("lead {:?} rep {:?}", msg.lead_id, msg.rep_id);
        crate::observe::annotate(&msg.lead_id, None, None);
        let result = async {
            let a = self
                .engine
                .mark_contacted(&msg.lead_id, &msg.rep_id)
                .await?;
            Ok(Response::new(pb::MarkContactedResponse {
                assignment: Some(convert::assignment(a)),
            }))
        }
        .await;
        audit::record(&who, "MarkContacted", &what, result)
    }

    async fn assign_lead(
        &self,
        req: Request<pb::AssignLeadRequest>,
    ) -> Result<Response<pb::AssignLeadResponse>, Status> {
        let msg = req.into_inner();
        let id = msg.lead.as_ref().map(|l| l.id.clone()).unwrap_or_default();
        crate::observe::annotate(&id, None, None);
        async {
            let lead = convert::lead(msg.lead)?;
            let explain = convert::explain(msg.explain)?;
            let d = self.engine.submit(lead).await?;
            let d = self.engine.answer(d, explain);
            Ok(Response::new(pb::AssignLeadResponse {
                decision: Some(convert::decision(d)),
            }))
        }
        .await
    }

    async fn get_assignment(
        &self,
        req: Request<pb::GetAssignmentRequest>,
    ) -> Result<Response<pb::GetAssignmentResponse>, Status> {
        let msg = req.into_inner();
        crate::observe::annotate(&msg.lead_id, None, None);
        async {
            let resp = match self.engine.lookup(&msg.lead_id).await? {
                LeadState::Assigned(a) => pb::GetAssignmentResponse {
                    status: if !a.is_closed() {
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
        .await
    }

    async fn close_assignment(
        &self,
        req: Request<pb::CloseAssignmentRequest>,
    ) -> Result<Response<pb::CloseAssignmentResponse>, Status> {
        let who = audit::who(&req);
        let msg = req.into_inner();
        let what = format!("lead {:?} outcome {}", msg.lead_id, msg.outcome);
        crate::observe::annotate(&msg.lead_id, None, None);
        let result = async {
            let outcome = convert::outcome(msg.outcome)?;
            let closed = self.engine.close(&msg.lead_id, outcome, msg.value).await?;
            Ok(Response::new(pb::CloseAssignmentResponse {
                assignment: Some(convert::assignment(closed.assignment)),
                drained: convert::assignments(closed.drained),
            }))
        }
        .await;
        audit::record(&who, "CloseAssignment", &what, result)
    }

    async fn reassign_lead(
        &self,
        req: Request<pb::ReassignLeadRequest>,
    ) -> Result<Response<pb::ReassignLeadResponse>, Status> {
        let who = audit::who(&req);
        let msg = req.into_inner();
        let what = format!("lead {:?} to {:?}", msg.lead_id, msg.rep_id);
        crate::observe::annotate(&msg.lead_id, None, None);
        let result = async {
            let target = Some(msg.rep_id.as_str()).filter(|s| !s.is_empty());
            let explain = convert::explain(msg.explain)?;
            let mut moved = self.engine.reassign(&msg.lead_id, target).await?;
            let limit = explain.limit(self.engine.record_candidates());
            let omitted = routing::summarise(&mut moved.records, limit);
            let (candidates_omitted, omitted_by_verdict) = convert::omitted(omitted);
            Ok(Response::new(pb::ReassignLeadResponse {
                assignment: Some(convert::assignment(moved.assignment)),
                previous: Some(convert::assignment(moved.previous)),
                candidates: convert::candidates(moved.records),
                drained: convert::assignments(moved.drained),
                candidates_omitted,
                omitted_by_verdict,
            }))
        }
        .await;
        audit::record(&who, "ReassignLead", &what, result)
    }
}
