//! Offline training: read a CSV, fit the feature spec and a logistic model, measure the
//! holdout, and write a sealed artifact. Same data + same options = byte-identical output.
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::domain::drift::{self, DriftReference};
use crate::domain::features::{self, FeatureDef, FeatureSpec, FittedSpec, Record};
use crate::domain::model::{Artifact, CvInfo, FORMAT_VERSION, TrainingInfo, linear_probability};

mod choose;
pub mod data;
mod evaluate;
pub mod fit;
pub mod frame;
pub mod metrics;
pub mod newton;
pub mod split;

pub use data::Table;
pub use evaluate::{EvalRows, Evaluated, evaluate, evaluate_many, evaluate_table};
use frame::{Frame, FrameRow};

/// Everything `leadrouter train` accepts.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub data: PathBuf,
    pub label: String,
    /// Label value that counts as a conversion; inferred for yes/no, true/false, 1/0 labels.
    pub positive: Option<String>,
    pub delimiter: Option<u8>,
    pub exclude: Vec<String>,
    pub spec: Option<FeatureSpec>,
    pub seed: u64,
    pub holdout_fraction: f64,
    /// Inverse L2 strength (scikit-learn's C); None: 1, or chosen by cross-validation when
    /// the design has few positives per column (see `choose::cv_folds`).
    pub c: Option<f64>,
    pub created_at: Option<String>,
    /// Refuse to train on fewer labelled rows than this.
    pub min_rows: usize,
    /// Refuse to train on fewer positive rows than this.
    pub min_positives: usize,
    pub solver: fit::Solver,
    /// Weight each class by n / (2 * class count), as scikit-learn's "balanced".
    pub balanced: bool,
    /// Pick C by this many stratified folds of the training split (None: use `c`).
    pub cv_folds: Option<usize>,
    /// After measuring the holdout, fit the spec and weights again on every row.
    pub refit: bool,
}

pub use choose::CV_GRID;
/// C when neither `--C` nor cross-validation sets it (scikit-learn's default).
pub const DEFAULT_C: f64 = 1.0;

/// Default minimum-data gate: below this a holdout AUC is mostly noise.
pub const MIN_ROWS: usize = 200;
pub const MIN_POSITIVES: usize = 40;

/// What training produced.
pub struct Trained {
    pub artifact: Artifact,
    /// The canonical file bytes.
    pub bytes: Vec<u8>,
    /// The spec used (inferred or given), before fitting.
    pub spec: FeatureSpec,
    /// Seconds spent in the optimiser for the final fit (not CSV parsing, not CV).
    pub fit_seconds: f64,
    /// What training chose on its own, one line each (bins, C by cross-validation, refit).
    pub notes: Vec<String>,
}

/// Why training or evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The data cannot train or evaluate a model: a missing column, too few rows or
    /// positives, one class only, a spec that does not match, a fit that did not converge.
    #[error("{0}")]
    Data(String),
}

impl From<&str> for TrainError {
    fn from(reason: &str) -> TrainError {
        TrainError::Data(reason.to_string())
    }
}

impl From<String> for TrainError {
    fn from(reason: String) -> TrainError {
        TrainError::Data(reason)
    }
}

pub type TrainResult<T> = Result<T, TrainError>;

/// A CSV row seen through a mapping from feature index to column index.
pub struct Row<'a> {
    pub cells: &'a [String],
    pub columns: &'a [usize],
}

impl Record for Row<'_> {
    fn cell(&self, index: usize, _name: &str) -> Option<features::Cell<'_>> {
        self.columns
            .get(index)
            .and_then(|&c| self.cells.get(c))
            .map(|s| features::Cell::Str(s))
    }
}

/// Infers a spec from the table: every column but the label, the excluded ones and metadata
/// columns (names starting with `_`, as `export-outcomes` writes them).
pub fn infer_spec(table: &Table, label: &str, exclude: &[String]) -> FeatureSpec {
    let features = table
        .headers
        .iter()
        .enumerate()
        .filter(|(_, h)| {
            h.as_str() != label && !h.starts_with('_') && !exclude.iter().any(|e| e == *h)
        })
        .map(|(i, h)| FeatureDef {
            name: h.clone(),
            kind: features::infer_kind(table.rows.iter().map(|r| r[i].as_str())),
        })
        .collect();
    FeatureSpec { features }
}

