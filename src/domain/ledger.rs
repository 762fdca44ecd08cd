//! The report ledger: what every change to a lead adds to the counters reports read, kept per
//! pool, report day, rep and segment as leads move (never recomputed from the leads).
//!
//! A change is a `Tick`; `tally` turns it into `Delta`s. A backend applies them in the same
//! atomic step as the change itself, so the counters always match the leads.
use serde::{Deserialize, Serialize};

use crate::domain::event::EventKind;

/// A counter's code. Codes are stable: Redis stores them as field names.
pub type Metric = u16;

pub mod m {
    use super::Metric;
    /// New leads (the first claim: assigned, offered or queued), under rep "".
    pub const SUBMITTED: Metric = 0;
    /// Leads a rep started working: assigned directly or an accepted offer.
    pub const ASSIGNED: Metric = 1;
    // 2 is retired (Σp of assignments: no report read it, and every claim paid for it).
    pub const OFFERED: Metric = 3;
    pub const ACCEPTED: Metric = 4;
    pub const DECLINED: Metric = 5;
    pub const OFFER_EXPIRED: Metric = 6;
    pub const REASSIGNED: Metric = 7;
    pub const CONTACTED: Metric = 8;
    pub const SLA_BREACHED: Metric = 9;
    pub const WON: Metric = 10;
    pub const LOST: Metric = 11;
    pub const DISQUALIFIED: Metric = 12;
    pub const RETURNED: Metric = 13;
    /// Closed EXPIRED: waited in the queue past its TTL.
    pub const QUEUE_EXPIRED: Metric = 14;
    /// Refused as unroutable (not stored), under rep "".
    pub const UNROUTABLE: Metric = 15;
    /// Σp, Σp(1-p), Σp(1-p)(1-2p) of leads closed won or lost: the predicted wins, their
    /// variance and third cumulant.
    pub const CLOSED_P: Metric = 16;
    pub const CLOSED_VAR: Metric = 17;
    pub const CLOSED_K3: Metric = 18;
    /// Σ value of won leads (CloseAssignment's value, else the lead's expected value).
    pub const WON_VALUE: Metric = 19;
    /// Leads held (or queued, under rep "") now, by the day their holding began; Σp,
    /// Σp(1-p), Σp(1-p)(1-2p) and Σp·expected value of those.
    pub const OPEN: Metric = 20;
    pub const OPEN_P: Metric = 21;
    pub const OPEN_VAR: Metric = 22;
    pub const OPEN_K3: Metric = 23;
    pub const OPEN_EV: Metric = 24;
    /// Calibration of won/lost closes by probability decile d: count, wins, Σp.
    pub const BAND_N: Metric = 32;
    pub const BAND_WON: Metric = 42;
    pub const BAND_P: Metric = 52;
    pub const BANDS: u16 = 10;
    /// Time-in-stage histograms: stage s, bucket b at HIST + s * HIST_BUCKETS + b.
    pub const HIST: Metric = 64;
    pub const HIST_BUCKETS: u16 = 32;
}

/// Time-in-stage histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Queued until a rep took it (leads that waited; one assigned on arrival has no wait).
    QueueWait = 0,
    /// Offered until accepted.
    ToAccept = 1,
    /// Assigned until first contact.
    ToContact = 2,
    /// Assigned until closed.
    ToClose = 3,
}

impl Stage {
    pub const ALL: [Stage; 4] = [
        Stage::QueueWait,
        Stage::ToAccept,
        Stage::ToContact,
        Stage::ToClose,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Stage::QueueWait => "queue_wait",
            Stage::ToAccept => "time_to_accept",
            Stage::ToContact => "time_to_first_touch",
            Stage::ToClose => "time_to_close",
        }
    }
}

/// Bucket of a duration: 0 below one second, then b for [2^(b-1), 2^b) seconds.
pub fn hist_bucket(ms: i64) -> u16 {
    let s = ms.max(0) / 1000;
    if s == 0 {
        return 0;
    }
    (64 - s.leading_zeros() as u16).min(m::HIST_BUCKETS - 1)
}

/// The seconds range of a bucket.
pub fn bucket_bounds(b: u16) -> (f64, f64) {
    if b == 0 {
        (0.0, 1.0)
    } else {
        (2f64.powi(i32::from(b) - 1), 2f64.powi(i32::from(b)))
    }
}

