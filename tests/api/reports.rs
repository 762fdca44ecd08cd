//! ReportService end to end: a CRM's history imported with the CLI and reported per rep and
//! quarter (checked against the CSV), the forecast's interval and the performance index on
//! the service's own flow, the funnel, targets and refusals.
use std::collections::BTreeMap;

use leadrouter::grpc::pb;

use crate::helpers::*;

/// A seeded uniform in [0, 1), from the training split's PRNG.
struct Rng(leadrouter::training::split::SplitMix64);
impl Rng {
    fn next(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

fn quarter(date: &str) -> String {
    let month: u32 = date[5..7].parse().unwrap();
    format!("{}-Q{}", &date[..4], (month - 1) / 3 + 1)
}

#[derive(Debug, Default, PartialEq)]
struct Expected {
    won: f64,
    lost: f64,
    open: f64,
    won_value: f64,
}

/// The pipeline file read with the csv crate, grouped by rep and quarter: wins, losses and
/// value in the quarter the deal closed, open deals in the quarter they were engaged.
fn expected_from_csv() -> BTreeMap<(String, String), Expected> {
    let file = std::fs::File::open(repo_path(
        "data/crm-sales-opportunities/sales_pipeline.csv.gz",
    ))
    .unwrap();
    let mut reader = csv::Reader::from_reader(flate2::read::GzDecoder::new(file));
    let mut out: BTreeMap<(String, String), Expected> = BTreeMap::new();
    for rec in reader.deserialize::<BTreeMap<String, String>>() {
        let r = rec.unwrap();
        let rep = slug(&r["sales_agent"]);
        let (stage, engaged, closed) = (&r["deal_stage"], &r["engage_date"], &r["close_date"]);
        if !closed.is_empty() {
            let e = out.entry((rep, quarter(closed))).or_default();
            if stage == "Won" {
                e.won += 1.0;
                e.won_value += r["close_value"].parse::<f64>().unwrap();
            } else {
                assert_eq!(stage, "Lost");
                e.lost += 1.0;
            }
        } else if !engaged.is_empty() {
            out.entry((rep, quarter(engaged))).or_default().open += 1.0;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_history_imports_and_reports_per_rep_and_quarter_as_the_csv_says() {
    let app = spawn_app().await;
    let server = format!("http://{}", app.addr);
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli(&args, &[])
        })
    };
    let import: Vec<String> = [
        "import-history",
        "--server",
        &server,
        "--data",
        "data/crm-sales-opportunities/sales_pipeline.csv.gz",
        "--lead-id",
        "opportunity_id",
        "--rep",
        "sales_agent",
        "--assigned-at",
        "engage_date",
        "--closed-at",
        "close_date",
        "--outcome",
        "deal_stage",
        "--won",
        "Won",
        "--lost",
        "Lost",
        "--value",
        "close_value",
    ]
    .map(String::from)
    .to_vec();
    let out = run(import.clone()).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // 500 prospects have neither date: nothing to place in a period.
    assert_eq!(summary["imported"], 8300, "{summary}");
    // Importing again changes nothing.
    let again: serde_json::Value =
        serde_json::from_slice(&run(import).await.unwrap().stdout).unwrap();
    assert_eq!(
        (again["imported"].as_u64(), again["skipped"].as_u64()),
        (Some(0), Some(8800))
    );

    let report: Vec<String> = [
        "report",
        "performance",
        "--server",
        &server,
        "--period",
        "quarter",
        "--by",
        "rep",
        "--format",
        "json",
    ]
    .map(String::from)
    .to_vec();
    let out = run(report).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let got: BTreeMap<(String, String), &serde_json::Value> = rows
        .iter()
        .map(|r| {
            let key = (
                r["rep"].as_str().unwrap().to_string(),
                r["period"].as_str().unwrap().to_string(),
            );
            (key, r)
        })
        .collect();
    let expected = expected_from_csv();
    assert_eq!(expected.len(), 135, "35 agents over their active quarters");
    for (key, e) in &expected {
        let r = got.get(key).unwrap_or_else(|| panic!("no row for {key:?}"));
        let f = |name: &str| r[name].as_f64().unwrap();
        assert_eq!(
            (f("won"), f("lost"), f("open")),
            (e.won, e.lost, e.open),
            "{key:?}"
        );
        assert!((f("won_value") - e.won_value).abs() < 1e-6, "{key:?}");
        match e.won + e.lost {
            0.0 => assert!(r["win_rate"].is_null(), "{key:?}"),
            n => assert!((f("win_rate") - e.won / n).abs() < 1e-12, "{key:?}"),
        }
    }
    // Rows the CSV has no figures for hold none either (assignments only).
    for (key, r) in &got {
        if !expected.contains_key(key) {
            assert_eq!(
                (r["won"].as_f64(), r["lost"].as_f64(), r["open"].as_f64()),
                (Some(0.0), Some(0.0), Some(0.0))
            );
        }
    }
    app.stop().await.unwrap();
}

/// Submits `n` bank leads to a pool of `reps` equal reps and closes each as won with
/// probability `lift(rep) * p` (seeded); returns GetPerformance by rep.
async fn simulate(
    n: usize,
    reps: &[&str],
    seed: u64,
    lift: impl Fn(&str) -> f64,
) -> (Vec<pb::PerformanceRow>, f64, f64) {
    let app = spawn_app().await;
    for r in reps {
        app.add_rep(rep(r, 100_000, &[])).await;
    }
    let leads: Vec<pb::Lead> = bank_leads("sim", 0, n)
        .into_iter()
        .map(|(l, _)| l)
        .collect();
    let answers = submit_stream(&app, leads).await;
    let mut rng = Rng(leadrouter::training::split::SplitMix64::new(seed));
    let (mut sum_p, mut wins) = (0.0, 0.0);
    let mut routing = app.routing();
    for a in answers {
        let d = match a.result {
            Some(pb::submit_leads_response::Result::Decision(d)) => d,
            other => panic!("{other:?}"),
        };
        let p = d.score.as_ref().unwrap().probability;
        let who = rep_of(&d);
        let won = rng.next() < (lift(&who) * p).min(1.0);
        sum_p += p;
        wins += f64::from(u8::from(won));
        routing
            .close_assignment(pb::CloseAssignmentRequest {
                lead_id: d.lead_id.clone(),
                outcome: if won {
                    pb::Outcome::Won
                } else {
                    pb::Outcome::Lost
                } as i32,
                value: None,
            })
            .await
            .unwrap();
    }
    let rows = app
        .reports()
        .get_performance(pb::ReportRequest {
            period: "month".into(),
            by: "rep".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rows;
    app.stop().await.unwrap();
    (rows, sum_p, wins)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actual_wins_fall_in_the_forecast_interval_about_80_percent_of_the_time() {
    // 40 reps share 3,000 leads: each rep's closes are one draw of "wins given these
    // probabilities". Outcomes are Bernoulli(p) of the model's own probabilities.
    let names: Vec<String> = (0..40).map(|i| format!("r{i:02}")).collect();
    let reps: Vec<&str> = names.iter().map(String::as_str).collect();
    let (rows, sum_p, wins) = simulate(3000, &reps, 7, |_| 1.0).await;
    assert_eq!(rows.len(), 40);
    let expected: f64 = rows.iter().map(|r| r.expected_wins).sum();
    assert!((expected - sum_p).abs() < 1e-6, "{expected} vs {sum_p}");
    assert_eq!(rows.iter().map(|r| r.won).sum::<f64>(), wins);
    let inside = rows
        .iter()
        .filter(|r| r.wins_low <= r.won && r.won <= r.wins_high)
        .count();
    // 80 % intervals of ~8 expected wins each: about 32 of 40 (binomial sd ~2.5; a whole count
    // makes the interval a little wider than 80 %, never narrower).
    assert!((27..=39).contains(&inside), "{inside} of 40 inside");
    assert!(
        rows.iter()
            .all(|r| r.wins_low < r.expected_wins && r.expected_wins < r.wins_high)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_performance_index_tells_a_better_converter_apart_given_enough_leads() {
    let lift = |r: &str| if r == "ace" { 1.5 } else { 1.0 };
    let (rows, _, _) = simulate(2000, &["ace", "par"], 11, lift).await;
    let by: BTreeMap<&str, &pb::PerformanceRow> =
        rows.iter().map(|r| (r.group.as_str(), r)).collect();
    let (ace, par) = (by["ace"], by["par"]);
    assert_eq!(ace.flag, "above", "{ace:?}");
    assert!(
        ace.index_low > 1.0 && (ace.index.unwrap() - 1.5).abs() < 0.3,
        "{ace:?}"
    );
    assert_eq!(par.flag, "", "{par:?}");
    assert!(par.index_low < 1.0 && 1.0 < par.index_high, "{par:?}");

    let (rows, _, _) = simulate(20, &["ace", "par"], 11, lift).await;
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r.flag, "", "20 leads cannot tell: {r:?}");
        assert!(r.index_low < 1.0 && 1.0 < r.index_high, "{r:?}");
    }
}

fn report_req(period: &str, by: &str) -> pb::ReportRequest {
    pb::ReportRequest {
        period: period.into(),
        by: by.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funnel_forecast_and_targets_follow_the_flow_in_the_report_zone() {
    let mut settings = test_settings();
    settings.report.timezone = "America/New_York".into();
    settings.report.stale_queue_s = 60;
    // Tuesday 2026-12-01 03:00 UTC is still Monday 30 November in New York.
    let clock = TestClock::at("2026-12-01T01:00:00Z");
    let app = spawn_with_clock(settings, clock.clock()).await;
    app.add_rep(rep("solo", 2, &[])).await;
    let leads: Vec<pb::Lead> = bank_leads("f", 0, 5).into_iter().map(|(l, _)| l).collect();
    let mut probs = BTreeMap::new();
    for l in leads {
        let d = submit(&app, l).await.unwrap();
        probs.insert(d.lead_id.clone(), d.score.unwrap().probability);
    }
    let held: Vec<String> = app
        .routing()
        .list_assignments(pb::ListAssignmentsRequest {
            rep_id: "solo".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .assignments
        .into_iter()
        .map(|i| i.assignment.unwrap().lead_id)
        .collect();
    assert_eq!(held.len(), 2);
    let mut routing = app.routing();
    routing
        .mark_contacted(pb::MarkContactedRequest {
            lead_id: held[0].clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    clock.set("2026-12-01T03:00:00Z");
    routing
        .close_assignment(pb::CloseAssignmentRequest {
            lead_id: held[0].clone(),
            outcome: pb::Outcome::Won as i32,
            value: Some(1000.0),
        })
        .await
        .unwrap();
    let mut reports = app.reports();
    let perf = reports
        .get_performance(report_req("month", "rep"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(perf.time_zone, "America/New_York");
    let solo = perf.rows.iter().find(|r| r.group == "solo").unwrap();
    // Closed at 22:00 on 30 November, New York time.
    assert_eq!(
        (solo.period.as_str(), solo.won, solo.won_value),
        ("2026-11", 1.0, 1000.0)
    );
    assert_eq!(
        solo.assigned, 3.0,
        "two on arrival, one drained by the close"
    );
    assert_eq!(solo.open, 2.0);

    let funnel = reports
        .get_funnel(report_req("month", "team"))
        .await
        .unwrap()
        .into_inner();
    let row = &funnel.rows[0];
    let step = |name: &str| row.steps.iter().find(|s| s.name == name).unwrap();
    assert_eq!(step("submitted").count, 5.0);
    assert_eq!(step("assigned").count, 3.0);
    assert!((step("assigned").drop_off.unwrap() - 0.4).abs() < 1e-12);
    assert_eq!(step("contacted").count, 1.0);
    assert_eq!(step("won").count, 1.0);
    // Two leads still queued, for two hours by now: past stale_queue_s.
    let leak = |name: &str| row.leaks.iter().find(|l| l.name == name).unwrap().count;
    assert_eq!(leak("stale_queued"), 2.0);
    let to_contact = row
        .stages
        .iter()
        .find(|s| s.stage == "time_to_first_touch")
        .unwrap();
    assert_eq!(to_contact.count, 1.0);
    let to_close = row
        .stages
        .iter()
        .find(|s| s.stage == "time_to_close")
        .unwrap();
    // Closed two hours after assignment: the [4096, 8192) s bucket.
    assert!(
        (4096.0..8192.0).contains(&to_close.p50_s.unwrap()),
        "{to_close:?}"
    );

    // Open now: two held by solo, two queued; Σp of those four.
    let forecast = reports
        .get_forecast(report_req("", "team"))
        .await
        .unwrap()
        .into_inner();
    let open_p: f64 = probs
        .iter()
        .filter(|(id, _)| **id != held[0])
        .map(|(_, p)| p)
        .sum();
    assert_eq!(forecast.rows[0].open, 4.0);
    assert!((forecast.rows[0].expected_wins - open_p).abs() < 1e-9);

    // A monthly target of four wins: one so far, and New York's November is 29 days and 22
    // hours gone of 30, so the run rate ends it at 1.003.
    let set = reports
        .set_target(pb::SetTargetRequest {
            target: Some(pb::Target {
                scope: "rep".into(),
                id: "solo".into(),
                period: "month".into(),
                metric: "wins".into(),
                value: 4.0,
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .progress
        .unwrap();
    assert_eq!(
        (set.period.as_str(), set.actual, set.progress),
        ("2026-11", 1.0, 0.25)
    );
    assert!((1.0..1.01).contains(&set.projected), "{set:?}");
    let all = reports
        .get_targets(pb::GetTargetsRequest {})
        .await
        .unwrap()
        .into_inner()
        .targets;
    assert_eq!(all.len(), 1);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn bad_report_requests_name_the_field() {
    let app = spawn_app().await;
    let mut reports = app.reports();
    assert_invalid(
        reports.get_performance(report_req("year", "rep")).await,
        "period",
    );
    assert_invalid(
        reports.get_funnel(report_req("month", "planet")).await,
        "by",
    );
    let mut bad_dates = report_req("month", "rep");
    bad_dates.from = "2026-13-01".into();
    assert_invalid(reports.get_performance(bad_dates).await, "from");
    let target = |scope: &str, period: &str, metric: &str, value: f64| pb::SetTargetRequest {
        target: Some(pb::Target {
            scope: scope.into(),
            id: "x".into(),
            period: period.into(),
            metric: metric.into(),
            value,
        }),
    };
    assert_invalid(
        reports
            .set_target(target("galaxy", "month", "wins", 1.0))
            .await,
        "target.scope",
    );
    assert_invalid(
        reports.set_target(target("rep", "year", "wins", 1.0)).await,
        "target.period",
    );
    assert_invalid(
        reports
            .set_target(target("rep", "month", "calls", 1.0))
            .await,
        "target.metric",
    );
    assert_invalid(
        reports
            .set_target(target("rep", "month", "wins", -1.0))
            .await,
        "target.value",
    );
    let row = |closed_at: &str, outcome: pb::Outcome| pb::ImportHistoryRequest {
        rows: vec![pb::HistoryRow {
            lead_id: "h1".into(),
            rep: "Ann".into(),
            assigned_at: "2026-01-02".into(),
            closed_at: closed_at.into(),
            outcome: outcome as i32,
            ..Default::default()
        }],
    };
    let import = |r| {
        let mut c = app.reports();
        async move { c.import_history(tokio_stream::iter(vec![r])).await }
    };
    assert_invalid(
        import(row("2026-02-03", pb::Outcome::Unspecified)).await,
        "rows[0].outcome",
    );
    assert_invalid(
        import(row("yesterday", pb::Outcome::Won)).await,
        "rows[0].closed_at",
    );
    // Nothing was stored by the refused imports.
    let ok = import(row("2026-02-03", pb::Outcome::Won))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((ok.imported, ok.skipped), (1, 0));
    // History is scored but does not feed the live model's drift counters.
    let health = app
        .models()
        .get_model_health(pb::GetModelHealthRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.observed, 0, "{health:?}");
    let close = app
        .routing()
        .close_assignment(pb::CloseAssignmentRequest {
            lead_id: "h1".into(),
            outcome: pb::Outcome::Won as i32,
            value: Some(f64::NAN),
        })
        .await;
    assert_invalid(close, "value");
    app.stop().await.unwrap();
}
