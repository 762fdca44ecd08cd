//! The logistic fit with linfa-logistic, minimising C * sum(log loss) + |w|^2 / 2.
use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};

/// Fits weights and intercept on a row-major design matrix with `n_cols` columns.
pub fn fit(x: &[f64], y: &[bool], n_cols: usize, c: f64) -> Result<(Vec<f64>, f64), String> {
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
        let (w, b) = fit(&x, &y, 1, 1.0).unwrap();
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
}
