//! The admin listener: /metrics after a known workload has exact counts and parses as
//! Prometheus text; /healthz and /readyz answer; the request log line names the call.
use std::collections::{BTreeMap, HashMap};

use crate::helpers::*;
use leadrouter::grpc::pb;

/// `GET path` over plain HTTP/1.1: (status, body).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// One sample: metric name, labels, value.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

/// Parses Prometheus text exposition (0.0.4) strictly: every sample belongs to a family with
/// one TYPE line, names and labels are well formed, values are numbers. Panics otherwise.
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            assert!(is_name(name), "bad metric name in {line:?}");
            if kind == "TYPE" {
                let t = parts.next().unwrap_or("");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                    "{line:?}"
                );
                assert!(
                    types.insert(name.into(), t.into()).is_none(),
                    "TYPE twice: {line:?}"
                );
            } else {
                assert_eq!(kind, "HELP", "{line:?}");
            }
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => panic!("no value: {line:?}"),
        };
        assert!(is_name(name), "bad name in {line:?}");
        let mut labels = BTreeMap::new();
        let value_text = if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let end;
            loop {
                let (i, c) = chars
                    .next()
                    .unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
                if c == '}' {
                    end = i;
                    break;
                }
                let start = i;
                let mut key = c.to_string();
                for (_, c) in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    key.push(c);
                }
                assert!(
                    is_name(&key) && start < body.len(),
                    "bad label name in {line:?}"
                );
                assert_eq!(chars.next().map(|x| x.1), Some('"'), "{line:?}");
                let mut value = String::new();
                loop {
                    match chars.next().map(|x| x.1) {
                        Some('\\') => match chars.next().map(|x| x.1) {
                            Some('n') => value.push('\n'),
                            Some(c @ ('\\' | '"')) => value.push(c),
                            other => panic!("bad escape {other:?} in {line:?}"),
                        },
                        Some('"') => break,
                        Some(c) => value.push(c),
                        None => panic!("unclosed label value: {line:?}"),
                    }
                }
                labels.insert(key, value);
                if chars.peek().map(|x| x.1) == Some(',') {
                    chars.next();
                }
            }
            &body[end + 1..]
        } else {
            rest
        };
        let value_text = value_text.trim_start_matches(' ');
        let value_text = value_text.split(' ').next().unwrap();
        let value: f64 = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s).filter(|f| {
                    types
                        .get(*f)
                        .is_some_and(|t| t == "histogram" || t == "summary")
                })
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "sample without a TYPE line: {line:?}"
        );
        out.push(Sample {
            name: name.into(),
            labels,
            value,
        });
    }
    out
}

/// The sum of samples named `name` whose labels include every pair of `want`.
pub fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

