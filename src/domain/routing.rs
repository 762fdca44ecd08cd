//! Routing policy: how a lead maps to a pool, its required and preferred skills, and its terms.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::assignment::Terms;
use crate::domain::lead::Lead;
use crate::domain::rep::Rep;
use crate::domain::terms::{self, Mode, PoolTerms, SlaPolicy};

/// A preferred attribute: a rep with skill `attribute:value` gains `weight * level`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preference {
    pub attribute: String,
    pub weight: f64,
}

/// How leads map to pools and skills (from config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingPolicy {
    /// Lead attribute that names the pool; leads without it go to `default_pool`.
    pub pool_attribute: String,
    pub default_pool: String,
    /// Attributes that must match: a lead with language=de needs skill `language:de`.
    pub required: Vec<String>,
    pub preferred: Vec<Preference>,
    /// Weight of the rep's `segment:<name>` skill in the match score.
    pub segment_weight: f64,
    /// Store (queue) leads that no rep of their pool could ever take, instead of answering
    /// UNROUTABLE without storing them.
    #[serde(default)]
    pub queue_unroutable: bool,
    /// "direct" or "offer" for every pool without its own `pools.<name>.mode`.
    #[serde(default)]
    pub mode: Mode,
    /// Offer mode: seconds a rep has to accept.
    #[serde(default = "default_offer_timeout")]
    pub offer_timeout_s: f64,
    /// Offer mode: declined or expired offers before the lead waits in the queue again.
    #[serde(default = "default_max_offers")]
    pub max_offers: u32,
    /// Per-pool overrides of the three above.
    #[serde(default)]
    pub pools: BTreeMap<String, PoolTerms>,
    /// A lead naming a pool no rep and no `pools.<name>` declares: refused, or routed to
    /// `default_pool` (said in the decision record). Traffic never creates pools.
    #[serde(default)]
    pub unknown_pool: UnknownPool,
    /// Pools the team may span, and reps one pool may hold (UpsertRep past them:
    /// RESOURCE_EXHAUSTED).
    #[serde(default = "default_max_pools")]
    pub max_pools: usize,
    #[serde(default = "default_max_reps_per_pool")]
    pub max_reps_per_pool: usize,
    /// Candidates a decision record lists unless the request asks for all (the chosen rep,
    /// the nearest of each other verdict, the best runners-up); the rest are counted per
    /// verdict. `candidates_shown` was its name before 0.2.
    #[serde(default = "default_record_candidates", alias = "candidates_shown")]
    pub record_candidates: usize,
    /// A lead queued this many seconds is closed EXPIRED (recorded, not a training label), so
    /// a queue nobody works drains by itself; 0 (the default) keeps leads queued forever.
    #[serde(default, alias = "queue_ttl")]
    pub queue_ttl_s: f64,
}

fn default_record_candidates() -> usize {
    10
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownPool {
    /// INVALID_ARGUMENT naming the pool attribute.
    #[default]
    Refuse,
    /// The lead goes to `default_pool`.
    Default,
}

fn default_max_pools() -> usize {
    1000
}

fn default_max_reps_per_pool() -> usize {
    2000
}

fn default_offer_timeout() -> f64 {
    terms::DEFAULT_OFFER_TIMEOUT_S
}

fn default_max_offers() -> u32 {
    terms::DEFAULT_MAX_OFFERS
}

impl RoutingPolicy {
    /// Whether a pool exists: the default pool, a configured one, or one a rep names.
    pub fn is_declared(&self, pool: &str, reps: &[Rep]) -> bool {
        pool == self.default_pool
            || self.pools.contains_key(pool)
            || reps.iter().any(|r| r.pool == pool)
    }

    /// The terms of a lead routed to `pool` in `segment`.
    pub fn terms(&self, pool: &str, segment: &str, sla: &SlaPolicy) -> Terms {
        let mut t = terms::terms(
            self.mode,
            self.offer_timeout_s,
            self.max_offers,
            self.pools.get(pool),
            sla,
            segment,
        );
        if self.queue_ttl_s > 0.0 {
            t.queue_ttl_ms = ((self.queue_ttl_s * 1000.0).round() as i64).max(1);
        }
        t
    }
}

/// What one lead asks of a rep; stored with queued leads so they can be re-ranked later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Needs {
    pub pool: String,
    pub required_skills: Vec<String>,
    /// (skill, weight)
    pub preferred: Vec<(String, f64)>,
}

fn norm(s: &str) -> String {
    s.trim().to_lowercase()
}

impl RoutingPolicy {
    /// Derives a lead's needs from its attributes and segment's required skills.
    pub fn needs(&self, lead: &Lead, segment: &str, segment_skills: &[String]) -> Needs {
        let mut buf = String::new();
        let value = |name: &str, buf: &mut String| lead.get(name).map(|v| norm(v.category(buf)));
        let pool = value(&self.pool_attribute, &mut buf)
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| self.default_pool.clone());
        let mut required_skills: Vec<String> = self
            .required
            .iter()
            .filter_map(|a| value(a, &mut buf).map(|v| format!("{}:{v}", norm(a))))
            .collect();
        required_skills.extend(segment_skills.iter().map(|s| norm(s)));
        required_skills.sort();
        required_skills.dedup();
        let mut preferred: Vec<(String, f64)> = self
            .preferred
            .iter()
            .filter_map(|p| {
                value(&p.attribute, &mut buf)
                    .map(|v| (format!("{}:{v}", norm(&p.attribute)), p.weight))
            })
            .collect();
        if self.segment_weight != 0.0 {
            preferred.push((format!("segment:{}", norm(segment)), self.segment_weight));
        }
        Needs {
            pool,
            required_skills,
            preferred,
        }
    }
}

mod rank;
mod record;
pub use rank::*;
pub use record::*;
