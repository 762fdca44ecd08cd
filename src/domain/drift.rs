//! Drift: training-time feature and score distributions, live counts, and the population
//! stability index (PSI) between them.
//!
//! Bins are read off the dense feature row (after extraction), so training and serving bin a
//! value the same way by construction: numeric = missing or one of 10 decile ranges,
//! categorical = one category or "other", bool = false / true / missing.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::domain::features::{FittedKind, FittedSpec};

/// PSI above this is a significant shift (the usual rule of thumb).
pub const PSI_ALERT: f64 = 0.2;
/// Default observations per feature before it can alert (`drift.min_observations`).
pub const MIN_OBSERVATIONS: u64 = 1000;
/// Score bins: 0-9, 10-19, ..., 90-100.
pub const SCORE_BINS: usize = 10;
/// Empty bins count as this share, so PSI stays finite.
const FLOOR: f64 = 1e-4;

/// Training distributions, stored in the artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftReference {
    /// Per feature, the share of training rows in each bin.
    pub features: Vec<Vec<f64>>,
    /// Share of holdout scores in each of the `SCORE_BINS` bins.
    pub score: Vec<f64>,
}

pub fn n_bins(kind: &FittedKind) -> usize {
    match kind {
        FittedKind::Numeric { .. } => 11,
        FittedKind::Categorical { vocabulary } => vocabulary.len() + 1,
        FittedKind::Bool { .. } => 3,
    }
}

/// A readable name for each bin of a feature (numeric edges are in the feature's transformed
/// units, i.e. after clip and log1p).
pub fn bin_labels(kind: &FittedKind) -> Vec<String> {
    match kind {
        FittedKind::Numeric { deciles, .. } => {
            let mut labels = vec!["missing".to_string()];
            let mut lower: Option<f64> = None;
            for d in deciles {
                labels.push(match lower {
                    None => format!("<= {d}"),
                    Some(l) => format!("({l}, {d}]"),
                });
                lower = Some(*d);
            }
            labels.push(format!("> {}", lower.unwrap_or(f64::NAN)));
            labels.resize(11, String::new());
            labels
        }
        FittedKind::Categorical { vocabulary } => vocabulary
            .iter()
            .cloned()
            .chain([crate::domain::features::OTHER.to_string()])
            .collect(),
        FittedKind::Bool { .. } => ["false", "true", "missing"].map(String::from).to_vec(),
    }
}

pub fn score_labels() -> Vec<String> {
    (0..SCORE_BINS)
        .map(|b| format!("score {}-{}", b * 10, if b == 9 { 100 } else { b * 10 + 9 }))
        .collect()
}

