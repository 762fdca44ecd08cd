//! The model artifact (format, integrity, metrics) and scoring with explanations.
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::drift::DriftReference;
use crate::domain::features::{Cell, Clipped, FittedSpec, Record};
use crate::error::Error;

/// The artifact format this build reads and writes.
pub const FORMAT_VERSION: u32 = 2;
/// Formats this build still loads: 1 had no numeric bins (`edges`), which read as empty.
pub const READABLE_FORMATS: [u32; 2] = [1, 2];
/// How many positive and negative contributions a score reports.
pub const TOP_FACTORS: usize = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationBin {
    pub lower: f64,
    pub upper: f64,
    pub count: u64,
    pub mean_predicted: f64,
    pub observed_rate: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    pub auc: f64,
    pub log_loss: f64,
    pub brier: f64,
    pub n: u64,
    pub base_rate: f64,
    pub calibration: Vec<CalibrationBin>,
}

/// How the artifact was trained, enough to reproduce the split and the fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingInfo {
    /// File name of the training data (not the full path, so the artifact is path-independent).
    pub source: String,
    pub label: String,
    pub positive: String,
    pub seed: u64,
    pub holdout_fraction: f64,
    /// Inverse L2 strength: the objective is C * sum(log loss) + |w|^2 / 2.
    pub c: f64,
    /// "balanced" when classes were reweighted by n / (2 * class count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_weight: Option<String>,
    /// The cross-validation that chose `c`, when `--cv` was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cv: Option<CvInfo>,
    pub rows_train: u64,
    pub rows_holdout: u64,
    /// The weights were fitted again on all rows (train and holdout) with the same spec
    /// choices and C: `holdout` then describes the model fitted before the refit, on rows the
    /// stored model has seen, so it cannot be re-measured from the training file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refit: bool,
    pub excluded: Vec<String>,
    /// The `_lead_id`s of the rows the model was fitted on (sorted), when the data had that
    /// column (recorded outcomes): the promotion gate scores it on other leads only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fit_leads: Vec<String>,
}

/// K-fold cross-validation over a grid of C.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CvInfo {
    pub folds: usize,
    pub points: Vec<CvPoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CvPoint {
    pub c: f64,
    pub mean_auc: f64,
}

/// Everything a model file holds. `model_version` is a hash of all the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    pub format_version: u32,
    pub model_version: String,
    /// Set only when asked for (`--created-at` or SOURCE_DATE_EPOCH): a clock reading would
    /// break byte-identical retraining.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// sha256 of the training file's bytes.
    pub data_fingerprint: String,
    pub training: TrainingInfo,
    pub spec: FittedSpec,
    /// One weight per column of `spec`, in column order.
    pub weights: Vec<f64>,
    pub intercept: f64,
    /// Minimum probability for grades A, B and C (descending); below the last is D.
    pub grade_thresholds: [f64; 3],
    pub holdout: Metrics,
    /// Training distributions for drift checks (absent in artifacts made before drift).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftReference>,
}

/// "not a valid artifact" with where and what kind of fault, never an excerpt: serde's own
/// messages quote the input ("invalid type: string \"s3cr3t\""), and the input may be a file
/// the caller should not read.
fn invalid_json(e: &serde_json::Error) -> Error {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "unreadable",
        Category::Syntax => "not JSON",
        Category::Data => "JSON of the wrong shape",
        Category::Eof => "truncated",
    };
    Error::ModelRejected(format!(
        "not a valid artifact: {what} at line {} column {}",
        e.line(),
        e.column()
    ))
}

