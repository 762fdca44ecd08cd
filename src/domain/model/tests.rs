//! Scoring, explanations and clipping on a tiny hand-made artifact (`tiny_artifact`, shared
//! with other modules' tests).
use super::*;
use crate::domain::features::{FittedFeature, FittedKind};
use crate::domain::lead::{AttrValue, Lead};

pub(crate) fn tiny_artifact() -> Artifact {
    let spec = FittedSpec::new(vec![
        FittedFeature {
            name: "age".into(),
            kind: FittedKind::Numeric {
                log1p: false,
                clip: None,
                missing: vec![],
                mean: 40.0,
                std: 10.0,
                deciles: vec![],
                range: Some([18.0, 95.0]),
                edges: vec![],
            },
        },
        FittedFeature {
            name: "job".into(),
            kind: FittedKind::Categorical {
                vocabulary: vec!["admin".into(), "retired".into()],
            },
        },
        FittedFeature {
            name: "vip".into(),
            kind: FittedKind::Bool { mean: 0.5 },
        },
    ]);
    Artifact {
        format_version: FORMAT_VERSION,
        model_version: String::new(),
        created_at: None,
        data_fingerprint: "x".into(),
        training: TrainingInfo {
            source: "t.csv".into(),
            label: "y".into(),
            positive: "yes".into(),
            seed: 1,
            holdout_fraction: 0.2,
            c: 1.0,
            class_weight: None,
            cv: None,
            rows_train: 8,
            rows_holdout: 2,
            refit: false,
            excluded: vec![],
            fit_leads: vec![],
        },
        spec,
        // age, age:missing, job=admin, job=retired, job=other, vip
        weights: vec![0.5, -0.2, -0.3, 1.0, 0.0, 0.8],
        intercept: -1.0,
        grade_thresholds: [0.6, 0.4, 0.2],
        holdout: Metrics {
            auc: 0.7,
            log_loss: 0.5,
            brier: 0.2,
            n: 2,
            base_rate: 0.5,
            calibration: vec![],
        },
        drift: None,
    }
    .seal()
    .0
}

#[test]
fn contributions_are_grouped_by_attribute_and_sum_to_the_logit() {
    use AttrValue::*;
    let m = Model::new(tiny_artifact());
    let s = m
        .score(&Lead::of(&[
            ("age", Number(60.0)),
            ("job", String("admin".into())),
            ("vip", Bool(true)),
        ]))
        .unwrap();
    // age: 0.5 * 2 = 1.0; job: -0.3; vip: 0.8
    let named = |f: &[Factor]| -> Vec<(std::string::String, f64)> {
        f.iter().map(|f| (f.text(), f.contribution)).collect()
    };
    assert_eq!(
        named(&s.top_positive),
        vec![
            ("age = 60".to_string(), 1.0),
            ("vip = true".to_string(), 0.8)
        ]
    );
    assert_eq!(s.top_negative.len(), 1);
    assert_eq!(s.top_negative[0].text(), "job = admin");
    assert!((s.top_negative[0].contribution + 0.3).abs() < 1e-12);
    let z: f64 = -1.0 + 1.0 - 0.3 + 0.8;
    assert!((s.probability - sigmoid(z)).abs() < 1e-12);
    assert_eq!(s.score, (sigmoid(z) * 100.0).round() as u32);
    assert_eq!(s.grade, Grade::A);
}

#[test]
fn factors_name_sent_values_and_leave_out_attributes_not_sent() {
    use AttrValue::*;
    let m = Model::new(tiny_artifact());
    let only_age = m.score(&Lead::of(&[("age", Number(60.0))])).unwrap();
    let all: Vec<Factor> = [only_age.top_positive, only_age.top_negative].concat();
    assert_eq!(
        all.iter().map(Factor::text).collect::<Vec<_>>(),
        ["age = 60"],
        "job and vip were not sent"
    );
    let off = m
        .score(&Lead::of(&[("age", Number(60.0)), ("vip", Bool(false))]))
        .unwrap();
    assert!(
        off.top_positive.iter().all(|f| f.attribute != "vip")
            && off.top_negative.iter().all(|f| f.attribute != "vip"),
        "vip = false adds nothing to the logit, so it is no factor"
    );
}

#[test]
fn values_outside_the_training_range_are_clipped_and_named() {
    use AttrValue::*;
    let m = Model::new(tiny_artifact());
    let at = |age: f64| m.score(&Lead::of(&[("age", Number(age))])).unwrap();
    let huge = at(1e308);
    assert_eq!(huge.clipped, vec!["age".to_string()]);
    assert_eq!(huge.probability, at(95.0).probability);
    assert!(huge.probability < 1.0);
    assert_eq!(at(-1e308).probability, at(18.0).probability);
    assert!(at(60.0).clipped.is_empty());
    assert!(at(95.0).clipped.is_empty(), "the bound itself is in range");
}