/// The probability decile of p (0..=9).
pub fn band(p: f64) -> u16 {
    ((p.clamp(0.0, 1.0) * 10.0) as u16).min(m::BANDS - 1)
}

/// A holding: who holds the lead ("" for the queue) and since when (ms).
#[derive(Debug, Clone, PartialEq)]
pub struct Holding {
    pub rep: String,
    pub since_ms: i64,
}

/// One change to one lead, with what the counters need.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub kind: EventKind,
    /// The rep the change is about (the one who declined, closed, breached...).
    pub rep: String,
    pub segment: String,
    pub probability: f64,
    /// The lead's expected value (its configured attribute), 0 when it has none.
    pub expected_value: f64,
    /// For CLOSED: the outcome's name (`Outcome::as_str`) and the deal's value, if given.
    pub outcome: Option<String>,
    pub value: Option<f64>,
    /// The holding before the change (None for a new lead or a change that moves nothing).
    pub before: Option<Holding>,
    /// The holding after it (None once closed, or for a change that moves nothing).
    pub after: Option<Holding>,
    /// The first claim of a lead.
    pub new: bool,
    /// For CONTACTED: when the current holding began.
    pub held_since_ms: i64,
    pub at_ms: i64,
}

/// Where a counter lives: a report day, a calendar month (year * 12 + month - 1, so month and
/// quarter reports read a few buckets instead of every day), or `Now` for the open leads'
/// forecast figures, which have no date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Bucket {
    Now,
    Day(i32),
    Month(i32),
}

impl Bucket {
    /// Its name in Redis key names: "now", "d20784", "m24322".
    pub fn key(self) -> String {
        match self {
            Bucket::Now => "now".into(),
            Bucket::Day(d) => format!("d{d}"),
            Bucket::Month(m) => format!("m{m}"),
        }
    }

    pub fn parse(s: &str) -> Option<Bucket> {
        match s.split_at_checked(1)? {
            ("d", d) => d.parse().ok().map(Bucket::Day),
            ("m", m) => m.parse().ok().map(Bucket::Month),
            _ => (s == "now").then_some(Bucket::Now),
        }
    }
}

/// The month index (year * 12 + month - 1) of a report day.
pub fn month_of_day(day: i32) -> i32 {
    let date = jiff::civil::date(1970, 1, 1)
        .checked_add(jiff::Span::new().days(i64::from(day)))
        .unwrap_or(jiff::civil::date(1970, 1, 1));
    i32::from(date.year()) * 12 + i32::from(date.month()) - 1
}

/// Which buckets a report reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    Day,
    Month,
    Now,
}

impl Grain {
    pub fn of(b: Bucket) -> Grain {
        match b {
            Bucket::Now => Grain::Now,
            Bucket::Day(_) => Grain::Day,
            Bucket::Month(_) => Grain::Month,
        }
    }
}

/// One counter change: metric of (bucket, rep, segment) += delta.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    pub bucket: Bucket,
    pub rep: String,
    pub segment: String,
    pub metric: Metric,
    pub delta: f64,
}

/// The counters of one (pool, day, rep, segment), sparse: (metric, value) sorted by metric.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cell(pub Vec<(Metric, f64)>);

impl Cell {
    pub fn get(&self, metric: Metric) -> f64 {
        self.0
            .binary_search_by_key(&metric, |e| e.0)
            .map_or(0.0, |i| self.0[i].1)
    }

    pub fn add(&mut self, metric: Metric, delta: f64) {
        match self.0.binary_search_by_key(&metric, |e| e.0) {
            Ok(i) => self.0[i].1 += delta,
            Err(i) => self.0.insert(i, (metric, delta)),
        }
    }

    pub fn merge(&mut self, other: &Cell) {
        for &(k, v) in &other.0 {
            self.add(k, v);
        }
    }
}

/// A cell with its place, as a backend reads it for a report.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerCell {
    pub pool: String,
    pub bucket: Bucket,
    pub rep: String,
    pub segment: String,
    pub cell: Cell,
}

