//! The promotion gate: may a candidate model replace the live one?
//!
//! A candidate is refused when its holdout AUC is more than `margin` below the live model's,
//! or when its input features (names and kinds) differ from the live model's, since callers
//! send attributes shaped for the live spec. Both refusals can be forced; a malformed artifact
//! never gets this far (Artifact::from_json refuses it).
use crate::domain::model::Artifact;

/// Default allowed AUC drop.
pub const DEFAULT_MARGIN: f64 = 0.01;

/// What the gate saw and decided.
#[derive(Debug, Clone, PartialEq)]
pub struct GateReport {
    pub live_version: Option<String>,
    pub live_auc: Option<f64>,
    pub candidate_version: String,
    pub candidate_auc: f64,
    pub margin: f64,
    /// Why the gate would refuse; empty when it passes.
    pub refusals: Vec<String>,
}

impl GateReport {
    pub fn passed(&self) -> bool {
        self.refusals.is_empty()
    }
}

/// Checks `candidate` against `live` (None: cold start, anything valid passes).
pub fn check(live: Option<&Artifact>, candidate: &Artifact, margin: f64) -> GateReport {
    let mut refusals = Vec::new();
    if let Some(live) = live {
        let drop = live.holdout.auc - candidate.holdout.auc;
        if drop > margin {
            refusals.push(format!(
                "candidate {} has holdout AUC {:.4}, {drop:.4} below the live model {} ({:.4}); \
                 the allowed drop is {margin}",
                candidate.model_version,
                candidate.holdout.auc,
                live.model_version,
                live.holdout.auc
            ));
        }
        if let Some(diff) = spec_difference(live, candidate) {
            refusals.push(format!(
                "candidate {}'s feature spec does not match the live model's: {diff}",
                candidate.model_version
            ));
        }
    }
    GateReport {
        live_version: live.map(|l| l.model_version.clone()),
        live_auc: live.map(|l| l.holdout.auc),
        candidate_version: candidate.model_version.clone(),
        candidate_auc: candidate.holdout.auc,
        margin,
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

    fn with_auc(auc: f64) -> Artifact {
        let mut a = tiny_artifact();
        a.holdout.auc = auc;
        a.seal().0
    }

    #[test]
    fn refuses_a_worse_candidate_beyond_the_margin_only() {
        let live = with_auc(0.80);
        assert!(check(Some(&live), &with_auc(0.795), 0.01).passed());
        assert!(check(Some(&live), &with_auc(0.85), 0.01).passed());
        let r = check(Some(&live), &with_auc(0.78), 0.01);
        assert!(!r.passed());
        assert!(r.refusals[0].contains("0.7800"), "{:?}", r.refusals);
        assert!(r.refusals[0].contains("0.0200 below"), "{:?}", r.refusals);
        assert!(check(None, &with_auc(0.5), 0.01).passed());
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
