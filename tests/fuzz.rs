//! Property tests over everything that parses untrusted input: the proto -> domain conversion
//! and validation of leads and reps (shifts, time zones, skills, time off), feature
//! extraction and scoring, segment rules, the artifact loader (truncated and tampered files)
//! and CSV reading for training. Each property must hold for every generated case; none may
//! panic.
//!
//! Cases per property: 256 by default (CI); `PROPTEST_CASES=1000000 cargo test --release
//! --test fuzz` for a long run.
use std::collections::HashMap;
use std::sync::OnceLock;

use leadrouter::config::Settings;
use leadrouter::domain::lead::{
    AttrValue, MAX_ATTRIBUTE_NAME_LEN, MAX_ATTRIBUTES, MAX_ID_LEN, MAX_STRING_VALUE_LEN,
};
use leadrouter::domain::model::{Artifact, Model};
use leadrouter::domain::rep::ZoneCache;
use leadrouter::grpc::{convert, pb};
use proptest::prelude::*;

fn shipped() -> &'static (Vec<u8>, Model) {
    static M: OnceLock<(Vec<u8>, Model)> = OnceLock::new();
    M.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/bank-default.json");
        let bytes = std::fs::read(path).unwrap();
        let model = Model::new(Artifact::from_json(&bytes).unwrap());
        (bytes, model)
    })
}

/// Attribute names: mostly the model's own (so extraction does real work), some arbitrary.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "age", "job", "marital", "education", "default", "housing", "loan", "contact",
            "month", "day_of_week", "campaign", "pdays", "previous", "poutcome",
            "emp.var.rate", "cons.price.idx", "cons.conf.idx", "euribor3m", "nr.employed",
            "pool", "language", "industry", "price_objection", "budget",
        ])
        .prop_map(str::to_string),
        1 => ".{0,80}",
    ]
}

fn value() -> impl Strategy<Value = pb::AttributeValue> {
    use pb::attribute_value::Kind;
    let kind = prop_oneof![
        ".{0,40}".prop_map(Kind::StringValue),
        prop::collection::vec(any::<char>(), 1000..1100)
            .prop_map(|c| Kind::StringValue(c.into_iter().collect())),
        any::<f64>().prop_map(Kind::NumberValue),
        prop::sample::select(vec![f64::NAN, f64::INFINITY, -0.0, 1e308, -1e-308])
            .prop_map(Kind::NumberValue),
        any::<bool>().prop_map(Kind::BoolValue),
    ];
    prop_oneof![
        10 => kind.prop_map(|k| pb::AttributeValue { kind: Some(k) }),
        1 => Just(pb::AttributeValue { kind: None }),
    ]
}

fn lead() -> impl Strategy<Value = pb::Lead> {
    (
        prop_oneof![".{0,20}", ".{120,140}", Just(String::new())],
        prop::collection::hash_map(name(), value(), 0..40),
    )
        .prop_map(|(id, attributes)| pb::Lead {
            id,
            attributes: attributes.into_iter().collect(),
        })
}

