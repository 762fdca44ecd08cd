//! Reports from ledger cells: periods, grouping, the forecast's interval, the performance
//! index and its credible interval, calibration bands and the funnel.
use std::collections::{BTreeMap, HashMap};

use jiff::civil::Date;

use crate::domain::ledger::{Bucket, Cell, Grain, LedgerCell, Metric, Stage, bucket_bounds, m};
use crate::domain::rep::calendar::{day_number, periods_of};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Period {
    Day,
    Week,
    Month,
    Quarter,
}

impl Period {
    pub fn parse(s: &str) -> Option<Period> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "day" => Period::Day,
            "week" => Period::Week,
            "month" => Period::Month,
            "quarter" => Period::Quarter,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Quarter => "quarter",
        }
    }

    /// The period a report day (days since 1970-01-01) falls in, and its label: 2017-03-31,
    /// 2017-W13, 2017-03, 2017-Q1.
    pub fn of_day(self, day: i32) -> (i32, String) {
        let date = date_of(day);
        let p = periods_of(date);
        match self {
            Period::Day => (p[0], date.to_string()),
            Period::Week => {
                let w = date.iso_week_date();
                (p[1], format!("{}-W{:02}", w.year(), w.week()))
            }
            Period::Month => (p[2], format!("{}-{:02}", date.year(), date.month())),
            Period::Quarter => (
                p[3],
                format!("{}-Q{}", date.year(), (date.month() - 1) / 3 + 1),
            ),
        }
    }

    /// The buckets that answer this period: days for days and weeks, months for the rest.
    pub fn grain(self) -> Grain {
        match self {
            Period::Day | Period::Week => Grain::Day,
            Period::Month | Period::Quarter => Grain::Month,
        }
    }

    /// The period of a bucket of this period's grain, and its label.
    pub fn of_bucket(self, b: Bucket) -> (i32, String) {
        match b {
            Bucket::Day(d) => self.of_day(d),
            Bucket::Month(mi) => {
                let (y, mo) = (mi.div_euclid(12), mi.rem_euclid(12) + 1);
                match self {
                    Period::Quarter => (mi.div_euclid(3), format!("{y}-Q{}", (mo - 1) / 3 + 1)),
                    _ => (mi, format!("{y}-{mo:02}")),
                }
            }
            Bucket::Now => (0, String::new()),
        }
    }

    /// The first and last day of the period containing `day`.
    pub fn bounds(self, day: i32) -> (i32, i32) {
        let date = date_of(day);
        let first = match self {
            Period::Day => date,
            Period::Week => date
                .checked_sub(
                    jiff::Span::new().days(i64::from(date.weekday().to_monday_zero_offset())),
                )
                .unwrap_or(date),
            Period::Month => date.first_of_month(),
            Period::Quarter => {
                let month = (date.month() - 1) / 3 * 3 + 1;
                Date::new(date.year(), month, 1).unwrap_or(date)
            }
        };
        let next = match self {
            Period::Day => first.tomorrow().ok(),
            Period::Week => first.checked_add(jiff::Span::new().days(7)).ok(),
            Period::Month => first.checked_add(jiff::Span::new().months(1)).ok(),
            Period::Quarter => first.checked_add(jiff::Span::new().months(3)).ok(),
        };
        let first = day_number(first);
        (first, next.map_or(first, |n| day_number(n) - 1))
    }
}

pub fn date_of(day: i32) -> Date {
    jiff::civil::date(1970, 1, 1)
        .checked_add(jiff::Span::new().days(i64::from(day)))
        .unwrap_or(jiff::civil::date(1970, 1, 1))
}

/// What rows are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Rep,
    Pool,
    Segment,
    Team,
}

impl By {
    pub fn parse(s: &str) -> Option<By> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "rep" => By::Rep,
            "pool" => By::Pool,
            "segment" => By::Segment,
            "team" | "" => By::Team,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            By::Rep => "rep",
            By::Pool => "pool",
            By::Segment => "segment",
            By::Team => "team",
        }
    }

    pub fn key(self, c: &LedgerCell) -> &str {
        match self {
            By::Rep => &c.rep,
            By::Pool => &c.pool,
            By::Segment => &c.segment,
            By::Team => "all",
        }
    }
}

/// The standard normal quantiles the reports use.
pub const Z80: f64 = 1.281_551_565_545; // 90th percentile: the 80 % central interval
pub const Z95: f64 = 1.959_963_984_540; // 97.5th percentile: the 95 % central interval

/// The central 80 % interval of a sum of independent Bernoulli(p_i) (Poisson-binomial) from
/// its mean, variance and third cumulant: Cornish-Fisher (skew-corrected normal) quantiles
/// with a continuity correction, rounded to whole wins within [0, n].
pub fn wins_interval(mean: f64, var: f64, k3: f64, n: f64) -> (f64, f64) {
    if var <= 1e-12 {
        let x = mean.round();
        return (x, x);
    }
    let sd = var.sqrt();
    let skew = k3 / (var * sd);
    let q = |z: f64| {
        let zc = z + (z * z - 1.0) * skew / 6.0;
        (mean + sd * zc - 0.5).ceil().clamp(0.0, n.max(0.0))
    };
    (q(-Z80), q(Z80))
}