/// The counter changes a tick makes; `day` maps an instant (ms) to its report day. Each dated
/// change lands in its day's and its month's bucket; the open leads' forecast figures in
/// `Now`. Zero changes are left out.
pub fn tally(t: &Tick, day: impl Fn(i64) -> i32) -> Vec<Delta> {
    let mut out = Vec::with_capacity(16);
    let today = day(t.at_ms);
    let mut put = |bucket: Bucket, rep: &str, metric: Metric, delta: f64| {
        if delta != 0.0 {
            out.push(Delta {
                bucket,
                rep: rep.to_string(),
                segment: t.segment.clone(),
                metric,
                delta,
            })
        }
    };
    let mut add = |d: i32, rep: &str, metric: Metric, delta: f64| {
        if d == i32::MIN {
            put(Bucket::Now, rep, metric, delta);
        } else {
            put(Bucket::Day(d), rep, metric, delta);
            put(Bucket::Month(month_of_day(d)), rep, metric, delta);
        }
    };
    let p = t.probability.clamp(0.0, 1.0);
    // Open leads: the count by the day the holding began (performance's "open"), and the
    // forecast's figures undated (`i32::MIN` stands for `Now`).
    let open = [
        (m::OPEN, 1.0),
        (m::OPEN_P, p),
        (m::OPEN_VAR, p * (1.0 - p)),
        (m::OPEN_K3, p * (1.0 - p) * (1.0 - 2.0 * p)),
        (m::OPEN_EV, p * t.expected_value),
    ];
    for (h, sign) in [(&t.before, -1.0), (&t.after, 1.0)] {
        if let Some(h) = h {
            add(day(h.since_ms), &h.rep, m::OPEN, sign);
            for (k, v) in open {
                add(i32::MIN, &h.rep, k, sign * v);
            }
        }
    }
    if t.new {
        add(today, "", m::SUBMITTED, 1.0);
    }
    let hist = |s: Stage, ms: i64| m::HIST + s as u16 * m::HIST_BUCKETS + hist_bucket(ms);
    match t.kind {
        EventKind::Assigned | EventKind::Offered => {
            // Only a lead that waited has a queue wait: the claim on arrival stays cheap.
            if let Some(h) = &t.before {
                let wait = t.at_ms.saturating_sub(h.since_ms);
                add(today, &t.rep, hist(Stage::QueueWait, wait), 1.0);
            }
            if t.kind == EventKind::Assigned {
                add(today, &t.rep, m::ASSIGNED, 1.0);
            } else {
                add(today, &t.rep, m::OFFERED, 1.0);
            }
        }
        EventKind::Accepted => {
            add(today, &t.rep, m::ACCEPTED, 1.0);
            add(today, &t.rep, m::ASSIGNED, 1.0);
            let waited = t.at_ms.saturating_sub(t.held_since_ms);
            add(today, &t.rep, hist(Stage::ToAccept, waited), 1.0);
        }
        EventKind::Declined => add(today, &t.rep, m::DECLINED, 1.0),
        EventKind::Expired => add(today, &t.rep, m::OFFER_EXPIRED, 1.0),
        EventKind::Reassigned => add(today, &t.rep, m::REASSIGNED, 1.0),
        EventKind::SlaBreached => add(today, &t.rep, m::SLA_BREACHED, 1.0),
        EventKind::Contacted => {
            add(today, &t.rep, m::CONTACTED, 1.0);
            let waited = t.at_ms.saturating_sub(t.held_since_ms);
            add(today, &t.rep, hist(Stage::ToContact, waited), 1.0);
        }
        EventKind::Closed => {
            let outcome = t.outcome.as_deref().unwrap_or("");
            let metric = match outcome {
                "won" => m::WON,
                "lost" => m::LOST,
                "disqualified" => m::DISQUALIFIED,
                "returned" => m::RETURNED,
                _ => m::QUEUE_EXPIRED,
            };
            add(today, &t.rep, metric, 1.0);
            if let Some(h) = t.before.as_ref().filter(|h| !h.rep.is_empty()) {
                let held = t.at_ms.saturating_sub(h.since_ms);
                add(today, &t.rep, hist(Stage::ToClose, held), 1.0);
            }
            if metric == m::WON || metric == m::LOST {
                let won = f64::from(u8::from(metric == m::WON));
                add(today, &t.rep, m::CLOSED_P, p);
                add(today, &t.rep, m::CLOSED_VAR, p * (1.0 - p));
                add(today, &t.rep, m::CLOSED_K3, p * (1.0 - p) * (1.0 - 2.0 * p));
                let b = band(p);
                add(today, &t.rep, m::BAND_N + b, 1.0);
                add(today, &t.rep, m::BAND_WON + b, won);
                add(today, &t.rep, m::BAND_P + b, p);
                if metric == m::WON {
                    let value = t.value.unwrap_or(t.expected_value);
                    add(today, &t.rep, m::WON_VALUE, value);
                }
            }
        }
        EventKind::Queued => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(kind: EventKind) -> Tick {
        Tick {
            kind,
            rep: "ann".into(),
            segment: "hot".into(),
            probability: 0.25,
            expected_value: 100.0,
            outcome: None,
            value: None,
            before: None,
            after: None,
            new: false,
            held_since_ms: 0,
            at_ms: 86_400_000 * 3 + 5,
        }
    }

    fn day(ms: i64) -> i32 {
        ms.div_euclid(86_400_000) as i32
    }

    /// Day buckets only (every dated change is also in its month's).
    fn sum(ds: &[Delta], metric: Metric) -> f64 {
        ds.iter()
            .filter(|d| d.metric == metric && !matches!(d.bucket, Bucket::Month(_)))
            .map(|d| d.delta)
            .sum()
    }

    #[test]
    fn a_lead_moving_through_the_funnel_leaves_nothing_open() {
        let held = |rep: &str, at| Holding {
            rep: rep.into(),
            since_ms: at,
        };
        let mut all = Vec::new();
        let mut t = tick(EventKind::Queued);
        t.new = true;
        t.after = Some(held("", 0));
        all.extend(tally(&t, day));
        let mut t = tick(EventKind::Assigned);
        t.before = Some(held("", 0));
        t.after = Some(held("ann", 86_400_000));
        all.extend(tally(&t, day));
        let mut t = tick(EventKind::Closed);
        t.outcome = Some("won".into());
        t.value = Some(42.0);
        t.before = Some(held("ann", 86_400_000));
        all.extend(tally(&t, day));
        assert_eq!(sum(&all, m::SUBMITTED), 1.0);
        assert_eq!(sum(&all, m::ASSIGNED), 1.0);
        assert_eq!(sum(&all, m::WON), 1.0);
        assert_eq!(sum(&all, m::WON_VALUE), 42.0);
        assert_eq!(sum(&all, m::CLOSED_P), 0.25);
        assert_eq!(sum(&all, m::BAND_N + 2), 1.0);
        // Every open counter came back to zero, on the day each holding began.
        for metric in [m::OPEN, m::OPEN_P, m::OPEN_EV] {
            let mut by_day = std::collections::BTreeMap::new();
            for d in all.iter().filter(|d| d.metric == metric) {
                *by_day.entry((d.bucket, d.rep.clone())).or_insert(0.0) += d.delta;
            }
            assert!(by_day.values().all(|v: &f64| v.abs() < 1e-12), "{by_day:?}");
        }
        // A queue wait of three days (259,200 s) falls in the bucket [2^17, 2^18) s.
        assert_eq!(sum(&all, m::HIST + 18), 1.0);
    }

    #[test]
    fn buckets_name_themselves() {
        for b in [
            Bucket::Now,
            Bucket::Day(-3),
            Bucket::Day(20784),
            Bucket::Month(24322),
        ] {
            assert_eq!(Bucket::parse(&b.key()), Some(b));
        }
        assert_eq!(Bucket::parse("x1"), None);
        // 2017-03-31 is day 17256: March 2017.
        assert_eq!(month_of_day(17256), 2017 * 12 + 2);
        assert_eq!(month_of_day(17257), 2017 * 12 + 3);
        assert_eq!(month_of_day(-1), 1969 * 12 + 11);
    }

    #[test]
    fn buckets_double() {
        assert_eq!(hist_bucket(999), 0);
        assert_eq!(hist_bucket(1000), 1);
        assert_eq!(hist_bucket(3999), 2);
        assert_eq!(hist_bucket(4000), 3);
        assert_eq!(hist_bucket(i64::MAX), m::HIST_BUCKETS - 1);
        assert_eq!(band(1.0), 9);
        assert_eq!(band(0.0), 0);
    }
}