async fn close(app: &TestApp, id: &str) {
    app.routing()
        .close_assignment(pb::CloseAssignmentRequest {
            lead_id: id.into(),
            outcome: pb::Outcome::Won as i32,
            ..Default::default()
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_known_workload_exactly_and_parse_as_prometheus_text() {
    let app = spawn_app().await;
    let admin = app.admin.expect("admin listener on");
    app.add_rep(rep("ana", 10, &[])).await;
    let (n, m, k) = (7, 4, 3);
    for i in 0..n {
        app.leads()
            .score_lead(pb::ScoreLeadRequest {
                lead: Some(good_lead(&format!("s{i}"))),
            })
            .await
            .unwrap();
    }
    for i in 0..m {
        submit(&app, good_lead(&format!("m{i}"))).await.unwrap();
    }
    // A retry replays: one more OK call, but no second routing count.
    submit(&app, good_lead("m0")).await.unwrap();
    for i in 0..k {
        close(&app, &format!("m{i}")).await;
    }
    let refused = app
        .leads()
        .score_lead(pb::ScoreLeadRequest {
            lead: Some(lead("", &[])),
        })
        .await;
    assert_invalid(refused, "lead.id");

    let (status, body) = http_get(admin, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    let samples = parse_prometheus(&body);
    let calls = |method: &str, code: &str| {
        value(
            &samples,
            "leadrouter_grpc_requests_total",
            &[("method", method), ("code", code)],
        )
    };
    assert_eq!(calls("ScoreLead", "OK"), n as f64, "{body}");
    assert_eq!(calls("ScoreLead", "INVALID_ARGUMENT"), 1.0);
    assert_eq!(calls("SubmitLead", "OK"), (m + 1) as f64);
    assert_eq!(calls("CloseAssignment", "OK"), k as f64);
    assert_eq!(calls("UpsertRep", "OK"), 1.0);
    let service = value(
        &samples,
        "leadrouter_grpc_requests_total",
        &[
            ("service", "leadrouter.v1.LeadService"),
            ("method", "ScoreLead"),
        ],
    );
    assert_eq!(service, (n + 1) as f64);
    // Every call is in the latency histogram.
    let timed = value(
        &samples,
        "leadrouter_grpc_request_duration_seconds_count",
        &[("method", "ScoreLead")],
    );
    assert_eq!(timed, (n + 1) as f64);
    // Scored: n ScoreLead + m first submits + the replay (scored again, routed once).
    assert_eq!(
        value(&samples, "leadrouter_leads_scored_total", &[]),
        (n + m + 1) as f64
    );
    assert_eq!(
        value(&samples, "leadrouter_lead_probability_count", &[]),
        (n + m + 1) as f64
    );
    assert_eq!(
        value(
            &samples,
            "leadrouter_leads_routed_total",
            &[("pool", "default"), ("status", "assigned")]
        ),
        m as f64
    );
    assert_eq!(
        value(&samples, "leadrouter_leads_routed_total", &[]),
        m as f64
    );
    assert_eq!(
        value(
            &samples,
            "leadrouter_store_operation_duration_seconds_count",
            &[("operation", "claim")]
        ),
        (m + 1) as f64
    );
    assert_eq!(
        value(
            &samples,
            "leadrouter_store_operation_duration_seconds_count",
            &[("operation", "close")]
        ),
        k as f64
    );
    assert_eq!(value(&samples, "leadrouter_store_errors_total", &[]), 0.0);
    // Gauges read now: ana holds m - k leads of her 10.
    let ana = [("pool", "default"), ("rep", "ana")];
    assert_eq!(value(&samples, "leadrouter_rep_load", &ana), (m - k) as f64);
    assert_eq!(value(&samples, "leadrouter_rep_capacity", &ana), 10.0);
    assert_eq!(
        value(&samples, "leadrouter_pool_load", &[("pool", "default")]),
        (m - k) as f64
    );
    assert_eq!(
        value(&samples, "leadrouter_queue_depth", &[("pool", "default")]),
        0.0
    );
    assert_eq!(value(&samples, "leadrouter_ready", &[]), 1.0);
    let version = app.model_version().await;
    assert_eq!(
        value(&samples, "leadrouter_model_info", &[("version", &version)]),
        1.0
    );
    assert!(samples.iter().any(|s| s.name == "leadrouter_feature_psi"));

    assert_eq!(http_get(admin, "/healthz").await.0, 200);
    assert_eq!(http_get(admin, "/readyz").await.0, 200);
    assert_eq!(http_get(admin, "/nope").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_pools_get_totals_and_queues_show_depth_and_age() {
    let mut settings = test_settings();
    settings.admin.per_rep_max_reps = 1;
    let app = spawn_with(settings).await;
    let admin = app.admin.unwrap();
    app.add_rep(rep("a", 1, &[])).await;
    app.add_rep(rep("b", 1, &[])).await;
    for i in 0..5 {
        submit(&app, good_lead(&format!("q{i}"))).await.unwrap();
    }
    let samples = parse_prometheus(&http_get(admin, "/metrics").await.1);
    assert!(
        !samples.iter().any(|s| s.name == "leadrouter_rep_load"),
        "2 reps > per_rep_max_reps = 1"
    );
    assert_eq!(
        value(&samples, "leadrouter_pool_load", &[("pool", "default")]),
        2.0
    );
    assert_eq!(
        value(&samples, "leadrouter_pool_capacity", &[("pool", "default")]),
        2.0
    );
    assert_eq!(
        value(&samples, "leadrouter_queue_depth", &[("pool", "default")]),
        3.0
    );
    let queued = value(
        &samples,
        "leadrouter_leads_routed_total",
        &[("status", "queued")],
    );
    assert_eq!(queued, 3.0);
    assert!(
        value(
            &samples,
            "leadrouter_queue_oldest_wait_seconds",
            &[("pool", "default")]
        ) >= 0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_stops_with_the_server() {
    let app = spawn_app().await;
    let admin = app.admin.unwrap();
    assert_eq!(http_get(admin, "/readyz").await.0, 200);
    app.stop().await.unwrap();
    // The admin listener stops with the server.
    assert!(tokio::net::TcpStream::connect(admin).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_logs_one_line_with_its_method_lead_code_and_trace() {
    let p = Process::start(&[("LEADROUTER__REPS__FILE", "")]).await;
    let mut req = tonic::Request::new(pb::ScoreLeadRequest {
        lead: Some(good_lead("traced-1")),
    });
    req.metadata_mut().insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    p.leads().score_lead(req).await.unwrap();
    let line = p
        .wait_for_log("request", std::time::Duration::from_secs(5))
        .expect("a request line");
    let span = &line["span"];
    assert_eq!(span["method"], "ScoreLead", "{line}");
    assert_eq!(span["lead_id"], "traced-1", "{line}");
    assert_eq!(
        span["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
        "{line}"
    );
    assert_eq!(line["fields"]["code"], "OK", "{line}");
    assert!(
        line["fields"]["latency_ms"].as_f64().unwrap() >= 0.0,
        "{line}"
    );
    let bad = p
        .leads()
        .score_lead(pb::ScoreLeadRequest { lead: None })
        .await;
    assert!(bad.is_err());
    let line = p
        .wait_for_log("request", std::time::Duration::from_secs(5))
        .expect("a line for the refused call too");
    assert_eq!(line["fields"]["code"], "INVALID_ARGUMENT", "{line}");
}
