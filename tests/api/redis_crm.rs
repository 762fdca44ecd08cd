//! The CRM loop across replicas on Redis: offer deadlines outlive the process that made them,
//! and a watcher on one replica sees events written through another.
use std::time::Duration;

use leadrouter::grpc::pb;
use pb::AssignmentEventKind as K;

use crate::crm::{Watched, watch_pool};
use crate::helpers::*;
use crate::redis_server::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_made_by_a_stopped_replica_expires_on_another() {
    let server = RedisServer::start();
    let url = server.url();
    let env = [
        ("LEADROUTER__STORE__URL", url.as_str()),
        ("LEADROUTER__REPS__FILE", ""),
        ("LEADROUTER__ROUTING__MODE", "offer"),
        ("LEADROUTER__ROUTING__OFFER_TIMEOUT_S", "2"),
    ];
    let a = Process::start(&env).await;
    for r in ["ann", "bob"] {
        a.reps()
            .upsert_rep(pb::UpsertRepRequest {
                rep: Some(rep(r, 1, &[])),
            })
            .await
            .unwrap();
    }
    let b = Process::start(&env).await;
    // B's watcher sees what A writes.
    let w = Watched::start(&b, watch_pool("default", Some(0))).await;
    let d = a
        .leads()
        .submit_lead(pb::SubmitLeadRequest {
            lead: Some(good_lead("l")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .decision
        .unwrap();
    let first = rep_of(&d);
    w.wait(Duration::from_secs(3), |e| !e.is_empty()).await;
    assert_eq!(w.kinds()[0], (K::Offered, first.clone()));
    // A stops before the deadline; B (which never saw the offer made) expires it.
    assert!(a.terminate().success());
    w.wait(Duration::from_secs(5), |e| e.len() >= 3).await;
    let other = if first == "ann" { "bob" } else { "ann" };
    assert_eq!(
        w.kinds()[..3],
        [
            (K::Offered, first.clone()),
            (K::Expired, first.clone()),
            (K::Offered, other.to_string()),
        ]
    );
    let g = b
        .routing()
        .get_assignment(pb::GetAssignmentRequest {
            lead_id: "l".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(g.assignment.unwrap().rep_id, other);
    let mut rc = b.routing();
    let e = rc
        .accept_lead(pb::AcceptLeadRequest {
            lead_id: "l".into(),
            rep_id: first.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("expired"), "{e:?}");
    // A watcher without a cursor starts at the next event, here B's ACCEPTED.
    let fresh = Watched::start(&b, watch_pool("default", None)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    rc.accept_lead(pb::AcceptLeadRequest {
        lead_id: "l".into(),
        rep_id: other.into(),
    })
    .await
    .unwrap();
    fresh.wait(Duration::from_secs(3), |e| !e.is_empty()).await;
    let e = &fresh.events()[0];
    assert_eq!((e.kind(), e.cursor), (K::Accepted, 4));
}
