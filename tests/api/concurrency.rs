//! Many concurrent clients against one server: capacity holds and every lead counts once.
use std::collections::HashMap;

use leadrouter::grpc::pb;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_submits_never_exceed_capacity() {
    let app = spawn_app().await;
    let caps = [10, 7, 5, 3, 1, 0, 24];
    for (i, c) in caps.iter().enumerate() {
        app.add_rep(rep(&format!("r{i}"), *c, &[])).await;
    }
    let total: i32 = caps.iter().sum();
    let mut tasks = Vec::new();
    for i in 0..200 {
        // 150 distinct leads; 50 of them are sent twice at the same time.
        let id = format!("c{}", i % 150);
        let lead = if i % 2 == 0 {
            good_lead(&id)
        } else {
            poor_lead(&id)
        };
        let mut client = app.leads();
        tasks.push(tokio::spawn(async move {
            client
                .submit_lead(pb::SubmitLeadRequest {
                    lead: Some(lead),
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner())
        }));
    }
    let mut by_lead: HashMap<String, Vec<String>> = HashMap::new();
    for t in tasks {
        let d = t
            .await
            .unwrap()
            .expect("no request fails")
            .decision
            .unwrap();
        by_lead
            .entry(d.lead_id.clone())
            .or_default()
            .push(rep_of(&d));
    }
    assert_eq!(by_lead.len(), 150);
    for (lead, reps) in &by_lead {
        assert!(
            reps.windows(2).all(|w| w[0] == w[1]),
            "lead {lead} got two answers: {reps:?}"
        );
    }
    let mut open: HashMap<String, u32> = HashMap::new();
    let mut assigned = 0;
    for i in 0..150 {
        let g = app
            .routing()
            .get_assignment(pb::GetAssignmentRequest {
                lead_id: format!("c{i}"),
            })
            .await
            .unwrap()
            .into_inner();
        if g.status() == pb::RoutingStatus::Assigned {
            assigned += 1;
            *open.entry(g.assignment.unwrap().rep_id).or_default() += 1;
        }
    }
    assert_eq!(
        assigned, total,
        "every unit of capacity is used exactly once"
    );
    for (i, c) in caps.iter().enumerate() {
        let id = format!("r{i}");
        let load = app.load_of(&id).await;
        assert_eq!(load, *c as u32, "rep {id}");
        assert_eq!(
            load,
            open.get(&id).copied().unwrap_or(0),
            "stored load of {id} equals its open records"
        );
    }
}
