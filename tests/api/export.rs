//! ModelService/ExportOutcomes and the CLI over it: the runbook's export and retraining work
//! against a running server on the embedded store, no Redis needed.
use std::collections::BTreeMap;

use leadrouter::domain::model::Artifact;

use crate::gate_rows::record_outcomes;
use crate::helpers::*;

/// `leadrouter export-outcomes --server`, which must succeed.
fn export(server: &str, out: &std::path::Path) {
    let r = cli(
        &[
            "export-outcomes",
            "--server",
            server,
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_export_and_retrain_over_grpc_on_the_memory_store() {
    let p = Process::start(&[("LEADROUTER__STORE__URL", "memory://")]).await;
    let server = format!("http://{}", p.addr);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("outcomes.csv");

    // Nothing closed yet: a header and no rows.
    export(&server, &out);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.starts_with("_lead_id,"), "{text}");

    // 600 closed leads (more than two chunks), each with what really happened.
    record_outcomes(&p, "x", 600).await;
    let want: BTreeMap<String, bool> = bank_leads("x", 1, 600)
        .into_iter()
        .map(|(l, y)| (l.id, y))
        .collect();
    export(&server, &out);
    let mut csv = csv::Reader::from_path(&out).unwrap();
    let headers = csv.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (id, outcome, age) = (col("_lead_id"), col("outcome"), col("age"));
    let mut got = BTreeMap::new();
    for row in csv.records() {
        let row = row.unwrap();
        assert!(!row[age].is_empty(), "attributes are exported");
        got.insert(row[id].to_string(), &row[outcome] == "won");
    }
    assert_eq!(got, want, "every closed lead once, with its outcome");

    // Retrain straight from the running server; the artifact lists the leads it was fitted on.
    let model = dir.path().join("m.json");
    let r = cli(
        &[
            "train",
            "--from-outcomes",
            "--server",
            &server,
            "--spec",
            "models/bank-additional.spec.toml",
            "--out",
            model.to_str().unwrap(),
        ],
        &[],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let a = Artifact::from_json(&std::fs::read(&model).unwrap()).unwrap();
    assert_eq!(a.training.label, "outcome");
    assert_eq!(a.training.fit_leads.len() as u64, a.training.rows_train);
    assert!(a.training.fit_leads.iter().all(|l| want.contains_key(l)));
    assert!(p.terminate().success());
}
