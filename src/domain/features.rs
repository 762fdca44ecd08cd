//! Feature spec (what to extract from which attribute), fitting its statistics, and extraction.
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::domain::lead::{AttrValue, Lead, parse_bool};
use crate::error::Error;

mod fit;
pub use fit::{fit, infer_kind};

/// Label of the one-hot column that takes rare, unseen and missing categories.
pub const OTHER: &str = "<other>";

/// How one source attribute becomes model columns, before fitting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum FeatureKind {
    /// One standardised column plus a missing flag.
    Numeric {
        #[serde(default)]
        log1p: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clip: Option<[f64; 2]>,
        /// Sentinel values that mean "missing", e.g. pdays = 999 for "never contacted".
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        missing: Vec<f64>,
    },
    /// One-hot over the training vocabulary, plus one column for everything else.
    Categorical {
        /// Values seen fewer times than this in training fall into the "other" column.
        #[serde(default = "default_min_count")]
        min_count: u64,
    },
    /// One 0/1 column; missing values take the training mean.
    Bool,
}

fn default_min_count() -> u64 {
    10
}

// No deny_unknown_fields here: serde cannot combine it with `flatten`; the tagged kind enums
// reject unknown fields instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDef {
    pub name: String,
    #[serde(flatten)]
    pub kind: FeatureKind,
}

/// The unfitted spec, as written in spec.toml (`[[feature]]` tables).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    #[serde(rename = "feature", default)]
    pub features: Vec<FeatureDef>,
}

