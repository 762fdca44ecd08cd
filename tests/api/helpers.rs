//! Spawning a server on a free port, clients, and builders for leads and reps.
use std::path::PathBuf;
use std::sync::Arc;

use leadrouter::app::App;
use leadrouter::config::Settings;
use leadrouter::engine::Engine;
use leadrouter::grpc::pb::{
    self, lead_service_client::LeadServiceClient, model_service_client::ModelServiceClient,
    rep_service_client::RepServiceClient, report_service_client::ReportServiceClient,
    routing_service_client::RoutingServiceClient,
};
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn shipped_model() -> PathBuf {
    repo_path("models/bank-default.json")
}

/// A Friday, 11:00 in Chicago: inside every example shift.
pub fn friday() -> jiff::Timestamp {
    "2026-11-27T17:00:00Z".parse().unwrap()
}

pub struct TestApp {
    pub channel: Channel,
    pub addr: std::net::SocketAddr,
    pub engine: Arc<Engine>,
    /// The admin listener (/metrics, /healthz, /readyz), when configured.
    pub admin: Option<std::net::SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A fresh directory (kept for the test run) holding a copy of the shipped model, for
/// `model.dir`: artifacts sent to ReloadModel are kept there, never in the repository.
pub fn model_dir() -> PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    std::fs::copy(shipped_model(), dir.join("bank-default.json")).unwrap();
    dir
}

/// Settings for tests: free port, shipped model, no reps unless a test adds them.
pub fn test_settings() -> Settings {
    let mut s = Settings::load(None).unwrap();
    s.server.addr = "127.0.0.1:0".into();
    s.admin.addr = "127.0.0.1:0".into();
    s.model.path = shipped_model().display().to_string();
    s.model.dir = model_dir().display().to_string();
    s.reps.file = String::new();
    s.server.shutdown_grace_ms = 2000;
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_with(test_settings()).await
}

pub async fn spawn_with(settings: Settings) -> TestApp {
    spawn_with_clock(settings, Arc::new(friday)).await
}

/// A clock a test moves by hand.
#[derive(Clone)]
pub struct TestClock(Arc<std::sync::atomic::AtomicI64>);

impl TestClock {
    pub fn at(t: &str) -> TestClock {
        let t: jiff::Timestamp = t.parse().unwrap();
        TestClock(Arc::new(t.as_millisecond().into()))
    }

    pub fn set(&self, t: &str) {
        let t: jiff::Timestamp = t.parse().unwrap();
        self.0
            .store(t.as_millisecond(), std::sync::atomic::Ordering::SeqCst);
    }

    pub fn clock(&self) -> leadrouter::engine::Clock {
        let ms = self.0.clone();
        Arc::new(move || {
            jiff::Timestamp::from_millisecond(ms.load(std::sync::atomic::Ordering::SeqCst)).unwrap()
        })
    }
}

pub async fn spawn_with_clock(settings: Settings, clock: leadrouter::engine::Clock) -> TestApp {
    spawn_inner(settings, clock).await
}

/// A server with TLS on: `channel` is a lazy plaintext channel (tests make their own TLS ones).
pub async fn spawn_with_tls(settings: Settings) -> TestApp {
    spawn_inner(settings, Arc::new(friday)).await
}

async fn spawn_inner(settings: Settings, clock: leadrouter::engine::Clock) -> TestApp {
    let tls = !settings.server.tls_cert.is_empty();
    if std::env::var_os("TEST_LOG").is_some() {
        leadrouter::telemetry::init(&settings.log, &settings.tracing).unwrap();
    }
    let app = App::build_with_clock(settings, clock)
        .await
        .expect("app builds");
    let addr = app.local_addr();
    let admin = app.admin_addr();
    let engine = app.engine();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    let endpoint = Channel::from_shared(format!("http://{addr}")).unwrap();
    let channel = if tls {
        endpoint.connect_lazy()
    } else {
        endpoint.connect().await.expect("connects")
    };
    TestApp {
        channel,
        addr,
        engine,
        admin,
        stop: Some(tx),
        handle: Some(handle),
    }
}

/// Typed clients over a connection; both an in-process app and a child process offer them.
pub trait Clients {
    fn channel(&self) -> Channel;
    fn leads(&self) -> LeadServiceClient<Channel> {
        LeadServiceClient::new(self.channel())
    }
    fn routing(&self) -> RoutingServiceClient<Channel> {
        RoutingServiceClient::new(self.channel())
    }
    fn reps(&self) -> RepServiceClient<Channel> {
        RepServiceClient::new(self.channel())
    }
    fn models(&self) -> ModelServiceClient<Channel> {
        ModelServiceClient::new(self.channel())
    }
    fn reports(&self) -> ReportServiceClient<Channel> {
        ReportServiceClient::new(self.channel())
    }
    /// The live model's version, as GetModel reports it.
    fn model_version(&self) -> impl std::future::Future<Output = String> + Send {
        let mut c = self.models();
        async move {
            c.get_model(pb::GetModelRequest {})
                .await
                .unwrap()
                .into_inner()
                .model_version
        }
    }
}

