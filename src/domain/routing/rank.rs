//! Ranking reps for one lead: static filters, the live choice, and the decision record.
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::Needs;
use crate::domain::rep::{PERIODS, Periods, Rep, ZoneCache};

/// Why a rep did not get the lead (or that it did).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    Chosen,
    Inactive,
    OffShift,
    OnLeave,
    MissingRequiredSkill,
    AtCapacity,
    OverQuota,
    LowerMatch,
    HigherUtilisation,
    ShorterIdle,
    Excluded,
}

impl Verdict {
    pub const ALL: [Verdict; 11] = [
        Verdict::Chosen,
        Verdict::Inactive,
        Verdict::OffShift,
        Verdict::OnLeave,
        Verdict::MissingRequiredSkill,
        Verdict::AtCapacity,
        Verdict::OverQuota,
        Verdict::LowerMatch,
        Verdict::HigherUtilisation,
        Verdict::ShorterIdle,
        Verdict::Excluded,
    ];
    pub const COUNT: usize = Verdict::ALL.len();
}

/// A rep that passed the static filters, in ranking order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub rep_id: String,
    pub match_score: f64,
    pub capacity: u32,
    /// Quota limits in `rep::PERIODS` order (day, week, month, quarter).
    pub quotas: [Option<u32>; 4],
    /// The rep's current quota periods (see `rep::periods_of`).
    pub periods: Periods,
    /// Capacity share after time off, permille (1000: full); see `ramped`.
    pub ramp_permille: u32,
}

/// Capacity while ramping back from time off: `permille` of it, rounded up, at least 1 when
/// the full capacity is.
pub fn ramped(capacity: u32, permille: u32) -> u32 {
    if permille >= 1000 || capacity == 0 {
        return capacity;
    }
    let v = (u64::from(capacity) * u64::from(permille)).div_ceil(1000);
    u32::try_from(v).unwrap_or(capacity).max(1)
}

/// One line of the decision record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateRecord {
    pub rep_id: String,
    pub match_score: f64,
    pub verdict: Verdict,
    pub detail: Detail,
    pub load: u32,
    pub capacity: u32,
}

/// Why a record has its verdict, in words. Kept as numbers and formatted only when shown:
/// a decision builds a record per rep of the pool and lists ten of them.
#[derive(Debug, Clone, PartialEq)]
pub enum Detail {
    Text(std::borrow::Cow<'static, str>),
    Load {
        load: u32,
        capacity: u32,
    },
    Quota {
        used: u32,
        limit: u32,
        period: &'static str,
    },
    Match {
        score: f64,
        best: f64,
    },
    Utilisation {
        mine: f64,
        best: f64,
    },
}

impl Default for Detail {
    fn default() -> Self {
        Detail::Text("".into())
    }
}

impl From<&'static str> for Detail {
    fn from(s: &'static str) -> Self {
        Detail::Text(s.into())
    }
}

impl From<String> for Detail {
    fn from(s: String) -> Self {
        Detail::Text(s.into())
    }
}

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Detail::Text(t) => f.write_str(t),
            Detail::Load { load, capacity } => write!(f, "load {load} of {capacity}"),
            Detail::Quota {
                used,
                limit,
                period,
            } => write!(f, "{used} of {limit} {period}"),
            Detail::Match { score, best } => write!(f, "match {score:.3} < {best:.3}"),
            Detail::Utilisation { mine, best } => write!(f, "utilisation {mine:.2} > {best:.2}"),
        }
    }
}

// Records travel as their words.
impl Serialize for Detail {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Detail {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Detail::from)
    }
}

/// The static part of a decision: who may take the lead, and who was filtered out.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ranking {
    pub candidates: Vec<Candidate>,
    pub rejected: Vec<CandidateRecord>,
}

/// Ranks a lead some reps declined or let expire: they are left out, unless that would leave
/// nobody in the pool who could ever take it (then the slate is clean).
pub fn rank_after_offers(
    reps: &[Rep],
    needs: &Needs,
    now: Timestamp,
    excluded: &[String],
) -> Ranking {
    if !excluded.is_empty() {
        let others: Vec<Rep> = reps
            .iter()
            .filter(|r| !excluded.contains(&r.id))
            .cloned()
            .collect();
        if unroutable_reason(&others, needs).is_some() {
            return rank(reps, needs, now, &[]);
        }
    }
    rank(reps, needs, now, excluded)
}

