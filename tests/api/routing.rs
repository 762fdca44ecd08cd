//! RoutingService: idempotency, reading, closing with queue drain, reassigning.
use leadrouter::grpc::pb;

use crate::helpers::*;

async fn close(
    app: &TestApp,
    id: &str,
    outcome: pb::Outcome,
) -> Result<pb::CloseAssignmentResponse, tonic::Status> {
    app.routing()
        .close_assignment(pb::CloseAssignmentRequest {
            lead_id: id.into(),
            outcome: outcome.into(),
            value: None,
        })
        .await
        .map(|r| r.into_inner())
}

async fn get(app: &TestApp, id: &str) -> Result<pb::GetAssignmentResponse, tonic::Status> {
    app.routing()
        .get_assignment(pb::GetAssignmentRequest { lead_id: id.into() })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn retries_return_the_same_assignment_and_count_once() {
    let app = spawn_app().await;
    app.add_rep(rep("a", 5, &[])).await;
    app.add_rep(rep("b", 5, &[])).await;
    let first = submit(&app, good_lead("l")).await.unwrap();
    let again = submit(&app, good_lead("l")).await.unwrap();
    let via_crm = app
        .routing()
        .assign_lead(pb::AssignLeadRequest {
            lead: Some(good_lead("l")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .decision
        .unwrap();
    let a1 = first.routing.as_ref().unwrap().assignment.clone().unwrap();
    for d in [&again, &via_crm] {
        let r = d.routing.as_ref().unwrap();
        assert!(r.replayed);
        assert_eq!(r.assignment.as_ref().unwrap(), &a1);
    }
    assert!(!first.routing.unwrap().replayed);
    assert_eq!(app.load_of("a").await + app.load_of("b").await, 1);
}

#[tokio::test]
async fn full_reps_queue_leads_with_reasons() {
    let app = spawn_app().await;
    app.add_rep(rep("a", 1, &[])).await;
    let mut off = rep("off", 5, &[]);
    off.active = false;
    app.add_rep(off).await;
    submit(&app, good_lead("l1")).await.unwrap();
    let d = submit(&app, good_lead("l2")).await.unwrap();
    let r = d.routing.unwrap();
    assert_eq!(r.status(), pb::RoutingStatus::Queued);
    assert_eq!(r.queue_position, 1);
    assert!(r.assignment.is_none());
    let a = r.candidates.iter().find(|c| c.rep_id == "a").unwrap();
    assert_eq!(
        (a.verdict(), a.load, a.capacity),
        (pb::CandidateVerdict::AtCapacity, 1, 1)
    );
    let off = r.candidates.iter().find(|c| c.rep_id == "off").unwrap();
    assert_eq!(off.verdict(), pb::CandidateVerdict::Inactive);
    let g = get(&app, "l2").await.unwrap();
    assert_eq!(
        (g.status(), g.queue_position, g.pool.as_str()),
        (pb::RoutingStatus::Queued, 1, "default")
    );
}

#[tokio::test]
async fn closing_frees_capacity_and_drains_highest_probability_first() {
    let app = spawn_app().await;
    app.add_rep(rep("r", 1, &[])).await;
    submit(&app, poor_lead("holder")).await.unwrap();
    submit(&app, poor_lead("poor")).await.unwrap();
    submit(&app, good_lead("good")).await.unwrap();
    let closed = close(&app, "holder", pb::Outcome::Won).await.unwrap();
    let a = closed.assignment.unwrap();
    assert_eq!(
        (a.state(), a.outcome()),
        (pb::AssignmentState::Closed, pb::Outcome::Won)
    );
    assert!(a.closed_at_ms > 0);
    let drained: Vec<&str> = closed.drained.iter().map(|a| a.lead_id.as_str()).collect();
    assert_eq!(drained, ["good"], "the higher-probability lead goes first");
    assert_eq!(
        get(&app, "good").await.unwrap().status(),
        pb::RoutingStatus::Assigned
    );
    assert_eq!(get(&app, "poor").await.unwrap().queue_position, 1);
    let closed = close(&app, "good", pb::Outcome::Lost).await.unwrap();
    assert_eq!(closed.drained[0].lead_id, "poor");
    let g = get(&app, "holder").await.unwrap();
    assert_eq!(g.status(), pb::RoutingStatus::Closed);
    // A closed lead submitted again is not routed again.
    let d = submit(&app, poor_lead("holder")).await.unwrap();
    assert_eq!(status_of(&d), pb::RoutingStatus::Closed);
    assert_eq!(app.load_of("r").await, 1);
}

#[tokio::test]
async fn close_errors_are_specific() {
    let app = spawn_app().await;
    app.add_rep(rep("r", 1, &[])).await;
    submit(&app, good_lead("l")).await.unwrap();
    assert_invalid(close(&app, "l", pb::Outcome::Unspecified).await, "outcome");
    let e = app
        .routing()
        .close_assignment(pb::CloseAssignmentRequest {
            lead_id: "l".into(),
            outcome: 42,
            value: None,
        })
        .await
        .unwrap_err();
    assert!(e.code() == tonic::Code::InvalidArgument && e.message().contains("outcome"));
    assert_invalid(close(&app, "", pb::Outcome::Won).await, "lead_id");
    assert_eq!(
        close(&app, "ghost", pb::Outcome::Won)
            .await
            .unwrap_err()
            .code(),
        tonic::Code::NotFound
    );
    close(&app, "l", pb::Outcome::Won).await.unwrap();
    close(&app, "l", pb::Outcome::Won).await.unwrap();
    assert_eq!(app.load_of("r").await, 0);
    let e = close(&app, "l", pb::Outcome::Lost).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert_invalid(get(&app, &"x".repeat(200)).await, "lead_id");
}

#[tokio::test]
async fn reassign_moves_the_lead_or_leaves_it() {
    let app = spawn_app().await;
    app.add_rep(rep("a", 1, &[("industry:finance", 1.0)])).await;
    app.add_rep(rep("b", 1, &[("industry:finance", 0.5)])).await;
    app.add_rep(rep("c", 1, &[("language:de", 1.0)])).await;
    let l = with(
        good_lead("l"),
        &[("industry", s("finance")), ("language", s("de"))],
    );
    let d = submit(&app, l).await.unwrap();
    assert_eq!(rep_of(&d), "c", "only c speaks German");
    let re = |rep_id: &str| {
        let mut client = app.routing();
        let req = pb::ReassignLeadRequest {
            lead_id: "l".into(),
            rep_id: rep_id.into(),
            ..Default::default()
        };
        async move { client.reassign_lead(req).await.map(|r| r.into_inner()) }
    };
    let e = re("a").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("language:de"), "{e:?}");
    let e = re("").await.unwrap_err();
    assert_eq!(
        e.code(),
        tonic::Code::FailedPrecondition,
        "nobody else qualifies: {e:?}"
    );
    assert_eq!(
        app.load_of("c").await,
        1,
        "a refused reassign changes nothing"
    );
    assert_invalid(re("nobody").await, "rep_id");

    let d = submit(&app, with(good_lead("m"), &[("industry", s("finance"))]))
        .await
        .unwrap();
    assert_eq!(rep_of(&d), "a");
    let mut client = app.routing();
    let moved = client
        .reassign_lead(pb::ReassignLeadRequest {
            lead_id: "m".into(),
            rep_id: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.previous.unwrap().rep_id, "a");
    assert_eq!(moved.assignment.unwrap().rep_id, "b");
    assert_eq!((app.load_of("a").await, app.load_of("b").await), (0, 1));
    assert_eq!(
        get(&app, "m").await.unwrap().assignment.unwrap().rep_id,
        "b"
    );
}

/// A lead that needs a skill nobody in its pool has is answered UNROUTABLE with the reason
/// and stored nowhere; with routing.queue_unroutable it waits in the queue instead.
#[tokio::test]
async fn leads_no_rep_could_ever_take_are_unroutable_with_the_reason() {
    let app = spawn_app().await;
    app.add_rep(rep("de", 1, &[("language:de", 1.0)])).await;
    let fr = with(good_lead("fr"), &[("language", s("fr"))]);
    let d = submit(&app, fr.clone()).await.unwrap();
    let r = d.routing.unwrap();
    assert_eq!(r.status(), pb::RoutingStatus::Unroutable);
    assert!(r.reason.contains("language:fr"), "{}", r.reason);
    let de = r.candidates.iter().find(|c| c.rep_id == "de").unwrap();
    assert_eq!(de.verdict(), pb::CandidateVerdict::MissingRequiredSkill);
    assert_eq!(
        get(&app, "fr").await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    // Once someone has the skill, the same lead routes.
    app.add_rep(rep("fr-rep", 1, &[("language:fr", 1.0)])).await;
    let d = submit(&app, fr).await.unwrap();
    assert_eq!(rep_of(&d), "fr-rep");

    let mut settings = test_settings();
    settings.routing.queue_unroutable = true;
    let app = spawn_with(settings).await;
    app.add_rep(rep("de", 1, &[("language:de", 1.0)])).await;
    let d = submit(&app, with(good_lead("fr"), &[("language", s("fr"))]))
        .await
        .unwrap();
    let r = d.routing.unwrap();
    assert_eq!(r.status(), pb::RoutingStatus::Queued);
    assert!(r.reason.contains("language:fr"), "{}", r.reason);
}

/// A lead queued at 02:00 while every rep is off shift is assigned when the shift starts at
/// 09:00, with no call from anyone (the scheduler drains at the shift start).
#[tokio::test]
async fn a_lead_queued_at_night_is_assigned_when_the_shift_starts() {
    let clock = TestClock::at("2026-11-27T02:00:00Z");
    let app = spawn_with_clock(test_settings(), clock.clock()).await;
    let mut ann = rep("ann", 2, &[]);
    ann.shift = Some(pb::Shift {
        timezone: "UTC".into(),
        start: "09:00".into(),
        end: "17:00".into(),
        days: vec![],
    });
    app.add_rep(ann).await;
    let d = submit(&app, good_lead("night")).await.unwrap();
    let r = d.routing.unwrap();
    assert_eq!(r.status(), pb::RoutingStatus::Queued);
    let ann = r.candidates.iter().find(|c| c.rep_id == "ann").unwrap();
    assert_eq!(ann.verdict(), pb::CandidateVerdict::OffShift);
    let watcher = crate::crm::Watched::start(&app, crate::crm::watch_pool("default", None)).await;
    // Still queued a moment before the shift.
    clock.set("2026-11-27T08:59:00Z");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        get(&app, "night").await.unwrap().status(),
        pb::RoutingStatus::Queued
    );
    clock.set("2026-11-27T09:00:00Z");
    let started = std::time::Instant::now();
    loop {
        let g = get(&app, "night").await.unwrap();
        if g.status() == pb::RoutingStatus::Assigned {
            assert_eq!(g.assignment.unwrap().rep_id, "ann");
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "not assigned 5 s after the shift started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The watcher, started while the lead was queued, is told.
    watcher
        .wait(std::time::Duration::from_secs(5), |e| !e.is_empty())
        .await;
    let e = &watcher.events()[0];
    assert_eq!(e.kind(), pb::AssignmentEventKind::Assigned);
    assert_eq!((e.lead_id.as_str(), e.rep_id.as_str()), ("night", "ann"));
    assert_eq!(e.assignment.as_ref().unwrap().rep_id, "ann");
}
