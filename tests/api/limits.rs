//! Connection limits from outside: sockets that never speak are closed after the preface
//! timeout, and a flood of them (more than max_connections) does not keep a real client out.
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_are_shed_and_clients_still_get_in() {
    let mut s = test_settings();
    s.server.preface_timeout_ms = 500;
    s.server.max_connections = 50;
    let app = spawn_with(s).await;
    let mut idle = idle_sockets(app.addr, 200).await;
    // A real client connecting after them gets served.
    let mut health = health_client(app.addr).await;
    assert_eq!(serving(&mut health).await, 1);
    // The first idle socket was closed by the server (EOF or reset), not left open.
    assert!(closed_within(&mut idle[0], Duration::from_secs(5)).await);
}

/// At the connection limit the oldest silent socket makes room at once (the preface
/// timeout here is a minute), while connections that spoke are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_limit_silent_sockets_make_room_and_talkers_stay() {
    let mut s = test_settings();
    s.server.preface_timeout_ms = 60_000;
    s.server.max_connections = 50;
    let app = spawn_with(s).await;
    let mut early = health_client(app.addr).await;
    assert_eq!(serving(&mut early).await, 1);
    // 200 raw TCP connections that never send the HTTP/2 preface: four times the limit.
    let mut idle = idle_sockets(app.addr, 200).await;
    let started = Instant::now();
    let mut late = health_client(app.addr).await;
    assert_eq!(serving(&mut late).await, 1);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "served only after {:?}",
        started.elapsed()
    );
    // The client that spoke before the flood still has its connection.
    assert_eq!(serving(&mut early).await, 1);
    assert!(closed_within(&mut idle[0], Duration::from_secs(5)).await);
}

async fn idle_sockets(addr: std::net::SocketAddr, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut idle = Vec::new();
    for _ in 0..n {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    idle
}

async fn health_client(addr: std::net::SocketAddr) -> HealthClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
}

async fn serving(h: &mut HealthClient<tonic::transport::Channel>) -> i32 {
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        h.check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .expect("served within 10 s")
    .unwrap();
    r.into_inner().status
}

/// Whether the server closes the socket (EOF or reset) in time: read past its own preface
/// (its SETTINGS frame) to the end.
async fn closed_within(sock: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 256];
    tokio::time::timeout(limit, async {
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// A unary request whose body never finishes arriving is answered DEADLINE_EXCEEDED after
/// server.request_timeout_ms, and the connection goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_request_body_times_out() {
    use futures::StreamExt;
    use leadrouter::grpc::pb;
    let mut s = test_settings();
    s.server.request_timeout_ms = 300;
    let app = spawn_with(s).await;
    // SubmitLeads is a stream and is not cut by the unary timeout: it still answers after
    // longer than 300 ms.
    let slow = futures::stream::once(async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        pb::SubmitLeadsRequest {
            lead: Some(good_lead("s1")),
            ..Default::default()
        }
    });
    let mut answers = app.leads().submit_leads(slow).await.unwrap().into_inner();
    assert!(answers.next().await.unwrap().is_ok());
    // Raw HTTP/2 with a body that never ends: a prefix promising 1,000 bytes, then 10.
    let mut h2 = raw_h2(app.addr).await;
    let started = Instant::now();
    let (_body, status) = partial_call(&mut h2, app.addr, &prefixed(1000)[..15]);
    let status = status.await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not cut: {status:?}"
    );
    assert_eq!(
        status.as_deref(),
        Some("4"),
        "grpc-status DEADLINE_EXCEEDED"
    );
    // A unary call under the limit works.
    app.leads()
        .score_lead(pb::ScoreLeadRequest {
            lead: Some(good_lead("fast")),
        })
        .await
        .unwrap();
}