/// Maps each spec feature to its column; unknown names are an error.
pub fn column_map(table: &Table, spec: &FeatureSpec) -> TrainResult<Vec<usize>> {
    columns_of(&table.headers, spec)
}

fn columns_of(headers: &[String], spec: &FeatureSpec) -> TrainResult<Vec<usize>> {
    spec.features
        .iter()
        .map(|f| {
            headers
                .iter()
                .position(|h| *h == f.name)
                .ok_or_else(|| format!("feature {:?} is not a column of the data", f.name).into())
        })
        .collect()
}

/// The dense design matrix of a frame's `rows` (row-major).
fn frame_design(
    frame: &Frame,
    spec: &FittedSpec,
    columns: &[usize],
    rows: &[usize],
) -> TrainResult<Vec<f64>> {
    design_of(spec, rows, |row| FrameRow {
        frame,
        columns,
        row,
    })
}

/// Dense design matrix of `rows` (row-major), using a fitted spec.
pub fn design(
    table: &Table,
    spec: &FittedSpec,
    columns: &[usize],
    rows: &[usize],
) -> TrainResult<Vec<f64>> {
    design_of(spec, rows, |r| Row {
        cells: &table.rows[r],
        columns,
    })
}

/// The matrix of `rows`, each read as a record by `record` (errors name the CSV line).
fn design_of<R: Record>(
    spec: &FittedSpec,
    rows: &[usize],
    record: impl Fn(usize) -> R,
) -> TrainResult<Vec<f64>> {
    let n = spec.n_columns();
    let mut x = vec![0.0; rows.len() * n];
    for (k, &r) in rows.iter().enumerate() {
        spec.extract_into(&record(r), &mut x[k * n..(k + 1) * n])
            .map_err(|e| format!("row {}: {e}", r + 2))?;
    }
    Ok(x)
}

