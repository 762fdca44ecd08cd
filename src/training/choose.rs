//! What training decides from the data: how many quantile bins the numeric columns get, and
//! whether and how C is chosen by cross-validation.
use super::{TrainOptions, TrainResult, fit, metrics, split};
use crate::domain::features::{DEFAULT_BINS, FeatureKind, FeatureSpec};
use crate::domain::model::{CvInfo, CvPoint, linear_probability};

/// The C values `--cv` tries, ascending; ties go to the smaller (stronger regularisation).
pub const CV_GRID: [f64; 8] = [0.001, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0];

/// A dense Newton step costs ~ rows x columns^2 (the Hessian's GEMM). Default bins are only
/// added while a fit stays under this; at 2e9 a step is ~0.1 s here, and the round-2 speed
/// cases (200k and 10^6 rows of 40 columns) are already over it, so they keep their cost.
pub const FIT_BUDGET: f64 = 2e9;

/// Positives per model column under which training picks C by cross-validation itself.
pub const AUTO_CV_POSITIVES_PER_COLUMN: f64 = 10.0;
/// Folds of the automatic cross-validation.
pub const AUTO_CV_FOLDS: usize = 5;

/// Numeric features whose spec leaves `bins` open.
pub fn open_bins(spec: &FeatureSpec) -> usize {
    spec.features
        .iter()
        .filter(|f| matches!(f.kind, FeatureKind::Numeric { bins: None, .. }))
        .count()
}

/// The spec with every open `bins` set to `b`.
pub fn with_bins(spec: &FeatureSpec, b: usize) -> FeatureSpec {
    let mut spec = spec.clone();
    for f in &mut spec.features {
        if let FeatureKind::Numeric {
            bins: bins @ None, ..
        } = &mut f.kind
        {
            *bins = Some(b);
        }
    }
    spec
}

/// Bins for the open numeric features: the most, up to DEFAULT_BINS, that keep
/// rows x columns^2 under FIT_BUDGET, given `base_columns` without them; 0 when even 2 do not
/// fit (bin columns are an upper bound: repeated quantiles merge edges).
pub fn default_bins(rows: usize, base_columns: usize, open: usize) -> usize {
    (2..=DEFAULT_BINS)
        .rev()
        .find(|b| {
            let k = (base_columns + open * b + 1) as f64;
            rows as f64 * k * k <= FIT_BUDGET
        })
        .unwrap_or(0)
}

/// Folds for choosing C when the options leave it open: `--cv K` when given, else
/// AUTO_CV_FOLDS when there are few positives per column and the fits are affordable.
pub fn cv_folds(
    opts: &TrainOptions,
    rows: usize,
    positives: usize,
    columns: usize,
) -> Option<usize> {
    if opts.cv_folds.is_some() || opts.c.is_some() {
        return opts.cv_folds;
    }
    let k = (columns + 1) as f64;
    let few = (positives as f64) < AUTO_CV_POSITIVES_PER_COLUMN * columns as f64;
    // Cross-validation fits |CV_GRID| x folds models: keep it to small designs.
    let affordable = rows as f64 * k * k <= FIT_BUDGET / 4.0;
    (few && affordable).then_some(AUTO_CV_FOLDS)
}

/// Mean held-out AUC of each C in `CV_GRID` over `k` stratified folds of the training rows,
/// and the best C (highest mean AUC; ties to the smaller C).
pub fn cross_validate(
    x: &[f64],
    y: &[bool],
    n_cols: usize,
    k: usize,
    opts: &TrainOptions,
    sample_weight: &Option<Vec<f64>>,
) -> TrainResult<(f64, CvInfo)> {
    if !(2..=20).contains(&k) {
        return Err("--cv takes 2 to 20 folds".into());
    }
    let folds = split::stratified_folds(y, k, opts.seed);
    let mut points = Vec::new();
    for c in CV_GRID {
        let mut total = 0.0;
        for fold in &folds {
            let mut held = vec![false; y.len()];
            fold.iter().for_each(|&i| held[i] = true);
            let (mut xt, mut yt, mut st) = (Vec::new(), Vec::new(), Vec::new());
            for i in (0..y.len()).filter(|&i| !held[i]) {
                xt.extend_from_slice(&x[i * n_cols..(i + 1) * n_cols]);
                yt.push(y[i]);
                if let Some(s) = sample_weight {
                    st.push(s[i]);
                }
            }
            let sw = sample_weight.as_ref().map(|_| st.as_slice());
            let (w, b) = fit::fit_owned(xt, &yt, n_cols, c, opts.solver, sw)?;
            let p: Vec<f64> = fold
                .iter()
                .map(|&i| linear_probability(b, &w, &x[i * n_cols..(i + 1) * n_cols]))
                .collect();
            let yf: Vec<bool> = fold.iter().map(|&i| y[i]).collect();
            total += metrics::auc(&p, &yf);
        }
        points.push(CvPoint {
            c,
            mean_auc: total / k as f64,
        });
    }
    let best = points
        .iter()
        .fold(None::<&CvPoint>, |best, p| match best {
            Some(b) if b.mean_auc >= p.mean_auc => Some(b),
            _ => Some(p),
        })
        .map(|p| p.c)
        .unwrap_or(1.0);
    Ok((best, CvInfo { folds: k, points }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_bins_shrink_with_the_cost_of_the_fit() {
        // Bank-sized: 26k rows, 80 columns, 9 numeric: all ten bins.
        assert_eq!(default_bins(26_000, 80, 9), DEFAULT_BINS);
        // 200k rows of 40 numeric columns (80 base columns): over budget, no bins.
        assert_eq!(default_bins(200_000, 80, 40), 0);
        // In between, fewer bins.
        let b = default_bins(100_000, 60, 10);
        assert!((2..DEFAULT_BINS).contains(&b), "{b}");
        let k = (60 + 10 * b + 1) as f64;
        assert!(100_000.0 * k * k <= FIT_BUDGET);
    }
}
