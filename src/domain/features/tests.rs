//! Tests of the feature spec: fitting, extraction, inference and serde.
use super::*;
use crate::domain::lead::AttrValue;

fn spec() -> FeatureSpec {
    FeatureSpec::from_toml(
        r#"
        [[feature]]
        name = "age"
        kind = "numeric"
        bins = 0
        [[feature]]
        name = "job"
        kind = "categorical"
        min_count = 2
        [[feature]]
        name = "vip"
        kind = "bool"
        "#,
    )
    .unwrap()
}

fn training() -> Vec<Lead> {
    use AttrValue::*;
    vec![
        Lead::of(&[
            ("age", Number(20.0)),
            ("job", String("a".into())),
            ("vip", Bool(true)),
        ]),
        Lead::of(&[
            ("age", Number(40.0)),
            ("job", String("a".into())),
            ("vip", Bool(false)),
        ]),
        Lead::of(&[
            ("age", Number(30.0)),
            ("job", String("b".into())),
            ("vip", Bool(false)),
        ]),
        Lead::of(&[("job", String("c".into()))]),
        Lead::of(&[("age", Number(30.0)), ("job", String("b".into()))]),
    ]
}

#[test]
fn fits_statistics_and_vocabulary() {
    let f = fit(&spec(), &training()).unwrap();
    assert_eq!(f.n_columns(), 2 + 3 + 1);
    match &f.features()[0].kind {
        FittedKind::Numeric { mean, std, .. } => {
            assert!((mean - 30.0).abs() < 1e-12);
            assert!((std - 50f64.sqrt()).abs() < 1e-12);
        }
        k => panic!("{k:?}"),
    }
    // "c" occurs once, below min_count 2, so it is not in the vocabulary.
    assert_eq!(
        f.column_names(),
        ["age", "age:missing", "job=a", "job=b", "job=<other>", "vip"]
    );
}

#[test]
fn extracts_missing_unseen_and_typed_values() {
    use AttrValue::*;
    let f = fit(&spec(), &training()).unwrap();
    let mut x = vec![9.0; f.n_columns()];
    f.extract_into(&Lead::of(&[("job", String("zzz".into()))]), &mut x)
        .unwrap();
    assert_eq!(x, [0.0, 1.0, 0.0, 0.0, 1.0, 1.0 / 3.0]);
    f.extract_into(
        &Lead::of(&[
            ("age", String("40".into())),
            ("job", String("b".into())),
            ("vip", String("yes".into())),
        ]),
        &mut x,
    )
    .unwrap();
    assert!((x[0] - 10.0 / 50f64.sqrt()).abs() < 1e-12);
    assert_eq!(&x[1..], [0.0, 0.0, 1.0, 0.0, 1.0]);
}

#[test]
fn wrong_types_name_the_attribute() {
    use AttrValue::*;
    let f = fit(&spec(), &training()).unwrap();
    let mut x = vec![0.0; f.n_columns()];
    let err = f
        .extract_into(&Lead::of(&[("age", String("old".into()))]), &mut x)
        .unwrap_err();
    assert!(err.to_string().contains("lead.attributes[age]"), "{err}");
    let err = f
        .extract_into(&Lead::of(&[("vip", Number(3.0))]), &mut x)
        .unwrap_err();
    assert!(err.to_string().contains("lead.attributes[vip]"), "{err}");
}

#[test]
fn infers_kinds() {
    assert_eq!(infer_kind(["yes", "no", ""].into_iter()), FeatureKind::Bool);
    assert!(matches!(
        infer_kind(["1", "2.5"].into_iter()),
        FeatureKind::Numeric { .. }
    ));
    assert!(matches!(
        infer_kind(["0", "1"].into_iter()),
        FeatureKind::Numeric { .. }
    ));
    assert!(matches!(
        infer_kind(["a", "1"].into_iter()),
        FeatureKind::Categorical { .. }
    ));
}

#[test]
fn spec_round_trips_through_toml_and_json() {
    let s = spec();
    assert_eq!(FeatureSpec::from_toml(&s.to_toml()).unwrap(), s);
    let f = fit(&s, &training()).unwrap();
    let json = serde_json::to_string(&f).unwrap();
    let back: FittedSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, f);
    assert_eq!(back.n_columns(), f.n_columns());
}

