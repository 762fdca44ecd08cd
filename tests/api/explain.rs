//! Decision records stay small however large the pool: routing.record_candidates candidates
//! (the chosen rep, the nearest of each other verdict, the best runners-up), the rest counted
//! per verdict; explain = EXPLAIN_FULL lists every rep.
use leadrouter::grpc::pb;
use prost::Message;
use tonic::Code;

use crate::helpers::*;

/// 1,000 reps: 500 full ones that match best, 300 inactive, 199 with room that match worse
/// than "room", which gets the lead.
async fn thousand_rep_pool(app: &TestApp) {
    for i in 0..500 {
        app.add_rep(rep(
            &format!("full-{i:03}"),
            0,
            &[("industry:finance", 1.0)],
        ))
        .await;
    }
    for i in 0..300 {
        let mut r = rep(&format!("idle-{i:03}"), 5, &[("industry:finance", 1.0)]);
        r.active = false;
        app.add_rep(r).await;
    }
    for i in 0..199 {
        app.add_rep(rep(&format!("low-{i:03}"), 5, &[])).await;
    }
    app.add_rep(rep("room", 5, &[("industry:finance", 0.5)]))
        .await;
}

async fn submit_explained(
    app: &TestApp,
    id: &str,
    explain: i32,
) -> Result<pb::SubmitLeadResponse, tonic::Status> {
    app.leads()
        .submit_lead(pb::SubmitLeadRequest {
            lead: Some(with(good_lead(id), &[("industry", s("finance"))])),
            explain,
        })
        .await
        .map(|r| r.into_inner())
}

fn count(r: &pb::Routing, v: pb::CandidateVerdict) -> u32 {
    let listed = r.candidates.iter().filter(|c| c.verdict() == v).count() as u32;
    let omitted: u32 = r
        .omitted_by_verdict
        .iter()
        .filter(|c| c.verdict() == v)
        .map(|c| c.count)
        .sum();
    listed + omitted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_rep_pool_answers_in_under_two_kilobytes_unless_asked_for_all() {
    let app = spawn_app().await;
    thousand_rep_pool(&app).await;
    let answer = submit_explained(&app, "x", 0).await.unwrap();
    let size = answer.encoded_len();
    assert!(size < 2048, "default answer is {size} bytes");
    let r = answer.decision.unwrap().routing.unwrap();
    assert_eq!(r.status(), pb::RoutingStatus::Assigned);
    assert_eq!(r.candidates.len(), 10);
    let listed: Vec<_> = r
        .candidates
        .iter()
        .map(|c| (c.verdict(), &c.rep_id))
        .collect();
    use pb::CandidateVerdict as V;
    // The winner and the nearest rep of each other verdict, whatever the order of the pool.
    for (verdict, nearest) in [
        (V::Chosen, "room"),
        (V::AtCapacity, "full-000"),
        (V::LowerMatch, "low-000"),
        (V::Inactive, "idle-000"),
    ] {
        assert!(
            listed.contains(&(verdict, &nearest.to_string())),
            "{verdict:?} {nearest}: {listed:?}"
        );
    }
    assert_eq!(r.candidates_omitted, 990);
    let by_verdict: u32 = r.omitted_by_verdict.iter().map(|c| c.count).sum();
    assert_eq!(by_verdict, 990);
    assert_eq!(count(&r, V::AtCapacity), 500);
    assert_eq!(count(&r, V::Inactive), 300);
    assert_eq!(count(&r, V::LowerMatch), 199);
    assert_eq!(count(&r, V::Chosen), 1);

    let full = submit_explained(&app, "y", pb::Explain::Full as i32)
        .await
        .unwrap();
    let r = full.decision.unwrap().routing.unwrap();
    assert_eq!(r.candidates.len(), 1000);
    assert_eq!(r.candidates_omitted, 0);
    assert!(r.omitted_by_verdict.is_empty());
    // A replay of the first lead names the same rep and lists nobody (it was decided before).
    let again = submit_explained(&app, "x", pb::Explain::Full as i32)
        .await
        .unwrap();
    let r = again.decision.unwrap().routing.unwrap();
    assert!(r.replayed);
    assert_eq!(r.assignment.unwrap().rep_id, "room");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_candidates_is_configurable_and_explain_is_checked() {
    let mut settings = test_settings();
    settings.routing.record_candidates = 2;
    let app = spawn_with(settings).await;
    for i in 0..5 {
        app.add_rep(rep(&format!("full-{i}"), 0, &[("language:en", 1.0)]))
            .await;
    }
    app.add_rep(rep("room", 5, &[])).await;
    let r = submit_explained(&app, "a", pb::Explain::Summary as i32)
        .await
        .unwrap()
        .decision
        .unwrap()
        .routing
        .unwrap();
    let ids: Vec<_> = r.candidates.iter().map(|c| c.rep_id.as_str()).collect();
    assert_eq!(ids, ["full-0", "room"]);
    assert_eq!(r.candidates_omitted, 4);
    let e = submit_explained(&app, "b", 7).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("explain"), "{e:?}");
    // Refused before anything was stored.
    let looked = app
        .routing()
        .get_assignment(pb::GetAssignmentRequest {
            lead_id: "b".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(looked.code(), Code::NotFound);
}
