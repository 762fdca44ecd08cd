//! Ops commands of the model runbook: compare two artifacts, promote one into a running
//! server (through ReloadModel and its gate), and read a server's drift report.
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use crate::domain::gate::{
    self, DEFAULT_MARGIN, DEFAULT_MIN_POSITIVES, DEFAULT_MIN_ROWS, Evaluation, GatePolicy,
};
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
    /// Largest AUC drop the verdict accepts (the server's model.gate_margin).
    #[arg(long, default_value_t = DEFAULT_MARGIN)]
    pub margin: f64,
    /// Fewest rows the verdict trusts (model.gate_min_rows).
    #[arg(long, default_value_t = DEFAULT_MIN_ROWS)]
    pub min_rows: u64,
    /// Fewest rows of either class the verdict trusts (model.gate_min_positives).
    #[arg(long, default_value_t = DEFAULT_MIN_POSITIVES)]
    pub min_positives: u64,
}

#[derive(Args, Debug)]
pub struct PromoteArgs {
    /// gRPC address of the running server, e.g. http://127.0.0.1:50051.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// Artifact file, read here and sent in the request (the server keeps it in its
    /// model.dir). With auth on, $LEADROUTER_TOKEN holds an ops or admin key.
    #[arg(long, required_unless_present = "rollback")]
    pub model: Option<PathBuf>,
    /// Go back one step in the store's model registry instead (no file, no gate): the live
    /// version is dropped and the one before it goes live on every replica.
    #[arg(long, conflicts_with_all = ["model", "force", "eval_data"])]
    pub rollback: bool,
    /// Swap even if the gate refuses (rollback to an older model, new feature set).
    #[arg(long)]
    pub force: bool,
    /// Labelled CSV the server's gate scores both models on, instead of its recorded outcomes.
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// The label column of --eval-data.
    #[arg(long, default_value = "outcome")]
    pub eval_label: String,
    /// The positive value of --eval-label (default: won for outcomes, else yes/no, 1/0...).
    #[arg(long)]
    pub eval_positive: Option<String>,
}

#[derive(Args, Debug)]
pub struct HealthArgs {
    /// gRPC address of the running server ($LEADROUTER_TOKEN: an ops or admin key).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub server: String,
}

fn metrics_json(m: &Metrics) -> serde_json::Value {
    json!({
        "auc": m.auc, "log_loss": m.log_loss, "brier": m.brier, "n": m.n,
        "base_rate": m.base_rate, "calibration": m.calibration,
    })
}

