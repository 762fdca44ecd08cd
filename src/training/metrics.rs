//! Holdout metrics: AUC (with ties), log loss, Brier score and a 10-bin calibration table.
use crate::domain::model::{CalibrationBin, Metrics};

/// Area under the ROC curve by the rank-sum formula; tied scores share their average rank.
pub fn auc(p: &[f64], y: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let (mut rank_sum, mut i) = (0.0, 0);
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && p[idx[j + 1]] == p[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += avg_rank * idx[i..=j].iter().filter(|&&k| y[k]).count() as f64;
        i = j + 1;
    }
    let pos = y.iter().filter(|v| **v).count() as f64;
    let neg = y.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

pub fn log_loss(p: &[f64], y: &[bool]) -> f64 {
    let eps = 1e-15;
    let total: f64 = p
        .iter()
        .zip(y)
        .map(|(&p, &y)| {
            let p = p.clamp(eps, 1.0 - eps);
            if y { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum();
    total / p.len().max(1) as f64
}

pub fn brier(p: &[f64], y: &[bool]) -> f64 {
    let total: f64 = p
        .iter()
        .zip(y)
        .map(|(&p, &y)| (p - f64::from(u8::from(y))).powi(2))
        .sum();
    total / p.len().max(1) as f64
}

/// Ten equal-width probability bins; empty bins are kept with count 0.
pub fn calibration(p: &[f64], y: &[bool]) -> Vec<CalibrationBin> {
    let mut bins: Vec<(u64, f64, f64)> = vec![(0, 0.0, 0.0); 10];
    for (&p, &y) in p.iter().zip(y) {
        let b = ((p * 10.0) as usize).min(9);
        bins[b].0 += 1;
        bins[b].1 += p;
        bins[b].2 += f64::from(u8::from(y));
    }
    bins.into_iter()
        .enumerate()
        .map(|(i, (n, sp, sy))| CalibrationBin {
            lower: i as f64 / 10.0,
            upper: (i + 1) as f64 / 10.0,
            count: n,
            mean_predicted: if n > 0 { sp / n as f64 } else { 0.0 },
            observed_rate: if n > 0 { sy / n as f64 } else { 0.0 },
        })
        .collect()
}

pub fn evaluate(p: &[f64], y: &[bool]) -> Metrics {
    Metrics {
        auc: auc(p, y),
        log_loss: log_loss(p, y),
        brier: brier(p, y),
        n: p.len() as u64,
        base_rate: y.iter().filter(|v| **v).count() as f64 / y.len().max(1) as f64,
        calibration: calibration(p, y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_handles_order_and_ties() {
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]), 1.0);
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]), 0.0);
        assert_eq!(auc(&[0.5, 0.5, 0.5, 0.5], &[false, true, false, true]), 0.5);
        // One positive ranked above 2 of 3 negatives, the other above all: (2 + 3) / 6.
        let a = auc(
            &[0.1, 0.3, 0.5, 0.2, 0.9],
            &[false, true, false, false, true],
        );
        assert!((a - 5.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn losses_match_hand_computation() {
        let p = [0.8, 0.3];
        let y = [true, false];
        assert!((log_loss(&p, &y) - (-(0.8f64.ln()) - 0.7f64.ln()) / 2.0).abs() < 1e-12);
        assert!((brier(&p, &y) - (0.04 + 0.09) / 2.0).abs() < 1e-12);
        let c = calibration(&p, &y);
        assert_eq!(c.len(), 10);
        assert_eq!((c[8].count, c[8].observed_rate), (1, 1.0));
        assert_eq!((c[3].count, c[3].observed_rate), (1, 0.0));
    }
}
