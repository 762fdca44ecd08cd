//! The web console from outside: a real server with keys, leads routed over gRPC, the
//! console's access rules checked over raw HTTP, then its pages driven in headless Chromium
//! (tests/browser/console.py, Playwright) and every number it reads compared with the API.
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use leadrouter::auth::{Role, new_key};
use leadrouter::grpc::pb;
use serde_json::Value;

use crate::helpers::*;

fn keyed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// One HTTP/1.1 request: (status, headers lower-cased, body).
async fn http(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, HashMap<String, String>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

struct Browser {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Browser {
    fn start(base: &str, token: &str) -> Browser {
        let python = std::env::var("LEADROUTER_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = repo_path("tests/browser/console.py");
        let mut cmd = Command::new(&python);
        cmd.arg(&script).arg(base).arg(token);
        // Screenshots for docs/ only when asked for (never written by a plain test run).
        if let Ok(dir) = std::env::var("LEADROUTER_CONSOLE_SHOTS") {
            cmd.arg(dir);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {python} {script:?} ({e}): the console tests need Python with Playwright and Debian's chromium; .ci/run installs both")
            });
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Browser {
            child,
            stdin,
            stdout,
        }
    }

    /// The next step the script reports; panics if it is another step or the script died.
    fn step(&mut self, name: &str) -> Value {
        let mut line = String::new();
        tokio::task::block_in_place(|| self.stdout.read_line(&mut line)).unwrap();
        if line.is_empty() {
            let status = self.child.wait().unwrap();
            panic!("the browser script ended ({status}) before step {name:?}; its stderr is above");
        }
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["step"], name, "{v}");
        v
    }

    fn send(&mut self, v: Value) {
        writeln!(self.stdin, "{v}").unwrap();
        self.stdin.flush().unwrap();
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not text: {v}"))
}

fn number(v: &Value) -> f64 {
    text(v)
        .trim_end_matches('+')
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_what_the_api_says_live_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let (admin_key, l1) = new_key("boss", Role::Admin).unwrap();
    let (crm_key, l2) = new_key("crm", Role::Crm).unwrap();
    let (mk_key, l3) = new_key("mk", Role::Marketing).unwrap();
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, format!("{l1}\n{l2}\n{l3}")).unwrap();
    let mut s = test_settings();
    s.auth.keys_file = keys.display().to_string();
    let app = spawn_with(s).await;
    let admin = app.admin.expect("admin listener");

    for (id, cap) in [("ana", 3), ("ben", 2), ("cy", 1)] {
        app.reps()
            .upsert_rep(keyed(
                pb::UpsertRepRequest {
                    rep: Some(rep(id, cap, &[])),
                },
                &admin_key,
            ))
            .await
            .unwrap();
    }
    // Six places, eight leads: six assigned, two queued; then three closed (two won), which
    // lets the two queued leads through.
    let mut statuses = Vec::new();
    for i in 0..8 {
        let id = format!("c{i}");
        let lead = if i % 2 == 0 {
            good_lead(&id)
        } else {
            poor_lead(&id)
        };
        statuses.push(status_of(&submit_keyed(&app, lead, &admin_key).await));
    }
    let queued = statuses
        .iter()
        .filter(|s| **s == pb::RoutingStatus::Queued)
        .count();
    assert_eq!((statuses.len() - queued, queued), (6, 2), "{statuses:?}");
    for (id, outcome) in [
        ("c0", pb::Outcome::Won),
        ("c1", pb::Outcome::Won),
        ("c2", pb::Outcome::Lost),
    ] {
        app.routing()
            .close_assignment(keyed(
                pb::CloseAssignmentRequest {
                    lead_id: id.into(),
                    outcome: outcome.into(),
                    value: None,
                },
                &admin_key,
            ))
            .await
            .unwrap();
    }

    // Access: no key, a bad key and a marketing key are refused; a browser is sent to log in;
    // ?token= opens a session and drops the token from the URL; /metrics stays open.
    let (status, h, _) = http(admin, "/ui", &[]).await;
    assert_eq!(status, 401);
    assert!(h["www-authenticate"].starts_with("Bearer"));
    let (status, h, _) = http(admin, "/ui/queue", &[("accept", "text/html")]).await;
    assert_eq!(
        (status, h["location"].as_str()),
        (303, "/ui/login?next=%2Fui%2Fqueue")
    );
    assert_eq!(
        http(admin, "/ui", &[("authorization", "Bearer lr_nope")])
            .await
            .0,
        401
    );
    let bearer = |t: &str| format!("Bearer {t}");
    assert_eq!(
        http(admin, "/ui/model", &[("authorization", &bearer(&mk_key))])
            .await
            .0,
        403
    );
    assert_eq!(http(admin, "/ui/events", &[]).await.0, 401);
    let (status, _, body) = http(admin, "/ui/model", &[("authorization", &bearer(&crm_key))]).await;
    assert_eq!(status, 200);
    assert!(
        body.contains(&live_version(&app)),
        "the model page names the live version"
    );
    let (status, h, _) = http(
        admin,
        &format!("/ui/forecast?token={crm_key}&period=week"),
        &[],
    )
    .await;
    assert_eq!(
        (status, h["location"].as_str()),
        (303, "/ui/forecast?period=week")
    );
    let cookie = h["set-cookie"].split(';').next().unwrap().to_string();
    assert!(h["set-cookie"].contains("HttpOnly") && h["set-cookie"].contains("SameSite=Strict"));
    assert_eq!(
        http(admin, "/ui/forecast", &[("cookie", &cookie)]).await.0,
        200
    );
    assert_eq!(http(admin, "/metrics", &[]).await.0, 200);

    // The browser.
    let mut b = Browser::start(&format!("http://{admin}"), &crm_key);
    let login = b.step("login");
    assert!(text(&login["login_url"]).contains("/ui/login"), "{login}");
    let team = b.step("team");
    let perf = app
        .reports()
        .get_performance(keyed(
            pb::ReportRequest {
                period: "month".into(),
                by: "rep".into(),
                from: "2026-11-01".into(),
                to: "2026-11-30".into(),
                ..Default::default()
            },
            &crm_key,
        ))
        .await
        .unwrap()
        .into_inner();
    let listed = list_reps(&app, &crm_key).await;
    assert_eq!(listed.len(), 3);
    for r in &listed {
        let id = &r.rep.as_ref().unwrap().id;
        let row = &team["reps"][id];
        assert_eq!(number(&row["load"]), f64::from(r.load), "{id}: {row}");
        assert_eq!(
            number(&row["capacity"]),
            f64::from(r.effective_capacity),
            "{id}"
        );
        let p = perf.rows.iter().find(|p| &p.group == id).unwrap();
        assert_eq!(number(&row["assigned"]), p.assigned, "{id}");
        assert_eq!(number(&row["won"]), p.won, "{id}");
    }
    assert_eq!(perf.rows.iter().map(|p| p.won).sum::<f64>(), 2.0);

    // A new assignment shows on the open page without a reload, within a second.
    b.send(serde_json::json!({ "lead": "live-1" }));
    b.step("waiting");
    let d = submit_keyed(&app, good_lead("live-1"), &admin_key).await;
    let chosen = rep_of(&d);
    assert!(!chosen.is_empty(), "a place was free: {d:?}");
    let live = b.step("live");
    assert_eq!(live["reloaded"], false);
    assert!(live["event_ms"].as_f64().unwrap() < 1000.0, "{live}");
    assert!(live["board_ms"].as_f64().unwrap() < 2000.0, "{live}");
    assert_eq!(text(&live["kind"]), "assigned");
    for r in list_reps(&app, &crm_key).await {
        let id = &r.rep.as_ref().unwrap().id;
        assert_eq!(
            number(&live["reps"][id]["load"]),
            f64::from(r.load),
            "{id} after the live lead"
        );
    }

    // The lead's decision record: the SubmitLead answer's score, segment and chosen rep.
    let lead = b.step("lead");
    let f = &lead["fields"];
    let score = d.score.as_ref().unwrap();
    assert_eq!(
        number(&f["probability"]),
        (score.probability * 1e4).round() / 1e4
    );
    assert_eq!(number(&f["score"]), f64::from(score.score));
    assert_eq!(text(&f["segment"]), d.segment.as_ref().unwrap().name);
    assert_eq!(text(&f["rep"]), chosen);
    assert_eq!(text(&lead["candidates"][&chosen]["verdict"]), "chosen");
    assert_eq!(
        lead["candidates"].as_object().unwrap().len(),
        3,
        "every rep of the pool: {lead}"
    );
    assert_eq!(lead["events"], serde_json::json!(["assigned"]));

    // Queue: nothing waits now (the closes drained it); the page agrees with ListAssignments.
    let queue = b.step("queue");
    let queued = app
        .routing()
        .list_assignments(keyed(
            pb::ListAssignmentsRequest {
                pool: "default".into(),
                states: vec![pb::ListState::Queued.into()],
                ..Default::default()
            },
            &crm_key,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        number(&queue["pools"]["default"]["depth"]),
        queued.assignments.len() as f64
    );

    let forecast = b.step("forecast");
    for p in &perf.rows {
        let row = &forecast["groups"][&p.group];
        assert_eq!(number(&row["won"]), p.won, "{}: {forecast}", p.group);
        assert_eq!(
            number(&row["expected"]),
            (p.expected_wins * 100.0).round() / 100.0
        );
    }

    let model = b.step("model");
    assert_eq!(text(&model["fields"]["version"]), live_version(&app));
    assert!(
        model["psi"].as_object().unwrap().contains_key("age"),
        "{model}"
    );
    assert!(
        number(&model["psi"]["age"]["observed"]) >= 9.0,
        "nine leads scored: {model}"
    );

    let logout = b.step("logout");
    assert!(text(&logout["url"]).contains("/ui/login"), "{logout}");
    let errors = b.step("errors");
    assert_eq!(
        errors["errors"],
        serde_json::json!([]),
        "console errors in the browser"
    );
    assert!(b.child.wait().unwrap().success());
}

async fn submit_keyed(app: &TestApp, lead: pb::Lead, key: &str) -> pb::DecisionRecord {
    let msg = pb::SubmitLeadRequest {
        lead: Some(lead),
        ..Default::default()
    };
    let answer = app.leads().submit_lead(keyed(msg, key)).await.unwrap();
    answer.into_inner().decision.unwrap()
}

async fn list_reps(app: &TestApp, key: &str) -> Vec<pb::RepStatus> {
    let answer = app
        .reps()
        .list_reps(keyed(pb::ListRepsRequest::default(), key))
        .await;
    answer.unwrap().into_inner().reps
}

fn live_version(app: &TestApp) -> String {
    app.engine.model().unwrap().model.version().to_string()
}

/// Without keys the console serves on a loopback admin listener only; the queue board lists
/// the queue with places and the unroutable leads with their reason; the lookup escapes
/// what it echoes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_keys_the_console_is_loopback_only_and_boards_show_queue_and_unroutable() {
    let app = spawn_app().await;
    let admin = app.admin.unwrap();
    app.add_rep(rep("de", 1, &[("language:de", 1.0)])).await;
    let fr = with(good_lead("fr"), &[("language", s("fr"))]);
    let d = submit(&app, fr).await.unwrap();
    assert_eq!(status_of(&d), pb::RoutingStatus::Unroutable);
    for id in ["q1", "q2", "q3"] {
        submit(&app, with(good_lead(id), &[("language", s("de"))]))
            .await
            .unwrap();
    }
    let (status, _, body) = http(admin, "/ui/queue", &[]).await;
    assert_eq!(status, 200);
    let reason = d.routing.unwrap().reason.replace('"', "&quot;");
    assert!(reason.contains("language:fr"));
    assert!(
        body.contains(&format!("<td data-k=\"reason\">{reason}</td>")),
        "{body}"
    );
    assert!(body.contains("<tr data-pool=\"default\"><td><b>default</b></td><td class=\"muted\">all</td><td class=\"n\" data-k=\"depth\">2</td>"), "{body}");
    assert!(
        body.contains("<tr data-lead=\"q3\"><td class=\"n\" data-k=\"place\">2</td>"),
        "{body}"
    );
    let (_, _, body) = http(admin, "/ui/lead?id=q3", &[]).await;
    assert!(body.contains("queued in default, place 2"), "{body}");
    let (_, _, body) = http(admin, "/ui/lead?id=%3Cscript%3Ex", &[]).await;
    assert!(!body.contains("<script>x"), "{body}");
    let (_, _, body) = http(admin, "/ui/model", &[]).await;
    assert!(body.contains("first model of this replica"), "{body}");

    let mut s = test_settings();
    s.admin.addr = "0.0.0.0:0".into();
    let open = spawn_with(s).await;
    let port = open.admin.unwrap().port();
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let (status, _, body) = http(local, "/ui", &[]).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("auth.keys_file"));
    assert_eq!(http(local, "/metrics", &[]).await.0, 200);
}
