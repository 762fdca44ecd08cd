//! Pools are declared by reps and config, never by traffic: unknown pools are refused (or sent
//! to the default pool when configured), the team has limits, and on Redis a pool flood
//! registers nothing and a lost pool registration heals itself.
use std::time::{Duration, Instant};

use leadrouter::grpc::pb;
use tonic::Code;

use crate::helpers::*;
use crate::redis_server::RedisServer;

fn in_pool(id: &str, pool: &str) -> pb::Rep {
    let mut r = rep(id, 5, &[]);
    r.pool = pool.into();
    r
}

async fn upsert(app: &TestApp, r: pb::Rep) -> Result<(), tonic::Status> {
    app.reps()
        .upsert_rep(pb::UpsertRepRequest { rep: Some(r) })
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_pools_are_refused_declared_ones_route() {
    let mut settings = test_settings();
    settings
        .routing
        .pools
        .insert("configured".into(), Default::default());
    let app = spawn_with(settings).await;
    app.add_rep(in_pool("ann", "emea")).await;
    let e = submit(&app, with(good_lead("x"), &[("pool", s("nowhere"))])).await;
    assert!(format!("{e:?}").contains("nowhere"), "{e:?}");
    assert_invalid(e, "lead.attributes[pool]");
    // Declared by a rep: assigned. Declared by config only, or the default pool with nobody
    // in it: the pool exists, so the answer is about its reps (UNROUTABLE: nobody could ever
    // take the lead), not about the pool's name.
    let d = submit(&app, with(good_lead("e"), &[("pool", s("emea"))]))
        .await
        .unwrap();
    assert_eq!(status_of(&d), pb::RoutingStatus::Assigned);
    let d = submit(&app, with(good_lead("c"), &[("pool", s("configured"))]))
        .await
        .unwrap();
    assert_eq!(status_of(&d), pb::RoutingStatus::Unroutable);
    let d = submit(&app, good_lead("d")).await.unwrap();
    assert_eq!(status_of(&d), pb::RoutingStatus::Unroutable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_pools_can_fall_back_to_the_default_pool() {
    let mut settings = test_settings();
    settings.routing.unknown_pool = leadrouter::domain::routing::UnknownPool::Default;
    let app = spawn_with(settings).await;
    app.add_rep(rep("bob", 5, &[])).await;
    let d = submit(&app, with(good_lead("x"), &[("pool", s("nowhere"))]))
        .await
        .unwrap();
    let r = d.routing.unwrap();
    assert_eq!(r.status(), pb::RoutingStatus::Assigned);
    assert_eq!(r.pool, "default");
    assert!(r.reason.contains("\"nowhere\" is not declared"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_team_has_limits_per_pool_and_in_pools() {
    let mut settings = test_settings();
    settings.routing.max_reps_per_pool = 2;
    settings.routing.max_pools = 2;
    let app = spawn_with(settings).await;
    upsert(&app, in_pool("a1", "a")).await.unwrap();
    upsert(&app, in_pool("a2", "a")).await.unwrap();
    let e = upsert(&app, in_pool("a3", "a")).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("routing.max_reps_per_pool"), "{e:?}");
    // Changing a rep already there is not growth.
    upsert(&app, in_pool("a2", "a")).await.unwrap();
    upsert(&app, in_pool("b1", "b")).await.unwrap();
    let e = upsert(&app, in_pool("c1", "c")).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("routing.max_pools"), "{e:?}");
    // Moving the only rep of b to c keeps two pools.
    upsert(&app, in_pool("b1", "c")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_traffic_registers_no_pool_and_a_lost_one_heals() {
    let server = RedisServer::start();
    let mut settings = test_settings();
    settings.store.url = server.url();
    let app = spawn_with(settings).await;
    app.add_rep(in_pool("ann", "emea")).await;
    let pools = || {
        let mut p: Vec<String> = server
            .cli(&["smembers", "lr:pools"])
            .lines()
            .map(str::to_string)
            .collect();
        p.sort();
        p
    };
    let before = pools();
    for i in 0..200 {
        let pool = format!("flood-{i}");
        let e = submit(
            &app,
            with(good_lead(&format!("f{i}")), &[("pool", s(&pool))]),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
    }
    assert_eq!(pools(), before, "the flood registered pools");
    // An assigned lead of emea, then its pool's registration is lost.
    let d = submit(&app, with(good_lead("e1"), &[("pool", s("emea"))]))
        .await
        .unwrap();
    assert_eq!(status_of(&d), pb::RoutingStatus::Assigned);
    server.cli(&["srem", "lr:pools", "emea"]);
    let started = Instant::now();
    let found = loop {
        let got = app
            .routing()
            .get_assignment(pb::GetAssignmentRequest {
                lead_id: "e1".into(),
            })
            .await;
        if got.is_ok() || started.elapsed() > Duration::from_secs(10) {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(found.is_ok(), "not healed: {found:?}");
    assert!(pools().contains(&"emea".to_string()));
    app.routing()
        .close_assignment(pb::CloseAssignmentRequest {
            lead_id: "e1".into(),
            outcome: pb::Outcome::Won as i32,
            value: None,
        })
        .await
        .unwrap();
}
