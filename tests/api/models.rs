//! ModelService: inspection, hot reload, refusal of bad artifacts, and cold start.
use leadrouter::domain::model::Artifact;
use leadrouter::grpc::pb;

use crate::helpers::*;

/// A valid artifact that differs from the shipped one (shifted intercept), written to `dir`.
pub fn variant_model(dir: &std::path::Path, shift: f64) -> (std::path::PathBuf, String) {
    let bytes = std::fs::read(shipped_model()).unwrap();
    let mut a = Artifact::from_json(&bytes).unwrap();
    a.intercept += shift;
    let (a, bytes) = a.seal();
    let path = dir.join(format!("variant-{shift}.json"));
    std::fs::write(&path, bytes).unwrap();
    (path, a.model_version)
}

async fn reload(app: &TestApp, path: &str) -> Result<pb::ReloadModelResponse, tonic::Status> {
    app.models()
        .reload_model(pb::ReloadModelRequest {
            path: path.into(),
            ..crate::gate_rows::reload_with_rows(vec![], false)
        })
        .await
        .map(|r| r.into_inner())
}

async fn scored_version(app: &TestApp) -> String {
    let r = app
        .leads()
        .score_lead(pb::ScoreLeadRequest {
            lead: Some(good_lead("x")),
        })
        .await
        .unwrap();
    r.into_inner()
        .decision
        .unwrap()
        .score
        .unwrap()
        .model_version
}

#[tokio::test]
async fn get_model_describes_the_live_artifact() {
    let app = spawn_app().await;
    let info = app
        .models()
        .get_model(pb::GetModelRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(info.loaded);
    assert_eq!(info.format_version, 2);
    assert!(
        !info.refit,
        "the shipped model's holdout describes its own weights"
    );
    assert_eq!(info.label, "y");
    let h = info.holdout.unwrap();
    assert!(h.auc >= 0.80, "shipped model AUC {}", h.auc);
    assert_eq!(h.calibration.len(), 10);
    assert_eq!(h.calibration.iter().map(|b| b.count).sum::<u64>(), h.n);
    assert!(
        info.features
            .iter()
            .any(|f| f.attribute == "job" && f.kind == "categorical")
    );
    assert!(
        !info.features.iter().any(|f| f.attribute == "duration"),
        "duration leaks the label"
    );
    assert_eq!(info.grade_thresholds.len(), 3);
    assert_eq!(info.model_version, scored_version(&app).await);
}

#[tokio::test]
async fn reload_swaps_and_bad_artifacts_keep_the_old_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings();
    settings.model.dir = dir.path().display().to_string();
    let app = spawn_with(settings).await;
    let old = scored_version(&app).await;
    let (path, version) = variant_model(dir.path(), 0.5);
    let r = reload(&app, path.to_str().unwrap()).await.unwrap();
    assert_eq!(r.previous_version, old);
    assert_eq!(r.model.unwrap().model_version, version);
    assert_eq!(scored_version(&app).await, version);

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, b"{\"format_version\": 2, \"weights\": [").unwrap();
    let e = reload(&app, bad.to_str().unwrap()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("model refused"), "{e:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &bad,
        text.replace("\"format_version\": 2", "\"format_version\": 9"),
    )
    .unwrap();
    let e = reload(&app, bad.to_str().unwrap()).await.unwrap_err();
    assert!(e.message().contains("format_version 9"), "{e:?}");
    std::fs::write(&bad, text.replace("\"seed\": 42", "\"seed\": 43")).unwrap();
    let e = reload(&app, bad.to_str().unwrap()).await.unwrap_err();
    assert!(e.message().contains("content hash"), "{e:?}");
    let e = reload(&app, "/no/such/model.json").await.unwrap_err();
    assert!(e.message().contains("not under model.dir"), "{e:?}");
    let e = reload(&app, "no-such-model.json").await.unwrap_err();
    assert!(e.message().contains("no artifact"), "{e:?}");
    assert_eq!(
        scored_version(&app).await,
        version,
        "the live model survives every refusal"
    );
    // An empty path reloads the live model's file.
    assert_eq!(
        reload(&app, "").await.unwrap().model.unwrap().model_version,
        version
    );
}

