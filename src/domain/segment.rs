//! Ordered segment rules: the first rule whose probability range and conditions hold wins.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::lead::{AttrValue, Lead};

/// One test on one attribute. Exactly one of `equals`, `in`, `min`/`max`, `present` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub attribute: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<AttrValue>,
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<AttrValue>>,
    /// Inclusive lower bound of a numeric range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Exclusive upper bound of a numeric range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Reported as the rule that matched.
    pub name: String,
    pub segment: String,
    /// Inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_probability: Option<f64>,
    /// Exclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_probability: Option<f64>,
    /// All must hold.
    #[serde(default)]
    pub when: Vec<Condition>,
}

/// The rule list plus the segment for leads no rule matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentRules {
    pub rules: Vec<Rule>,
    pub default_segment: String,
    /// Skills a rep must have to take a lead of the segment, e.g. price_sensitive -> negotiation.
    #[serde(default)]
    pub require_skills: BTreeMap<String, Vec<String>>,
}

/// Which segment a lead landed in and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SegmentMatch {
    pub segment: String,
    pub rule: String,
}

fn equal(a: &AttrValue, b: &AttrValue) -> bool {
    match (a.as_number(), b.as_number()) {
        (Some(x), Some(y)) if !matches!((a, b), (AttrValue::String(_), AttrValue::String(_))) => {
            x == y
        }
        _ => match (a, b) {
            (AttrValue::String(x), AttrValue::String(y)) => x.trim().eq_ignore_ascii_case(y.trim()),
            _ => a.as_bool().is_some() && a.as_bool() == b.as_bool(),
        },
    }
}

impl Condition {
    fn check(&self) -> Result<(), String> {
        let ops = [
            self.equals.is_some(),
            self.one_of.is_some(),
            self.min.is_some() || self.max.is_some(),
            self.present.is_some(),
        ];
        match ops.iter().filter(|x| **x).count() {
            1 => Ok(()),
            n => Err(format!(
                "condition on {:?} must set exactly one of equals, in, min/max, present (found {n})",
                self.attribute
            )),
        }
    }

    pub fn holds(&self, lead: &Lead) -> bool {
        let value = lead.get(&self.attribute);
        if let Some(want) = self.present {
            return value.is_some() == want;
        }
        let Some(value) = value else { return false };
        if let Some(e) = &self.equals {
            return equal(value, e);
        }
        if let Some(set) = &self.one_of {
            return set.iter().any(|e| equal(value, e));
        }
        match value.as_number() {
            Some(x) => self.min.is_none_or(|lo| x >= lo) && self.max.is_none_or(|hi| x < hi),
            None => false,
        }
    }
}

impl SegmentRules {
    /// Checks the rules once at load time, so classification cannot fail later.
    pub fn validate(&self) -> Result<(), String> {
        if self.default_segment.trim().is_empty() {
            return Err("segments.default_segment must not be empty".into());
        }
        for r in &self.rules {
            if r.name.trim().is_empty() || r.segment.trim().is_empty() {
                return Err("every segment rule needs a name and a segment".into());
            }
            for p in [r.min_probability, r.max_probability].into_iter().flatten() {
                if !(0.0..=1.0).contains(&p) {
                    return Err(format!(
                        "rule {:?}: probability bound {p} is outside [0, 1]",
                        r.name
                    ));
                }
            }
            for c in &r.when {
                c.check().map_err(|e| format!("rule {:?}: {e}", r.name))?;
            }
        }
        Ok(())
    }

    pub fn classify(&self, lead: &Lead, probability: f64) -> SegmentMatch {
        for r in &self.rules {
            let in_range = r.min_probability.is_none_or(|lo| probability >= lo)
                && r.max_probability.is_none_or(|hi| probability < hi);
            if in_range && r.when.iter().all(|c| c.holds(lead)) {
                return SegmentMatch {
                    segment: r.segment.clone(),
                    rule: r.name.clone(),
                };
            }
        }
        SegmentMatch {
            segment: self.default_segment.clone(),
            rule: "default".into(),
        }
    }

    pub fn skills_for(&self, segment: &str) -> &[String] {
        self.require_skills.get(segment).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn defaults() -> SegmentRules {
        Settings::load(None).unwrap().segments
    }

    #[test]
    fn default_rules_follow_the_playbook() {
        use AttrValue::*;
        let rules = defaults();
        rules.validate().unwrap();
        let m = rules.classify(&Lead::of(&[("price_objection", Bool(true))]), 0.9);
        assert_eq!(
            (m.segment.as_str(), m.rule.as_str()),
            ("price_sensitive", "price_objection")
        );
        let m = rules.classify(&Lead::of(&[("budget", Number(500.0))]), 0.9);
        assert_eq!(
            (m.segment.as_str(), m.rule.as_str()),
            ("price_sensitive", "budget_below_floor")
        );
        let m = rules.classify(
            &Lead::of(&[
                ("budget", Number(50_000.0)),
                ("price_objection", String("no".into())),
            ]),
            0.9,
        );
        assert_eq!(m.segment, "qualified");
        assert_eq!(rules.classify(&Lead::of(&[]), 0.15).segment, "nurture");
        let m = rules.classify(&Lead::of(&[]), 0.01);
        assert_eq!(
            (m.segment.as_str(), m.rule.as_str()),
            ("unqualified", "default")
        );
        assert_eq!(rules.skills_for("price_sensitive"), ["negotiation"]);
    }

    #[test]
    fn conditions_compare_by_type() {
        use AttrValue::*;
        let c = |json: &str| -> Condition { serde_json::from_str(json).unwrap() };
        let l = Lead::of(&[
            ("country", String("DE".into())),
            ("n", Number(5.0)),
            ("flag", String("yes".into())),
        ]);
        assert!(c(r#"{"attribute":"country","equals":"de"}"#).holds(&l));
        assert!(c(r#"{"attribute":"country","in":["fr","de"]}"#).holds(&l));
        assert!(!c(r#"{"attribute":"country","in":["fr"]}"#).holds(&l));
        assert!(c(r#"{"attribute":"n","min":5,"max":6}"#).holds(&l));
        assert!(!c(r#"{"attribute":"n","max":5}"#).holds(&l));
        assert!(c(r#"{"attribute":"flag","equals":true}"#).holds(&l));
        assert!(c(r#"{"attribute":"missing","present":false}"#).holds(&l));
        assert!(!c(r#"{"attribute":"missing","equals":1}"#).holds(&l));
    }

    #[test]
    fn ambiguous_conditions_are_refused() {
        let mut rules = defaults();
        rules.rules[0].when[0].present = Some(true);
        assert!(rules.validate().unwrap_err().contains("exactly one"));
    }
}
