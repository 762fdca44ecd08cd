//! RepService: the team's directory, and what capacity changes do to the queue.
use leadrouter::grpc::pb;

use crate::helpers::*;

#[tokio::test]
async fn rep_lifecycle() {
    let app = spawn_app().await;
    let mut r = rep("ann", 2, &[("Language:DE", 1.0)]);
    r.daily_quota = Some(10);
    r.shift = Some(pb::Shift {
        timezone: "Europe/Berlin".into(),
        start: "08:00".into(),
        end: "20:00".into(),
        days: vec!["mon".into(), "fri".into()],
    });
    let up = app.add_rep(r).await.rep.unwrap();
    assert_eq!(
        up.rep.as_ref().unwrap().skills.get("language:de"),
        Some(&1.0),
        "skill names are normalised"
    );
    let mut reps = app.reps();
    let got = reps
        .get_rep(pb::GetRepRequest {
            rep_id: "ann".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, up);
    let mut other = rep("bob", 1, &[]);
    other.pool = "emea".into();
    app.add_rep(other).await;
    let all = reps
        .list_reps(pb::ListRepsRequest {
            pool: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .reps;
    assert_eq!(all.len(), 2);
    let emea = reps
        .list_reps(pb::ListRepsRequest {
            pool: "emea".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .reps;
    assert_eq!(emea.len(), 1);
    let off = reps
        .set_availability(pb::SetAvailabilityRequest {
            rep_id: "ann".into(),
            active: false,
        })
        .await
        .unwrap()
        .into_inner();
    let status = off.rep.unwrap();
    assert!(!status.rep.unwrap().active);
    // Present on the wire even though false, so JSON clients (grpcurl) see "active": false.
    assert_eq!(status.active, Some(false));
    reps.delete_rep(pb::DeleteRepRequest {
        rep_id: "bob".into(),
    })
    .await
    .unwrap();
    let e = reps
        .get_rep(pb::GetRepRequest {
            rep_id: "bob".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = reps
        .delete_rep(pb::DeleteRepRequest {
            rep_id: "bob".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = reps
        .set_availability(pb::SetAvailabilityRequest {
            rep_id: "zed".into(),
            active: true,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn bad_reps_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let mut reps = app.reps();
    let mut cases: Vec<(pb::Rep, &str)> = vec![
        (rep("", 1, &[]), "rep.id"),
        (rep("neg", -1, &[]), "rep.capacity"),
        (rep("lvl", 1, &[("x", 1.5)]), "rep.skills[x]"),
        (rep("nan", 1, &[("x", f64::NAN)]), "rep.skills[x]"),
    ];
    let mut q = rep("quota", 1, &[]);
    q.daily_quota = Some(-3);
    cases.push((q, "rep.daily_quota"));
    let mut tz = rep("tz", 1, &[]);
    tz.shift = Some(pb::Shift {
        timezone: "Nowhere/City".into(),
        start: "09:00".into(),
        end: "17:00".into(),
        days: vec![],
    });
    cases.push((tz, "rep.shift.timezone"));
    let mut hours = rep("hours", 1, &[]);
    hours.shift = Some(pb::Shift {
        timezone: "UTC".into(),
        start: "9am".into(),
        end: "17:00".into(),
        days: vec![],
    });
    cases.push((hours, "rep.shift.start"));
    let mut days = rep("days", 1, &[]);
    days.shift = Some(pb::Shift {
        timezone: "UTC".into(),
        start: "09:00".into(),
        end: "17:00".into(),
        days: vec!["funday".into()],
    });
    cases.push((days, "rep.shift.days"));
    for (r, field) in cases {
        assert_invalid(
            reps.upsert_rep(pb::UpsertRepRequest { rep: Some(r) }).await,
            field,
        );
    }
    assert_invalid(
        reps.upsert_rep(pb::UpsertRepRequest { rep: None }).await,
        "rep",
    );
    assert_invalid(
        reps.get_rep(pb::GetRepRequest {
            rep_id: String::new(),
        })
        .await,
        "rep_id",
    );
    assert!(
        reps.list_reps(pb::ListRepsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .reps
            .is_empty(),
        "nothing half-stored"
    );
}

#[tokio::test]
async fn new_reps_and_raised_capacity_drain_the_queue() {
    let app = spawn_app().await;
    app.add_rep(rep("a", 0, &[])).await;
    submit(&app, poor_lead("low")).await.unwrap();
    submit(&app, good_lead("high")).await.unwrap();
    let up = app.add_rep(rep("a", 1, &[])).await;
    assert_eq!(
        up.drained
            .iter()
            .map(|a| a.lead_id.as_str())
            .collect::<Vec<_>>(),
        ["high"]
    );
    assert_eq!(up.rep.unwrap().load, 1);
    let up = app.add_rep(rep("b", 3, &[])).await;
    assert_eq!(
        up.drained
            .iter()
            .map(|a| a.lead_id.as_str())
            .collect::<Vec<_>>(),
        ["low"]
    );
}

#[tokio::test]
async fn a_rep_with_open_leads_cannot_be_deleted() {
    let app = spawn_app().await;
    app.add_rep(rep("a", 1, &[])).await;
    submit(&app, good_lead("l")).await.unwrap();
    let e = app
        .reps()
        .delete_rep(pb::DeleteRepRequest { rep_id: "a".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("open assignments"));
    app.routing()
        .close_assignment(pb::CloseAssignmentRequest {
            lead_id: "l".into(),
            outcome: pb::Outcome::Won.into(),
            value: None,
        })
        .await
        .unwrap();
    app.reps()
        .delete_rep(pb::DeleteRepRequest { rep_id: "a".into() })
        .await
        .unwrap();
}

#[tokio::test]
async fn off_shift_reps_are_skipped() {
    let app = spawn_app().await;
    // The test clock reads Friday 17:00 UTC: Tokyo is at 02:00 Saturday.
    let mut night = rep("tokyo", 5, &[("industry:finance", 1.0)]);
    night.shift = Some(pb::Shift {
        timezone: "Asia/Tokyo".into(),
        start: "09:00".into(),
        end: "18:00".into(),
        days: vec![],
    });
    app.add_rep(night).await;
    app.add_rep(rep("day", 5, &[])).await;
    let d = submit(&app, with(good_lead("l"), &[("industry", s("finance"))]))
        .await
        .unwrap();
    assert_eq!(rep_of(&d), "day");
    let c = d
        .routing
        .unwrap()
        .candidates
        .into_iter()
        .find(|c| c.rep_id == "tokyo")
        .unwrap();
    assert_eq!(c.verdict(), pb::CandidateVerdict::OffShift);
}
