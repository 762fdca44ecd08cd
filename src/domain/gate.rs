//! The promotion gate: may a candidate model replace the live one?
//!
//! Both models are scored on the same labelled rows (by default the recorded outcomes the
//! candidate was not trained on) and the verdict is taken from those figures alone: refused
//! when the candidate's AUC is more than `margin` below the live model's, when the rows are too
//! few to tell (fewer than `min_rows`, or fewer than `min_positives` of either class), when
//! there are no rows at all, or when the input features (names and kinds) differ. `compare`
//! and every server path that makes a model live call `judge`, so they cannot disagree. All
//! refusals can be forced; a malformed artifact never gets this far.
use crate::domain::model::{Artifact, Metrics};

/// Default allowed AUC drop.
pub const DEFAULT_MARGIN: f64 = 0.01;
/// Fewer labelled rows than this tell nothing about a 0.01 AUC difference.
pub const DEFAULT_MIN_ROWS: u64 = 200;
/// ... nor fewer of either class.
pub const DEFAULT_MIN_POSITIVES: u64 = 40;

/// The gate's settings (`model.gate_margin`, `model.gate_min_rows`,
/// `model.gate_min_positives`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GatePolicy {
    pub margin: f64,
    pub min_rows: u64,
    pub min_positives: u64,
}

impl Default for GatePolicy {
    fn default() -> Self {
        GatePolicy {
            margin: DEFAULT_MARGIN,
            min_rows: DEFAULT_MIN_ROWS,
            min_positives: DEFAULT_MIN_POSITIVES,
        }
    }
}

/// Both models scored on the same rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Which rows: "recorded outcomes not in the candidate's training", a file name, ...
    pub source: String,
    pub rows: u64,
    pub positives: u64,
    pub candidate: Metrics,
    pub live: Metrics,
}

/// What the gate saw and decided.
#[derive(Debug, Clone, PartialEq)]
pub struct GateReport {
    pub live_version: Option<String>,
    pub candidate_version: String,
    /// None in cold start, for the live model itself, or when no rows could be had.
    pub evaluation: Option<Evaluation>,
    pub policy: GatePolicy,
    /// Why the gate would refuse; empty when it passes.
    pub refusals: Vec<String>,
}

impl GateReport {
    pub fn passed(&self) -> bool {
        self.refusals.is_empty()
    }

    /// One line: the verdict and the figures it came from.
    pub fn summary(&self) -> String {
        let verdict = if self.passed() {
            "PASS".to_string()
        } else {
            format!("REFUSED ({})", self.refusals.join("; "))
        };
        match &self.evaluation {
            Some(e) => format!(
                "{verdict}: {} rows, {} positives ({}): AUC {:.4} vs live {:.4} ({:+.4}, margin {}), log loss {:.4} vs {:.4}, Brier {:.4} vs {:.4}",
                e.rows,
                e.positives,
                e.source,
                e.candidate.auc,
                e.live.auc,
                e.candidate.auc - e.live.auc,
                self.policy.margin,
                e.candidate.log_loss,
                e.live.log_loss,
                e.candidate.brier,
                e.live.brier
            ),
            None => verdict,
        }
    }
}

/// Decides on `candidate` given both models' figures on the same rows. `live` None is a cold
/// start: anything valid passes. `rows` is Err(why) when no labelled rows could be had.
pub fn judge(
    live: Option<&Artifact>,
    candidate: &Artifact,
    rows: Result<Evaluation, String>,
    policy: GatePolicy,
) -> GateReport {
    let mut refusals = Vec::new();
    let mut evaluation = None;
    if let Some(live) = live
        && live.model_version != candidate.model_version
    {
        if let Some(diff) = spec_difference(live, candidate) {
            refusals.push(format!(
                "candidate {}'s feature spec does not match the live model's: {diff}",
                candidate.model_version
            ));
        }
        match rows {
            Err(why) => refusals.push(format!(
                "no labelled rows to compare the models on ({why}); name a labelled file or force"
            )),
            Ok(e) => {
                let negatives = e.rows - e.positives;
                if e.rows < policy.min_rows
                    || e.positives < policy.min_positives
                    || negatives < policy.min_positives
                {
                    refusals.push(format!(
                        "too few rows to compare: {} rows, {} positives, {negatives} negatives                          ({}); the gate needs {} rows and {} of each class",
                        e.rows, e.positives, e.source, policy.min_rows, policy.min_positives
                    ));
                } else {
                    let drop = e.live.auc - e.candidate.auc;
                    if drop > policy.margin {
                        refusals.push(format!(
                            "candidate {} has AUC {:.4}, {drop:.4} below the live model {} ({:.4}) \
                             on the same {} rows; the allowed drop is {}",
                            candidate.model_version,
                            e.candidate.auc,
                            live.model_version,
                            e.live.auc,
                            e.rows,
                            policy.margin
                        ));
                    }
                }
                evaluation = Some(e);
            }
        }
    }
    GateReport {
        live_version: live.map(|l| l.model_version.clone()),
        candidate_version: candidate.model_version.clone(),
        evaluation,
        policy,
        refusals,
    }
}

