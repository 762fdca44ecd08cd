//! Targets: how many assignments, wins or how much won value a rep, a pool or the team should
//! reach per period, and progress against them with a run-rate projection.
use crate::domain::report::Period;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Rep(String),
    Pool(String),
    Team,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TargetMetric {
    Assignments,
    Wins,
    WonValue,
}

impl TargetMetric {
    pub const ALL: [TargetMetric; 3] = [
        TargetMetric::Assignments,
        TargetMetric::Wins,
        TargetMetric::WonValue,
    ];
    pub fn name(self) -> &'static str {
        match self {
            TargetMetric::Assignments => "assignments",
            TargetMetric::Wins => "wins",
            TargetMetric::WonValue => "won_value",
        }
    }
    pub fn parse(s: &str) -> Option<TargetMetric> {
        TargetMetric::ALL.into_iter().find(|m| m.name() == s.trim())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub scope: Scope,
    pub period: Period,
    pub metric: TargetMetric,
    /// 0 removes the target.
    pub value: f64,
}

impl Target {
    /// The key a store keeps it under: "rep:<id>|month|wins", "pool:<name>|...", "team|...".
    pub fn key(&self) -> String {
        let scope = match &self.scope {
            Scope::Rep(id) => format!("rep:{id}"),
            Scope::Pool(p) => format!("pool:{p}"),
            Scope::Team => "team".to_string(),
        };
        format!("{scope}|{}|{}", self.period.name(), self.metric.name())
    }

    pub fn from_key(key: &str, value: f64) -> Option<Target> {
        let mut parts = key.rsplitn(3, '|');
        let metric = TargetMetric::parse(parts.next()?)?;
        let period = Period::parse(parts.next()?)?;
        let scope = match parts.next()? {
            "team" => Scope::Team,
            s => match s.split_once(':')? {
                ("rep", id) => Scope::Rep(id.to_string()),
                ("pool", p) => Scope::Pool(p.to_string()),
                _ => return None,
            },
        };
        Some(Target {
            scope,
            period,
            metric,
            value,
        })
    }
}

/// Progress of one target in the current period.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub target: Target,
    pub period: String,
    pub actual: f64,
    /// actual / target.
    pub progress: f64,
    /// actual / (elapsed share of the period): where the run rate ends the period.
    pub projected: f64,
}

/// `elapsed` is the share of the period gone (0..=1].
pub fn progress(target: Target, period: String, actual: f64, elapsed: f64) -> Progress {
    let progress = if target.value > 0.0 {
        actual / target.value
    } else {
        0.0
    };
    Progress {
        projected: actual / elapsed.clamp(1e-9, 1.0),
        target,
        period,
        actual,
        progress,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for scope in [
            Scope::Rep("a|b:c".into()),
            Scope::Pool("west".into()),
            Scope::Team,
        ] {
            let t = Target {
                scope,
                period: Period::Quarter,
                metric: TargetMetric::WonValue,
                value: 5.0,
            };
            assert_eq!(Target::from_key(&t.key(), 5.0), Some(t));
        }
        assert_eq!(Target::from_key("nope", 1.0), None);
    }

    #[test]
    fn projection_is_the_run_rate() {
        let t = Target {
            scope: Scope::Team,
            period: Period::Month,
            metric: TargetMetric::Wins,
            value: 20.0,
        };
        let p = progress(t, "2026-11".into(), 5.0, 0.25);
        assert_eq!((p.progress, p.projected), (0.25, 20.0));
    }
}
