//! Feature spec (what to extract from which attribute), fitting its statistics, and extraction.
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::domain::lead::{AttrValue, Lead};

mod extract;
mod fit;
pub use extract::Clipped;
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
        /// Quantile bins next to the linear term (one-hot, fitted on the training split), so
        /// the model can bend: 0 or 1 = linear only. Absent: training chooses (up to
        /// DEFAULT_BINS, fewer when the design would be too costly to fit).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bins: Option<usize>,
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

/// Bins per numeric column when the spec does not say (scikit-learn's KBinsDiscretizer
/// default of 5 was weaker on both reference data sets; deciles matched splines or beat them).
pub const DEFAULT_BINS: usize = 10;
/// The most bins a spec may ask for.
pub const MAX_BINS: usize = 100;

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
        /// Ascending bin edges on the raw value (after clipping to `range`): bin j holds
        /// edges[j-1] <= x < edges[j]. Empty: no bins (artifact format 1, or bins off).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        edges: Vec<f64>,
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
            FittedKind::Numeric { edges, .. } => 2 + bin_columns(edges),
            FittedKind::Categorical { vocabulary } => vocabulary.len() + 1,
            FittedKind::Bool { .. } => 1,
        }
    }

    /// What a lead's value of this feature falls in, for its explanation: the bin of a
    /// number ("age in [25, 30)"), "missing", or the pooled level of a category it does not
    /// know; None when the value speaks for itself. `cols` are the feature's model columns.
    pub fn level(&self, cols: &[f64]) -> Option<String> {
        match &self.kind {
            FittedKind::Numeric { edges, .. } => {
                if cols.get(1) == Some(&1.0) {
                    return Some(format!("{} missing", self.name));
                }
                let j = cols.get(2..)?.iter().position(|c| *c == 1.0)?;
                Some(bin_label(&self.name, edges, j))
            }
            FittedKind::Categorical { .. } if cols.last() == Some(&1.0) => Some(format!(
                "{} = {OTHER} (rare or unseen in training)",
                self.name
            )),
            _ => None,
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
                FittedKind::Numeric { edges, .. } => {
                    names.push(f.name.clone());
                    names.push(format!("{}:missing", f.name));
                    names.extend((0..bin_columns(edges)).map(|j| bin_label(&f.name, edges, j)));
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
}

/// Model columns of a numeric feature's bins: one per bin, none when there are no edges.
pub fn bin_columns(edges: &[f64]) -> usize {
    if edges.is_empty() { 0 } else { edges.len() + 1 }
}

/// The bin of raw value `x`: how many edges are at or below it.
pub fn bin_of(edges: &[f64], x: f64) -> usize {
    edges.partition_point(|e| *e <= x)
}

/// "age < 25", "age in [25, 30)" or "age >= 60": bin `j` of `name`.
pub fn bin_label(name: &str, edges: &[f64], j: usize) -> String {
    match (j.checked_sub(1).and_then(|i| edges.get(i)), edges.get(j)) {
        (None, Some(hi)) => format!("{name} < {hi}"),
        (Some(lo), Some(hi)) => format!("{name} in [{lo}, {hi})"),
        (Some(lo), None) => format!("{name} >= {lo}"),
        (None, None) => name.to_string(),
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
mod tests;
