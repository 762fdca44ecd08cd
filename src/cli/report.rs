//! `leadrouter report …`, `set-target` and `import-history`: ReportService clients that print
//! a table (default), CSV or JSON.
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use crate::grpc::pb;
use crate::grpc::pb::report_service_client::ReportServiceClient;

use super::ops::authed;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Wins, losses, open leads, win rate, won value and the performance index per group and
    /// period.
    Performance,
    /// Open leads now: expected wins (Σp) with the 80 % interval, expected value.
    Forecast,
    /// submitted -> assigned -> contacted -> closed -> won, drop-offs, leaks, stage times.
    Funnel,
    /// Targets with progress in the current period and the run-rate projection.
    Targets,
    /// Forecast against actual by probability band (won/lost closes in the range).
    Calibration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Which report.
    #[arg(value_enum)]
    pub kind: Kind,
    /// The server, e.g. http://127.0.0.1:50051 ($LEADROUTER_TOKEN: a crm, ops or admin key).
    #[arg(long)]
    pub server: String,
    /// day, week (ISO), month or quarter, in the server's report.timezone.
    #[arg(long, default_value = "month")]
    pub period: String,
    /// rep, pool, segment or team.
    #[arg(long, default_value = "team")]
    pub by: String,
    /// Only this pool.
    #[arg(long, default_value = "")]
    pub pool: String,
    /// First and last report day (YYYY-MM-DD), inclusive.
    #[arg(long, default_value = "")]
    pub from: String,
    /// Last report day (YYYY-MM-DD), inclusive; empty: today.
    #[arg(long, default_value = "")]
    pub to: String,
    /// table (aligned, for people), csv, or json (an array of flat rows).
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct SetTargetArgs {
    /// The server, e.g. http://127.0.0.1:50051 ($LEADROUTER_TOKEN: an ops or admin key).
    #[arg(long)]
    pub server: String,
    /// rep, pool or team.
    #[arg(long)]
    pub scope: String,
    /// The rep id or pool name (not for team).
    #[arg(long, default_value = "")]
    pub id: String,
    /// day, week, month or quarter.
    #[arg(long)]
    pub period: String,
    /// assignments, wins or won_value.
    #[arg(long)]
    pub metric: String,
    /// The target (0 removes it); won_value in report.currency.
    #[arg(long)]
    pub value: f64,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The server ($LEADROUTER_TOKEN: an ops or admin key).
    #[arg(long)]
    pub server: String,
    /// CSV file, plain or .gz; columns not mapped below become lead attributes.
    #[arg(long)]
    pub data: PathBuf,
    /// Column of the lead id (a lead id already stored is skipped: imports are idempotent).
    #[arg(long)]
    pub lead_id: String,
    /// Column of the rep's id or name (names map to ids as deploy/make_reps.py does).
    #[arg(long)]
    pub rep: String,
    /// Column of the assignment date (YYYY-MM-DD or RFC 3339; empty: not yet assigned).
    #[arg(long)]
    pub assigned_at: String,
    /// Column of the close date (empty: still open).
    #[arg(long)]
    pub closed_at: String,
    /// Column of the outcome, read only for closed rows.
    #[arg(long)]
    pub outcome: String,
    /// Outcome value meaning won, e.g. Won.
    #[arg(long)]
    pub won: String,
    /// Outcome value meaning lost, e.g. Lost.
    #[arg(long)]
    pub lost: String,
    /// Outcome value meaning disqualified, if the CSV has one.
    #[arg(long)]
    pub disqualified: Option<String>,
    /// Outcome value meaning returned to marketing, if the CSV has one.
    #[arg(long)]
    pub returned: Option<String>,
    /// Column of the deal's value (report.currency).
    #[arg(long)]
    pub value: Option<String>,
    /// Rows per message.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
}

async fn client(server: &str) -> anyhow::Result<ReportServiceClient<tonic::transport::Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(server.to_string())
        .with_context(|| format!("bad --server {server:?}"))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot connect to {server}"))?;
    Ok(ReportServiceClient::new(channel).max_decoding_message_size(256 << 20))
}

fn status(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", e.code(), e.message())
}

/// One printed row: (column, value) in column order.
type Row = Vec<(String, Value)>;