/// The 95 % credible interval of a rate θ with wins ~ Poisson(θ · expected) and a Gamma(1, 1)
/// prior (mean 1: "as predicted"): the posterior is Gamma(1 + wins, 1 + expected); quantiles
/// by the Wilson-Hilferty approximation.
pub fn index_interval(wins: f64, expected: f64) -> (f64, f64) {
    let (shape, rate) = (1.0 + wins, 1.0 + expected);
    let q = |z: f64| {
        let c = 1.0 / (9.0 * shape);
        (shape / rate * (1.0 - c + z * c.sqrt()).max(0.0).powi(3)).max(0.0)
    };
    (q(-Z95), q(Z95))
}

/// Sums cells into (group, period) keys; `period` None sums every day into one.
pub fn fold(
    cells: &[LedgerCell],
    by: By,
    period: Option<Period>,
) -> BTreeMap<(String, i32), (String, Cell)> {
    // Hashed on borrowed keys while folding (tens of thousands of small cells: allocations
    // and string comparisons were most of the time), sorted once at the end. A bucket's
    // period and label are worked out once per bucket.
    let mut acc: HashMap<(&str, i32), (String, Cell)> = HashMap::new();
    let mut periods: HashMap<Bucket, (i32, String)> = HashMap::new();
    for c in cells {
        let (idx, label) = periods
            .entry(c.bucket)
            .or_insert_with(|| period.map_or((0, String::new()), |p| p.of_bucket(c.bucket)));
        acc.entry((by.key(c), *idx))
            .or_insert_with(|| (label.clone(), Cell::default()))
            .1
            .merge(&c.cell);
    }
    acc.into_iter()
        .map(|((group, idx), v)| ((group.to_string(), idx), v))
        .collect()
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// One group's results in one period: outcomes in the period they closed, open leads in the
/// period their holding began.
#[derive(Debug, Clone, PartialEq)]
pub struct PerformanceRow {
    pub group: String,
    pub period: String,
    pub assigned: f64,
    pub won: f64,
    pub lost: f64,
    pub disqualified: f64,
    pub returned: f64,
    pub open: f64,
    /// won / (won + lost).
    pub win_rate: Option<f64>,
    pub won_value: f64,
    /// Σp of the leads closed won or lost, and the 80 % interval of their wins.
    pub expected_wins: f64,
    pub wins_low: f64,
    pub wins_high: f64,
    /// won / expected_wins, with its 95 % credible interval.
    pub index: Option<f64>,
    pub index_low: f64,
    pub index_high: f64,
    /// "above" or "below" when the interval lies wholly past 1, else "".
    pub flag: &'static str,
}

pub fn performance(cells: &[LedgerCell], by: By, period: Period) -> Vec<PerformanceRow> {
    fold(cells, by, Some(period))
        .into_iter()
        .filter(|((group, _), (_, c))| !(by == By::Rep && group.is_empty()) || c.get(m::WON) > 0.0)
        .map(|((group, _), (label, c))| {
            let (won, lost) = (c.get(m::WON), c.get(m::LOST));
            let expected = c.get(m::CLOSED_P).max(0.0);
            let (wins_low, wins_high) = wins_interval(
                expected,
                c.get(m::CLOSED_VAR),
                c.get(m::CLOSED_K3),
                won + lost,
            );
            let (index_low, index_high) = index_interval(won, expected);
            let flag = if won + lost == 0.0 {
                ""
            } else if index_low > 1.0 {
                "above"
            } else if index_high < 1.0 {
                "below"
            } else {
                ""
            };
            PerformanceRow {
                group,
                period: label,
                assigned: c.get(m::ASSIGNED),
                won,
                lost,
                disqualified: c.get(m::DISQUALIFIED),
                returned: c.get(m::RETURNED),
                open: c.get(m::OPEN).round().max(0.0),
                win_rate: ratio(won, won + lost),
                won_value: c.get(m::WON_VALUE),
                expected_wins: expected,
                wins_low,
                wins_high,
                index: ratio(won, expected),
                index_low,
                index_high,
                flag,
            }
        })
        .filter(|r| r.assigned + r.won + r.lost + r.open + r.disqualified + r.returned > 0.0)
        .collect()
}

/// Open leads now (held or queued), per group.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastRow {
    pub group: String,
    pub open: f64,
    /// Σp, its variance Σp(1-p), the 80 % interval of wins, and Σp·expected value.
    pub expected_wins: f64,
    pub variance: f64,
    pub wins_low: f64,
    pub wins_high: f64,
    pub expected_value: f64,
}

pub fn forecast(cells: &[LedgerCell], by: By) -> Vec<ForecastRow> {
    fold(cells, by, None)
        .into_iter()
        .map(|((group, _), (_, c))| {
            let open = c.get(m::OPEN).round().max(0.0);
            let (mean, var) = (c.get(m::OPEN_P).max(0.0), c.get(m::OPEN_VAR).max(0.0));
            let (wins_low, wins_high) = wins_interval(mean, var, c.get(m::OPEN_K3), open);
            ForecastRow {
                group,
                open,
                expected_wins: mean,
                variance: var,
                wins_low,
                wins_high,
                expected_value: c.get(m::OPEN_EV),
            }
        })
        .filter(|r| r.open > 0.0)
        .collect()
}