impl Artifact {
    /// The content hash: sha256 over the JSON of the artifact with an empty version, 16 hex chars.
    pub fn content_hash(&self) -> String {
        let mut copy = self.clone();
        copy.model_version = String::new();
        let bytes = serde_json::to_vec(&copy).unwrap_or_default();
        let digest = Sha256::digest(&bytes);
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// Sets `model_version` from the content and renders the canonical file bytes.
    pub fn seal(mut self) -> (Artifact, Vec<u8>) {
        self.model_version = self.content_hash();
        let mut bytes = serde_json::to_vec_pretty(&self).unwrap_or_default();
        bytes.push(b'\n');
        (self, bytes)
    }

    /// Parses and checks an artifact; every refusal says why.
    pub fn from_json(bytes: &[u8]) -> Result<Artifact, Error> {
        #[derive(Deserialize)]
        struct Probe {
            format_version: Option<u32>,
        }
        let probe: Probe = serde_json::from_slice(bytes).map_err(|e| invalid_json(&e))?;
        match probe.format_version {
            Some(v) if READABLE_FORMATS.contains(&v) => {}
            Some(v) => {
                return Err(Error::ModelRejected(format!(
                    "format_version {v} is not supported (this build reads {READABLE_FORMATS:?})"
                )));
            }
            None => return Err(Error::ModelRejected("format_version is missing".into())),
        }
        let a: Artifact = serde_json::from_slice(bytes).map_err(|e| invalid_json(&e))?;
        a.validate()?;
        Ok(a)
    }

    fn validate(&self) -> Result<(), Error> {
        let reject = |m: String| Err(Error::ModelRejected(m));
        if self.weights.len() != self.spec.n_columns() {
            return reject(format!(
                "{} weights for a feature spec of {} columns",
                self.weights.len(),
                self.spec.n_columns()
            ));
        }
        if !self.intercept.is_finite() || self.weights.iter().any(|w| !w.is_finite()) {
            return reject("weights must be finite".into());
        }
        let [a, b, c] = self.grade_thresholds;
        if !((0.0..=1.0).contains(&c) && c <= b && b <= a && a <= 1.0) {
            return reject(format!(
                "grade thresholds {:?} must descend within [0, 1]",
                self.grade_thresholds
            ));
        }
        let hash = self.content_hash();
        if hash != self.model_version {
            return reject(format!(
                "model_version {:?} does not match the content hash {hash:?}: the file was edited or corrupted",
                self.model_version
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Grade {
    A,
    B,
    C,
    D,
}

impl Grade {
    pub fn as_str(self) -> &'static str {
        match self {
            Grade::A => "A",
            Grade::B => "B",
            Grade::C => "C",
            Grade::D => "D",
        }
    }
}

/// The result of scoring one lead.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Score {
    pub probability: f64,
    pub score: u32,
    pub grade: Grade,
    /// Largest positive contributions, biggest first, by source attribute. Only attributes the
    /// lead sent: an absent one contributes the model's missing-value term, which says nothing
    /// about this lead, so it is not shown.
    pub top_positive: Vec<Factor>,
    /// Largest negative contributions, most negative first.
    pub top_negative: Vec<Factor>,
    pub model_version: String,
    pub cold_start: bool,
    /// Attributes whose value lay outside the training range and was clipped to it.
    pub clipped: Vec<String>,
}

/// One attribute's part in a score: what the lead sent and how far it moved the log-odds.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Factor {
    pub attribute: String,
    /// The value as sent ("oct", "6", "true"), "(missing)" for an empty one; at most 64
    /// characters.
    pub value: String,
    /// Sum of weight x column over the attribute's model columns (exact; round for display).
    pub contribution: f64,
    /// What the value fell in, when the value alone does not say: its bin ("age in [25,
    /// 30)"), or the pooled level of a category the model does not know.
    pub level: Option<String>,
}

impl Factor {
    /// "month = oct", or the level when there is one: "age in [25, 30)".
    pub fn text(&self) -> String {
        match &self.level {
            Some(level) => level.clone(),
            None => format!("{} = {}", self.attribute, self.value),
        }
    }
}

/// How a factor shows a sent value.
fn shown(cell: Cell<'_>) -> String {
    match cell {
        Cell::Str(s) if s.trim().is_empty() => "(missing)".into(),
        Cell::Str(s) => s.chars().take(64).collect(),
        Cell::Num(x) => x.to_string(),
        Cell::Bool(b) => b.to_string(),
    }
}

/// A loaded, validated model ready to score.
#[derive(Debug)]
pub struct Model {
    artifact: Artifact,
}

/// sigmoid(intercept + weights . row): the one definition training, evaluation and scoring
/// share (the same summation order, so the same bits).
pub fn linear_probability(intercept: f64, weights: &[f64], row: &[f64]) -> f64 {
    sigmoid(intercept + row.iter().zip(weights).map(|(a, b)| a * b).sum::<f64>())
}

pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

impl Model {
    pub fn new(artifact: Artifact) -> Model {
        Model { artifact }
    }

    pub fn artifact(&self) -> &Artifact {
        &self.artifact
    }

    pub fn version(&self) -> &str {
        &self.artifact.model_version
    }

    pub fn n_columns(&self) -> usize {
        self.artifact.weights.len()
    }

    /// Probability of the dense row `x`.
    pub fn predict_row(&self, x: &[f64]) -> f64 {
        linear_probability(self.artifact.intercept, &self.artifact.weights, x)
    }

    /// Probabilities of many dense rows (row-major, `n_columns` wide) as one matrix-vector
    /// product; `out` gets one probability per row.
    pub fn predict_batch(&self, rows: &[f64], out: &mut [f64]) {
        let k = self.n_columns().max(1);
        let n = out.len().min(rows.len() / k);
        let (Ok(x), Ok(mut z)) = (
            ndarray::ArrayView2::from_shape((n, k), &rows[..n * k]),
            ndarray::ArrayViewMut1::from_shape(n, &mut out[..n]),
        ) else {
            return;
        };
        z.fill(self.artifact.intercept);
        let w =
            ndarray::ArrayView1::from(&self.artifact.weights[..k.min(self.artifact.weights.len())]);
        if w.len() == k {
            ndarray::linalg::general_mat_vec_mul(1.0, &x, &w, 1.0, &mut z);
        }
        z.mapv_inplace(sigmoid);
    }

    pub fn grade(&self, p: f64) -> Grade {
        let [a, b, c] = self.artifact.grade_thresholds;
        if p >= a {
            Grade::A
        } else if p >= b {
            Grade::B
        } else if p >= c {
            Grade::C
        } else {
            Grade::D
        }
    }

    /// Scores and explains one record, using `buf` as the dense row.
    pub fn score_with<R: Record + ?Sized>(
        &self,
        record: &R,
        buf: &mut Vec<f64>,
    ) -> Result<Score, Error> {
        let spec = &self.artifact.spec;
        buf.clear();
        buf.resize(spec.n_columns(), 0.0);
        let clipped = spec.extract_into(record, buf)?;
        let p = self.predict_row(buf);
        Ok(self.explain(record, buf, p, clipped))
    }

    /// The score of `record`, whose dense `row` and probability `p` are already known (batch
    /// scoring), with its largest contributions by source attribute and the values sent.
    pub fn explain<R: Record + ?Sized>(
        &self,
        record: &R,
        row: &[f64],
        p: f64,
        clipped: Clipped,
    ) -> Score {
        let spec = &self.artifact.spec;
        let clipped = if clipped.is_empty() {
            Vec::new()
        } else {
            spec.features()
                .iter()
                .enumerate()
                .filter(|(i, _)| clipped.contains(*i))
                .map(|(_, f)| f.name.clone())
                .collect()
        };
        // (attribute, value, contribution, feature) of every attribute the lead sent.
        let mut contributions: Vec<(&str, Cell<'_>, f64, usize)> = spec
            .features()
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                let cell = record.cell(i, &f.name)?;
                let c = spec
                    .columns_of(i)
                    .map(|j| self.artifact.weights[j] * row[j])
                    .sum::<f64>();
                Some((f.name.as_str(), cell, c, i))
            })
            .collect();
        // Exact values order the factors; ties go by name, so the order is stable.
        contributions.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(b.0)));
        let factor = |&(n, cell, c, i): &(&str, Cell<'_>, f64, usize)| Factor {
            attribute: n.to_string(),
            value: shown(cell),
            contribution: c,
            level: spec.features()[i].level(&row[spec.columns_of(i)]),
        };
        let top_positive = contributions
            .iter()
            .filter(|c| c.2 > 0.0)
            .take(TOP_FACTORS)
            .map(factor)
            .collect();
        let top_negative = contributions
            .iter()
            .rev()
            .filter(|c| c.2 < 0.0)
            .take(TOP_FACTORS)
            .map(factor)
            .collect();
        Score {
            probability: p,
            score: (p * 100.0).round() as u32,
            grade: self.grade(p),
            top_positive,
            top_negative,
            model_version: self.version().to_string(),
            cold_start: false,
            clipped,
        }
    }

    pub fn score<R: Record + ?Sized>(&self, record: &R) -> Result<Score, Error> {
        self.score_with(record, &mut Vec::new())
    }
}

/// The score given when no model is loaded: the configured base rate, grade C, no factors.
pub fn cold_start_score(base_rate: f64) -> Score {
    Score {
        probability: base_rate,
        score: (base_rate * 100.0).round() as u32,
        grade: Grade::C,
        top_positive: Vec::new(),
        top_negative: Vec::new(),
        model_version: "cold-start".into(),
        cold_start: true,
        clipped: Vec::new(),
    }
}

#[cfg(test)]
pub(crate) mod tests;
