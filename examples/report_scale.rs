//! How fast reports answer over many closed leads, and what their counters weigh: imports N
//! closed leads (35 reps, 4 segments, two years of days) into a real server through
//! ImportHistory, then times GetPerformance, GetFunnel and GetForecast over gRPC (median of
//! 21 calls each) beside a GetModel call on the same connection (the floor of any RPC).
//! The memory store keeps only `store.memory_max_leads` leads, but every counter.
//! Run: `cargo run --release --example report_scale -- 1000000` (BENCHMARKS.md, "Reports");
//! with `REPORT_REDIS_URL=redis://127.0.0.1:6379` the store is that Redis.
use std::time::Instant;

use leadrouter::app::App;
use leadrouter::config::Settings;
use leadrouter::grpc::pb;
use leadrouter::grpc::pb::model_service_client::ModelServiceClient;
use leadrouter::grpc::pb::report_service_client::ReportServiceClient;

// The server's allocator (src/main.rs), so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A seeded uniform in [0, 1), from the training split's PRNG.
struct Rng(leadrouter::training::split::SplitMix64);
impl Rng {
    fn next(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn date(day: i64) -> String {
    let d = jiff::civil::date(2025, 1, 1)
        .checked_add(jiff::Span::new().days(day))
        .unwrap();
    d.to_string()
}

fn rows(n: usize) -> Vec<pb::HistoryRow> {
    let mut rng = Rng(leadrouter::training::split::SplitMix64::new(42));
    let segments = ["qualified", "nurture", "unqualified", "price_sensitive"];
    (0..n)
        .map(|i| {
            let assigned = (rng.next() * 700.0) as i64;
            let closed = assigned + (rng.next() * 30.0) as i64;
            let won = rng.next() < 0.3;
            let attrs = [
                (
                    "age",
                    pb::attribute_value::Kind::NumberValue(20.0 + rng.next() * 50.0),
                ),
                (
                    "campaign",
                    pb::attribute_value::Kind::NumberValue((rng.next() * 6.0).floor()),
                ),
                (
                    "crm_segment",
                    pb::attribute_value::Kind::StringValue(segments[i % 4].into()),
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), pb::AttributeValue { kind: Some(v) }))
            .collect();
            pb::HistoryRow {
                lead_id: format!("h{i}"),
                rep: format!("Rep {}", i % 35),
                assigned_at: date(assigned),
                closed_at: date(closed),
                outcome: if won {
                    pb::Outcome::Won
                } else {
                    pb::Outcome::Lost
                } as i32,
                value: won.then(|| (rng.next() * 5000.0).round()),
                attributes: attrs,
            }
        })
        .collect()
}

async fn median_ms<F, Fut>(mut call: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut times = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        call().await;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(Ok(1_000_000), |a| a.parse())?;
    let mut settings = Settings::load(None).map_err(anyhow::Error::msg)?;
    settings.server.addr = "127.0.0.1:0".into();
    settings.admin.addr = String::new();
    settings.reps.file = String::new();
    let store = std::env::var("REPORT_REDIS_URL").ok();
    if let Some(url) = &store {
        settings.store.url = url.clone();
        settings.store.prefix = format!("rptbench{}", std::process::id());
    }
    settings.log.filter = "error".into();
    leadrouter::telemetry::init(&settings.log, &settings.tracing)?;
    let app = App::build(settings).await?;
    let addr = app.local_addr();
    let engine = app.engine();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut reports = ReportServiceClient::new(channel.clone()).max_decoding_message_size(1 << 30);
    let models = ModelServiceClient::new(channel);

    let started = Instant::now();
    let all = rows(n);
    let batches: Vec<pb::ImportHistoryRequest> = all
        .chunks(1000)
        .map(|c| pb::ImportHistoryRequest { rows: c.to_vec() })
        .collect();
    drop(all);
    let done = reports
        .import_history(tokio_stream::iter(batches))
        .await?
        .into_inner();
    let import_s = started.elapsed().as_secs_f64();
    println!(
        "store {}: imported {} closed leads in {import_s:.1} s ({:.0} leads/s)",
        store.as_deref().unwrap_or("memory://"),
        done.imported,
        done.imported as f64 / import_s
    );

    let req = |period: &str, by: &str| pb::ReportRequest {
        period: period.into(),
        by: by.into(),
        ..Default::default()
    };
    let floor = median_ms(|| {
        let mut m = models.clone();
        async move {
            m.get_model(pb::GetModelRequest {}).await.unwrap();
        }
    })
    .await;
    println!("GetModel (floor)                     {floor:8.2} ms");
    for (name, period, by) in [
        ("GetPerformance quarter by rep", "quarter", "rep"),
        ("GetPerformance month by segment", "month", "segment"),
        ("GetPerformance week by rep", "week", "rep"),
        ("GetFunnel month by segment", "month", "segment"),
        ("GetFunnel day by team", "day", "team"),
        ("GetForecast by rep", "", "rep"),
    ] {
        let rows = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let ms = median_ms(|| {
            let mut r = reports.clone();
            let q = req(period, by);
            let rows = rows.clone();
            async move {
                let n = match name {
                    n if n.starts_with("GetPerformance") => {
                        r.get_performance(q).await.unwrap().into_inner().rows.len()
                    }
                    n if n.starts_with("GetFunnel") => {
                        r.get_funnel(q).await.unwrap().into_inner().rows.len()
                    }
                    _ => r.get_forecast(q).await.unwrap().into_inner().rows.len(),
                };
                rows.store(n, std::sync::atomic::Ordering::Relaxed);
            }
        })
        .await;
        let rows = rows.load(std::sync::atomic::Ordering::Relaxed);
        println!("{name:<36} {ms:8.2} ms  ({rows} rows)");
    }
    // What the counters weigh: one (metric, value) pair is 16 bytes in a cell's vector; a cell
    // also keeps its rep and segment strings and a map entry (~120 bytes, estimated).
    use leadrouter::domain::ledger::Grain;
    for (grain, name) in [(Grain::Day, "day"), (Grain::Month, "month")] {
        let cells = engine
            .store()
            .ledger(None, grain, i32::MIN, i32::MAX)
            .await?;
        let buckets: std::collections::BTreeSet<_> = cells.iter().map(|c| c.bucket).collect();
        let entries: usize = cells.iter().map(|c| c.cell.0.len()).sum();
        let bytes = entries * 16 + cells.len() * 120;
        println!(
            "{name} buckets: {}, cells {}, counters {entries}: ~{:.1} KiB per {name} (~{:.1} MiB in all, estimated)",
            buckets.len(),
            cells.len(),
            bytes as f64 / buckets.len().max(1) as f64 / 1024.0,
            bytes as f64 / 1048576.0
        );
    }
    if let Some(url) = &store {
        let client = redis::Client::open(url.as_str())?;
        let mut c = client.get_multiplexed_async_connection().await?;
        let prefix = format!("rptbench{}:{{default}}:rpt:", std::process::id());
        let days: Vec<String> = redis::cmd("ZRANGE")
            .arg(format!("{prefix}days"))
            .arg(0)
            .arg(-1)
            .query_async(&mut c)
            .await?;
        let months: Vec<String> = redis::cmd("ZRANGE")
            .arg(format!("{prefix}months"))
            .arg(0)
            .arg(-1)
            .query_async(&mut c)
            .await?;
        let mut sizes = [(0usize, 0u64); 2];
        for (i, keys) in [days, months].into_iter().enumerate() {
            for k in &keys {
                let b: Option<u64> = redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(format!("{prefix}{k}"))
                    .query_async(&mut c)
                    .await?;
                sizes[i].1 += b.unwrap_or(0);
            }
            sizes[i].0 = keys.len();
        }
        let [(nd, bd), (nm, bm)] = sizes;
        println!(
            "Redis counters: {nd} day hashes, {:.1} KiB each; {nm} month hashes, {:.1} KiB each; {:.1} MiB in all",
            bd as f64 / nd.max(1) as f64 / 1024.0,
            bm as f64 / nm.max(1) as f64 / 1024.0,
            (bd + bm) as f64 / 1048576.0
        );
    }
    let _ = tx.send(());
    server.await??;
    Ok(())
}
