//! The logistic fit, minimising C * sum(s_i * log loss_i) + |w|^2 / 2: our Newton solver by
//! default, linfa-logistic as the reference implementation.
use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};

use super::newton;

/// Which optimiser fits the model. Both minimise the same objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Solver {
    #[default]
    Newton,
    Linfa,
}

impl std::str::FromStr for Solver {
    type Err = String;
    fn from_str(s: &str) -> Result<Solver, String> {
        match s {
            "newton" => Ok(Solver::Newton),
            "linfa" => Ok(Solver::Linfa),
            _ => Err(format!("unknown solver {s:?} (newton or linfa)")),
        }
    }
}

/// Fits weights and intercept on a row-major design matrix with `n_cols` columns.
pub fn fit(
    x: &[f64],
    y: &[bool],
    n_cols: usize,
    c: f64,
    solver: Solver,
    sample_weight: Option<&[f64]>,
) -> Result<(Vec<f64>, f64), String> {
    match solver {
        Solver::Newton => {
            newton::newton(x, y, n_cols, c, sample_weight).map(|f| (f.weights, f.intercept))
        }
        Solver::Linfa if sample_weight.is_some() => {
            Err("the linfa solver has no sample weights; use --solver newton".into())
        }
        Solver::Linfa => fit_linfa(x, y, n_cols, c),
    }
}

/// As [`fit`], taking the matrix (the Newton solver packs it in place; see `newton_owned`).
pub fn fit_owned(
    x: Vec<f64>,
    y: &[bool],
    n_cols: usize,
    c: f64,
    solver: Solver,
    sample_weight: Option<&[f64]>,
) -> Result<(Vec<f64>, f64), String> {
    match solver {
        Solver::Newton => {
            newton::newton_owned(x, y, n_cols, c, sample_weight).map(|f| (f.weights, f.intercept))
        }
        Solver::Linfa => fit(&x, y, n_cols, c, solver, sample_weight),
    }
}

/// The reference fit with linfa-logistic (L-BFGS through argmin).
pub fn fit_linfa(x: &[f64], y: &[bool], n_cols: usize, c: f64) -> Result<(Vec<f64>, f64), String> {
    let n_rows = y.len();
    let x = Array2::from_shape_vec((n_rows, n_cols), x.to_vec()).map_err(|e| e.to_string())?;
    let y = Array1::from_vec(y.to_vec());
    let ds = Dataset::new(x, y);
    let model = LogisticRegression::default()
        .alpha(1.0 / c)
        .max_iterations(500)
        .gradient_tolerance(1e-5)
        .fit(&ds)
        .map_err(|e| format!("logistic fit failed: {e}"))?;
    // linfa's "positive" class is whichever label it saw more often, not necessarily `true`
    // (in 0.8.1, P(more frequent class)); turn its weights into P(true).
    let sign = if model.labels().pos.class { 1.0 } else { -1.0 };
    let weights = model.params().iter().map(|w| sign * w).collect();
    Ok((weights, sign * model.intercept()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::sigmoid;

    #[test]
    fn probabilities_are_of_the_true_class_on_imbalanced_data() {
        // 10 % positives, which are the ones with a large x: the model must rank them high.
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..400 {
            let pos = i % 10 == 0;
            let noise = ((i * 37) % 17) as f64 / 17.0 - 0.5;
            x.push(if pos { 1.0 } else { -1.0 } + noise);
            y.push(pos);
        }
        let (w, b) = fit_linfa(&x, &y, 1, 1.0).unwrap();
        assert!(w[0] > 0.0, "weight {w:?} points the wrong way");
        let p: Vec<f64> = x.iter().map(|xi| sigmoid(b + w[0] * xi)).collect();
        let auc = crate::training::metrics::auc(&p, &y);
        assert!(auc > 0.9, "auc {auc}");
        let mean_p = p.iter().sum::<f64>() / p.len() as f64;
        assert!(
            (mean_p - 0.1).abs() < 0.05,
            "mean probability {mean_p} should be near the base rate"
        );
    }

    #[test]
    fn newton_and_linfa_agree_on_the_weights() {
        // 3,000 rows, 6 columns (one binary), a known logistic truth with noise.
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let (n, d) = (3000, 6);
        let truth = [1.2, -0.8, 0.5, 0.0, 0.3, -1.5];
        let mut x = Vec::with_capacity(n * d);
        let mut y = Vec::with_capacity(n);
        for _ in 0..n {
            let row: Vec<f64> = (0..d)
                .map(|j| {
                    if j == 5 {
                        (next() < 0.3) as u8 as f64
                    } else {
                        next() * 4.0 - 2.0
                    }
                })
                .collect();
            let z = -0.7 + row.iter().zip(&truth).map(|(a, b)| a * b).sum::<f64>();
            y.push(next() < sigmoid(z));
            x.extend(row);
        }
        for c in [0.05, 1.0] {
            let (wl, bl) = fit(&x, &y, d, c, Solver::Linfa, None).unwrap();
            let (wn, bn) = fit(&x, &y, d, c, Solver::Newton, None).unwrap();
            for (a, b) in wl.iter().chain([&bl]).zip(wn.iter().chain([&bn])) {
                assert!(
                    (a - b).abs() < 2e-3,
                    "C={c}: linfa {wl:?} {bl} vs newton {wn:?} {bn}"
                );
            }
        }
    }
}