/// Filters the pool's reps (active, not on leave, on shift, every required skill) and orders
/// the rest by match score, best first. `exclude` removes reps (the current one when
/// reassigning; those who declined or let an offer expire).
pub fn rank(reps: &[Rep], needs: &Needs, now: Timestamp, exclude: &[String]) -> Ranking {
    let mut out = Ranking::default();
    let mut zones = ZoneCache::default();
    for rep in reps.iter().filter(|r| r.pool == needs.pool) {
        let at = rep.availability(now, &mut zones);
        let match_score: f64 = needs.preferred.iter().map(|(s, w)| w * rep.skill(s)).sum();
        let reject = |verdict, detail: Detail| CandidateRecord {
            rep_id: rep.id.clone(),
            match_score,
            verdict,
            detail,
            load: 0,
            capacity: rep.capacity,
        };
        if exclude.contains(&rep.id) {
            out.rejected
                .push(reject(Verdict::Excluded, "excluded for this lead".into()));
        } else if !rep.active {
            out.rejected
                .push(reject(Verdict::Inactive, "not available".into()));
        } else if at.on_leave {
            out.rejected
                .push(reject(Verdict::OnLeave, "on time off".into()));
        } else if !at.on_shift {
            out.rejected
                .push(reject(Verdict::OffShift, "outside working hours".into()));
        } else if let Some(missing) = needs.required_skills.iter().find(|s| rep.skill(s) <= 0.0) {
            out.rejected.push(reject(
                Verdict::MissingRequiredSkill,
                format!("missing skill {missing}").into(),
            ));
        } else {
            out.candidates.push(Candidate {
                rep_id: rep.id.clone(),
                match_score,
                capacity: ramped(rep.capacity, at.ramp_permille),
                quotas: rep.quotas(),
                periods: at.periods,
                ramp_permille: at.ramp_permille,
            });
        }
    }
    out.candidates.sort_by(|a, b| {
        b.match_score
            .total_cmp(&a.match_score)
            .then_with(|| a.rep_id.cmp(&b.rep_id))
    });
    out
}

/// Why no rep of the pool could ever take a lead with these needs (shifts, time off,
/// availability and load aside: those pass), or None when some rep has every required skill.
pub fn unroutable_reason(reps: &[Rep], needs: &Needs) -> Option<String> {
    let mut pool = reps.iter().filter(|r| r.pool == needs.pool).peekable();
    if pool.peek().is_none() {
        return Some(format!("pool {:?} has no reps", needs.pool));
    }
    if pool
        .clone()
        .any(|r| needs.required_skills.iter().all(|s| r.skill(s) > 0.0))
    {
        return None;
    }
    let missing = needs
        .required_skills
        .iter()
        .find(|s| !pool.clone().any(|r| r.skill(s) > 0.0));
    Some(match missing {
        Some(s) => format!("no rep of pool {:?} has skill {s}", needs.pool),
        None => format!(
            "no rep of pool {:?} has all of {}",
            needs.pool,
            needs.required_skills.join(", ")
        ),
    })
}

/// A candidate's live state, read by the store at claim time.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LiveState {
    pub load: u32,
    /// New assignments in each of the candidate's current periods (`rep::PERIODS` order).
    pub counts: [u32; 4],
    /// Milliseconds since the epoch of the last assignment; None = never assigned.
    pub last_assigned_ms: Option<i64>,
}

impl LiveState {
    /// Counters kept for the periods `kept`, as they stand in the `current` periods: a count
    /// kept for a period that has moved on reads 0.
    pub fn in_periods(
        load: u32,
        kept: &Periods,
        counts: [u32; 4],
        last_assigned_ms: Option<i64>,
        current: &Periods,
    ) -> LiveState {
        let mut now = [0; 4];
        for k in 0..4 {
            if kept[k] == current[k] {
                now[k] = counts[k];
            }
        }
        LiveState {
            load,
            counts: now,
            last_assigned_ms,
        }
    }
}

/// Match scores closer than this are a tie.
pub const SCORE_EPSILON: f64 = 1e-9;

