//! The issue-11 memory probe: C connections x N streams, each sending 999,000 bytes of a
//! 999,999-byte ScoreLead message and then nothing. Prints how the calls ended after 5 s
//! ("8" = RESOURCE_EXHAUSTED from the partial-bytes budget, "pending" = still held).
//! Run: `cargo run --example partial_flood -- 127.0.0.1:50051 1 1000` while watching the
//! server's RSS (BENCHMARKS.md, "Partial-message flood").
use std::collections::BTreeMap;
use std::time::Duration;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: partial_flood ADDR CONNECTIONS STREAMS");
        std::process::exit(2);
    }
    let addr: std::net::SocketAddr = args[1].parse().expect("ADDR is host:port");
    let conns: usize = args[2].parse().expect("CONNECTIONS is a number");
    let streams: usize = args[3].parse().expect("STREAMS is a number");
    let mut msg = vec![0u8];
    msg.extend_from_slice(&999_999u32.to_be_bytes());
    msg.resize(5 + 999_999, b'x');
    let part = bytes::Bytes::from(msg[..999_000].to_vec());
    let mut open_bodies = Vec::new();
    let mut calls = Vec::new();
    for _ in 0..conns {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut h2, conn) = h2::client::handshake(tcp).await.expect("HTTP/2");
        tokio::spawn(conn);
        for _ in 0..streams {
            h2 = h2.ready().await.expect("stream slot");
            let req =
                http::Request::post(format!("http://{addr}/leadrouter.v1.LeadService/ScoreLead"))
                    .header("content-type", "application/grpc")
                    .header("te", "trailers")
                    .body(())
                    .expect("request");
            let Ok((resp, mut body)) = h2.send_request(req, false) else {
                break;
            };
            let _ = body.send_data(part.clone(), false);
            open_bodies.push(body);
            calls.push(tokio::spawn(async move {
                match resp.await {
                    Ok(r) => r
                        .headers()
                        .get("grpc-status")
                        .and_then(|s| s.to_str().ok())
                        .unwrap_or("trailers")
                        .to_string(),
                    Err(e) => format!("error: {e}"),
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut ended: BTreeMap<String, usize> = BTreeMap::new();
    for c in calls {
        let key = if c.is_finished() {
            c.await.unwrap_or_else(|e| format!("task: {e}"))
        } else {
            "pending".to_string()
        };
        *ended.entry(key).or_default() += 1;
    }
    println!("{ended:?}");
    drop(open_bodies);
}