/// The sorted `_lead_id`s of the fitted rows, when the data has that column.
fn fit_leads(frame: &Frame, fitted: &[usize]) -> Vec<String> {
    let Some(col) = frame.column("_lead_id") else {
        return Vec::new();
    };
    let column = &frame.columns[col];
    let mut ids: Vec<String> = fitted
        .iter()
        .map(|&r| column.text(r).into_owned())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

pub(crate) fn fingerprint(path: &Path) -> TrainResult<String> {
    let bytes = std::fs::read(path).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Probability thresholds that put the top 10 % of holdout leads in A, the next 20 % in B and
/// the next 30 % in C.
fn grade_thresholds(probabilities: &[f64]) -> [f64; 3] {
    let mut p = probabilities.to_vec();
    p.sort_by(|a, b| b.total_cmp(a));
    let at = |q: f64| {
        p.get(((p.len() as f64 * q) as usize).min(p.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.5)
    };
    [at(0.1), at(0.3), at(0.6)]
}

pub fn train(opts: &TrainOptions) -> TrainResult<Trained> {
    if opts.c.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
        return Err("--C must be a positive number".into());
    }
    if !(opts.holdout_fraction > 0.0 && opts.holdout_fraction < 1.0) {
        return Err("--holdout must be between 0 and 1".into());
    }
    // One streaming pass into typed columns: at 10^6 x 40 the table of Strings took 3 GiB.
    let mut frame = frame::read(&opts.data, opts.delimiter)?;
    let labels = data::frame_labels(&frame, &opts.label, opts.positive.as_deref())?;
    let positives = labels.values.iter().filter(|v| **v).count();
    if labels.values.len() < opts.min_rows || positives < opts.min_positives {
        return Err(format!(
            "too little data to train: {} rows with {positives} positives ({:?}); need at least {} rows \
             and {} positives (--min-rows, --min-positives)",
            labels.values.len(),
            labels.positive,
            opts.min_rows,
            opts.min_positives
        )
        .into());
    }
    let spec = match &opts.spec {
        Some(s) => s.clone(),
        None => frame.infer_spec(&opts.label, &opts.exclude),
    };
    if spec.features.iter().any(|f| f.name == opts.label) {
        return Err(format!("the label {:?} cannot also be a feature", opts.label).into());
    }
    let columns = columns_of(&frame.headers, &spec)?;
    let (train_idx, holdout_idx) =
        split::stratified(&labels.values, opts.holdout_fraction, opts.seed);
    let mut notes = Vec::new();
    let part = Part {
        frame: &frame,
        columns: &columns,
        labels: &labels.values,
        opts,
    };
    let (spec, fitted) = part.resolve_bins(&spec, &train_idx, &mut notes)?;
    let mut fit = part.fit(&spec, fitted, &train_idx, None, &mut notes)?;
    // The holdout is measured on the model fitted without it; the holdout matrix is built
    // after the fit: at 10^6 x 40 the frame and the training matrix (847 MB) are the peak.
    let predict = |f: &Fitted| -> TrainResult<Vec<f64>> {
        let x = frame_design(&frame, &f.fitted, &columns, &holdout_idx)?;
        let n = f.fitted.n_columns().max(1);
        Ok(x.chunks(n)
            .map(|row| linear_probability(f.intercept, &f.weights, row))
            .collect())
    };
    let y_hold: Vec<bool> = holdout_idx.iter().map(|&r| labels.values[r]).collect();
    // Grades and the score's drift reference come from the final model on the holdout rows:
    // after a refit, rows it has seen (they set quantiles, not quality figures).
    let mut p = predict(&fit)?;
    let holdout = metrics::evaluate(&p, &y_hold);
    let mut fitted_rows = train_idx;
    if opts.refit {
        let all: Vec<usize> = (0..labels.values.len()).collect();
        fit = part.fit(&spec, None, &all, Some(fit.c), &mut notes)?;
        notes.push(format!(
            "refit on all {} rows with C {}: the holdout metrics describe the model fitted on \
             {} rows before the refit",
            all.len(),
            fit.c,
            fitted_rows.len()
        ));
        fitted_rows = all;
        p = predict(&fit)?;
    }
    let fit_leads = fit_leads(&frame, &fitted_rows);
    let data_fingerprint = std::mem::take(&mut frame.fingerprint);
    drop(frame);
    let artifact = Artifact {
        format_version: FORMAT_VERSION,
        model_version: String::new(),
        created_at: opts.created_at.clone(),
        data_fingerprint,
        training: TrainingInfo {
            source: opts
                .data
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            label: opts.label.clone(),
            positive: labels.positive.clone(),
            seed: opts.seed,
            holdout_fraction: opts.holdout_fraction,
            c: fit.c,
            class_weight: opts.balanced.then(|| "balanced".to_string()),
            cv: fit.cv.take(),
            rows_train: (labels.values.len() - holdout_idx.len()) as u64,
            rows_holdout: holdout_idx.len() as u64,
            refit: opts.refit,
            excluded: opts.exclude.clone(),
            fit_leads,
        },
        spec: fit.fitted,
        weights: fit.weights,
        intercept: fit.intercept,
        grade_thresholds: grade_thresholds(&p),
        holdout,
        drift: Some(DriftReference {
            features: fit.feature_reference,
            score: drift::score_reference(&p),
        }),
    };
    let (artifact, bytes) = artifact.seal();
    Ok(Trained {
        artifact,
        bytes,
        spec,
        fit_seconds: fit.seconds,
        notes,
    })
}

/// The data one training run fits on, for the split fit and the refit alike.
struct Part<'a> {
    frame: &'a Frame,
    columns: &'a [usize],
    labels: &'a [bool],
    opts: &'a TrainOptions,
}

/// A fitted spec and its weights.
struct Fitted {
    fitted: FittedSpec,
    weights: Vec<f64>,
    intercept: f64,
    c: f64,
    cv: Option<CvInfo>,
    feature_reference: Vec<Vec<f64>>,
    seconds: f64,
}

impl Part<'_> {
    fn records<'r>(&'r self, rows: &[usize]) -> Vec<FrameRow<'r>> {
        rows.iter()
            .map(|&row| FrameRow {
                frame: self.frame,
                columns: self.columns,
                row,
            })
            .collect()
    }

    /// The spec with the bins of numeric features it leaves open decided (see
    /// `choose::default_bins`), and the fitted spec when deciding already fitted it.
    fn resolve_bins(
        &self,
        spec: &FeatureSpec,
        rows: &[usize],
        notes: &mut Vec<String>,
    ) -> TrainResult<(FeatureSpec, Option<FittedSpec>)> {
        let open = choose::open_bins(spec);
        if open == 0 {
            return Ok((spec.clone(), None));
        }
        let linear = choose::with_bins(spec, 0);
        let base = features::fit(&linear, &self.records(rows))?;
        let b = choose::default_bins(rows.len(), base.n_columns(), open);
        if b == 0 {
            notes.push(format!(
                "{open} numeric columns stay linear: even 2 bins each would put {} rows x {} \
                 columns over the fit budget (set `bins` per column in the spec to insist)",
                rows.len(),
                base.n_columns() + 2 * open
            ));
            return Ok((linear, Some(base)));
        }
        notes.push(format!(
            "{open} numeric columns get up to {b} quantile bins each next to their linear term \
             (`bins` per column in the spec overrides; --print-spec shows the choice)"
        ));
        Ok((choose::with_bins(spec, b), None))
    }

    /// Fits the spec (unless given) and the weights on `rows`; C is `c` when given, else
    /// chosen as the options say.
    fn fit(
        &self,
        spec: &FeatureSpec,
        fitted: Option<FittedSpec>,
        rows: &[usize],
        c: Option<f64>,
        notes: &mut Vec<String>,
    ) -> TrainResult<Fitted> {
        let fitted = match fitted {
            Some(f) => f,
            None => features::fit(spec, &self.records(rows))?,
        };
        let x = frame_design(self.frame, &fitted, self.columns, rows)?;
        let y: Vec<bool> = rows.iter().map(|&r| self.labels[r]).collect();
        let n_cols = fitted.n_columns();
        let sample_weight = self.opts.balanced.then(|| balanced_weights(&y));
        let positives = y.iter().filter(|v| **v).count();
        let folds = match c {
            Some(_) => None,
            None => choose::cv_folds(self.opts, rows.len(), positives, n_cols),
        };
        let (c, cv) = match (c, folds) {
            (Some(c), _) => (c, None),
            (None, Some(k)) => {
                let (c, info) =
                    choose::cross_validate(&x, &y, n_cols, k, self.opts, &sample_weight)?;
                if self.opts.cv_folds.is_none() {
                    notes.push(format!(
                        "C {c} chosen by {k}-fold cross-validation: {positives} positives for \
                         {n_cols} columns is under {} per column (--C or --cv to decide)",
                        choose::AUTO_CV_POSITIVES_PER_COLUMN
                    ));
                }
                (c, Some(info))
            }
            (None, None) => (self.opts.c.unwrap_or(DEFAULT_C), None),
        };
        let feature_reference = drift::feature_reference(&fitted, &x);
        let started = std::time::Instant::now();
        // The fit takes the matrix (packing it in place).
        let (weights, intercept) =
            fit::fit_owned(x, &y, n_cols, c, self.opts.solver, sample_weight.as_deref())?;
        Ok(Fitted {
            fitted,
            weights,
            intercept,
            c,
            cv,
            feature_reference,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// scikit-learn's "balanced" class weights: n / (2 * count of the row's class).
pub fn balanced_weights(y: &[bool]) -> Vec<f64> {
    let n = y.len() as f64;
    let pos = y.iter().filter(|v| **v).count().max(1) as f64;
    let neg = (n - pos).max(1.0);
    let (wp, wn) = (n / (2.0 * pos), n / (2.0 * neg));
    y.iter().map(|&v| if v { wp } else { wn }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inferred_specs_skip_label_excluded_and_metadata_columns() {
        let table = Table {
            headers: ["_lead_id", "age", "job", "outcome", "secret"]
                .map(String::from)
                .to_vec(),
            rows: vec![["a", "30", "x", "won", "1"].map(String::from).to_vec()],
        };
        let spec = infer_spec(&table, "outcome", &["secret".to_string()]);
        let names: Vec<&str> = spec.features.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["age", "job"]);
    }
}