pub async fn report(a: ReportArgs) -> anyhow::Result<()> {
    let mut c = client(&a.server).await?;
    let q = pb::ReportRequest {
        period: a.period.clone(),
        by: a.by.clone(),
        pool: a.pool.clone(),
        from: a.from.clone(),
        to: a.to.clone(),
    };
    let by = a.by.trim().to_ascii_lowercase();
    let by = if by.is_empty() {
        "team".to_string()
    } else {
        by
    };
    let rows: Vec<Row> = match a.kind {
        Kind::Performance => {
            let r = c
                .get_performance(authed(q)?)
                .await
                .map_err(status)?
                .into_inner();
            r.rows.into_iter().map(|r| performance(&by, r)).collect()
        }
        Kind::Calibration => {
            let r = c
                .get_performance(authed(q)?)
                .await
                .map_err(status)?
                .into_inner();
            r.calibration.into_iter().map(calibration).collect()
        }
        Kind::Forecast => {
            let r = c
                .get_forecast(authed(q)?)
                .await
                .map_err(status)?
                .into_inner();
            r.rows.into_iter().map(|r| forecast(&by, r)).collect()
        }
        Kind::Funnel => {
            let r = c.get_funnel(authed(q)?).await.map_err(status)?.into_inner();
            r.rows.into_iter().map(|r| funnel(&by, r)).collect()
        }
        Kind::Targets => {
            let req = authed(pb::GetTargetsRequest {})?;
            let r = c.get_targets(req).await.map_err(status)?.into_inner();
            r.targets.into_iter().map(progress).collect()
        }
    };
    print(&rows, a.format)
}

pub async fn set_target(a: SetTargetArgs) -> anyhow::Result<()> {
    let mut c = client(&a.server).await?;
    let req = authed(pb::SetTargetRequest {
        target: Some(pb::Target {
            scope: a.scope,
            id: a.id,
            period: a.period,
            metric: a.metric,
            value: a.value,
        }),
    })?;
    let r = c.set_target(req).await.map_err(status)?.into_inner();
    print(
        &r.progress.into_iter().map(progress).collect::<Vec<_>>(),
        Format::Table,
    )
}

pub async fn import_history(a: ImportArgs) -> anyhow::Result<()> {
    let table = crate::training::data::read(&a.data, None).map_err(anyhow::Error::msg)?;
    let col = |name: &str, flag: &str| {
        table.column(name).ok_or_else(|| {
            anyhow::anyhow!(
                "{flag} {name:?}: no such column; columns are: {}",
                table.headers.join(", ")
            )
        })
    };
    let (id, rep) = (col(&a.lead_id, "--lead-id")?, col(&a.rep, "--rep")?);
    let assigned = col(&a.assigned_at, "--assigned-at")?;
    let closed = col(&a.closed_at, "--closed-at")?;
    let outcome = col(&a.outcome, "--outcome")?;
    let value = a.value.as_deref().map(|v| col(v, "--value")).transpose()?;
    let mapped = [
        Some(id),
        Some(rep),
        Some(assigned),
        Some(closed),
        Some(outcome),
        value,
    ];
    let mut rows = Vec::with_capacity(table.rows.len());
    for (i, r) in table.rows.iter().enumerate() {
        let line = i + 2;
        let closed_at = r[closed].clone();
        let o = r[outcome].as_str();
        let outcome = if closed_at.is_empty() {
            pb::Outcome::Unspecified
        } else if o == a.won {
            pb::Outcome::Won
        } else if o == a.lost {
            pb::Outcome::Lost
        } else if a.disqualified.as_deref() == Some(o) {
            pb::Outcome::Disqualified
        } else if a.returned.as_deref() == Some(o) {
            pb::Outcome::Returned
        } else {
            anyhow::bail!(
                "line {line}: closed on {closed_at:?} with outcome {o:?}, which is none of \
                 --won {:?}, --lost {:?}, --disqualified, --returned",
                a.won,
                a.lost
            );
        };
        let value = match value.map(|c| r[c].as_str()).filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => Some(
                v.parse::<f64>()
                    .with_context(|| format!("line {line}: value {v:?} is not a number"))?,
            ),
        };
        let attributes = table
            .headers
            .iter()
            .enumerate()
            .filter(|(c, _)| !mapped.contains(&Some(*c)) && !r[*c].is_empty())
            .map(|(c, h)| {
                use pb::attribute_value::Kind;
                let kind = match r[c].parse::<f64>() {
                    Ok(x) if x.is_finite() => Kind::NumberValue(x),
                    _ => Kind::StringValue(r[c].clone()),
                };
                (h.clone(), pb::AttributeValue { kind: Some(kind) })
            })
            .collect();
        rows.push(pb::HistoryRow {
            lead_id: r[id].clone(),
            rep: r[rep].clone(),
            assigned_at: r[assigned].clone(),
            closed_at,
            outcome: outcome as i32,
            value,
            attributes,
        });
    }
    let n = rows.len();
    let mut msgs = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        msgs.push(pb::ImportHistoryRequest {
            rows: rows.by_ref().take(a.batch.max(1)).collect(),
        });
    }
    let mut c = client(&a.server).await?;
    let r = c
        .import_history(authed(tokio_stream::iter(msgs))?)
        .await
        .map_err(status)?
        .into_inner();
    println!(
        "{}",
        json!({"rows": n, "imported": r.imported, "skipped": r.skipped})
    );
    Ok(())
}

