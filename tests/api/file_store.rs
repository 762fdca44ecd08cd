//! The durable embedded store from outside: `leadrouter serve` on `file:///...db`, leads
//! submitted under load, kill -9, a restart on the same file: every acknowledged assignment is
//! there with its rep, and every rep's load equals its open leads.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leadrouter::grpc::pb;

use crate::helpers::*;

async fn open_leads(p: &Process) -> Vec<pb::ListedAssignment> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = p
            .routing()
            .list_assignments(pb::ListAssignmentsRequest {
                pool: "default".into(),
                states: vec![pb::ListState::Open as i32],
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        out.extend(page.assignments);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_assignments_survive_kill_9_on_the_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("leadrouter.db").display());
    let env = [
        ("LEADROUTER__STORE__URL", url.as_str()),
        ("LEADROUTER__REPS__FILE", ""),
    ];
    let p = Process::start(&env).await;
    for i in 0..5 {
        p.reps()
            .upsert_rep(pb::UpsertRepRequest {
                rep: Some(rep(&format!("r{i}"), 100_000, &[])),
            })
            .await
            .unwrap();
    }
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (mut leads, acked) = (p.leads(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let id = format!("t{t}-{i}");
                let r = leads
                    .submit_lead(pb::SubmitLeadRequest {
                        lead: Some(good_lead(&id)),
                    })
                    .await;
                match r {
                    Ok(d) => {
                        let d = d.into_inner().decision.unwrap();
                        acked.lock().unwrap().push((id, rep_of(&d)));
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    p.signal("KILL");
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "too little load: {}", acked.len());
    drop(p);
    let p = Process::start(&env).await;
    for (id, rep) in &acked {
        let a = p
            .routing()
            .get_assignment(pb::GetAssignmentRequest {
                lead_id: id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("acknowledged lead {id} lost: {e:?}"))
            .into_inner();
        assert_eq!(&a.assignment.unwrap().rep_id, rep, "lead {id}");
    }
    // Loads equal open records (journaled calls whose answer the kill swallowed count too).
    let open = open_leads(&p).await;
    assert!(open.len() >= acked.len());
    let reps = p
        .reps()
        .list_reps(pb::ListRepsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .reps;
    for r in reps {
        let id = r.rep.unwrap().id;
        let held = open
            .iter()
            .filter(|l| l.assignment.as_ref().is_some_and(|a| a.rep_id == id))
            .count();
        assert_eq!(r.load as usize, held, "rep {id}");
    }
    eprintln!("{} acknowledged before kill -9, all found", acked.len());
    assert!(p.terminate().success());
}
