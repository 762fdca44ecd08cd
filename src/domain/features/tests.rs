//! Tests of the feature spec: fitting, extraction, inference and serde.
use super::*;
use crate::domain::lead::AttrValue;

fn lead(pairs: &[(&str, AttrValue)]) -> Lead {
    Lead {
        id: "l".into(),
        attributes: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}

fn spec() -> FeatureSpec {
    FeatureSpec::from_toml(
        r#"
        [[feature]]
        name = "age"
        kind = "numeric"
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
        lead(&[
            ("age", Number(20.0)),
            ("job", String("a".into())),
            ("vip", Bool(true)),
        ]),
        lead(&[
            ("age", Number(40.0)),
            ("job", String("a".into())),
            ("vip", Bool(false)),
        ]),
        lead(&[
            ("age", Number(30.0)),
            ("job", String("b".into())),
            ("vip", Bool(false)),
        ]),
        lead(&[("job", String("c".into()))]),
        lead(&[("age", Number(30.0)), ("job", String("b".into()))]),
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
    f.extract_into(&lead(&[("job", String("zzz".into()))]), &mut x)
        .unwrap();
    assert_eq!(x, [0.0, 1.0, 0.0, 0.0, 1.0, 1.0 / 3.0]);
    f.extract_into(
        &lead(&[
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
        .extract_into(&lead(&[("age", String("old".into()))]), &mut x)
        .unwrap_err();
    assert!(err.to_string().contains("lead.attributes[age]"), "{err}");
    let err = f
        .extract_into(&lead(&[("vip", Number(3.0))]), &mut x)
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