fn num(x: f64) -> Value {
    json!(x)
}

fn opt(x: Option<f64>) -> Value {
    x.map_or(Value::Null, |v| json!(v))
}

fn performance(by: &str, r: pb::PerformanceRow) -> Row {
    vec![
        (by.to_string(), json!(r.group)),
        ("period".into(), json!(r.period)),
        ("assigned".into(), num(r.assigned)),
        ("won".into(), num(r.won)),
        ("lost".into(), num(r.lost)),
        ("open".into(), num(r.open)),
        ("disqualified".into(), num(r.disqualified)),
        ("returned".into(), num(r.returned)),
        ("win_rate".into(), opt(r.win_rate)),
        ("won_value".into(), num(r.won_value)),
        ("expected_wins".into(), num(r.expected_wins)),
        ("wins_low".into(), num(r.wins_low)),
        ("wins_high".into(), num(r.wins_high)),
        ("index".into(), opt(r.index)),
        ("index_low".into(), num(r.index_low)),
        ("index_high".into(), num(r.index_high)),
        ("flag".into(), json!(r.flag)),
    ]
}

fn calibration(b: pb::CalibrationBand) -> Row {
    vec![
        (
            "band".into(),
            json!(format!("[{:.1}, {:.1})", b.low, b.high)),
        ),
        ("leads".into(), num(b.leads)),
        ("won".into(), num(b.won)),
        ("mean_probability".into(), num(b.mean_probability)),
        (
            "win_rate".into(),
            opt((b.leads > 0.0).then(|| b.won / b.leads)),
        ),
    ]
}

fn forecast(by: &str, r: pb::ForecastRow) -> Row {
    vec![
        (by.to_string(), json!(r.group)),
        ("open".into(), num(r.open)),
        ("expected_wins".into(), num(r.expected_wins)),
        ("variance".into(), num(r.variance)),
        ("wins_low".into(), num(r.wins_low)),
        ("wins_high".into(), num(r.wins_high)),
        ("expected_value".into(), num(r.expected_value)),
    ]
}

fn funnel(by: &str, r: pb::FunnelRow) -> Row {
    let mut row: Row = vec![
        (by.to_string(), json!(r.group)),
        ("period".into(), json!(r.period)),
    ];
    for (i, s) in r.steps.into_iter().enumerate() {
        // Every row has the same columns (CSV): the first step has no drop-off, the others
        // show none when the step before had no leads.
        if (1..5).contains(&i) {
            row.push((format!("{}_drop_off", s.name), opt(s.drop_off)));
        }
        row.push((s.name, num(s.count)));
    }
    for l in r.leaks {
        row.push((l.name, num(l.count)));
    }
    for s in r.stages {
        row.push((format!("{}_p50_s", s.stage), opt(s.p50_s)));
        row.push((format!("{}_p90_s", s.stage), opt(s.p90_s)));
    }
    row
}

fn progress(p: pb::TargetProgress) -> Row {
    let t = p.target.unwrap_or_default();
    vec![
        ("scope".into(), json!(t.scope)),
        ("id".into(), json!(t.id)),
        ("period".into(), json!(p.period)),
        ("metric".into(), json!(t.metric)),
        ("target".into(), num(t.value)),
        ("actual".into(), num(p.actual)),
        ("progress".into(), num(p.progress)),
        ("projected".into(), num(p.projected)),
    ]
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", x as i64),
            Some(x) => format!("{x:.4}"),
            None => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn print(rows: &[Row], format: Format) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let arr: Vec<Value> = rows
                .iter()
                .map(|r| Value::Object(r.iter().cloned().collect()))
                .collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&arr)?)?;
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            if let Some(first) = rows.first() {
                w.write_record(first.iter().map(|(k, _)| k.as_str()))?;
            }
            for r in rows {
                w.write_record(r.iter().map(|(_, v)| cell(v)))?;
            }
            w.flush()?;
        }
        Format::Table => {
            let Some(first) = rows.first() else {
                writeln!(out, "(no rows)")?;
                return Ok(());
            };
            let heads: Vec<&str> = first.iter().map(|(k, _)| k.as_str()).collect();
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| r.iter().map(|(_, v)| cell(v)).collect())
                .collect();
            let widths: Vec<usize> = (0..heads.len())
                .map(|i| {
                    cells
                        .iter()
                        .map(|r| r.get(i).map_or(0, String::len))
                        .chain([heads[i].len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |vals: Vec<&str>| {
                vals.iter()
                    .zip(&widths)
                    .map(|(v, w)| format!("{v:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
            };
            writeln!(out, "{}", line(heads.clone()))?;
            for r in &cells {
                writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
            }
        }
    }
    Ok(())
}
