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
    let port = app.addr.port();
    // 200 raw TCP connections that never send the HTTP/2 preface: four times the limit.
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    // A real client connecting after them gets served once the idle ones are shed.
    let started = Instant::now();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        HealthClient::new(channel).check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .expect("served within 10 s")
    .unwrap();
    assert_eq!(r.into_inner().status, 1);
    eprintln!(
        "health served {:?} after 200 idle sockets",
        started.elapsed()
    );
    // The first idle socket was closed by the server (EOF or reset), not left open: read
    // past the server's own preface (its SETTINGS frame) to the end.
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match idle[0].read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an idle socket stayed open");
}