proptest! {
    /// A lead either converts, and then obeys every limit, or is refused naming a field.
    #[test]
    fn leads_convert_within_limits_or_name_the_field(l in lead()) {
        match convert::lead(Some(l)) {
            Ok(lead) => {
                prop_assert!(!lead.id.trim().is_empty() && lead.id.len() <= MAX_ID_LEN);
                prop_assert!(lead.attributes.len() <= MAX_ATTRIBUTES);
                for (k, v) in lead.attributes.iter() {
                    prop_assert!(!k.is_empty() && k.len() <= MAX_ATTRIBUTE_NAME_LEN);
                    match v {
                        AttrValue::String(s) => prop_assert!(s.len() <= MAX_STRING_VALUE_LEN),
                        AttrValue::Number(x) => prop_assert!(x.is_finite()),
                        AttrValue::Bool(_) => {}
                    }
                }
                // Scoring a valid lead never panics and gives a probability.
                if let Ok(s) = shipped().1.score(&lead) {
                    prop_assert!((0.0..=1.0).contains(&s.probability));
                }
                let rules = &settings().segments;
                let seg = rules.classify(&lead, 0.5);
                prop_assert!(!seg.segment.is_empty());
            }
            Err(e) => {
                let text = e.to_string();
                prop_assert!(text.starts_with("lead"), "{}", text);
            }
        }
    }

    /// A rep either converts and validates (and its calendar answers at any instant), or is
    /// refused naming a field.
    #[test]
    fn reps_validate_or_name_the_field(
        id in prop_oneof![".{0,10}", Just("r1".to_string())],
        capacity in -5i32..100,
        quota in prop::option::of(-3i32..50),
        tz in prop_oneof![
            Just("UTC".to_string()), Just("Europe/Lisbon".to_string()),
            Just("America/Chicago".to_string()), ".{0,20}",
        ],
        start in prop_oneof![Just("09:00".to_string()), Just("23:30".to_string()), ".{0,6}"],
        end in prop_oneof![Just("17:00".to_string()), Just("02:00".to_string()), ".{0,6}"],
        days in prop::collection::vec(
            prop_oneof![Just("mon".to_string()), Just("sun".to_string()), ".{0,4}"], 0..8),
        shift in any::<bool>(),
        off in prop::collection::vec(
            (prop_oneof![Just("2026-12-24".to_string()), "20[0-9]{2}-[0-9]{2}-[0-9]{2}", ".{0,12}"],
             prop_oneof![Just("2026-12-31".to_string()), "20[0-9]{2}-[0-9]{2}-[0-9]{2}", ".{0,12}"]),
            0..3),
        ramp in 0u32..400,
        skills in prop::collection::hash_map(".{0,20}", any::<f64>(), 0..5),
        at in 1_500_000_000_000i64..2_500_000_000_000,
    ) {
        let msg = pb::Rep {
            id, name: "n".into(), pool: "default".into(),
            skills: skills.into_iter().collect::<HashMap<_, _>>(),
            capacity, daily_quota: quota, active: true,
            shift: shift.then_some(pb::Shift { timezone: tz, start, end, days }),
            weekly_quota: quota, monthly_quota: None, quarterly_quota: None,
            time_off: off.into_iter().map(|(from, to)| pb::TimeOff { from, to }).collect(),
            return_ramp_days: ramp,
        };
        match convert::rep(Some(msg)).and_then(|r| r.validate()) {
            Ok(rep) => {
                let t = jiff::Timestamp::from_millisecond(at).unwrap();
                let a = rep.availability(t, &mut ZoneCache::default());
                prop_assert!(a.ramp_permille <= 1000);
                let _ = rep.next_change(t);
            }
            Err(e) => {
                let text = e.to_string();
                prop_assert!(text.starts_with("rep"), "{}", text);
            }
        }
    }

    /// A truncated or tampered artifact is refused (never half-loaded, never a panic), and
    /// the refusal quotes nothing of the file.
    #[test]
    fn damaged_artifacts_are_refused(cut in 0usize..200_000, flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        let (bytes, _) = shipped();
        let cut = cut.min(bytes.len().saturating_sub(1));
        // Cutting only trailing whitespace leaves the same artifact.
        if bytes[cut..].iter().any(|b| !b.is_ascii_whitespace()) {
            prop_assert!(Artifact::from_json(&bytes[..cut]).is_err());
        }
        let mut damaged = bytes.clone();
        for (at, b) in &flips {
            let i = at % damaged.len();
            damaged[i] = *b;
        }
        if damaged != *bytes {
            match Artifact::from_json(&damaged) {
                // Only whitespace changes keep the content (and the content hash) intact.
                Ok(a) => prop_assert_eq!(a.model_version, Artifact::from_json(bytes).unwrap().model_version),
                Err(e) => prop_assert!(!e.to_string().contains("\"weights\": ["), "{}", e),
            }
        }
    }

    /// Any CSV text is read or refused, never a panic; a read table is rectangular.
    #[test]
    fn csv_reading_never_panics(text in prop_oneof![
        ".{0,300}",
        "(([a-z\"]{0,4}[,;]){0,5}\n){0,20}",
    ], semicolon in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.csv");
        std::fs::write(&f, &text).unwrap();
        let delim = semicolon.then_some(b';');
        if let Ok(t) = leadrouter::training::data::read(&f, delim) {
            let _ = leadrouter::training::data::labels(&t, "y", None);
        }
    }
}

fn settings() -> &'static Settings {
    static S: OnceLock<Settings> = OnceLock::new();
    S.get_or_init(|| Settings::load(None).unwrap())
}
