//! Scoring labelled rows with one or more artifacts on the same rows: `evaluate`, `compare`
//! and the server's promotion gate all choose their rows here.
use std::collections::BTreeSet;
use std::path::Path;

use super::{Table, TrainResult, column_map, data, design, fingerprint, metrics, split};
use crate::domain::features::{self, FeatureDef, FeatureSpec};
use crate::domain::model::{Artifact, Metrics, Model};

/// Which rows `evaluate` scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalRows {
    /// Rows the first artifact was not fitted on: by `_lead_id` when it records its training
    /// leads, else its own holdout split when the file is its training data, else every row.
    Auto,
    All,
}

const REFIT_IN_SAMPLE: &str = "the model was refitted on every row of its training data, so \
    none of these rows is held out from it (its stored holdout metrics describe the model \
    fitted before the refit); evaluate it on other data, or pass --all-rows to score these \
    rows in-sample";

/// Every artifact's metrics on the same rows, and which rows those were.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    pub metrics: Vec<Metrics>,
    /// "not trained on", "holdout" or "all".
    pub used: &'static str,
    pub rows: u64,
    pub positives: u64,
}

/// Scores `data` with `artifact` and returns its metrics plus which rows were used.
pub fn evaluate(
    artifact: &Artifact,
    data: &Path,
    label: &str,
    positive: Option<&str>,
    delimiter: Option<u8>,
    rows: EvalRows,
) -> TrainResult<(Metrics, &'static str)> {
    let (mut metrics, used) = evaluate_many(&[artifact], data, label, positive, delimiter, rows)?;
    Ok((metrics.remove(0), used))
}

/// Scores the same rows of the file `data` with each artifact (see `evaluate_table`).
pub fn evaluate_many(
    artifacts: &[&Artifact],
    data: &Path,
    label: &str,
    positive: Option<&str>,
    delimiter: Option<u8>,
    rows: EvalRows,
) -> TrainResult<(Vec<Metrics>, &'static str)> {
    let table = data::read(data, delimiter)?;
    let first = artifacts.first().ok_or("no model to evaluate")?;
    let same_file = fingerprint(data)? == first.data_fingerprint;
    let e = evaluate_table(artifacts, &table, label, positive, rows, same_file)?;
    Ok((e.metrics, e.used))
}

/// Scores the same rows of `table` with each artifact. With `EvalRows::Auto` the rows are those
/// the first artifact was not fitted on: when it lists its training leads and the table has a
/// `_lead_id` column, every row whose lead is not among them; else, when `same_file` (the
/// table is its training file), its holdout split; else every row.
pub fn evaluate_table(
    artifacts: &[&Artifact],
    table: &Table,
    label: &str,
    positive: Option<&str>,
    rows: EvalRows,
    same_file: bool,
) -> TrainResult<Evaluated> {
    let first = artifacts.first().ok_or("no model to evaluate")?;
    let positive = positive
        .or(Some(first.training.positive.as_str()).filter(|_| label == first.training.label));
    let labels = data::labels(table, label, positive)?;
    let lead_col = table.column("_lead_id");
    let (idx, used) = match (rows, lead_col) {
        (EvalRows::Auto, Some(col)) if !first.training.fit_leads.is_empty() => {
            let fitted: BTreeSet<&str> = first
                .training
                .fit_leads
                .iter()
                .map(String::as_str)
                .collect();
            let idx = (0..table.rows.len())
                .filter(|&r| !fitted.contains(table.rows[r][col].as_str()))
                .collect();
            (idx, "not trained on")
        }
        (EvalRows::Auto, _) if same_file && first.training.refit => {
            return Err(REFIT_IN_SAMPLE.into());
        }
        (EvalRows::Auto, _) if same_file => {
            let (_, hold) = split::stratified(
                &labels.values,
                first.training.holdout_fraction,
                first.training.seed,
            );
            (hold, "holdout")
        }
        _ => ((0..table.rows.len()).collect(), "all"),
    };
    if idx.is_empty() && used == "not trained on" {
        return Err(if first.training.refit {
            REFIT_IN_SAMPLE.into()
        } else {
            "every row of this data was fitted on: nothing is held out (--all-rows scores them \
             in-sample)"
                .into()
        });
    }
    let y: Vec<bool> = idx.iter().map(|&r| labels.values[r]).collect();
    let mut out = Vec::with_capacity(artifacts.len());
    for artifact in artifacts {
        let spec = &artifact.spec;
        let names = FeatureSpec {
            features: spec
                .features()
                .iter()
                .map(|f| FeatureDef {
                    name: f.name.clone(),
                    kind: features::FeatureKind::Bool,
                })
                .collect(),
        };
        // A feature no row has (an attribute no lead sent) is missing in every row, as when
        // serving; only a table with none of the features is the wrong data.
        let columns: Vec<usize> = names
            .features
            .iter()
            .map(|f| table.column(&f.name).unwrap_or(usize::MAX))
            .collect();
        if !names.features.is_empty() && columns.iter().all(|&c| c == usize::MAX) {
            column_map(table, &names)?;
        }
        let x = design(table, spec, &columns, &idx)?;
        let model = Model::new((*artifact).clone());
        let p: Vec<f64> = x
            .chunks(spec.n_columns().max(1))
            .map(|row| model.predict_row(row))
            .collect();
        out.push(metrics::evaluate(&p, &y));
    }
    Ok(Evaluated {
        metrics: out,
        used,
        rows: y.len() as u64,
        positives: y.iter().filter(|v| **v).count() as u64,
    })
}
