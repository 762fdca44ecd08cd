//! The CRM loop over gRPC: WatchAssignments, ListAssignments, offers (AcceptLead,
//! DeclineLead, expiry), MarkContacted and SLA breaches.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leadrouter::domain::terms::{Mode, OnBreach};
use leadrouter::grpc::pb;
use pb::AssignmentEventKind as K;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::helpers::*;

/// Events a watcher received, shared with the test.
#[derive(Clone, Default)]
pub struct Watched(Arc<Mutex<Vec<Result<pb::AssignmentEvent, tonic::Status>>>>);

impl Watched {
    /// Starts WatchAssignments on `c` and collects what arrives until the stream ends.
    pub async fn start(c: &impl Clients, req: pb::WatchAssignmentsRequest) -> Watched {
        let mut stream = c
            .routing()
            .watch_assignments(req)
            .await
            .unwrap()
            .into_inner();
        let w = Watched::default();
        let out = w.0.clone();
        tokio::spawn(async move {
            while let Some(m) = stream.next().await {
                out.lock().unwrap().push(m);
            }
        });
        w
    }

    pub fn events(&self) -> Vec<pb::AssignmentEvent> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| r.as_ref().ok().cloned())
            .collect()
    }

    pub fn kinds(&self) -> Vec<(K, String)> {
        self.events()
            .into_iter()
            .map(|e| (e.kind(), e.rep_id))
            .collect()
    }

    /// Waits until `done` holds for the events so far (or panics after `within`).
    pub async fn wait(&self, within: Duration, done: impl Fn(&[pb::AssignmentEvent]) -> bool) {
        let start = Instant::now();
        while !done(&self.events()) {
            assert!(
                start.elapsed() < within,
                "watcher saw only {:?}",
                self.kinds()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn first_error(&self) -> Option<tonic::Status> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find_map(|r| r.as_ref().err().cloned())
    }
}

pub fn watch_pool(pool: &str, after: Option<u64>) -> pb::WatchAssignmentsRequest {
    pb::WatchAssignmentsRequest {
        pools: vec![pool.into()],
        rep_ids: vec![],
        after: after
            .map(|a| HashMap::from([(pool.to_string(), a)]))
            .unwrap_or_default(),
    }
}

fn offer_settings() -> leadrouter::config::Settings {
    let mut s = test_settings();
    s.routing.mode = Mode::Offer;
    s.routing.offer_timeout_s = 60.0;
    s
}

async fn current(app: &TestApp, id: &str) -> pb::Assignment {
    app.routing()
        .get_assignment(pb::GetAssignmentRequest { lead_id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .assignment
        .unwrap_or_default()
}

#[tokio::test]
async fn offers_are_accepted_declined_and_checked() {
    let app = spawn_with(offer_settings()).await;
    app.add_rep(rep("ann", 1, &[])).await;
    app.add_rep(rep("bob", 1, &[])).await;
    let w = Watched::start(&app, watch_pool("default", Some(0))).await;
    let d = submit(&app, good_lead("l")).await.unwrap();
    assert_eq!(status_of(&d), pb::RoutingStatus::Assigned);
    let a = d.routing.unwrap().assignment.unwrap();
    assert_eq!(a.state(), pb::AssignmentState::Offered);
    assert!(a.deadline_ms > 0);
    let first = a.rep_id.clone();
    let other = if first == "ann" { "bob" } else { "ann" };
    let mut rc = app.routing();
    let accept = |lead: &str, rep: &str| pb::AcceptLeadRequest {
        lead_id: lead.into(),
        rep_id: rep.into(),
    };
    assert_invalid(rc.accept_lead(accept("l", "")).await, "rep_id");
    assert_invalid(rc.accept_lead(accept("", "ann")).await, "lead_id");
    let e = rc.accept_lead(accept("nope", "ann")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = rc.accept_lead(accept("l", other)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let e = rc
        .mark_contacted(pb::MarkContactedRequest {
            lead_id: "l".into(),
            rep_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("accept it first"), "{e:?}");
    let declined = rc
        .decline_lead(pb::DeclineLeadRequest {
            lead_id: "l".into(),
            rep_id: first.clone(),
            reason: "on a call".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(declined.drained.len(), 1);
    assert_eq!(declined.drained[0].rep_id, other);
    assert_eq!(current(&app, "l").await.rep_id, other);
    let e = rc.accept_lead(accept("l", &first)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("declined"), "{e:?}");
    let a = rc
        .accept_lead(accept("l", other))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.assignment.unwrap().state(), pb::AssignmentState::Open);
    let c = rc
        .mark_contacted(pb::MarkContactedRequest {
            lead_id: "l".into(),
            rep_id: other.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(c.assignment.unwrap().contacted_at_ms > 0);
    w.wait(Duration::from_secs(5), |e| e.len() >= 5).await;
    let kinds = w.kinds();
    assert_eq!(
        kinds,
        [
            (K::Offered, first.clone()),
            (K::Declined, first.clone()),
            (K::Offered, other.to_string()),
            (K::Accepted, other.to_string()),
            (K::Contacted, other.to_string()),
        ]
    );
    let cursors: Vec<u64> = w.events().iter().map(|e| e.cursor).collect();
    assert_eq!(cursors, [1, 2, 3, 4, 5]);
    assert_eq!(w.events()[1].reason, "on a call");
}

#[tokio::test]
async fn list_assignments_pages_inboxes_and_the_queue() {
    let app = spawn_app().await;
    app.add_rep(rep("ann", 1, &[])).await;
    for i in 0..4 {
        submit(&app, good_lead(&format!("l{i}"))).await.unwrap();
    }
    let mut rc = app.routing();
    let list = |pool: &str, rep: &str, size: u32, token: &str| pb::ListAssignmentsRequest {
        pool: pool.into(),
        rep_id: rep.into(),
        states: vec![],
        page_size: size,
        page_token: token.into(),
    };
    let inbox = rc
        .list_assignments(list("", "ann", 0, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(inbox.assignments.len(), 1);
    assert_eq!(inbox.assignments[0].state(), pb::ListState::Open);
    let p1 = rc
        .list_assignments(list("default", "", 2, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p1.assignments.len(), 2);
    assert!(!p1.next_page_token.is_empty());
    let p2 = rc
        .list_assignments(list("default", "", 2, &p1.next_page_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p2.next_page_token, "");
    let queued: Vec<u32> = p1
        .assignments
        .iter()
        .chain(&p2.assignments)
        .filter(|a| a.state() == pb::ListState::Queued)
        .map(|a| a.queue_position)
        .collect();
    assert_eq!(queued, [1, 2, 3]);
    assert_invalid(rc.list_assignments(list("", "", 0, "")).await, "pool");
    assert_invalid(
        rc.list_assignments(list("default", "", 5000, "")).await,
        "page_size",
    );
    assert_invalid(
        rc.list_assignments(list("default", "", 0, "x")).await,
        "page_token",
    );
    let mut bad = list("default", "", 0, "");
    bad.states = vec![42];
    assert_invalid(rc.list_assignments(bad).await, "states");
    let e = rc
        .list_assignments(list("", "ghost", 0, ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test]
async fn an_sla_breach_flags_counts_and_reassigns() {
    let clock = TestClock::at("2026-11-27T12:00:00Z");
    let mut s = test_settings();
    for seg in ["qualified", "nurture", "unqualified", "price_sensitive"] {
        s.sla.first_touch_s.insert(seg.into(), 300.0);
    }
    s.sla.on_breach = OnBreach::Reassign;
    let app = spawn_with_clock(s, clock.clock()).await;
    app.add_rep(rep("ann", 1, &[])).await;
    app.add_rep(rep("bob", 1, &[])).await;
    let w = Watched::start(&app, watch_pool("default", None)).await;
    let first = rep_of(&submit(&app, good_lead("l")).await.unwrap());
    let other = if first == "ann" { "bob" } else { "ann" };
    let a = current(&app, "l").await;
    assert_eq!(a.deadline_ms, clock_ms("2026-11-27T12:05:00Z"));
    clock.set("2026-11-27T12:05:01Z");
    w.wait(Duration::from_secs(5), |e| e.len() >= 3).await;
    assert_eq!(
        w.kinds(),
        [
            (K::Assigned, first.clone()),
            (K::SlaBreached, first.clone()),
            (K::Reassigned, first.clone()),
        ]
    );
    let now = current(&app, "l").await;
    assert_eq!(now.rep_id, other);
    assert!(now.sla_breached);
    assert_eq!(now.deadline_ms, clock_ms("2026-11-27T12:10:01Z"));
    let st = app
        .reps()
        .get_rep(pb::GetRepRequest { rep_id: first })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.sla_breaches, 1);
}

/// With routing.queue_ttl_s, a lead nobody takes is closed EXPIRED by the scheduler, with no
/// call: the queue drains by itself. Clients cannot close with EXPIRED themselves.
#[tokio::test]
async fn a_queued_lead_expires_after_the_queue_ttl() {
    let clock = TestClock::at("2026-11-27T12:00:00Z");
    let mut s = test_settings();
    s.routing.queue_ttl_s = 600.0;
    let app = spawn_with_clock(s, clock.clock()).await;
    app.add_rep(rep("ann", 0, &[])).await;
    let d = submit(&app, good_lead("waits")).await.unwrap();
    assert_eq!(status_of(&d), pb::RoutingStatus::Queued);
    let e = app
        .routing()
        .close_assignment(pb::CloseAssignmentRequest {
            lead_id: "waits".into(),
            outcome: pb::Outcome::Expired as i32,
            value: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let w = Watched::start(&app, watch_pool("default", Some(0))).await;
    clock.set("2026-11-27T12:10:01Z");
    w.wait(Duration::from_secs(5), |e| e.len() >= 2).await;
    assert_eq!(w.kinds()[1].0, K::Closed);
    let a = current(&app, "waits").await;
    assert_eq!(a.outcome(), pb::Outcome::Expired);
}

fn clock_ms(t: &str) -> i64 {
    t.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

#[tokio::test]
async fn a_watcher_resumes_without_gaps_and_old_cursors_are_out_of_range() {
    let mut s = test_settings();
    s.events.retention = 5;
    let app = spawn_with(s).await;
    app.add_rep(rep("ann", 1, &[])).await;
    submit(&app, good_lead("a")).await.unwrap();
    submit(&app, good_lead("b")).await.unwrap();
    let w = Watched::start(&app, watch_pool("default", Some(0))).await;
    w.wait(Duration::from_secs(5), |e| e.len() == 2).await;
    drop(w);
    let mut rc = app.routing();
    rc.close_assignment(pb::CloseAssignmentRequest {
        lead_id: "a".into(),
        outcome: pb::Outcome::Won.into(),
        value: None,
    })
    .await
    .unwrap();
    // Resumed after cursor 2: CLOSED a (3), ASSIGNED b from the queue (4).
    let w = Watched::start(&app, watch_pool("default", Some(2))).await;
    w.wait(Duration::from_secs(5), |e| e.len() == 2).await;
    let got: Vec<(u64, K)> = w.events().iter().map(|e| (e.cursor, e.kind())).collect();
    assert_eq!(got, [(3, K::Closed), (4, K::Assigned)]);
    for i in 0..4 {
        submit(&app, good_lead(&format!("q{i}"))).await.unwrap();
    }
    // 8 events written, 5 kept: cursor 1 would need event 2, which is gone.
    let old = Watched::start(&app, watch_pool("default", Some(1))).await;
    let start = Instant::now();
    while old.first_error().is_none() {
        assert!(start.elapsed() < Duration::from_secs(5), "no OUT_OF_RANGE");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(old.first_error().unwrap().code(), Code::OutOfRange);
    let e = Watched::start(&app, watch_pool("default", Some(3))).await;
    e.wait(Duration::from_secs(5), |e| e.len() == 5).await;
    assert_eq!(e.events()[0].cursor, 4);
    let mut bad = watch_pool("{x}", None);
    bad.rep_ids = vec![];
    assert_invalid(rc.watch_assignments(bad).await, "pools[0]");
}

/// The outsider's check: `leadrouter serve` in offer mode with a 1 s timeout; nobody
/// accepts; within ~2 s the lead is offered to another rep, and a watcher saw it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_offer_expires_to_the_next_rep_within_two_seconds() {
    let p = Process::start(&[
        ("LEADROUTER__ROUTING__MODE", "offer"),
        ("LEADROUTER__ROUTING__OFFER_TIMEOUT_S", "1"),
        ("LEADROUTER__REPS__FILE", ""),
    ])
    .await;
    for r in ["ann", "bob"] {
        p.reps()
            .upsert_rep(pb::UpsertRepRequest {
                rep: Some(rep(r, 1, &[])),
            })
            .await
            .unwrap();
    }
    let w = Watched::start(&p, watch_pool("default", None)).await;
    let d = p
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
    let submitted = Instant::now();
    w.wait(Duration::from_secs(3), |e| e.len() >= 3).await;
    let took = submitted.elapsed();
    let other = if first == "ann" { "bob" } else { "ann" };
    assert_eq!(
        w.kinds()[..3],
        [
            (K::Offered, first.clone()),
            (K::Expired, first.clone()),
            (K::Offered, other.to_string()),
        ]
    );
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    eprintln!("offer expiry (1 s timeout): next OFFERED seen by the watcher {took:?} after submit");
    let g = p
        .routing()
        .get_assignment(pb::GetAssignmentRequest {
            lead_id: "l".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let a = g.assignment.unwrap();
    assert_eq!(
        (a.rep_id.as_str(), a.state()),
        (other, pb::AssignmentState::Offered)
    );
}