/// Prints both models' metrics on the same rows and the gate's verdict, from the same
/// `gate::judge` the server runs. Exits non-zero when the gate would refuse the candidate.
pub fn compare(args: CompareArgs) -> anyhow::Result<()> {
    let candidate = crate::engine::read_artifact(&args.candidate)?;
    let current = crate::engine::read_artifact(&args.current)?;
    let rows = if args.all_rows {
        EvalRows::All
    } else {
        EvalRows::Auto
    };
    let data = &args.data.data;
    let table = training::data::read(data, super::delimiter(args.data.delimiter)?)
        .map_err(anyhow::Error::msg)?;
    let same_file =
        training::fingerprint(data).map_err(anyhow::Error::msg)? == candidate.data_fingerprint;
    let positive = args
        .data
        .positive
        .clone()
        .or_else(|| (args.data.label == "outcome").then(|| "won".to_string()));
    let e = training::evaluate_table(
        &[&candidate, &current],
        &table,
        &args.data.label,
        positive.as_deref(),
        rows,
        same_file,
    )
    .map_err(anyhow::Error::msg)?;
    let (cand, cur) = (e.metrics[0].clone(), e.metrics[1].clone());
    let policy = GatePolicy {
        margin: args.margin,
        min_rows: args.min_rows,
        min_positives: args.min_positives,
    };
    let name = data.file_name().map(|f| f.to_string_lossy().into_owned());
    let evaluation = Evaluation {
        source: format!("{}, {}", name.unwrap_or_default(), e.used),
        rows: e.rows,
        positives: e.positives,
        candidate: cand.clone(),
        live: cur.clone(),
    };
    let report = gate::judge(Some(&current), &candidate, Ok(evaluation), policy);
    let out = json!({
        "rows": e.used,
        "n": e.rows,
        "positives": e.positives,
        "candidate": {"model_version": candidate.model_version, "metrics": metrics_json(&cand)},
        "current": {"model_version": current.model_version, "metrics": metrics_json(&cur)},
        "difference": {
            "auc": cand.auc - cur.auc,
            "log_loss": cand.log_loss - cur.log_loss,
            "brier": cand.brier - cur.brier,
        },
        "spec_difference": gate::spec_difference(&current, &candidate),
        "margin": args.margin,
        "min_rows": args.min_rows,
        "min_positives": args.min_positives,
        "passes_gate": report.passed(),
        "refusals": report.refusals,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    eprintln!("{}", report.summary());
    if !report.passed() {
        anyhow::bail!("the gate would refuse the candidate");
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
pub(crate) fn authed<T>(msg: T) -> anyhow::Result<tonic::Request<T>> {
    let mut req = tonic::Request::new(msg);
    if let Ok(token) = std::env::var("LEADROUTER_TOKEN") {
        let value = format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| anyhow::anyhow!("LEADROUTER_TOKEN is not a valid header value"))?;
        req.metadata_mut().insert("authorization", value);
    }
    Ok(req)
}

/// ReloadModel with the gate; prints the gate's figures as JSON and its verdict on stderr.
pub async fn promote(args: PromoteArgs) -> anyhow::Result<()> {
    // The artifact travels in the request: the server reads nothing outside its model.dir,
    // and the file may live on the operator's machine.
    let artifact = match &args.model {
        Some(m) => crate::model_dir::read_regular(m, 256 << 20)
            .with_context(|| format!("cannot read {}", m.display()))?,
        None => Vec::new(),
    };
    let eval_csv = match &args.eval_data {
        Some(p) => crate::model_dir::read_regular(p, 256 << 20)
            .with_context(|| format!("cannot read {}", p.display()))?,
        None => Vec::new(),
    };
    let resp = client(&args.server)
        .await?
        .reload_model(authed(pb::ReloadModelRequest {
            path: String::new(),
            force: args.force,
            artifact,
            eval_csv,
            eval_label: args.eval_label.clone(),
            eval_positive: args.eval_positive.clone().unwrap_or_default(),
            rollback: args.rollback,
        })?)
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    let g = resp.gate.unwrap_or_default();
    let out = json!({
        "model_version": resp.model.map(|m| m.model_version).unwrap_or_default(),
        "previous_version": resp.previous_version,
        "generation": resp.generation,
        "rolled_back": args.rollback,
        "forced": args.force,
        "gate_overridden": g.forced.unwrap_or(false),
        "refusals": g.overridden,
        "rows": g.rows, "positives": g.positives, "source": g.source,
        "live_auc": g.live_auc, "candidate_auc": g.candidate_auc,
        "live_log_loss": g.live_log_loss, "candidate_log_loss": g.candidate_log_loss,
        "live_brier": g.live_brier, "candidate_brier": g.candidate_brier,
        "margin": g.margin, "min_rows": g.min_rows, "min_positives": g.min_positives,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    eprintln!("{}", g.summary);
    Ok(())
}

/// Streams the server's recorded outcomes into `out` (written to a temporary file first, then
/// renamed, so a broken stream leaves no half file); returns the number of rows.
pub async fn export_outcomes(
    server: &str,
    out: &std::path::Path,
    include_returned: bool,
) -> anyhow::Result<usize> {
    use std::io::Write;
    let mut stream = client(server)
        .await?
        .export_outcomes(authed(pb::ExportOutcomesRequest { include_returned })?)
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    let tmp = out.with_extension("partial");
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?,
    );
    let mut rows = 0u64;
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|s| anyhow::anyhow!("export stream broke: {}", s.message()))?
    {
        file.write_all(&chunk.data)?;
        rows += chunk.rows;
    }
    file.into_inner()
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?
        .sync_all()?;
    std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(rows as usize)
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
        "cold_start": h.cold_start.unwrap_or(false),
        "observed": h.observed,
        "psi_alert": h.psi_alert,
        "min_observations": h.min_observations,
        "score_psi": h.score.as_ref().map(|s| s.psi),
        "features": features
            .iter()
            .map(|f| json!({
                "name": f.name, "psi": f.psi, "observed": f.observed,
                "alert": f.alert.unwrap_or(false),
            }))
            .collect::<Vec<_>>(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