/// Decile edges of each numeric feature in standardised units (empty for other kinds).
pub fn std_edges(spec: &FittedSpec) -> Vec<Vec<f64>> {
    spec.features()
        .iter()
        .map(|f| match &f.kind {
            FittedKind::Numeric {
                deciles, mean, std, ..
            } => deciles.iter().map(|d| (d - mean) / std).collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// The bin of feature `i` in the dense `row`.
pub fn bin(spec: &FittedSpec, edges: &[Vec<f64>], i: usize, row: &[f64]) -> usize {
    let cols = &row[spec.columns_of(i)];
    match &spec.features()[i].kind {
        FittedKind::Numeric { .. } => {
            if cols[1] != 0.0 {
                0
            } else {
                1 + edges[i].partition_point(|e| *e < cols[0])
            }
        }
        FittedKind::Categorical { .. } => cols.iter().position(|v| *v != 0.0).unwrap_or(0),
        FittedKind::Bool { .. } => match cols[0] {
            0.0 => 0,
            1.0 => 1,
            _ => 2,
        },
    }
}

pub fn score_bin(p: f64) -> usize {
    ((p * 100.0).round() as usize / 10).min(SCORE_BINS - 1)
}

/// Share of training rows (row-major, `spec.n_columns()` wide) in each bin, per feature.
pub fn feature_reference(spec: &FittedSpec, rows: &[f64]) -> Vec<Vec<f64>> {
    let edges = std_edges(spec);
    let width = spec.n_columns().max(1);
    let n = (rows.len() / width).max(1) as f64;
    let mut counts: Vec<Vec<f64>> = spec
        .features()
        .iter()
        .map(|f| vec![0.0; n_bins(&f.kind)])
        .collect();
    // One pass over the matrix, row by row (a pass per feature re-read it 40 times).
    for row in rows.chunks(width) {
        for (i, c) in counts.iter_mut().enumerate() {
            c[bin(spec, &edges, i, row)] += 1.0;
        }
    }
    counts
        .into_iter()
        .map(|c| c.iter().map(|c| c / n).collect())
        .collect()
}

/// Share of `probabilities` in each score bin.
pub fn score_reference(probabilities: &[f64]) -> Vec<f64> {
    let mut score = [0.0; SCORE_BINS];
    for p in probabilities {
        score[score_bin(*p)] += 1.0;
    }
    let m = probabilities.len().max(1) as f64;
    score.iter().map(|c| c / m).collect()
}

/// PSI = sum over bins of (actual - expected) * ln(actual / expected).
pub fn psi(expected: &[f64], counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    expected
        .iter()
        .zip(counts)
        .map(|(e, c)| {
            let e = e.max(FLOOR);
            let a = (*c as f64 / total as f64).max(FLOOR);
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// Live counts for one model version; updated lock-free on every scored lead, each lead id
/// counted once (a retried or repeated ScoreLead of one lead cannot move the statistics).
#[derive(Debug)]
pub struct LiveDrift {
    edges: Vec<Vec<f64>>,
    features: Vec<Vec<AtomicU64>>,
    /// Per feature, observations carried over from the previous version (see `carry_over`);
    /// a feature's count is this plus `total`. Not a live counter: that would be one more
    /// shared atomic per feature, written by every core on every scored lead.
    carried: Vec<u64>,
    score: Vec<AtomicU64>,
    total: AtomicU64,
    warned: Vec<AtomicBool>,
    /// No alert (nor warning) for a feature before it has this many observations.
    min_observations: u64,
    ids: SeenIds,
}

/// Lead ids already counted: a blocked Bloom filter of 2^24 bits (2 MiB), three bits per id
/// in one 64-bit word, set with one atomic OR (one cache line per lead). Up to ~1 million
/// distinct leads per version it wrongly calls ~1 % of new leads seen (they are then not
/// counted: a random, feature-blind sample, so PSI is unbiased); past that the share grows and
/// drift stays measured on a sample.
struct SeenIds(Vec<AtomicU64>);

const SEEN_BITS: u64 = 1 << 24;

impl std::fmt::Debug for SeenIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeenIds")
    }
}

impl SeenIds {
    fn new() -> SeenIds {
        SeenIds((0..SEEN_BITS / 64).map(|_| AtomicU64::new(0)).collect())
    }

    /// Marks `id`; true when it was not marked before.
    fn first_time(&self, id: &str) -> bool {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        id.hash(&mut h);
        let x = h.finish();
        let word = (x % (SEEN_BITS / 64)) as usize;
        let mask =
            (1u64 << ((x >> 40) & 63)) | (1u64 << ((x >> 46) & 63)) | (1u64 << ((x >> 52) & 63));
        let old = self.0[word].fetch_or(mask, Ordering::Relaxed);
        old & mask != mask
    }
}

/// One distribution compared with its reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Distribution {
    pub name: String,
    pub labels: Vec<String>,
    pub psi: f64,
    pub expected: Vec<f64>,
    pub counts: Vec<u64>,
    /// Observations behind `counts`.
    pub observed: u64,
    /// psi > PSI_ALERT with at least the minimum observations.
    pub alert: bool,
}

/// What GetModelHealth reports.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftReport {
    pub observed: u64,
    pub min_observations: u64,
    pub features: Vec<Distribution>,
    pub score: Distribution,
}

fn counters(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

fn load(c: &[AtomicU64]) -> Vec<u64> {
    c.iter().map(|a| a.load(Ordering::Relaxed)).collect()
}

impl LiveDrift {
    pub fn new(spec: &FittedSpec, min_observations: u64) -> LiveDrift {
        let n = spec.features().len();
        LiveDrift {
            edges: std_edges(spec),
            features: spec
                .features()
                .iter()
                .map(|f| counters(n_bins(&f.kind)))
                .collect(),
            carried: vec![0; n],
            score: counters(SCORE_BINS),
            total: AtomicU64::new(0),
            warned: (0..n).map(|_| AtomicBool::new(false)).collect(),
            min_observations,
            ids: SeenIds::new(),
        }
    }

    /// Starts from `previous`'s counts for every feature binned the same way in both versions
    /// (same name, kind and bin edges or categories; the training shares may differ: PSI is
    /// then taken against the new version's), so a promotion does not blind them. The others,
    /// and the score, start from zero.
    pub fn carry_over(
        &mut self,
        spec: &FittedSpec,
        previous: &LiveDrift,
        previous_spec: &FittedSpec,
    ) {
        let same_bins = |a: &crate::domain::features::FittedFeature,
                         b: &crate::domain::features::FittedFeature| {
            a.name == b.name
                && a.kind_name() == b.kind_name()
                && bin_labels(&a.kind) == bin_labels(&b.kind)
        };
        for (i, f) in spec.features().iter().enumerate() {
            let Some(j) = previous_spec
                .features()
                .iter()
                .position(|p| same_bins(p, f))
            else {
                continue;
            };
            for (to, from) in self.features[i].iter().zip(&previous.features[j]) {
                to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            self.carried[i] = previous.observed(j);
        }
    }

    /// Counts one scored row (the first time this version sees `lead_id`); every 1,024 rows
    /// checks for features past `PSI_ALERT` with enough observations and logs a warning once
    /// per feature.
    pub fn observe(
        &self,
        spec: &FittedSpec,
        reference: &DriftReference,
        lead_id: &str,
        row: &[f64],
        p: f64,
    ) {
        if !self.ids.first_time(lead_id) {
            return;
        }
        for (i, c) in self.features.iter().enumerate() {
            c[bin(spec, &self.edges, i, row)].fetch_add(1, Ordering::Relaxed);
        }
        self.score[score_bin(p)].fetch_add(1, Ordering::Relaxed);
        let n = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        if !n.is_multiple_of(1024) {
            return;
        }
        for (i, f) in spec.features().iter().enumerate() {
            let Some(expected) = reference.features.get(i) else {
                continue;
            };
            let observed = self.carried[i] + n;
            if observed < self.min_observations {
                continue;
            }
            let value = psi(expected, &load(&self.features[i]));
            if value > PSI_ALERT && !self.warned[i].swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    feature = %f.name,
                    psi = value,
                    observed,
                    "feature drift: PSI above {PSI_ALERT} against the training data"
                );
            }
        }
    }

    /// Observations behind feature `i`'s counts.
    fn observed(&self, i: usize) -> u64 {
        self.carried[i] + self.total.load(Ordering::Relaxed)
    }

    pub fn report(&self, spec: &FittedSpec, reference: &DriftReference) -> DriftReport {
        let min = self.min_observations;
        let distribution = |name: String, labels, expected: Vec<f64>, counts: Vec<u64>, n| {
            let psi = psi(&expected, &counts);
            Distribution {
                name,
                labels,
                psi,
                expected,
                counts,
                observed: n,
                alert: psi > PSI_ALERT && n >= min,
            }
        };
        let features = spec
            .features()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                distribution(
                    f.name.clone(),
                    bin_labels(&f.kind),
                    reference.features.get(i).cloned().unwrap_or_default(),
                    load(&self.features[i]),
                    self.observed(i),
                )
            })
            .collect();
        let observed = self.total.load(Ordering::Relaxed);
        DriftReport {
            observed,
            min_observations: min,
            features,
            score: distribution(
                "score".into(),
                score_labels(),
                reference.score.clone(),
                load(&self.score),
                observed,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_is_zero_for_the_same_distribution_and_grows_with_shift() {
        let expected = [0.25, 0.25, 0.5];
        assert!(psi(&expected, &[25, 25, 50]).abs() < 1e-12);
        let small = psi(&expected, &[27, 23, 50]);
        let large = psi(&expected, &[70, 10, 20]);
        assert!(small > 0.0 && small < 0.05, "{small}");
        assert!(large > PSI_ALERT, "{large}");
        // (0.7-0.25)ln(0.7/0.25) + (0.1-0.25)ln(0.1/0.25) + (0.2-0.5)ln(0.2/0.5)
        let want = 0.45 * (0.7f64 / 0.25).ln() + -0.15 * (0.1f64 / 0.25).ln() - 0.3 * 0.4f64.ln();
        assert!((large - want).abs() < 1e-12);
    }

    #[test]
    fn bins_follow_the_dense_row() {
        use crate::domain::model::tests::tiny_artifact;
        let mut features = tiny_artifact().spec.features().to_vec();
        if let FittedKind::Numeric { deciles, .. } = &mut features[0].kind {
            *deciles = (1..10).map(|k| 30.0 + f64::from(k) * 2.0).collect(); // 32..48
        }
        let spec = FittedSpec::new(features);
        let edges = std_edges(&spec);
        // age standardised (x - 40) / 10; columns: age, age:missing, job x3, vip
        let row = |age: f64, missing: f64, job: usize, vip: f64| {
            let mut r = vec![(age - 40.0) / 10.0, missing, 0.0, 0.0, 0.0, vip];
            r[2 + job] = 1.0;
            r
        };
        assert_eq!(bin(&spec, &edges, 0, &row(20.0, 0.0, 0, 1.0)), 1);
        assert_eq!(bin(&spec, &edges, 0, &row(41.0, 0.0, 0, 1.0)), 6);
        assert_eq!(bin(&spec, &edges, 0, &row(90.0, 0.0, 0, 1.0)), 10);
        assert_eq!(bin(&spec, &edges, 0, &row(40.0, 1.0, 0, 1.0)), 0);
        assert_eq!(bin(&spec, &edges, 1, &row(40.0, 0.0, 2, 1.0)), 2);
        assert_eq!(bin(&spec, &edges, 2, &row(40.0, 0.0, 2, 0.5)), 2);
        assert_eq!(bin(&spec, &edges, 2, &row(40.0, 0.0, 2, 0.0)), 0);
        assert_eq!(score_bin(0.999), 9);
        assert_eq!(score_bin(0.0), 0);
        assert_eq!(score_bin(0.25), 2);
    }

    #[test]
    fn each_lead_counts_once_and_alerts_wait_for_the_minimum() {
        use crate::domain::model::tests::tiny_artifact;
        let a = tiny_artifact();
        let spec = &a.spec;
        // Training: job is always category 0.
        let reference = DriftReference {
            features: vec![
                vec![1.0 / 11.0; 11],
                vec![1.0, 0.0, 0.0],
                vec![0.5, 0.5, 0.0],
            ],
            score: vec![0.1; SCORE_BINS],
        };
        let live = LiveDrift::new(spec, 50);
        // Live: every lead is category 1, a total shift.
        let row = [0.0, 0.0, 0.0, 1.0, 0.0, 1.0];
        for _ in 0..3000 {
            live.observe(spec, &reference, "same-lead", &row, 0.5);
        }
        let r = live.report(spec, &reference);
        assert_eq!(r.observed, 1, "a repeated lead counts once");
        assert!(r.features[1].psi > PSI_ALERT);
        assert!(!r.features[1].alert, "1 observation is not evidence");
        for i in 0..60 {
            live.observe(spec, &reference, &format!("lead-{i}"), &row, 0.5);
        }
        let r = live.report(spec, &reference);
        assert_eq!((r.observed, r.features[1].observed), (61, 61));
        assert!(r.features[1].alert);

        // The next version: same bins for every feature, so the counts carry over; the score's
        // do not.
        let mut next = LiveDrift::new(spec, 50);
        next.carry_over(spec, &live, spec);
        let r = next.report(spec, &reference);
        assert_eq!((r.observed, r.features[1].observed), (0, 61));
        assert!(r.features[1].alert);
        // A version whose job has other categories starts job from zero.
        let mut features = spec.features().to_vec();
        features[1].kind = FittedKind::Categorical {
            vocabulary: vec!["clerk".into()],
        };
        let other = FittedSpec::new(features);
        let mut fresh = LiveDrift::new(&other, 50);
        fresh.carry_over(&other, &live, spec);
        let r = fresh.report(&other, &reference);
        assert_eq!((r.features[0].observed, r.features[1].observed), (61, 0));
    }
}