#[tokio::test]
async fn without_a_model_leads_get_the_base_rate_and_still_route() {
    let mut settings = test_settings();
    settings.model.path = String::new();
    settings.model.cold_start_base_rate = 0.12;
    let app = spawn_with(settings).await;
    app.add_rep(rep("r", 1, &[])).await;
    let d = submit(&app, good_lead("l")).await.unwrap();
    let sc = d.score.clone().unwrap();
    assert!(sc.cold_start);
    assert_eq!(
        (sc.probability, sc.grade.as_str(), sc.model_version.as_str()),
        (0.12, "C", "cold-start")
    );
    assert!(sc.top_positive.is_empty());
    assert_eq!(d.segment.as_ref().unwrap().name, "nurture");
    assert_eq!(status_of(&d), pb::RoutingStatus::Assigned);
    let info = app
        .models()
        .get_model(pb::GetModelRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!info.loaded);
    assert_eq!(info.cold_start, Some(true), "GetModel says cold start");
    let health = app
        .models()
        .get_model_health(pb::GetModelHealthRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        health.cold_start == Some(true) && !health.loaded,
        "{health:?}"
    );
    assert_eq!(health.model_version, "cold-start");
    assert_invalid(reload(&app, "").await, "path");
    let r = reload(&app, "bank-default.json").await.unwrap();
    assert_eq!(r.previous_version, "");
    assert!(
        !submit(&app, good_lead("l2"))
            .await
            .unwrap()
            .score
            .unwrap()
            .cold_start
    );
}

/// The probe from issue 11: ReloadModel cannot read outside model.dir, never echoes a file's
/// content, cannot be tied up by a FIFO or a device, and the same refusal comes back whether
/// or not a path outside exists.
#[tokio::test]
async fn reload_reads_only_regular_files_under_model_dir_and_echoes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings();
    settings.model.dir = dir.path().display().to_string();
    let app = spawn_with(settings).await;
    let live = scored_version(&app).await;
    let secret = "s3cr3t-api-token-123";
    std::fs::write(dir.path().join("secret.json"), format!("\"{secret}\"")).unwrap();
    std::fs::write(dir.path().join("plain.txt"), secret).unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("x.json"), secret).unwrap();
    let existing = outside.path().join("x.json");
    let missing = outside.path().join("nope.json");
    let up = format!("{}/../../etc/passwd", dir.path().display());
    let e_existing = reload(&app, existing.to_str().unwrap()).await.unwrap_err();
    let e_missing = reload(&app, missing.to_str().unwrap()).await.unwrap_err();
    assert_eq!(
        e_existing.message(),
        e_missing.message(),
        "no existence oracle"
    );
    for p in [
        "/etc/passwd",
        "/etc/shadow",
        "/proc/self/environ",
        "../../etc/passwd",
        &up,
    ] {
        let e = reload(&app, p).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{p}");
        assert!(
            e.message().contains("not under model.dir") || e.message().contains("`..`"),
            "{p}: {e:?}"
        );
        assert!(!e.message().contains("root:"), "{p}: {e:?}");
    }
    for name in ["secret.json", "plain.txt"] {
        let e = reload(&app, name).await.unwrap_err();
        assert!(e.message().contains("not a valid artifact"), "{e:?}");
        assert!(!e.message().contains(secret), "{name} echoed: {e:?}");
    }
    let fifo = dir.path().join("pipe.json");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.json")).unwrap();
    let started = std::time::Instant::now();
    for _ in 0..600 {
        let e = reload(&app, "pipe.json").await.unwrap_err();
        assert!(e.message().contains("not a regular file"), "{e:?}");
    }
    let e = reload(&app, "zero.json").await.unwrap_err();
    assert!(e.message().contains("not under model.dir"), "{e:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "FIFO reloads must not block"
    );
    // An artifact in the request body: too big, or not an artifact, is refused the same way.
    let e = app
        .models()
        .reload_model(pb::ReloadModelRequest {
            path: String::new(),
            force: false,
            artifact: format!("\"{secret}\"").into_bytes(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(!e.message().contains(secret), "{e:?}");
    assert_eq!(
        scored_version(&app).await,
        live,
        "the live model kept serving"
    );
    app.stop().await.unwrap();
}