/// Unfinished messages are charged to one server-wide budget: past server.max_partial_bytes
/// a call gets RESOURCE_EXHAUSTED, and the bytes come back when messages complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_messages_share_a_byte_budget() {
    let mut s = test_settings();
    s.server.max_partial_bytes = 2_500_000;
    let app = spawn_with(s).await;
    let mut h2 = raw_h2(app.addr).await;
    let len = 999_999;
    let msg = prefixed(len);
    // Three calls each hold 900,000 bytes of a 999,999-byte message: 2.7 MB > 2.5 MB.
    let mut calls: Vec<_> = (0..3)
        .map(|_| partial_call(&mut h2, app.addr, &msg[..900_000]))
        .collect();
    let statuses = futures::future::join_all(calls.iter_mut().map(|(_, s)| async {
        tokio::time::timeout(Duration::from_millis(1500), s)
            .await
            .ok()
            .flatten()
    }))
    .await;
    let refused: Vec<usize> = (0..3).filter(|&i| statuses[i].is_some()).collect();
    assert_eq!(refused.len(), 1, "exactly one refused: {statuses:?}");
    assert_eq!(
        statuses[refused[0]].as_deref(),
        Some("8"),
        "RESOURCE_EXHAUSTED"
    );
    // The other two finish their messages (valid protobuf without a lead: INVALID_ARGUMENT),
    // which gives their bytes back ...
    for (i, (body, status)) in calls.into_iter().enumerate() {
        if i == refused[0] {
            continue;
        }
        let mut body = body;
        body.send_data(msg[900_000..].to_vec().into(), true)
            .unwrap();
        assert_eq!(status.await.as_deref(), Some("3"));
    }
    // ... so two more fit again.
    let more: Vec<_> = (0..2)
        .map(|_| partial_call(&mut h2, app.addr, &msg[..900_000]))
        .collect();
    for (mut body, status) in more {
        body.send_data(msg[900_000..].to_vec().into(), true)
            .unwrap();
        assert_eq!(status.await.as_deref(), Some("3"));
    }
}

type Status = std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send>>;

async fn raw_h2(addr: std::net::SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (h2, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    h2
}

/// A gRPC message by hand: the 5-byte prefix, then `len` bytes that parse as a
/// ScoreLeadRequest holding only an unknown field 15 (so a whole one is INVALID_ARGUMENT).
fn prefixed(len: usize) -> Vec<u8> {
    let mut m = vec![0u8];
    m.extend_from_slice(&(len as u32).to_be_bytes());
    m.push(0x7a);
    let mut n = len - 1 - 3;
    for _ in 0..2 {
        m.push((n & 0x7f) as u8 | 0x80);
        n >>= 7;
    }
    m.push(n as u8);
    m.resize(5 + len, b'x');
    m
}

/// Starts ScoreLead by hand and sends `first`, leaving the body open; returns the body and
/// a future of the grpc-status the server answers with.
fn partial_call(
    h2: &mut h2::client::SendRequest<bytes::Bytes>,
    addr: std::net::SocketAddr,
    first: &[u8],
) -> (h2::SendStream<bytes::Bytes>, Status) {
    let req = http::Request::post(format!("http://{addr}/leadrouter.v1.LeadService/ScoreLead"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (resp, mut body) = h2.send_request(req, false).unwrap();
    body.send_data(first.to_vec().into(), false).unwrap();
    let status: Status = Box::pin(async move {
        let resp = resp.await.ok()?;
        if let Some(s) = resp.headers().get("grpc-status") {
            return s.to_str().ok().map(str::to_string);
        }
        let mut b = resp.into_body();
        while b.data().await.is_some() {}
        let t = b.trailers().await.ok()??;
        t.get("grpc-status")?.to_str().ok().map(str::to_string)
    });
    (body, status)
}

/// Oversized leads are refused naming the limit, and the server goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_leads_are_refused_by_name() {
    use leadrouter::grpc::pb;
    let app = spawn_app().await;
    let mut many = good_lead("many");
    for i in 0..10_000 {
        many.attributes.insert(format!("a{i}"), s("x"));
    }
    let err = app
        .leads()
        .submit_lead(pb::SubmitLeadRequest {
            lead: Some(many),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("lead.attributes"),
        "{}",
        err.message()
    );
    // An id just under the message limit: named; one over it: refused by size.
    for (len, code) in [
        (1_000_000, tonic::Code::InvalidArgument),
        (1 << 20, tonic::Code::OutOfRange),
    ] {
        let err = app
            .leads()
            .submit_lead(pb::SubmitLeadRequest {
                lead: Some(good_lead(&"i".repeat(len))),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{len}: {}", err.message());
        if code == tonic::Code::InvalidArgument {
            assert!(err.message().contains("lead.id"), "{}", err.message());
        }
    }
    let ok = app
        .leads()
        .submit_lead(pb::SubmitLeadRequest {
            lead: Some(good_lead("fine")),
            ..Default::default()
        })
        .await;
    assert!(ok.is_ok(), "{ok:?}");
}
