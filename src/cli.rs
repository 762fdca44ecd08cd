//! Command line: `serve`, `train` and `evaluate`, parsed once into typed options.
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::Settings;
use crate::domain::features::FeatureSpec;
use crate::training::{self, EvalRows, TrainOptions};

#[derive(Parser, Debug)]
#[command(
    name = "leadrouter",
    version,
    about = "Lead scoring and routing service"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gRPC service (the default).
    Serve(ServeArgs),
    /// Train a model artifact from a CSV file.
    Train(TrainArgs),
    /// Print a model's metrics on a CSV file as one JSON object.
    Evaluate(EvaluateArgs),
    /// Write the outcomes recorded in the configured (shared) store as a training CSV.
    ExportOutcomes(ExportArgs),
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Config file naming the store (store.url); also $LEADROUTER_CONFIG and env overrides.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub out: PathBuf,
    /// Keep RETURNED closes (not a sales result, so left out by default).
    #[arg(long)]
    pub include_returned: bool,
}

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// Config file (TOML); also $LEADROUTER_CONFIG.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct DataArgs {
    /// CSV file, plain or .gz.
    #[arg(long)]
    pub data: PathBuf,
    /// Label column.
    #[arg(long)]
    pub label: String,
    /// Label value that counts as converted (inferred for yes/no, true/false, 1/0).
    #[arg(long)]
    pub positive: Option<String>,
    /// Field delimiter (default: ';' or ',', whichever the header uses more).
    #[arg(long)]
    pub delimiter: Option<char>,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Columns to leave out, comma separated (e.g. ones that leak the label).
    #[arg(long, value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Feature spec (TOML, [[feature]] tables); inferred from the data when absent.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Share of rows held out for metrics.
    #[arg(long, default_value_t = 0.2)]
    pub holdout: f64,
    /// Inverse L2 regularisation strength.
    #[arg(long = "C", default_value_t = 1.0)]
    pub c: f64,
    /// Timestamp recorded in the artifact (default: $SOURCE_DATE_EPOCH if set, else none).
    #[arg(long)]
    pub created_at: Option<String>,
    /// Print the feature spec used, as TOML, on stdout.
    #[arg(long)]
    pub print_spec: bool,
    /// Refuse data with fewer labelled rows.
    #[arg(long, default_value_t = training::MIN_ROWS)]
    pub min_rows: usize,
    /// Refuse data with fewer positive rows.
    #[arg(long, default_value_t = training::MIN_POSITIVES)]
    pub min_positives: usize,
    /// Optimiser: newton (ours, default) or linfa (the reference).
    #[arg(long, default_value = "newton")]
    pub solver: training::fit::Solver,
    /// "balanced" weights each class by n / (2 * class count); for rare conversions.
    #[arg(long, value_parser = ["balanced", "none"], default_value = "none")]
    pub class_weight: String,
    /// Choose C by K-fold cross-validated AUC on the training split (overrides --C).
    #[arg(long)]
    pub cv: Option<usize>,
    /// Where to write the artifact.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct EvaluateArgs {
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Score every row, even when the file is the model's training data (default: its holdout).
    #[arg(long)]
    pub all_rows: bool,
}

fn delimiter(c: Option<char>) -> anyhow::Result<Option<u8>> {
    c.map(|c| u8::try_from(c).context("--delimiter must be a single ASCII character"))
        .transpose()
}

fn created_at(flag: Option<String>) -> anyhow::Result<Option<String>> {
    if flag.is_some() {
        return Ok(flag);
    }
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => {
            let secs: i64 = s
                .trim()
                .parse()
                .context("SOURCE_DATE_EPOCH must be an integer")?;
            Ok(Some(jiff::Timestamp::from_second(secs)?.to_string()))
        }
        Err(_) => Ok(None),
    }
}

pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    let spec = match &args.spec {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            Some(
                FeatureSpec::from_toml(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
            )
        }
        None => None,
    };
    let opts = TrainOptions {
        data: args.data.data,
        label: args.data.label,
        positive: args.data.positive,
        delimiter: delimiter(args.data.delimiter)?,
        exclude: args.exclude,
        spec,
        seed: args.seed,
        holdout_fraction: args.holdout,
        c: args.c,
        created_at: created_at(args.created_at)?,
        min_rows: args.min_rows,
        min_positives: args.min_positives,
        solver: args.solver,
        balanced: args.class_weight == "balanced",
        cv_folds: args.cv,
    };
    let trained = training::train(&opts).map_err(anyhow::Error::msg)?;
    if args.print_spec {
        print!("{}", trained.spec.to_toml());
    }
    // Write beside the target and rename, so a watcher never sees half a file.
    let tmp = args.out.with_extension("json.tmp");
    std::fs::write(&tmp, &trained.bytes)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let a = &trained.artifact;
    eprintln!(
        "wrote {} (version {}): {} columns, C {}, fit {:.3} s, holdout AUC {:.4}, log loss {:.4}, Brier {:.4}, n {}",
        args.out.display(),
        a.model_version,
        a.spec.n_columns(),
        a.training.c,
        trained.fit_seconds,
        a.holdout.auc,
        a.holdout.log_loss,
        a.holdout.brier,
        a.holdout.n
    );
    Ok(())
}

pub fn evaluate(args: EvaluateArgs) -> anyhow::Result<()> {
    let artifact = crate::engine::read_artifact(&args.model)?;
    let rows = if args.all_rows {
        EvalRows::All
    } else {
        EvalRows::Auto
    };
    let (metrics, used) = training::evaluate(
        &artifact,
        &args.data.data,
        &args.data.label,
        args.data.positive.as_deref(),
        delimiter(args.data.delimiter)?,
        rows,
    )
    .map_err(anyhow::Error::msg)?;
    let mut out = serde_json::to_value(&metrics)?;
    if let serde_json::Value::Object(m) = &mut out {
        m.insert("rows".into(), used.into());
        m.insert(
            "model_version".into(),
            artifact.model_version.clone().into(),
        );
    }
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::load(args.config.as_deref()).map_err(anyhow::Error::msg)?;
    crate::telemetry::init(&settings.log);
    // Install the signal handlers before anything else, so an early SIGTERM is graceful too.
    let signal = crate::app::shutdown_signal();
    let app = crate::app::App::build(settings).await?;
    app.run_until_stopped(signal).await
}

pub async fn export_outcomes(args: ExportArgs) -> anyhow::Result<()> {
    let settings = Settings::load(args.config.as_deref()).map_err(anyhow::Error::msg)?;
    if settings.store.url.starts_with("memory") {
        anyhow::bail!(
            "store.url is memory://: its outcomes live inside the running server; point \
             LEADROUTER__STORE__URL at the shared Redis store"
        );
    }
    let store = crate::store::open(&settings.store)
        .await
        .map_err(anyhow::Error::msg)?;
    let records = store.outcomes().await?;
    let n = crate::outcomes::write_csv(&records, &args.out, args.include_returned)
        .map_err(anyhow::Error::msg)?;
    eprintln!("wrote {n} outcomes to {}", args.out.display());
    Ok(())
}

/// Parses the command line and runs it.
pub async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(a) => serve(a).await,
        Command::Train(a) => tokio::task::spawn_blocking(move || train(a)).await?,
        Command::Evaluate(a) => tokio::task::spawn_blocking(move || evaluate(a)).await?,
        Command::ExportOutcomes(a) => export_outcomes(a).await,
    }
}
