//! Ops commands of the model runbook: compare two artifacts, promote one into a running
//! server (through ReloadModel and its gate), and read a server's drift report.
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use crate::domain::gate::{self, DEFAULT_MARGIN};
use crate::domain::model::Metrics;
use crate::grpc::pb;
use crate::training::{self, EvalRows};

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The new model.
    #[arg(long)]
    pub candidate: PathBuf,
    /// The model it would replace (e.g. the live model's file).
    #[arg(long)]
    pub current: PathBuf,
    #[command(flatten)]
    pub data: super::DataArgs,
    /// Score every row, even when the file is the candidate's training data.
    #[arg(long)]
    pub all_rows: bool,
    /// Largest AUC drop the verdict accepts.
    #[arg(long, default_value_t = DEFAULT_MARGIN)]
    pub margin: f64,
}

#[derive(Args, Debug)]
pub struct PromoteArgs {
    /// gRPC address of the running server, e.g. http://127.0.0.1:50051.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// Artifact file, read here and sent in the request (the server keeps it in its
    /// model.dir). With auth on, $LEADROUTER_TOKEN holds an ops or admin key.
    #[arg(long)]
    pub model: PathBuf,
    /// Swap even if the gate refuses (rollback to an older model, new feature set).
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct HealthArgs {
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub server: String,
}

fn metrics_json(m: &Metrics) -> serde_json::Value {
    json!({
        "auc": m.auc, "log_loss": m.log_loss, "brier": m.brier, "n": m.n,
        "base_rate": m.base_rate, "calibration": m.calibration,
    })
}

/// Prints both models' metrics on the same rows, the differences and the gate's verdict.
/// Exits non-zero when the gate would refuse the candidate.
pub fn compare(args: CompareArgs) -> anyhow::Result<()> {
    let candidate = crate::engine::read_artifact(&args.candidate)?;
    let current = crate::engine::read_artifact(&args.current)?;
    let rows = if args.all_rows {
        EvalRows::All
    } else {
        EvalRows::Auto
    };
    let (m, used) = training::evaluate_many(
        &[&candidate, &current],
        &args.data.data,
        &args.data.label,
        args.data.positive.as_deref(),
        super::delimiter(args.data.delimiter)?,
        rows,
    )
    .map_err(anyhow::Error::msg)?;
    let (cand, cur) = (&m[0], &m[1]);
    let spec = gate::spec_difference(&current, &candidate);
    let auc_drop = cur.auc - cand.auc;
    let passes = auc_drop <= args.margin && spec.is_none();
    let out = json!({
        "rows": used,
        "candidate": {"model_version": candidate.model_version, "metrics": metrics_json(cand)},
        "current": {"model_version": current.model_version, "metrics": metrics_json(cur)},
        "difference": {
            "auc": cand.auc - cur.auc,
            "log_loss": cand.log_loss - cur.log_loss,
            "brier": cand.brier - cur.brier,
        },
        "spec_difference": spec,
        "margin": args.margin,
        "passes_gate": passes,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    eprintln!(
        "{} rows ({used}): AUC {:.4} vs {:.4} ({:+.4}), log loss {:.4} vs {:.4}, Brier {:.4} vs {:.4}",
        cand.n,
        cand.auc,
        cur.auc,
        cand.auc - cur.auc,
        cand.log_loss,
        cur.log_loss,
        cand.brier,
        cur.brier
    );
    if !passes {
        anyhow::bail!(
            "the gate would refuse the candidate: {}",
            match &spec {
                Some(d) => format!("feature spec differs ({d})"),
                None => format!("AUC drop {auc_drop:.4} > margin {}", args.margin),
            }
        );
    }
    Ok(())
}

async fn client(
    server: &str,
) -> anyhow::Result<pb::model_service_client::ModelServiceClient<tonic::transport::Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(server.to_string())
        .with_context(|| format!("bad --server {server:?}"))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot connect to {server}"))?;
    Ok(pb::model_service_client::ModelServiceClient::new(channel))
}

/// A request carrying $LEADROUTER_TOKEN (when set) as `authorization: Bearer`.
fn authed<T>(msg: T) -> anyhow::Result<tonic::Request<T>> {
    let mut req = tonic::Request::new(msg);
    if let Ok(token) = std::env::var("LEADROUTER_TOKEN") {
        let value = format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| anyhow::anyhow!("LEADROUTER_TOKEN is not a valid header value"))?;
        req.metadata_mut().insert("authorization", value);
    }
    Ok(req)
}

/// ReloadModel with the gate; prints the gate's figures as JSON.
pub async fn promote(args: PromoteArgs) -> anyhow::Result<()> {
    // The artifact travels in the request: the server reads nothing outside its model.dir,
    // and the file may live on the operator's machine.
    let artifact = crate::model_dir::read_regular(&args.model, 256 << 20)
        .with_context(|| format!("cannot read {}", args.model.display()))?;
    let resp = client(&args.server)
        .await?
        .reload_model(authed(pb::ReloadModelRequest {
            path: String::new(),
            force: args.force,
            artifact,
        })?)
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    let g = resp.gate.unwrap_or_default();
    let out = json!({
        "model_version": resp.model.map(|m| m.model_version).unwrap_or_default(),
        "previous_version": resp.previous_version,
        "live_auc": g.live_auc, "candidate_auc": g.candidate_auc, "margin": g.margin,
        "forced": g.forced, "overridden": g.overridden,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// GetModelHealth, features sorted by PSI (largest first), as JSON.
pub async fn model_health(args: HealthArgs) -> anyhow::Result<()> {
    let h = client(&args.server)
        .await?
        .get_model_health(authed(pb::GetModelHealthRequest {})?)
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    let mut features = h.features.clone();
    features.sort_by(|a, b| b.psi.total_cmp(&a.psi));
    let out = json!({
        "model_version": h.model_version,
        "cold_start": h.cold_start,
        "observed": h.observed,
        "psi_alert": h.psi_alert,
        "score_psi": h.score.as_ref().map(|s| s.psi),
        "features": features
            .iter()
            .map(|f| json!({"name": f.name, "psi": f.psi, "alert": f.alert}))
            .collect::<Vec<_>>(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
