//! What `leadrouter train` decides on its own (quantile bins, C by cross-validation) and the
//! refit on all rows, seen from the command line.
use leadrouter::domain::features::{FeatureKind, FeatureSpec};

use crate::cli::{bank_sample, leadrouter, trained};

fn base(data: &str) -> Vec<&str> {
    vec![
        "train",
        "--data",
        data,
        "--label",
        "y",
        "--exclude",
        "duration",
    ]
}

#[test]
fn numeric_columns_get_quantile_bins_unless_the_spec_says_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let data = bank_sample(dir.path(), 4000);
    let d = data.to_str().unwrap();
    let out = dir.path().join("m.json");
    let mut args = base(d);
    args.extend(["--C", "1", "--print-spec", "--out", out.to_str().unwrap()]);
    let r = leadrouter(&args);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(stderr.contains("quantile bins"), "{stderr}");
    // --print-spec shows the bin count training chose, so the run can be repeated as a spec.
    let printed = String::from_utf8(r.stdout).unwrap();
    let spec = FeatureSpec::from_toml(&printed).unwrap();
    let age = spec.features.iter().find(|f| f.name == "age").unwrap();
    assert!(
        matches!(age.kind, FeatureKind::Numeric { bins: Some(10), .. }),
        "{printed}"
    );
    let a = leadrouter::domain::model::Artifact::from_json(&std::fs::read(&out).unwrap()).unwrap();
    let names = a.spec.column_names();
    assert!(names.iter().any(|n| n.starts_with("age in [")), "{names:?}");

    // The printed spec, edited to keep age linear: no age bins, the rest unchanged.
    let mut edited = spec.clone();
    for f in &mut edited.features {
        if let (true, FeatureKind::Numeric { bins, .. }) = (f.name == "age", &mut f.kind) {
            *bins = Some(0);
        }
    }
    let edited = edited.to_toml();
    assert_ne!(edited, printed);
    let spec_path = dir.path().join("spec.toml");
    std::fs::write(&spec_path, edited).unwrap();
    let lin = trained(
        &[
            "train",
            "--data",
            d,
            "--label",
            "y",
            "--C",
            "1",
            "--spec",
            spec_path.to_str().unwrap(),
        ],
        &dir.path().join("lin.json"),
    );
    let lin_names = lin.spec.column_names();
    assert!(
        !lin_names.iter().any(|n| n.starts_with("age ")),
        "{lin_names:?}"
    );
    assert_eq!(
        lin_names.len(),
        names.len() - names.iter().filter(|n| n.starts_with("age ")).count()
    );
}

#[test]
fn few_positives_per_column_choose_c_by_cross_validation_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    // 3,000 rows: ~270 positives in training for ~130 columns.
    let data = bank_sample(dir.path(), 3000);
    let d = data.to_str().unwrap();
    let out = dir.path().join("auto.json");
    let mut args = base(d);
    args.extend(["--out", out.to_str().unwrap()]);
    let r = leadrouter(&args);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        stderr.contains("chosen by 5-fold cross-validation"),
        "{stderr}"
    );
    let a = leadrouter::domain::model::Artifact::from_json(&std::fs::read(&out).unwrap()).unwrap();
    let cv = a
        .training
        .cv
        .clone()
        .expect("the artifact records the folds");
    assert_eq!(cv.folds, 5);
    assert!(cv.points.iter().any(|p| p.c == a.training.c));
    // An explicit C is taken as given: no cross-validation, no note.
    let mut args = base(d);
    let fixed = dir.path().join("fixed.json");
    args.extend(["--C", "0.3", "--out", fixed.to_str().unwrap()]);
    let r = leadrouter(&args);
    assert!(r.status.success());
    assert!(!String::from_utf8_lossy(&r.stderr).contains("cross-validation"));
    let a =
        leadrouter::domain::model::Artifact::from_json(&std::fs::read(&fixed).unwrap()).unwrap();
    assert_eq!((a.training.c, a.training.cv), (0.3, None));
}

#[test]
fn refit_uses_every_row_and_keeps_the_holdout_of_the_model_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = bank_sample(dir.path(), 4000);
    let d = data.to_str().unwrap();
    let args = [&base(d)[..], &["--C", "1"]].concat();
    let split = trained(&args, &dir.path().join("split.json"));
    let refit_out = dir.path().join("refit.json");
    let mut refit_args = args.clone();
    refit_args.push("--refit");
    let refit = trained(&refit_args, &refit_out);
    assert!(refit.training.refit && !split.training.refit);
    // Same holdout figures (they describe the model fitted without the holdout), other weights.
    assert_eq!(refit.holdout, split.holdout);
    assert_eq!(refit.training.rows_holdout, split.training.rows_holdout);
    assert_ne!(refit.weights, split.weights);
    assert_ne!(refit.model_version, split.model_version);
    // Its training file has no held-out rows left: evaluate refuses rather than report an
    // in-sample figure as a holdout, and scores them when asked to.
    let o = refit_out.to_str().unwrap();
    let r = leadrouter(&["evaluate", "--model", o, "--data", d, "--label", "y"]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("refitted on every row"), "{err}");
    let r = leadrouter(&[
        "evaluate",
        "--model",
        o,
        "--data",
        d,
        "--label",
        "y",
        "--all-rows",
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let m: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(m["n"].as_u64(), Some(4000));
}