impl FeatureSpec {
    pub fn from_toml(text: &str) -> Result<FeatureSpec, String> {
        let spec: FeatureSpec = toml::from_str(text).map_err(|e| e.to_string())?;
        if spec.features.is_empty() {
            return Err("the spec has no [[feature]] entries".into());
        }
        Ok(spec)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

/// One cell of a record as extraction sees it.
#[derive(Debug, Clone, Copy)]
pub enum Cell<'a> {
    Str(&'a str),
    Num(f64),
    Bool(bool),
}

/// Anything features can be read from: an API lead or a CSV row.
pub trait Record {
    /// The value of feature number `index` (named `name`), or None when missing.
    fn cell(&self, index: usize, name: &str) -> Option<Cell<'_>>;
}

impl Record for Lead {
    fn cell(&self, _index: usize, name: &str) -> Option<Cell<'_>> {
        self.get(name).map(|v| match v {
            AttrValue::String(s) => Cell::Str(s),
            AttrValue::Number(x) => Cell::Num(*x),
            AttrValue::Bool(b) => Cell::Bool(*b),
        })
    }
}

/// Fitted statistics of one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum FittedKind {
    Numeric {
        log1p: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clip: Option<[f64; 2]>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        missing: Vec<f64>,
        /// Mean and standard deviation of the transformed training values.
        mean: f64,
        std: f64,
        /// Training values by decile of the transformed value, for drift checks.
        #[serde(default)]
        deciles: Vec<f64>,
        /// The 0.1 and 99.9 percentiles of the raw training values: a value outside is
        /// clipped to them, so no single attribute can drive the probability to 0 or 1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        range: Option<[f64; 2]>,
    },
    Categorical {
        /// Sorted; column i is `vocabulary[i]`, the last column is "other".
        vocabulary: Vec<String>,
    },
    Bool {
        mean: f64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedFeature {
    pub name: String,
    #[serde(flatten)]
    pub kind: FittedKind,
}

impl FittedFeature {
    pub fn columns(&self) -> usize {
        match &self.kind {
            FittedKind::Numeric { .. } => 2,
            FittedKind::Categorical { vocabulary } => vocabulary.len() + 1,
            FittedKind::Bool { .. } => 1,
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            FittedKind::Numeric { .. } => "numeric",
            FittedKind::Categorical { .. } => "categorical",
            FittedKind::Bool { .. } => "bool",
        }
    }
}

/// A fitted spec: the statistics needed to turn a record into a dense row.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "FittedSpecData", into = "FittedSpecData")]
pub struct FittedSpec {
    features: Vec<FittedFeature>,
    /// Column offset of each feature.
    offsets: Vec<usize>,
    n_columns: usize,
    /// Category -> column, per categorical feature (empty maps for the others).
    lookup: Vec<HashMap<String, usize>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FittedSpecData {
    features: Vec<FittedFeature>,
}

impl From<FittedSpecData> for FittedSpec {
    fn from(d: FittedSpecData) -> Self {
        FittedSpec::new(d.features)
    }
}

impl From<FittedSpec> for FittedSpecData {
    fn from(s: FittedSpec) -> Self {
        FittedSpecData {
            features: s.features,
        }
    }
}

impl PartialEq for FittedSpec {
    fn eq(&self, other: &Self) -> bool {
        self.features == other.features
    }
}

impl FittedSpec {
    pub fn new(features: Vec<FittedFeature>) -> FittedSpec {
        let mut offsets = Vec::with_capacity(features.len());
        let mut n = 0;
        let mut lookup = Vec::with_capacity(features.len());
        for f in &features {
            offsets.push(n);
            n += f.columns();
            lookup.push(match &f.kind {
                FittedKind::Categorical { vocabulary } => vocabulary
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (v.clone(), i))
                    .collect(),
                _ => HashMap::new(),
            });
        }
        FittedSpec {
            features,
            offsets,
            n_columns: n,
            lookup,
        }
    }

    pub fn features(&self) -> &[FittedFeature] {
        &self.features
    }

    pub fn n_columns(&self) -> usize {
        self.n_columns
    }

    /// Column range of feature `i`.
    pub fn columns_of(&self, i: usize) -> std::ops::Range<usize> {
        self.offsets[i]..self.offsets[i] + self.features[i].columns()
    }

    /// Human-readable name of every column, e.g. `job=admin.` or `age:missing`.
    pub fn column_names(&self) -> Vec<String> {
        let mut names = Vec::with_capacity(self.n_columns);
        for f in &self.features {
            match &f.kind {
                FittedKind::Numeric { .. } => {
                    names.push(f.name.clone());
                    names.push(format!("{}:missing", f.name));
                }
                FittedKind::Categorical { vocabulary } => {
                    names.extend(vocabulary.iter().map(|v| format!("{}={v}", f.name)));
                    names.push(format!("{}={OTHER}", f.name));
                }
                FittedKind::Bool { .. } => names.push(f.name.clone()),
            }
        }
        names
    }

    /// Writes the dense row of `record` into `out` (length `n_columns`). Allocates nothing for
    /// string and bool cells. A cell of the wrong type is an error naming the attribute.
    /// Fills `out` with the record's model columns; answers which features were clipped to
    /// their training range.
    pub fn extract_into<R: Record + ?Sized>(
        &self,
        record: &R,
        out: &mut [f64],
    ) -> Result<Clipped, Error> {
        let mut clipped = Clipped::default();
        debug_assert_eq!(out.len(), self.n_columns);
        let mut numbuf = NumText::new();
        for (i, f) in self.features.iter().enumerate() {
            let o = self.offsets[i];
            let cell = record.cell(i, &f.name);
            match &f.kind {
                FittedKind::Numeric {
                    log1p,
                    clip,
                    missing,
                    mean,
                    std,
                    range,
                    ..
                } => {
                    let raw = match cell {
                        None | Some(Cell::Str("")) => None,
                        Some(Cell::Num(x)) => Some(x),
                        Some(Cell::Bool(b)) => Some(if b { 1.0 } else { 0.0 }),
                        Some(Cell::Str(s)) => Some(
                            s.trim()
                                .parse::<f64>()
                                .ok()
                                .filter(|x| x.is_finite())
                                .ok_or_else(|| bad_type(&f.name, "a number", s))?,
                        ),
                    };
                    match raw.filter(|x| !missing.contains(x)) {
                        Some(x) => {
                            let x = match range {
                                Some([lo, hi]) if x < *lo || x > *hi => {
                                    clipped.mark(i);
                                    x.clamp(*lo, *hi)
                                }
                                _ => x,
                            };
                            out[o] = (transform(x, *log1p, *clip) - mean) / std;
                            out[o + 1] = 0.0;
                        }
                        None => {
                            out[o] = 0.0;
                            out[o + 1] = 1.0;
                        }
                    }
                }
                FittedKind::Categorical { vocabulary } => {
                    out[o..=o + vocabulary.len()].fill(0.0);
                    let col = match cell {
                        None | Some(Cell::Str("")) => None,
                        Some(Cell::Str(s)) => self.lookup[i].get(s).copied(),
                        Some(Cell::Bool(b)) => self.lookup[i]
                            .get(if b { "true" } else { "false" })
                            .copied(),
                        Some(Cell::Num(x)) => self.lookup[i].get(numbuf.format(x)).copied(),
                    };
                    out[o + col.unwrap_or(vocabulary.len())] = 1.0;
                }
                FittedKind::Bool { mean } => {
                    out[o] = match cell {
                        None | Some(Cell::Str("")) => *mean,
                        Some(Cell::Bool(b)) => f64::from(u8::from(b)),
                        Some(Cell::Num(x)) if x == 0.0 || x == 1.0 => x,
                        Some(Cell::Num(x)) => {
                            return Err(bad_type(&f.name, "a bool", &x.to_string()));
                        }
                        Some(Cell::Str(s)) => f64::from(u8::from(
                            parse_bool(s).ok_or_else(|| bad_type(&f.name, "a bool", s))?,
                        )),
                    };
                }
            }
        }
        Ok(clipped)
    }
}

/// A number's Display text, on the stack when it fits (it nearly always does), so matching a
/// numeric cell against a categorical vocabulary allocates nothing per request.
struct NumText {
    buf: [u8; 40],
    len: usize,
    spill: String,
}

impl NumText {
    fn new() -> NumText {
        NumText {
            buf: [0; 40],
            len: 0,
            spill: String::new(),
        }
    }

    fn format(&mut self, x: f64) -> &str {
        use std::fmt::Write;
        self.len = 0;
        if write!(self, "{x}").is_ok() {
            // Only whole UTF-8 strs are ever copied in, so this cannot fail.
            return std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default();
        }
        self.spill.clear();
        let _ = write!(self.spill, "{x}");
        &self.spill
    }
}

impl std::fmt::Write for NumText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn bad_type(name: &str, want: &str, got: &str) -> Error {
    let shown: String = got.chars().take(40).collect();
    Error::invalid(
        format!("lead.attributes[{name}]"),
        format!("expected {want}, got {shown:?}"),
    )
}

/// Which features of a record were clipped to their training range, by feature index (the
/// first 64; a spec has a few dozen at most).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clipped(u64);

impl Clipped {
    fn mark(&mut self, feature: usize) {
        if feature < 64 {
            self.0 |= 1 << feature;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    pub fn contains(&self, feature: usize) -> bool {
        feature < 64 && self.0 & (1 << feature) != 0
    }
}

/// Clip, then log1p (of the clipped value, floored at 0 so log1p stays finite).
pub fn transform(x: f64, log1p: bool, clip: Option<[f64; 2]>) -> f64 {
    let x = match clip {
        Some([lo, hi]) => x.clamp(lo, hi),
        None => x,
    };
    if log1p { x.max(0.0).ln_1p() } else { x }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