/// Describes how the input features differ, or None when they are the same.
pub fn spec_difference(live: &Artifact, candidate: &Artifact) -> Option<String> {
    let inputs = |a: &Artifact| -> Vec<(String, &'static str)> {
        a.spec
            .features()
            .iter()
            .map(|f| (f.name.clone(), f.kind_name()))
            .collect()
    };
    let (old, new) = (inputs(live), inputs(candidate));
    let find = |v: &[(String, &'static str)], n: &str| v.iter().find(|(m, _)| m == n).map(|p| p.1);
    let added: Vec<&str> = new
        .iter()
        .filter(|(n, _)| find(&old, n).is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    let removed: Vec<&str> = old
        .iter()
        .filter(|(n, _)| find(&new, n).is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    let changed: Vec<String> = new
        .iter()
        .filter_map(|(n, k)| match find(&old, n) {
            Some(o) if o != *k => Some(format!("{n} ({o} -> {k})")),
            _ => None,
        })
        .collect();
    let mut parts = Vec::new();
    if !added.is_empty() {
        parts.push(format!("added {}", added.join(", ")));
    }
    if !removed.is_empty() {
        parts.push(format!("removed {}", removed.join(", ")));
    }
    if !changed.is_empty() {
        parts.push(format!("kind changed {}", changed.join(", ")));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::features::{FittedFeature, FittedKind, FittedSpec};
    use crate::domain::model::tests::tiny_artifact;

    fn metrics(auc: f64) -> Metrics {
        Metrics {
            auc,
            log_loss: 0.5,
            brier: 0.1,
            n: 300,
            base_rate: 0.2,
            calibration: vec![],
        }
    }

    fn rows(n: u64, positives: u64, cand: f64, live: f64) -> Result<Evaluation, String> {
        Ok(Evaluation {
            source: "test rows".into(),
            rows: n,
            positives,
            candidate: metrics(cand),
            live: metrics(live),
        })
    }

    fn other() -> Artifact {
        let mut a = tiny_artifact();
        a.intercept += 0.5;
        a.seal().0
    }

    #[test]
    fn refuses_a_worse_candidate_on_the_same_rows_beyond_the_margin_only() {
        let (live, cand, p) = (tiny_artifact(), other(), GatePolicy::default());
        assert!(judge(Some(&live), &cand, rows(300, 60, 0.795, 0.80), p).passed());
        assert!(judge(Some(&live), &cand, rows(300, 60, 0.85, 0.80), p).passed());
        let r = judge(Some(&live), &cand, rows(300, 60, 0.78, 0.80), p);
        assert!(!r.passed());
        assert!(r.refusals[0].contains("0.7800"), "{:?}", r.refusals);
        assert!(r.refusals[0].contains("0.0200 below"), "{:?}", r.refusals);
        assert!(r.summary().starts_with("REFUSED"), "{}", r.summary());
        // Cold start, and the live model itself, pass without rows.
        assert!(judge(None, &cand, Err("none".into()), p).passed());
        assert!(judge(Some(&live), &live, Err("none".into()), p).passed());
    }

    #[test]
    fn too_few_rows_or_none_refuse_whatever_the_figures() {
        let (live, cand, p) = (tiny_artifact(), other(), GatePolicy::default());
        let r = judge(Some(&live), &cand, rows(64, 30, 0.9, 0.8), p);
        assert!(!r.passed());
        assert!(
            r.refusals[0].contains("64 rows, 30 positives"),
            "{:?}",
            r.refusals
        );
        assert!(!judge(Some(&live), &cand, rows(1000, 20, 0.9, 0.8), p).passed());
        assert!(!judge(Some(&live), &cand, rows(1000, 990, 0.9, 0.8), p).passed());
        let r = judge(Some(&live), &cand, Err("no outcomes recorded".into()), p);
        assert!(
            r.refusals[0].contains("no outcomes recorded"),
            "{:?}",
            r.refusals
        );
    }

    #[test]
    fn names_added_removed_and_retyped_features() {
        let live = tiny_artifact();
        let mut features = live.spec.features().to_vec();
        features.retain(|f| f.name != "vip");
        features[1].kind = FittedKind::Bool { mean: 0.1 };
        features.push(FittedFeature {
            name: "region".into(),
            kind: FittedKind::Categorical { vocabulary: vec![] },
        });
        let mut cand = tiny_artifact();
        cand.spec = FittedSpec::new(features);
        let diff = spec_difference(&live, &cand).unwrap();
        assert_eq!(
            diff,
            "added region; removed vip; kind changed job (categorical -> bool)"
        );
        assert_eq!(spec_difference(&live, &live), None);
    }
}