/// Picks the winner among ranked candidates given their live state: highest match score with
/// room, then lowest utilisation, then longest idle, then rep id. Returns the winner's index
/// and a record line for every candidate.
pub fn choose(
    candidates: &[Candidate],
    live: &[LiveState],
) -> (Option<usize>, Vec<CandidateRecord>) {
    let full_period = |i: usize| {
        (0..4).find(|&k| candidates[i].quotas[k].is_some_and(|q| live[i].counts[k] >= q))
    };
    let room = |i: usize| -> Option<Verdict> {
        if live[i].load >= candidates[i].capacity {
            Some(Verdict::AtCapacity)
        } else if full_period(i).is_some() {
            Some(Verdict::OverQuota)
        } else {
            None
        }
    };
    let util = |i: usize| f64::from(live[i].load) / f64::from(candidates[i].capacity.max(1));
    let idle_key = |i: usize| live[i].last_assigned_ms.unwrap_or(i64::MIN);
    let mut best: Option<usize> = None;
    for i in 0..candidates.len() {
        if room(i).is_some() {
            continue;
        }
        best = Some(match best {
            None => i,
            Some(b) => {
                let ds = candidates[i].match_score - candidates[b].match_score;
                let better = if ds.abs() > SCORE_EPSILON {
                    ds > 0.0
                } else if (util(i) - util(b)).abs() > f64::EPSILON {
                    util(i) < util(b)
                } else if idle_key(i) != idle_key(b) {
                    idle_key(i) < idle_key(b)
                } else {
                    candidates[i].rep_id < candidates[b].rep_id
                };
                if better { i } else { b }
            }
        });
    }
    let records = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (verdict, detail) = match (room(i), best) {
                (Some(v @ Verdict::AtCapacity), _) => (
                    v,
                    Detail::Load {
                        load: live[i].load,
                        capacity: c.capacity,
                    },
                ),
                (Some(v), _) => {
                    let k = full_period(i).unwrap_or(0);
                    (
                        v,
                        Detail::Quota {
                            used: live[i].counts[k],
                            limit: c.quotas[k].unwrap_or(0),
                            period: PERIODS[k].phrase(),
                        },
                    )
                }
                (None, Some(b)) if b == i => (Verdict::Chosen, "best match with room".into()),
                (None, Some(b)) => {
                    let w = &candidates[b];
                    if w.match_score - c.match_score > SCORE_EPSILON {
                        (
                            Verdict::LowerMatch,
                            Detail::Match {
                                score: c.match_score,
                                best: w.match_score,
                            },
                        )
                    } else if util(i) > util(b) + f64::EPSILON {
                        (
                            Verdict::HigherUtilisation,
                            Detail::Utilisation {
                                mine: util(i),
                                best: util(b),
                            },
                        )
                    } else {
                        (Verdict::ShorterIdle, "tie broken by idle time".into())
                    }
                }
                (None, None) => (Verdict::AtCapacity, "no room".into()),
            };
            CandidateRecord {
                rep_id: c.rep_id.clone(),
                match_score: c.match_score,
                verdict,
                detail,
                load: live[i].load,
                capacity: c.capacity,
            }
        })
        .collect();
    (best, records)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::lead::{AttrValue, Lead};
    use crate::domain::routing::{Preference, RoutingPolicy, UnknownPool};
    use crate::domain::terms::Mode;

    fn rep(id: &str, skills: &[(&str, f64)], capacity: u32) -> Rep {
        Rep {
            skills: skills.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..Rep::new(id, capacity)
        }
    }

    fn policy() -> RoutingPolicy {
        RoutingPolicy {
            pool_attribute: "pool".into(),
            default_pool: "default".into(),
            required: vec!["language".into()],
            preferred: vec![Preference {
                attribute: "industry".into(),
                weight: 1.0,
            }],
            segment_weight: 0.5,
            queue_unroutable: false,
            mode: Mode::Direct,
            offer_timeout_s: 120.0,
            max_offers: 3,
            pools: BTreeMap::new(),
            unknown_pool: UnknownPool::Refuse,
            max_pools: 1000,
            max_reps_per_pool: 2000,
            record_candidates: 10,
            queue_ttl_s: 0.0,
        }
    }

    fn lead(pairs: &[(&str, &str)]) -> Lead {
        Lead {
            id: "l".into(),
            attributes: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), AttrValue::String(v.to_string())))
                .collect(),
        }
    }

    fn now() -> Timestamp {
        "2026-11-28T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn needs_come_from_attributes_and_segment() {
        let n = policy().needs(
            &lead(&[("language", "DE"), ("industry", "Finance")]),
            "price_sensitive",
            &["negotiation".into()],
        );
        assert_eq!(n.pool, "default");
        assert_eq!(n.required_skills, ["language:de", "negotiation"]);
        assert_eq!(
            n.preferred,
            [
                ("industry:finance".to_string(), 1.0),
                ("segment:price_sensitive".to_string(), 0.5)
            ]
        );
    }

    #[test]
    fn rank_filters_and_orders() {
        let mut off = rep("off", &[("language:de", 1.0)], 5);
        off.active = false;
        let reps = vec![
            rep("a", &[("language:de", 1.0), ("industry:finance", 0.2)], 5),
            rep("b", &[("language:de", 1.0), ("industry:finance", 0.9)], 5),
            rep("c", &[("language:en", 1.0), ("industry:finance", 1.0)], 5),
            off,
        ];
        let needs = policy().needs(
            &lead(&[("language", "de"), ("industry", "finance")]),
            "qualified",
            &[],
        );
        let r = rank(&reps, &needs, now(), &[]);
        let ids: Vec<_> = r.candidates.iter().map(|c| c.rep_id.as_str()).collect();
        assert_eq!(ids, ["b", "a"]);
        let why: Vec<_> = r
            .rejected
            .iter()
            .map(|c| (c.rep_id.as_str(), c.verdict))
            .collect();
        assert_eq!(
            why,
            [
                ("c", Verdict::MissingRequiredSkill),
                ("off", Verdict::Inactive)
            ]
        );
        let r = rank(&reps, &needs, now(), &["b".to_string()]);
        assert_eq!(r.candidates.len(), 1);
        assert_eq!(r.rejected[0].verdict, Verdict::Excluded);
    }

    fn cand(id: &str, score: f64, capacity: u32) -> Candidate {
        Candidate {
            rep_id: id.into(),
            match_score: score,
            capacity,
            quotas: [None; 4],
            periods: [7; 4],
            ramp_permille: 1000,
        }
    }

    #[test]
    fn choose_prefers_score_then_utilisation_then_idle() {
        let cs = [cand("a", 1.0, 2), cand("b", 0.5, 10), cand("c", 0.5, 10)];
        let live = |la, lb, lc| {
            [
                LiveState {
                    load: la,
                    ..Default::default()
                },
                LiveState {
                    load: lb,
                    last_assigned_ms: Some(5),
                    ..Default::default()
                },
                LiveState {
                    load: lc,
                    last_assigned_ms: Some(3),
                    ..Default::default()
                },
            ]
        };
        let (w, rec) = choose(&cs, &live(0, 0, 0));
        assert_eq!(w, Some(0));
        assert_eq!(rec[1].verdict, Verdict::LowerMatch);
        // a is full: b and c tie on score and utilisation; c has been idle longer.
        let (w, rec) = choose(&cs, &live(2, 1, 1));
        assert_eq!(w, Some(2));
        assert_eq!(rec[0].verdict, Verdict::AtCapacity);
        assert_eq!(rec[1].verdict, Verdict::ShorterIdle);
        let (w, rec) = choose(&cs, &live(2, 1, 2));
        assert_eq!(w, Some(1));
        assert_eq!(rec[2].verdict, Verdict::HigherUtilisation);
        let (w, _) = choose(&cs, &live(2, 10, 10));
        assert_eq!(w, None);
    }

    #[test]
    fn ramped_capacity_rounds_up_and_keeps_one() {
        assert_eq!(ramped(10, 1000), 10);
        assert_eq!(ramped(10, 500), 5);
        assert_eq!(ramped(3, 500), 2);
        assert_eq!(ramped(1, 500), 1);
        assert_eq!(ramped(0, 500), 0);
    }

    #[test]
    fn quota_blocks_a_rep_with_room() {
        let mut c = cand("a", 1.0, 5);
        c.quotas = [Some(5), Some(2), None, None];
        let (w, rec) = choose(
            &[c],
            &[LiveState {
                load: 0,
                counts: [2, 2, 2, 2],
                last_assigned_ms: None,
            }],
        );
        assert_eq!(w, None);
        assert_eq!(rec[0].verdict, Verdict::OverQuota);
        assert_eq!(rec[0].detail.to_string(), "2 of 2 this week");
    }
}