#[test]
fn batch_scoring_matches_row_by_row() {
    let m = Model::new(tiny_artifact());
    let rows = [
        0.5, 0.0, 1.0, 0.0, 0.0, 1.0, //
        -1.0, 0.0, 0.0, 0.0, 1.0, 0.0, //
        0.0, 1.0, 0.0, 1.0, 0.0, 0.5,
    ];
    let mut out = [0.0; 3];
    m.predict_batch(&rows, &mut out);
    for (i, p) in out.iter().enumerate() {
        let want = m.predict_row(&rows[i * 6..(i + 1) * 6]);
        assert!((p - want).abs() < 1e-12, "row {i}: {p} vs {want}");
    }
}

#[test]
fn grades_follow_thresholds() {
    let m = Model::new(tiny_artifact());
    assert_eq!(m.grade(0.6), Grade::A);
    assert_eq!(m.grade(0.59), Grade::B);
    assert_eq!(m.grade(0.2), Grade::C);
    assert_eq!(m.grade(0.19), Grade::D);
}

#[test]
fn refuses_tampered_and_foreign_artifacts() {
    let (_, bytes) = tiny_artifact().seal();
    assert!(Artifact::from_json(&bytes).is_ok());
    let text = String::from_utf8(bytes).unwrap();
    let tampered = text.replace("\"intercept\": -1.0", "\"intercept\": 3.0");
    assert_ne!(tampered, text);
    let err = Artifact::from_json(tampered.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(err.contains("content hash"), "{err}");
    let future = text.replace(
        &format!("\"format_version\": {FORMAT_VERSION}"),
        "\"format_version\": 9",
    );
    assert_ne!(future, text);
    let err = Artifact::from_json(future.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(err.contains("format_version 9"), "{err}");
    let err = Artifact::from_json(b"{not json").unwrap_err().to_string();
    assert!(err.contains("not a valid artifact: not JSON"), "{err}");
    // serde would quote the offending value; the message must not.
    let err = Artifact::from_json(b"\"s3cr3t-api-token-123\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a valid artifact"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");
}

#[test]
fn refuses_weights_that_do_not_fit_the_spec() {
    let mut a = tiny_artifact();
    a.weights.pop();
    let (_, bytes) = a.seal();
    let err = Artifact::from_json(&bytes).unwrap_err().to_string();
    assert!(err.contains("5 weights"), "{err}");
}

#[test]
fn format_1_artifacts_still_load_and_score_without_bins() {
    // Format 1 had no `edges`; its numeric features read as linear only.
    let mut a = tiny_artifact();
    a.format_version = 1;
    let (sealed, bytes) = a.seal();
    assert!(!String::from_utf8_lossy(&bytes).contains("edges"));
    let back = Artifact::from_json(&bytes).unwrap();
    assert_eq!(back.format_version, 1);
    let m = Model::new(back);
    let s = m
        .score(&Lead::of(&[("age", AttrValue::Number(50.0))]))
        .unwrap();
    assert_eq!(m.n_columns(), sealed.spec.n_columns());
    assert!(s.probability > 0.0 && s.probability < 1.0);
}

#[test]
fn a_binned_attribute_is_one_factor_that_names_its_bin() {
    use AttrValue::*;
    let mut a = tiny_artifact();
    let mut features = a.spec.features().to_vec();
    if let FittedKind::Numeric { edges, .. } = &mut features[0].kind {
        *edges = vec![30.0, 50.0];
    }
    a.spec = FittedSpec::new(features);
    // age, age:missing, age < 30, age in [30, 50), age >= 50, job x 3, vip
    a.weights = vec![0.5, -0.2, -0.4, 0.1, 0.7, -0.3, 1.0, 0.0, 0.8];
    let m = Model::new(a.seal().0);
    let s = m
        .score(&Lead::of(&[
            ("age", Number(60.0)),
            ("job", String("pilot".into())),
        ]))
        .unwrap();
    // The linear term and the bin sum to one contribution: 0.5 * 2 + 0.7.
    let age = &s.top_positive[0];
    assert_eq!(age.attribute, "age");
    assert!((age.contribution - 1.7).abs() < 1e-12, "{age:?}");
    assert_eq!(age.value, "60");
    assert_eq!(age.level.as_deref(), Some("age >= 50"));
    assert_eq!(age.text(), "age >= 50");
    // An unknown job falls in the pooled column (weight 0 here, so it is no factor): a known
    // one has no level.
    let s = m
        .score(&Lead::of(&[
            ("age", Number(40.0)),
            ("job", String("retired".into())),
        ]))
        .unwrap();
    let job = s
        .top_positive
        .iter()
        .find(|f| f.attribute == "job")
        .unwrap();
    assert_eq!(
        (job.level.as_deref(), job.text().as_str()),
        (None, "job = retired")
    );
    let age = s
        .top_positive
        .iter()
        .find(|f| f.attribute == "age")
        .unwrap();
    assert_eq!(age.level.as_deref(), Some("age in [30, 50)"));
}