impl Clients for TestApp {
    fn channel(&self) -> Channel {
        self.channel.clone()
    }
}

impl Clients for Process {
    fn channel(&self) -> Channel {
        self.channel.clone()
    }
}

impl TestApp {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stops the server and waits for it to finish draining.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.handle.take().unwrap().await.unwrap()
    }

    pub async fn add_rep(&self, rep: pb::Rep) -> pb::UpsertRepResponse {
        self.reps()
            .upsert_rep(pb::UpsertRepRequest { rep: Some(rep) })
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn load_of(&self, rep_id: &str) -> u32 {
        self.reps()
            .get_rep(pb::GetRepRequest {
                rep_id: rep_id.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .load
    }
}

pub fn rep(id: &str, capacity: i32, skills: &[(&str, f64)]) -> pb::Rep {
    pb::Rep {
        id: id.into(),
        name: id.into(),
        pool: "default".into(),
        skills: skills.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        capacity,
        active: true,
        ..Default::default()
    }
}

pub fn s(v: &str) -> pb::AttributeValue {
    pb::AttributeValue {
        kind: Some(pb::attribute_value::Kind::StringValue(v.into())),
    }
}
pub fn n(v: f64) -> pb::AttributeValue {
    pb::AttributeValue {
        kind: Some(pb::attribute_value::Kind::NumberValue(v)),
    }
}
pub fn b(v: bool) -> pb::AttributeValue {
    pb::AttributeValue {
        kind: Some(pb::attribute_value::Kind::BoolValue(v)),
    }
}

/// A lead with a full set of bank-marketing attributes: a retired client previously converted,
/// contacted by cellular in a low-rate month; the model should like it.
pub fn good_lead(id: &str) -> pb::Lead {
    lead(
        id,
        &[
            ("age", n(65.0)),
            ("job", s("retired")),
            ("marital", s("married")),
            ("education", s("university.degree")),
            ("default", s("no")),
            ("housing", s("no")),
            ("loan", s("no")),
            ("contact", s("cellular")),
            ("month", s("oct")),
            ("day_of_week", s("wed")),
            ("campaign", n(1.0)),
            ("pdays", n(3.0)),
            ("previous", n(2.0)),
            ("poutcome", s("success")),
            ("emp.var.rate", n(-3.4)),
            ("cons.price.idx", n(92.431)),
            ("cons.conf.idx", n(-26.9)),
            ("euribor3m", n(0.754)),
            ("nr.employed", n(5017.5)),
        ],
    )
}

/// A lead the model should dislike: many calls, never converted, high-rate May.
pub fn poor_lead(id: &str) -> pb::Lead {
    lead(
        id,
        &[
            ("age", n(35.0)),
            ("job", s("blue-collar")),
            ("contact", s("telephone")),
            ("month", s("may")),
            ("campaign", n(12.0)),
            ("pdays", n(999.0)),
            ("previous", n(0.0)),
            ("poutcome", s("nonexistent")),
            ("emp.var.rate", n(1.1)),
            ("cons.price.idx", n(93.994)),
            ("cons.conf.idx", n(-36.4)),
            ("euribor3m", n(4.857)),
            ("nr.employed", n(5191.0)),
        ],
    )
}

pub fn lead(id: &str, attrs: &[(&str, pb::AttributeValue)]) -> pb::Lead {
    pb::Lead {
        id: id.into(),
        attributes: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}

pub fn with(mut l: pb::Lead, attrs: &[(&str, pb::AttributeValue)]) -> pb::Lead {
    for (k, v) in attrs {
        l.attributes.insert(k.to_string(), v.clone());
    }
    l
}

/// Sends `leads` through one SubmitLeads stream; the answers, in order.
pub async fn submit_stream(app: &TestApp, leads: Vec<pb::Lead>) -> Vec<pb::SubmitLeadsResponse> {
    use tokio_stream::StreamExt;
    let reqs: Vec<pb::SubmitLeadsRequest> = leads
        .into_iter()
        .map(|l| pb::SubmitLeadsRequest {
            lead: Some(l),
            ..Default::default()
        })
        .collect();
    let mut stream = app
        .leads()
        .submit_leads(tokio_stream::iter(reqs))
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(msg) = stream.next().await {
        out.push(msg.unwrap());
    }
    out
}

pub async fn submit(app: &TestApp, lead: pb::Lead) -> Result<pb::DecisionRecord, tonic::Status> {
    app.leads()
        .submit_lead(pb::SubmitLeadRequest {
            lead: Some(lead),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().decision.unwrap())
}

pub fn status_of(d: &pb::DecisionRecord) -> pb::RoutingStatus {
    d.routing.as_ref().unwrap().status()
}

pub fn rep_of(d: &pb::DecisionRecord) -> String {
    d.routing
        .as_ref()
        .unwrap()
        .assignment
        .as_ref()
        .map(|a| a.rep_id.clone())
        .unwrap_or_default()
}

/// Asserts an INVALID_ARGUMENT whose message names `field`.
pub fn assert_invalid<T: std::fmt::Debug>(r: Result<T, tonic::Status>, field: &str) {
    let e = r.expect_err("expected INVALID_ARGUMENT");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains(field),
        "message {:?} should name {field}",
        e.message()
    );
}

/// A leadrouter binary running as its own process, configured through environment variables.
pub struct Process {
    pub child: std::process::Child,
    pub channel: Channel,
    /// host:port it serves on.
    pub addr: String,
    /// The server's JSON log lines after "leadrouter serving".
    logs: std::sync::Mutex<std::sync::mpsc::Receiver<String>>,
}

impl Process {
    /// Starts `leadrouter serve` with `env` and waits for its "serving" log line.
    pub async fn start(env: &[(&str, &str)]) -> Process {
        Process::start_in(&repo_path(""), env).await
    }

    /// `start`, with `dir` as the working directory.
    pub async fn start_in(dir: &std::path::Path, env: &[(&str, &str)]) -> Process {
        use std::io::{BufRead, BufReader};
        use std::time::{Duration, Instant};
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_leadrouter"));
        cmd.arg("serve")
            .current_dir(dir)
            .env("LEADROUTER__MODEL__DIR", model_dir())
            .env("LEADROUTER__SERVER__ADDR", "127.0.0.1:0")
            .env("LEADROUTER__ADMIN__ADDR", "127.0.0.1:0")
            .env("LEADROUTER__LOG__FORMAT", "json")
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    // Keep draining so the child never blocks on a full pipe.
                    continue;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("server starts and logs its address");
            let v: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|_| panic!("log line is not JSON: {line}"));
            if v["fields"]["message"] == "leadrouter serving" {
                break v["fields"]["addr"].as_str().unwrap().to_string();
            }
        };
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Process {
            child,
            channel,
            addr,
            logs: std::sync::Mutex::new(rx),
        }
    }

    /// Waits up to `within` for a log line whose message contains `text`; returns its JSON.
    pub fn wait_for_log(
        &self,
        text: &str,
        within: std::time::Duration,
    ) -> Option<serde_json::Value> {
        let deadline = std::time::Instant::now() + within;
        let rx = self.logs.lock().unwrap();
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
                .ok()?;
            let v: serde_json::Value = serde_json::from_str(&line).ok()?;
            if v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(text))
            {
                return Some(v);
            }
        }
    }

    /// Every log line received within `within` from now (and not taken by `wait_for_log`).
    pub fn logs_for(&self, within: std::time::Duration) -> Vec<String> {
        let deadline = std::time::Instant::now() + within;
        let rx = self.logs.lock().unwrap();
        let mut out = Vec::new();
        while let Ok(l) =
            rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
        {
            out.push(l);
        }
        out
    }

    /// Sends a signal by name (e.g. "HUP") with kill(1).
    pub fn signal(&self, name: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name}");
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if started.elapsed() > std::time::Duration::from_secs(15) {
                let _ = self.child.kill();
                panic!("leadrouter did not exit after SIGTERM");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Rows of the bank data set as leads (every column but the label and the leaky `duration`,
/// all as strings, as a form would post them) with their label, from row `skip` on.
pub fn bank_leads(prefix: &str, skip: usize, n: usize) -> Vec<(pb::Lead, bool)> {
    let table = leadrouter::training::data::read(
        &repo_path("data/bank-marketing/bank-additional-full.csv.gz"),
        None,
    )
    .unwrap();
    let y = table.column("y").unwrap();
    // Evenly spaced rows, so a sample spans the file: it is ordered by date, and its start
    // (May 2008) really has drifted from the whole.
    let step = (table.rows.len() / n.max(1)).max(1);
    table
        .rows
        .iter()
        .skip(skip)
        .step_by(step)
        .take(n)
        .enumerate()
        .map(|(i, row)| {
            let attrs: Vec<(&str, pb::AttributeValue)> = table
                .headers
                .iter()
                .zip(row)
                .filter(|(h, _)| *h != "y" && *h != "duration")
                .map(|(h, v)| (h.as_str(), s(v)))
                .collect();
            (lead(&format!("{prefix}-{i}"), &attrs), row[y] == "yes")
        })
        .collect()
}

/// Runs the `leadrouter` binary from the repository root with extra environment.
pub fn cli(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_leadrouter"));
    cmd.args(args).current_dir(repo_path(""));
    // Many servers run at once: none may take the default admin port.
    cmd.env("LEADROUTER__ADMIN__ADDR", "127.0.0.1:0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}
