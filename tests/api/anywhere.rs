//! The binary from any directory: the compiled-in model and team, `healthcheck` for container
//! probes, `config --print` with secrets masked, and typos refused with the closest name.
use std::process::Command;

use crate::helpers::*;
use leadrouter::grpc::pb;

fn leadrouter_in(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_leadrouter"));
    cmd.args(args).current_dir(dir);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LEADROUTER")) {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_from_an_empty_directory_and_healthcheck_follows_it() {
    let empty = tempfile::tempdir().unwrap();
    let p = Process::start_in(empty.path(), &[("LEADROUTER__MODEL__DIR", "models")]).await;
    assert!(
        empty.path().join("models").is_dir(),
        "model.dir is made at start"
    );
    // The compiled-in team (35 reps) and model serve a lead.
    let reps = p
        .reps()
        .list_reps(pb::ListRepsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .reps;
    assert_eq!(reps.len(), 35);
    let d = p
        .leads()
        .score_lead(pb::ScoreLeadRequest {
            lead: Some(good_lead("anywhere-1")),
        })
        .await
        .unwrap()
        .into_inner()
        .decision
        .unwrap();
    let score = d.score.unwrap();
    assert!(!score.cold_start, "the compiled-in model scores");
    assert_eq!(score.model_version, p.model_version().await);
    let shipped = leadrouter::engine::read_artifact(&shipped_model()).unwrap();
    assert_eq!(score.model_version, shipped.model_version);
    let url = format!("http://{}", p.addr);
    let ok = leadrouter_in(empty.path(), &["healthcheck", "--server", &url], &[]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "SERVING");
    p.terminate();
    let down = leadrouter_in(
        empty.path(),
        &["healthcheck", "--server", &url, "--timeout-ms", "500"],
        &[],
    );
    assert!(!down.status.success());
}

#[test]
fn config_print_masks_passwords_and_typos_name_the_closest_setting() {
    let dir = tempfile::tempdir().unwrap();
    let out = leadrouter_in(
        dir.path(),
        &["config", "--print"],
        &[(
            "LEADROUTER__STORE__URL",
            "redis://:s3cret-pw@redis.internal:6379/0",
        )],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("s3cret-pw"), "{text}");
    assert!(
        text.contains("redis://:***@redis.internal:6379/0"),
        "{text}"
    );
    // The printed settings are a config file that loads as they are.
    let printed: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(printed["admin"]["addr"].as_str(), Some("127.0.0.1:9464"));
    assert_eq!(
        printed["model"]["path"].as_str(),
        Some("builtin:bank-default")
    );

    let typo = leadrouter_in(
        dir.path(),
        &["config"],
        &[("LEADROUTER__SERVER__ADRR", "0.0.0.0:1")],
    );
    assert!(!typo.status.success());
    let err = String::from_utf8_lossy(&typo.stderr);
    assert!(
        err.contains("did you mean LEADROUTER__SERVER__ADDR?"),
        "{err}"
    );
    let f = dir.path().join("c.toml");
    std::fs::write(&f, "[store]\nmemory_max_lead = 5\n").unwrap();
    let typo = leadrouter_in(dir.path(), &["serve", "--config", f.to_str().unwrap()], &[]);
    assert!(!typo.status.success());
    let err = String::from_utf8_lossy(&typo.stderr);
    assert!(
        err.contains("did you mean store.memory_max_leads?"),
        "{err}"
    );
}

#[test]
fn a_config_file_elsewhere_reads_paths_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    std::fs::copy(shipped_model(), etc.join("model.json")).unwrap();
    std::fs::write(
        etc.join("reps.toml"),
        "[[rep]]\nid = \"solo\"\ncapacity = 2\n",
    )
    .unwrap();
    let f = etc.join("leadrouter.toml");
    std::fs::write(
        &f,
        "[model]\npath = \"model.json\"\n[reps]\nfile = \"reps.toml\"\n",
    )
    .unwrap();
    let out = leadrouter_in(
        dir.path(),
        &["config", "--print", "--config", f.to_str().unwrap()],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: toml::Table = toml::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let model = printed["model"]["path"].as_str().unwrap();
    assert_eq!(
        std::path::Path::new(model),
        std::path::absolute(etc.join("model.json")).unwrap()
    );
    let reps = printed["reps"]["file"].as_str().unwrap();
    assert!(std::path::Path::new(reps).is_file(), "{reps}");
}