fn ages(values: impl IntoIterator<Item = f64>) -> Vec<Lead> {
    values
        .into_iter()
        .map(|a| Lead::of(&[("age", AttrValue::Number(a))]))
        .collect()
}

fn age_spec(bins: &str) -> FeatureSpec {
    FeatureSpec::from_toml(&format!(
        "[[feature]]\nname = \"age\"\nkind = \"numeric\"\n{bins}"
    ))
    .unwrap()
}

#[test]
fn numeric_bins_sit_at_training_quantiles_and_one_hot_the_value() {
    // Ages 0..100: deciles at 10, 20, .., 90 (the 0.1 % floor is 0, so no edge sits there).
    let f = fit(&age_spec(""), &ages((0..100).map(f64::from))).unwrap();
    let FittedKind::Numeric { edges, .. } = &f.features()[0].kind else {
        panic!("{:?}", f.features()[0]);
    };
    let want: Vec<f64> = (1..10).map(|k| f64::from(k * 10)).collect();
    assert_eq!(edges, &want);
    assert_eq!(f.n_columns(), 2 + 10);
    let names = f.column_names();
    assert_eq!(names[2], "age < 10");
    assert_eq!(names[5], "age in [30, 40)");
    assert_eq!(names[11], "age >= 90");
    let mut x = vec![9.0; f.n_columns()];
    for (age, bin) in [(0.0, 0), (29.9, 2), (30.0, 3), (95.0, 9), (500.0, 9)] {
        f.extract_into(&Lead::of(&[("age", AttrValue::Number(age))]), &mut x)
            .unwrap();
        let hot: Vec<usize> = (0..10).filter(|j| x[2 + j] == 1.0).collect();
        assert_eq!(hot, [bin], "age {age}: {x:?}");
        assert_eq!(x[2..].iter().sum::<f64>(), 1.0);
        assert_eq!(
            f.features()[0].level(&x),
            Some(names[2 + bin].clone()),
            "age {age}"
        );
    }
    // Missing: the flag, no bin, and the level says so.
    f.extract_into(&Lead::of(&[]), &mut x).unwrap();
    assert_eq!(x[1], 1.0);
    assert!(x[2..].iter().all(|v| *v == 0.0), "{x:?}");
    assert_eq!(f.features()[0].level(&x).as_deref(), Some("age missing"));
}

#[test]
fn repeated_quantiles_merge_and_the_spec_sets_or_refuses_the_bin_count() {
    // Mostly zeros: the deciles repeat, and an edge at the minimum would leave a bin empty.
    let values = (0..100).map(|i| f64::from(u8::from(i >= 70) + u8::from(i >= 85)));
    let f = fit(&age_spec(""), &ages(values.clone())).unwrap();
    let FittedKind::Numeric { edges, .. } = &f.features()[0].kind else {
        panic!();
    };
    assert_eq!(edges, &[1.0, 2.0]);
    for (bins, columns) in [("bins = 0", 2), ("bins = 1", 2), ("bins = 4", 2 + 4)] {
        let f = fit(&age_spec(bins), &ages((0..100).map(f64::from))).unwrap();
        assert_eq!(f.n_columns(), columns, "{bins}");
    }
    let err = fit(&age_spec("bins = 101"), &ages([1.0, 2.0])).unwrap_err();
    assert!(err.contains("at most 100"), "{err}");
}

#[test]
fn an_unknown_category_is_named_as_pooled() {
    let f = fit(&spec(), &training()).unwrap();
    let mut x = vec![0.0; f.n_columns()];
    f.extract_into(
        &Lead::of(&[("job", AttrValue::String("zzz".into()))]),
        &mut x,
    )
    .unwrap();
    let job = &f.features()[1];
    assert_eq!(
        job.level(&x[f.columns_of(1)]).as_deref(),
        Some("job = <other> (rare or unseen in training)")
    );
    f.extract_into(&Lead::of(&[("job", AttrValue::String("a".into()))]), &mut x)
        .unwrap();
    assert_eq!(job.level(&x[f.columns_of(1)]), None);
}
