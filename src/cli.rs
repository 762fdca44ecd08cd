//! Command line: `serve`, `train`, `evaluate`, `export-outcomes` and the ops commands in
//! ops.rs, parsed once into typed options.
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::Settings;
use crate::domain::features::FeatureSpec;
use crate::training::{self, EvalRows, TrainOptions};

pub mod admin;
pub mod ops;
pub mod report;

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

/// `serve --help`: the variables most deployments set.
const SERVE_ENV: &str = "\
Environment (every setting is LEADROUTER__SECTION__KEY; `leadrouter config --print` shows all):
  LEADROUTER_CONFIG            config file, instead of --config
  LEADROUTER__SERVER__ADDR     gRPC address (default 127.0.0.1:50051; beyond loopback keys are needed)
  LEADROUTER__ADMIN__ADDR      /metrics, /healthz, /readyz (default 127.0.0.1:9464; \"\" = off)
  LEADROUTER__STORE__URL       memory:// (default), file:///path/lr.db, redis://[:password@]host:port/db
  LEADROUTER__AUTH__KEYS_FILE  keys per role (`leadrouter keys new --role crm`)
  LEADROUTER__MODEL__PATH      model artifact (default builtin:bank-default, compiled in)
  LEADROUTER__REPS__FILE       team file (default builtin:example-team, compiled in; \"\" = none)
  LEADROUTER__LOG__FORMAT      pretty (default) or json
  RUST_LOG                     log filter, over log.filter (e.g. warn,leadrouter=info)";

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gRPC service (the default).
    #[command(after_help = SERVE_ENV)]
    Serve(ServeArgs),
    /// Train a model artifact from a CSV file.
    Train(TrainArgs),
    /// Print a model's metrics on a CSV file as one JSON object.
    Evaluate(EvaluateArgs),
    /// Write the outcomes recorded in the configured (shared) store as a training CSV.
    ExportOutcomes(ExportArgs),
    /// Score two models on the same rows; exits 1 when the gate would refuse the candidate.
    Compare(ops::CompareArgs),
    /// Swap a model into a running server through ReloadModel and its gate.
    Promote(ops::PromoteArgs),
    /// Print a running server's drift report (PSI per feature and of the score).
    ModelHealth(ops::HealthArgs),
    /// Print a report from a running server: performance, forecast, funnel, targets or
    /// calibration, as a table, CSV or JSON.
    Report(report::ReportArgs),
    /// Set (or with --value 0 remove) a target on a running server.
    SetTarget(report::SetTargetArgs),
    /// Write a CRM's past assignments and outcomes (CSV) into a running server's store.
    ImportHistory(report::ImportArgs),
    /// Drive a running server with load and print rps and latency percentiles as JSON.
    Bench(crate::loadgen::BenchArgs),
    /// API keys: `keys new --role crm` prints a token and the line for auth.keys_file.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Ask a running server's gRPC health; exits 0 only when it is SERVING (for container
    /// health checks).
    Healthcheck(admin::HealthcheckArgs),
    /// Check the configuration serve would use; --print shows it, secrets masked.
    Config(admin::ConfigArgs),
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Make a new key: prints the token (give it to the client) and the [[key]] lines to
    /// paste into auth.keys_file (which stores only the token's SHA-256).
    New(NewKeyArgs),
}

#[derive(Args, Debug)]
pub struct NewKeyArgs {
    /// marketing, crm, ops or admin.
    #[arg(long)]
    pub role: String,
    /// A name for the key in audit logs (default: role and a timestamp).
    #[arg(long)]
    pub id: Option<String>,
}

fn new_key(a: NewKeyArgs) -> anyhow::Result<()> {
    let role = crate::auth::Role::parse(&a.role).ok_or_else(|| {
        anyhow::anyhow!(
            "--role must be marketing, crm, ops or admin, not {:?}",
            a.role
        )
    })?;
    let id =
        a.id.unwrap_or_else(|| format!("{}-{}", a.role, jiff::Timestamp::now().as_second()));
    let (token, line) = crate::auth::new_key(&id, role).map_err(anyhow::Error::msg)?;
    println!("token (give to the client; it is not stored anywhere):\n{token}\n");
    println!("for auth.keys_file:\n{line}");
    Ok(())
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Config file naming the store (store.url); also $LEADROUTER_CONFIG and env overrides.
    #[arg(long, conflicts_with = "server")]
    pub config: Option<PathBuf>,
    /// Ask a running server instead (ModelService/ExportOutcomes), e.g.
    /// http://127.0.0.1:50051: works on every store, memory and file included. With auth on,
    /// $LEADROUTER_TOKEN holds an ops or admin key.
    #[arg(long)]
    pub server: Option<String>,
    /// The CSV file to write (one row per closed lead, training columns then `_` metadata).
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
    /// CSV file, plain or .gz.
    #[arg(long, required_unless_present = "from_outcomes")]
    pub data: Option<PathBuf>,
    /// Label column (with --from-outcomes: "outcome").
    #[arg(long, required_unless_present = "from_outcomes")]
    pub label: Option<String>,
    /// Label value that counts as converted (inferred for yes/no, true/false, 1/0; with
    /// --from-outcomes: "won").
    #[arg(long)]
    pub positive: Option<String>,
    /// Field delimiter (default: ';' or ',', whichever the header uses more).
    #[arg(long)]
    pub delimiter: Option<char>,
    /// Train on the outcomes recorded in the shared store (see --config): they are exported
    /// to OUT.outcomes.csv first, so the training data stays on disk for audit.
    #[arg(long, conflicts_with = "data")]
    pub from_outcomes: bool,
    /// Config file naming the store, for --from-outcomes.
    #[arg(long, conflicts_with = "server")]
    pub config: Option<PathBuf>,
    /// With --from-outcomes: export them from this running server (ModelService/
    /// ExportOutcomes) instead of opening the store, e.g. http://127.0.0.1:50051.
    #[arg(long, requires = "from_outcomes")]
    pub server: Option<String>,
    /// Columns to leave out, comma separated (e.g. ones that leak the label).
    #[arg(long, value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Feature spec (TOML, [[feature]] tables); inferred from the data when absent.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Seed of the holdout split and the folds: the same data and seed give a byte-identical
    /// artifact.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Share of rows held out for metrics.
    #[arg(long, default_value_t = 0.2)]
    pub holdout: f64,
    /// Inverse L2 regularisation strength (default 1, or chosen by 5-fold cross-validation
    /// when the design has under 10 positives per column; the train output says so).
    #[arg(long = "C")]
    pub c: Option<f64>,
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
    /// Choose C by K-fold cross-validated AUC on the training split.
    #[arg(long, conflicts_with = "c")]
    pub cv: Option<usize>,
    /// After measuring the holdout, fit again on every row (same spec choices and C). The
    /// artifact keeps the holdout metrics of the model fitted before the refit, and says so.
    #[arg(long)]
    pub refit: bool,
    /// Where to write the artifact.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct EvaluateArgs {
    /// The model artifact (JSON) to score the rows with; `builtin:bank-default` for the
    /// compiled-in one.
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

/// With --from-outcomes, exports the store's outcomes next to --out and points --data at them.
async fn outcomes_as_data(mut args: TrainArgs) -> anyhow::Result<TrainArgs> {
    if args.from_outcomes {
        let csv = args.out.with_extension("outcomes.csv");
        let n = export_to(args.config.clone(), args.server.as_deref(), &csv, false).await?;
        eprintln!("exported {n} outcomes to {}", csv.display());
        args.data = Some(csv);
        args.label.get_or_insert_with(|| "outcome".into());
        args.positive.get_or_insert_with(|| "won".into());
    }
    Ok(args)
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
        data: args.data.context("--data is required")?,
        label: args.label.context("--label is required")?,
        positive: args.positive,
        delimiter: delimiter(args.delimiter)?,
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
        refit: args.refit,
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
    for note in &trained.notes {
        eprintln!("{note}");
    }
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
    crate::telemetry::init(&settings.log, &settings.tracing)?;
    // Install the signal handlers before anything else, so an early SIGTERM is graceful too.
    let signal = crate::app::shutdown_signal();
    let app = crate::app::App::build(settings).await?;
    let served = app.run_until_stopped(signal).await;
    crate::telemetry::shutdown();
    served
}

pub async fn export_outcomes(args: ExportArgs) -> anyhow::Result<()> {
    let n = export_to(
        args.config,
        args.server.as_deref(),
        &args.out,
        args.include_returned,
    )
    .await?;
    eprintln!("wrote {n} outcomes to {}", args.out.display());
    Ok(())
}

/// Writes the store's outcomes to `out`; returns how many rows.
async fn export_to(
    config: Option<PathBuf>,
    server: Option<&str>,
    out: &std::path::Path,
    include_returned: bool,
) -> anyhow::Result<usize> {
    if let Some(server) = server {
        return ops::export_outcomes(server, out, include_returned).await;
    }
    let settings = Settings::load(config.as_deref()).map_err(anyhow::Error::msg)?;
    if settings.store.url.starts_with("memory") {
        anyhow::bail!(
            "store.url is memory://: its outcomes live inside the running server; ask it with \
             --server http://HOST:PORT, or point LEADROUTER__STORE__URL at the shared store"
        );
    }
    let zone = settings.report.zone().map_err(anyhow::Error::msg)?;
    let store = crate::store::open(&settings.store, settings.events.retention(), zone)
        .await
        .map_err(anyhow::Error::msg)?;
    let records = store.outcomes().await?;
    crate::outcomes::write_csv(&records, out, include_returned).map_err(anyhow::Error::msg)
}

/// A command whose reader went away (`leadrouter report ... | head`) ends quietly, as other
/// Unix tools do, instead of failing on the next write. Not for `serve` or `bench`: Rust
/// ignores SIGPIPE so that a peer closing a socket is an error on that socket, not the death
/// of the process (the bench's load connections see servers reset streams and connections).
fn die_quietly_on_a_closed_pipe() {
    // SAFETY: resetting a signal's disposition to its default before any other thread writes
    // to a pipe; no handler runs Rust code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Parses the command line and runs it.
pub async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve(ServeArgs::default()));
    if !matches!(command, Command::Serve(_) | Command::Bench(_)) {
        die_quietly_on_a_closed_pipe();
    }
    match command {
        Command::Serve(a) => serve(a).await,
        Command::Train(a) => {
            let a = outcomes_as_data(a).await?;
            tokio::task::spawn_blocking(move || train(a)).await?
        }
        Command::Evaluate(a) => tokio::task::spawn_blocking(move || evaluate(a)).await?,
        Command::ExportOutcomes(a) => export_outcomes(a).await,
        Command::Compare(a) => tokio::task::spawn_blocking(move || ops::compare(a)).await?,
        Command::Promote(a) => ops::promote(a).await,
        Command::ModelHealth(a) => ops::model_health(a).await,
        Command::Report(a) => report::report(a).await,
        Command::SetTarget(a) => report::set_target(a).await,
        Command::ImportHistory(a) => report::import_history(a).await,
        Command::Bench(a) if a.write_body.is_some() => {
            let path = a.write_body.clone().unwrap_or_default();
            crate::loadgen::write_body(&a, &path)
        }
        Command::Bench(a) => {
            let report = crate::loadgen::run(&a).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Keys(KeysCommand::New(a)) => new_key(a),
        Command::Healthcheck(a) => admin::healthcheck(a).await,
        Command::Config(a) => admin::config(a),
    }
}

#[cfg(test)]
mod help_tests {
    use clap::CommandFactory;

    /// Every flag of every command says what it is (`--help` is the manual).
    #[test]
    fn every_flag_is_described() {
        fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    out.push(format!("{path} --{}", a.get_long().unwrap_or(id)));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), out);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "leadrouter", &mut missing);
        assert!(
            missing.is_empty(),
            "flags without a description: {missing:#?}"
        );
    }

    #[test]
    fn serve_help_lists_the_main_variables() {
        let mut cmd = super::Cli::command();
        let serve = cmd.find_subcommand_mut("serve").unwrap();
        let help = serve.render_long_help().to_string();
        for var in [
            "LEADROUTER__ADMIN__ADDR",
            "LEADROUTER__STORE__URL",
            "LEADROUTER_CONFIG",
            "RUST_LOG",
        ] {
            assert!(
                help.contains(var),
                "{var} missing from serve --help:\n{help}"
            );
        }
    }
}
