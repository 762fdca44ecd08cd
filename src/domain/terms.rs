//! Offer mode and first-touch SLA settings, and the terms they give each routed lead.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::assignment::Terms;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The chosen rep gets the lead at once.
    #[default]
    Direct,
    /// The chosen rep gets an offer that holds capacity until accepted, declined or expired.
    Offer,
}

/// A pool's overrides of `routing.mode`, `routing.offer_timeout_s` and `routing.max_offers`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolTerms {
    pub mode: Option<Mode>,
    pub offer_timeout_s: Option<f64>,
    pub max_offers: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBreach {
    /// Mark the assignment breached and count it against the rep.
    #[default]
    Flag,
    /// Also move the lead to the next best rep with room (flag only when none has).
    Reassign,
}

/// `[sla]`: first-touch deadlines per segment.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaPolicy {
    /// Segment -> seconds from taking a lead to marking it contacted.
    #[serde(default)]
    pub first_touch_s: BTreeMap<String, f64>,
    #[serde(default)]
    pub on_breach: OnBreach,
}

pub const DEFAULT_OFFER_TIMEOUT_S: f64 = 120.0;
pub const DEFAULT_MAX_OFFERS: u32 = 3;

fn seconds_ms(field: &str, s: f64) -> Result<i64, String> {
    if !(s.is_finite() && s > 0.0 && s <= 365.0 * 86_400.0) {
        return Err(format!(
            "{field} must be a number of seconds in (0, 31536000], not {s}"
        ));
    }
    Ok((s * 1000.0).round().max(1.0) as i64)
}

/// The terms of a lead of `pool` in `segment`.
pub fn terms(
    mode: Mode,
    offer_timeout_s: f64,
    max_offers: u32,
    pool: Option<&PoolTerms>,
    sla: &SlaPolicy,
    segment: &str,
) -> Terms {
    let mode = pool.and_then(|p| p.mode).unwrap_or(mode);
    let timeout = pool
        .and_then(|p| p.offer_timeout_s)
        .unwrap_or(offer_timeout_s);
    Terms {
        offer_ms: match mode {
            Mode::Direct => 0,
            Mode::Offer => seconds_ms("", timeout).unwrap_or(120_000),
        },
        max_offers: pool.and_then(|p| p.max_offers).unwrap_or(max_offers).max(1),
        sla_ms: sla
            .first_touch_s
            .get(segment)
            .and_then(|s| seconds_ms("", *s).ok())
            .unwrap_or(0),
        sla_reassign: sla.on_breach == OnBreach::Reassign,
        queue_ttl_ms: 0,
    }
}

/// Checks the settings, naming the bad key.
pub fn validate(
    offer_timeout_s: f64,
    max_offers: u32,
    pools: &BTreeMap<String, PoolTerms>,
    sla: &SlaPolicy,
) -> Result<(), String> {
    seconds_ms("routing.offer_timeout_s", offer_timeout_s)?;
    if max_offers == 0 {
        return Err("routing.max_offers must be at least 1".into());
    }
    for (name, p) in pools {
        if let Some(t) = p.offer_timeout_s {
            seconds_ms(&format!("routing.pools.{name}.offer_timeout_s"), t)?;
        }
        if p.max_offers == Some(0) {
            return Err(format!(
                "routing.pools.{name}.max_offers must be at least 1"
            ));
        }
    }
    for (segment, s) in &sla.first_touch_s {
        seconds_ms(&format!("sla.first_touch_s.{segment}"), *s)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_overrides_win_and_sla_follows_the_segment() {
        let sla = SlaPolicy {
            first_touch_s: [("qualified".to_string(), 300.0)].into(),
            on_breach: OnBreach::Reassign,
        };
        let t = terms(Mode::Direct, 120.0, 3, None, &sla, "qualified");
        assert_eq!((t.offer_ms, t.sla_ms, t.sla_reassign), (0, 300_000, true));
        let p = PoolTerms {
            mode: Some(Mode::Offer),
            offer_timeout_s: Some(1.5),
            max_offers: Some(2),
        };
        let t = terms(Mode::Direct, 120.0, 3, Some(&p), &sla, "nurture");
        assert_eq!((t.offer_ms, t.max_offers, t.sla_ms), (1_500, 2, 0));
    }

    #[test]
    fn bad_settings_name_their_key() {
        let none = BTreeMap::new();
        let sla = SlaPolicy::default();
        assert!(
            validate(0.0, 3, &none, &sla)
                .unwrap_err()
                .contains("routing.offer_timeout_s")
        );
        assert!(
            validate(1.0, 0, &none, &sla)
                .unwrap_err()
                .contains("routing.max_offers")
        );
        let bad = SlaPolicy {
            first_touch_s: [("q".to_string(), -1.0)].into(),
            ..SlaPolicy::default()
        };
        assert!(
            validate(1.0, 1, &none, &bad)
                .unwrap_err()
                .contains("sla.first_touch_s.q")
        );
    }
}