/// Won/lost closes in one probability decile.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    pub low: f64,
    pub high: f64,
    pub leads: f64,
    pub won: f64,
    pub mean_probability: f64,
}

pub fn calibration(cells: &[LedgerCell]) -> Vec<Band> {
    let mut total = Cell::default();
    for c in cells {
        total.merge(&c.cell);
    }
    (0..m::BANDS)
        .map(|b| {
            let n = total.get(m::BAND_N + b);
            Band {
                low: f64::from(b) / 10.0,
                high: f64::from(b + 1) / 10.0,
                leads: n,
                won: total.get(m::BAND_WON + b),
                mean_probability: ratio(total.get(m::BAND_P + b), n).unwrap_or(0.0),
            }
        })
        .filter(|b| b.leads > 0.0)
        .collect()
}

/// One step of the funnel: how many reached it, and the share of the step before that did not.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: &'static str,
    pub count: f64,
    pub drop_off: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Percentiles {
    pub stage: &'static str,
    pub count: f64,
    /// Seconds; None without observations.
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FunnelRow {
    pub group: String,
    pub period: String,
    pub steps: Vec<Step>,
    /// Leaks: (name, count).
    pub leaks: Vec<(&'static str, f64)>,
    pub stages: Vec<Percentiles>,
}

/// Funnel rows; `stale_queued` adds, per group, the leads still queued past the configured age
/// (a count of now, shown in the current period).
pub fn funnel(
    cells: &[LedgerCell],
    by: By,
    period: Period,
    stale_queued: &BTreeMap<String, f64>,
    today: i32,
) -> Vec<FunnelRow> {
    let (now_idx, _) = period.of_day(today);
    fold(cells, by, Some(period))
        .into_iter()
        .map(|((group, idx), (label, c))| {
            let closed =
                c.get(m::WON) + c.get(m::LOST) + c.get(m::DISQUALIFIED) + c.get(m::RETURNED);
            let chain = [
                ("submitted", c.get(m::SUBMITTED)),
                ("assigned", c.get(m::ASSIGNED)),
                ("contacted", c.get(m::CONTACTED)),
                ("closed", closed),
                ("won", c.get(m::WON)),
            ];
            let mut steps: Vec<Step> = Vec::new();
            for (i, (name, count)) in chain.iter().enumerate() {
                let drop_off = (i > 0)
                    .then(|| ratio(chain[i - 1].1 - count, chain[i - 1].1))
                    .flatten()
                    .map(|d| d.max(0.0));
                steps.push(Step {
                    name,
                    count: *count,
                    drop_off,
                });
            }
            for (name, metric) in [
                ("lost", m::LOST),
                ("disqualified", m::DISQUALIFIED),
                ("returned", m::RETURNED),
            ] {
                steps.push(Step {
                    name,
                    count: c.get(metric),
                    drop_off: None,
                });
            }
            let stale = if idx == now_idx {
                stale_queued.get(&group).copied().unwrap_or(0.0)
            } else {
                0.0
            };
            let leaks = vec![
                ("unroutable", c.get(m::UNROUTABLE)),
                ("offer_expired", c.get(m::OFFER_EXPIRED)),
                ("sla_breached", c.get(m::SLA_BREACHED)),
                ("queue_expired", c.get(m::QUEUE_EXPIRED)),
                ("stale_queued", stale),
            ];
            let stages = Stage::ALL.iter().map(|&s| percentiles(&c, s)).collect();
            FunnelRow {
                group,
                period: label,
                steps,
                leaks,
                stages,
            }
        })
        .collect()
}

/// Percentiles from a histogram, interpolated geometrically within a bucket (linearly in the
/// first, which starts at 0).
fn percentiles(c: &Cell, s: Stage) -> Percentiles {
    let base: Metric = m::HIST + s as u16 * m::HIST_BUCKETS;
    let counts: Vec<f64> = (0..m::HIST_BUCKETS)
        .map(|b| c.get(base + b).max(0.0))
        .collect();
    let total: f64 = counts.iter().sum();
    let q = |f: f64| -> Option<f64> {
        if total <= 0.0 {
            return None;
        }
        let target = f * total;
        let mut seen = 0.0;
        for (b, &n) in counts.iter().enumerate() {
            if n > 0.0 && seen + n >= target {
                let (lo, hi) = bucket_bounds(b as u16);
                let frac = ((target - seen) / n).clamp(0.0, 1.0);
                return Some(if b == 0 {
                    lo + (hi - lo) * frac
                } else {
                    lo * (hi / lo).powf(frac)
                });
            }
            seen += n;
        }
        None
    };
    Percentiles {
        stage: s.name(),
        count: total,
        p50: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
    }
}

#[cfg(test)]
mod tests;
