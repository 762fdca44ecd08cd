//! Labelled rows for the promotion gate in tests: bank rows as a CSV to send (ReloadModel
//! eval_csv), or as recorded outcomes in a running server (submitted, then closed won/lost).
use leadrouter::grpc::pb;

use crate::helpers::*;

/// 1,500 bank rows (evenly spaced, none of `bank_leads(_, 1, _)`'s) as CSV with the label
/// `y` (yes/no); built once.
pub fn bank_eval_csv() -> Vec<u8> {
    static CSV: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    CSV.get_or_init(|| bank_rows_csv(3, 1500)).clone()
}

fn bank_rows_csv(skip: usize, n: usize) -> Vec<u8> {
    let table = leadrouter::training::data::read(
        &repo_path("data/bank-marketing/bank-additional-full.csv.gz"),
        None,
    )
    .unwrap();
    let step = (table.rows.len() / n.max(1)).max(1);
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&table.headers).unwrap();
    for row in table.rows.iter().skip(skip).step_by(step).take(n) {
        w.write_record(row).unwrap();
    }
    w.into_inner().unwrap()
}

/// ReloadModel of `artifact` with 1,500 bank rows as the gate's evidence.
pub fn reload_with_rows(artifact: Vec<u8>, force: bool) -> pb::ReloadModelRequest {
    pb::ReloadModelRequest {
        artifact,
        force,
        eval_csv: bank_eval_csv(),
        eval_label: "y".into(),
        eval_positive: "yes".into(),
        ..Default::default()
    }
}

/// Submits `n` bank leads and closes each with what really happened (won / lost), so the
/// server has recorded outcomes for its gate.
pub async fn record_outcomes(app: &impl Clients, prefix: &str, n: usize) {
    let (mut leads, mut routing) = (app.leads(), app.routing());
    for (lead, converted) in bank_leads(prefix, 1, n) {
        let id = lead.id.clone();
        leads
            .submit_lead(pb::SubmitLeadRequest {
                lead: Some(lead),
                ..Default::default()
            })
            .await
            .unwrap();
        let outcome = if converted {
            pb::Outcome::Won
        } else {
            pb::Outcome::Lost
        };
        routing
            .close_assignment(pb::CloseAssignmentRequest {
                lead_id: id,
                outcome: outcome.into(),
                value: None,
            })
            .await
            .unwrap();
    }
}
