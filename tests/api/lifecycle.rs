//! Health, reflection, env configuration and graceful shutdown of the real binary.
use std::process::Command;
use std::time::{Duration, Instant};

use tokio_stream::StreamExt;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

use crate::helpers::*;

async fn health(channel: tonic::transport::Channel, service: &str) -> ServingStatus {
    let r = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap();
    r.into_inner().status()
}

#[tokio::test]
async fn health_is_serving_for_every_service_and_stop_drains() {
    let app = spawn_app().await;
    for svc in [
        "",
        "leadrouter.v1.LeadService",
        "leadrouter.v1.RoutingService",
        "leadrouter.v1.ModelService",
    ] {
        assert_eq!(
            health(app.channel.clone(), svc).await,
            ServingStatus::Serving,
            "{svc}"
        );
    }
    app.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn reflection_lists_the_services() {
    let app = spawn_app().await;
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(app.channel.clone())
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("{resp:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "leadrouter.v1.LeadService",
        "leadrouter.v1.RoutingService",
        "leadrouter.v1.RepService",
        "leadrouter.v1.ModelService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
}

/// Starts the real binary configured only through LEADROUTER__* variables, checks it serves,
/// then stops it with SIGTERM.
#[tokio::test]
async fn binary_reads_env_config_and_exits_cleanly_on_sigterm() {
    let p = Process::start(&[("LEADROUTER__SERVER__SHUTDOWN_GRACE_MS", "3000")]).await;
    assert_eq!(health(p.channel.clone(), "").await, ServingStatus::Serving);
    // The example reps were seeded from deploy/reps.example.toml.
    let reps = p
        .reps()
        .list_reps(leadrouter::grpc::pb::ListRepsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .reps;
    assert_eq!(reps.len(), 35);
    let started = Instant::now();
    let status = p.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_broken_config_or_model_stops_startup_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_leadrouter"))
        .arg("serve")
        .current_dir(repo_path(""))
        .env("LEADROUTER__MODEL__PATH", "/no/such/model.json")
        .env("LEADROUTER__SERVER__ADDR", "127.0.0.1:0")
        .env("LEADROUTER__ADMIN__ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/no/such/model.json"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_leadrouter"))
        .args(["serve", "--config", "/no/such/config.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}
