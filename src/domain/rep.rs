//! A sales rep: skills, capacity, quota, availability and working hours.
use std::collections::BTreeMap;

use std::sync::{Arc, OnceLock};

use jiff::{Timestamp, tz::TimeZone};
use serde::{Deserialize, Serialize};

pub mod calendar;
pub use calendar::{
    Availability, Calendar, PERIODS, Period, Periods, ZoneCache, day_number, parse_date, parse_day,
    parse_hhmm, periods_of,
};

use crate::domain::lead::validate_id;
use crate::error::Error;

/// Working hours in the rep's own time zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shift {
    /// IANA name, e.g. "America/Chicago".
    pub timezone: String,
    /// "HH:MM"; when end <= start the shift runs past midnight.
    pub start: String,
    pub end: String,
    /// "mon".."sun"; empty means every day.
    #[serde(default)]
    pub days: Vec<String>,
}

/// Days off, inclusive, as local dates ("YYYY-MM-DD") in the rep's time zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeOff {
    pub from: String,
    pub to: String,
}

/// The parsed calendar, built on first use; it never takes part in comparisons.
#[derive(Clone, Default)]
pub struct CalendarCell(OnceLock<Arc<Calendar>>);

impl PartialEq for CalendarCell {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for CalendarCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("..")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rep {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default = "default_pool")]
    pub pool: String,
    /// skill -> level in [0, 1]; names are lower case, e.g. "language:de".
    #[serde(default)]
    pub skills: BTreeMap<String, f64>,
    /// Most open assignments at once.
    pub capacity: u32,
    /// Most new assignments per local day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_quota: Option<u32>,
    /// Most new assignments per ISO week (Monday to Sunday, local).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly_quota: Option<u32>,
    /// Most new assignments per calendar month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_quota: Option<u32>,
    /// Most new assignments per calendar quarter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarterly_quota: Option<u32>,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<Shift>,
    /// While a range covers the local date the rep is ON_LEAVE.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub time_off: Vec<TimeOff>,
    /// After time off, capacity ramps from half to full over this many days (0: no ramp).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub return_ramp_days: u32,
    /// The shift and time off parsed on first use. `validate` resets it; code that edits
    /// `shift` or `time_off` of a rep already used must reset it too.
    #[serde(skip)]
    pub calendar: CalendarCell,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

pub fn default_pool() -> String {
    "default".into()
}

fn yes() -> bool {
    true
}

/// Upper bound for a rep's capacity and quotas.
pub const MAX_LIMIT: u32 = 1_000_000_000;
/// Most time-off ranges per rep.
pub const MAX_TIME_OFF: usize = 400;

impl Shift {
    fn validate(&self) -> Result<(), Error> {
        TimeZone::get(&self.timezone).map_err(|_| {
            Error::invalid(
                "rep.shift.timezone",
                format!("{:?} is not an IANA time zone", self.timezone),
            )
        })?;
        for (field, v) in [
            ("rep.shift.start", &self.start),
            ("rep.shift.end", &self.end),
        ] {
            parse_hhmm(v).ok_or_else(|| Error::invalid(field, format!("{v:?} is not HH:MM")))?;
        }
        for d in &self.days {
            parse_day(d).ok_or_else(|| {
                Error::invalid("rep.shift.days", format!("{d:?} is not a weekday"))
            })?;
        }
        Ok(())
    }

    /// Whether `now` falls inside the shift. A night shift belongs to the day it starts on.
    pub fn covers(&self, now: Timestamp) -> bool {
        let rep = Rep {
            shift: Some(self.clone()),
            ..Rep::new("shift", 1)
        };
        rep.on_shift(now)
    }
}

impl Rep {
    /// A rep with defaults: pool "default", no skills, active, no shift.
    pub fn new(id: &str, capacity: u32) -> Rep {
        Rep {
            id: id.into(),
            name: id.into(),
            pool: default_pool(),
            skills: BTreeMap::new(),
            capacity,
            daily_quota: None,
            weekly_quota: None,
            monthly_quota: None,
            quarterly_quota: None,
            active: true,
            shift: None,
            time_off: vec![],
            return_ramp_days: 0,
            calendar: CalendarCell::default(),
        }
    }

    /// Quota limits in `PERIODS` order.
    pub fn quotas(&self) -> [Option<u32>; 4] {
        [
            self.daily_quota,
            self.weekly_quota,
            self.monthly_quota,
            self.quarterly_quota,
        ]
    }

    /// Checks every field; the error names it. Normalises skill names to lower case.
    pub fn validate(mut self) -> Result<Rep, Error> {
        validate_id("rep.id", &self.id)?;
        if self.name.len() > 200 {
            return Err(Error::invalid("rep.name", "is longer than 200 bytes"));
        }
        if self.pool.trim().is_empty() {
            self.pool = default_pool();
        }
        validate_id("rep.pool", &self.pool)?;
        if self.pool.contains(['{', '}']) {
            // Pools are Redis hash tags; a brace would split the pool's keys across slots.
            return Err(Error::invalid("rep.pool", "must not contain '{' or '}'"));
        }
        // Stores pack limits and counters as 32-bit integers; no team needs more.
        if self.capacity > MAX_LIMIT {
            return Err(Error::invalid(
                "rep.capacity",
                format!("is above {MAX_LIMIT}"),
            ));
        }
        for (field, q) in [
            "rep.daily_quota",
            "rep.weekly_quota",
            "rep.monthly_quota",
            "rep.quarterly_quota",
        ]
        .into_iter()
        .zip(self.quotas())
        {
            if q.is_some_and(|q| q > MAX_LIMIT) {
                return Err(Error::invalid(field, format!("is above {MAX_LIMIT}")));
            }
        }
        if self.skills.len() > 256 {
            return Err(Error::invalid("rep.skills", "has more than 256 entries"));
        }
        let mut skills = BTreeMap::new();
        for (name, level) in std::mem::take(&mut self.skills) {
            let field = format!("rep.skills[{name}]");
            if name.trim().is_empty() || name.len() > 128 {
                return Err(Error::invalid(field, "skill names must be 1..=128 bytes"));
            }
            if !level.is_finite() || !(0.0..=1.0).contains(&level) {
                return Err(Error::invalid(
                    field,
                    format!("level {level} is outside [0, 1]"),
                ));
            }
            skills.insert(name.trim().to_lowercase(), level);
        }
        self.skills = skills;
        if let Some(shift) = &self.shift {
            shift.validate()?;
        }
        if self.time_off.len() > MAX_TIME_OFF {
            return Err(Error::invalid(
                "rep.time_off",
                format!("has more than {MAX_TIME_OFF} ranges"),
            ));
        }
        for (i, r) in self.time_off.iter().enumerate() {
            let date = |what: &str, v: &str| {
                parse_date(v).ok_or_else(|| {
                    Error::invalid(
                        format!("rep.time_off[{i}].{what}"),
                        format!("{v:?} is not a date (YYYY-MM-DD)"),
                    )
                })
            };
            if date("from", &r.from)? > date("to", &r.to)? {
                return Err(Error::invalid(
                    format!("rep.time_off[{i}]"),
                    format!("from {} is after to {}", r.from, r.to),
                ));
            }
        }
        if self.return_ramp_days > 365 {
            return Err(Error::invalid("rep.return_ramp_days", "is above 365"));
        }
        self.calendar = CalendarCell::default();
        Ok(self)
    }

    /// The parsed calendar (built once per rep value; invalid parts read as "never on shift").
    pub fn calendar(&self) -> &Calendar {
        self.calendar.0.get_or_init(|| {
            let zone_name = self
                .shift
                .as_ref()
                .map_or_else(|| "UTC".to_string(), |s| s.timezone.clone());
            let hours = self
                .shift
                .as_ref()
                .map(|s| (parse_hhmm(&s.start), parse_hhmm(&s.end)));
            // An unparseable zone or hours (only possible in data that skipped validation)
            // reads as never on shift.
            let tz = match (&self.shift, hours) {
                (None, _) => Some(TimeZone::UTC),
                (Some(s), Some((Some(_), Some(_)))) => TimeZone::get(&s.timezone).ok(),
                _ => None,
            };
            let shift = match hours {
                Some((Some(a), Some(b))) => Some((a, b)),
                Some(_) => Some((0, 0)),
                None => None,
            };
            let days = self.shift.as_ref().map_or(0, |s| {
                s.days
                    .iter()
                    .filter_map(|d| parse_day(d))
                    .fold(0u8, |m, d| m | (1 << d.to_monday_zero_offset() as u8))
            });
            let off = self
                .time_off
                .iter()
                .filter_map(|r| {
                    Some((
                        day_number(parse_date(&r.from)?),
                        day_number(parse_date(&r.to)?),
                    ))
                })
                .collect();
            Arc::new(Calendar {
                tz,
                zone_name,
                shift,
                days,
                off,
                ramp_days: self.return_ramp_days,
            })
        })
    }

    /// Shift, leave, periods and ramp at `now`, sharing `cache` across one ranking's reps.
    pub fn availability(&self, now: Timestamp, cache: &mut ZoneCache) -> Availability {
        self.calendar().at(now, cache)
    }

    /// Whether the rep works at `now` (no shift means always).
    pub fn on_shift(&self, now: Timestamp) -> bool {
        self.availability(now, &mut ZoneCache::default()).on_shift
    }

    /// The quota periods at `now` of the rep's local date.
    pub fn periods(&self, now: Timestamp) -> Periods {
        self.availability(now, &mut ZoneCache::default()).periods
    }

    /// The local day number at `now` (the daily quota period).
    pub fn period(&self, now: Timestamp) -> i32 {
        self.periods(now)[0]
    }

    /// When this rep's availability or quota periods may next change (see
    /// `Calendar::next_change`).
    pub fn next_change(&self, now: Timestamp) -> Option<Timestamp> {
        let midnights = self.quotas().iter().any(Option::is_some) || !self.time_off.is_empty();
        self.calendar().next_change(now, midnights)
    }

    pub fn skill(&self, name: &str) -> f64 {
        self.skills.get(name).copied().unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::Weekday;

    fn rep() -> Rep {
        Rep {
            name: "Ann".into(),
            pool: "".into(),
            skills: [("Language:DE".to_string(), 1.0)].into(),
            ..Rep::new("r1", 3)
        }
    }

    #[test]
    fn availability_with_a_shared_cache_agree_with_the_plain_methods() {
        let shifted = |tz: &str, start: &str, end: &str| {
            let mut r = rep();
            r.shift = Some(Shift {
                timezone: tz.into(),
                start: start.into(),
                end: end.into(),
                days: vec!["mon".into(), "fri".into()],
            });
            r
        };
        let reps = [
            rep(),
            shifted("America/Chicago", "09:00", "17:00"),
            shifted("Asia/Tokyo", "22:00", "06:00"),
            shifted("America/Chicago", "12:00", "13:00"),
            shifted("Mars/Base", "09:00", "17:00"),
        ];
        for hour in [0, 3, 9, 14, 17, 18, 23] {
            let now: Timestamp = format!("2026-11-27T{hour:02}:30:00Z").parse().unwrap();
            let mut cache = ZoneCache::default();
            for r in &reps {
                let a = r.availability(now, &mut cache);
                assert_eq!(
                    (a.on_shift, a.periods[0]),
                    (r.on_shift(now), r.period(now)),
                    "{r:?} at {now}"
                );
            }
            assert_eq!(cache.zones(), 4, "one entry per zone");
        }
    }

    #[test]
    fn normalises_and_validates() {
        let r = rep().validate().unwrap();
        assert_eq!(r.pool, "default");
        assert_eq!(r.skill("language:de"), 1.0);
        let mut bad = rep();
        bad.skills.insert("x".into(), 1.5);
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("rep.skills[x]")
        );
        let mut bad = rep();
        bad.shift = Some(Shift {
            timezone: "Mars/Base".into(),
            start: "09:00".into(),
            end: "17:00".into(),
            days: vec![],
        });
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("rep.shift.timezone")
        );
        let mut bad = rep();
        bad.shift = Some(Shift {
            timezone: "UTC".into(),
            start: "25:00".into(),
            end: "17:00".into(),
            days: vec![],
        });
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("rep.shift.start")
        );
    }

    #[test]
    fn shifts_follow_the_local_clock_and_days() {
        let shift = Shift {
            timezone: "America/Chicago".into(),
            start: "09:00".into(),
            end: "17:00".into(),
            days: vec![
                "mon".into(),
                "tue".into(),
                "wed".into(),
                "thu".into(),
                "fri".into(),
            ],
        };
        // 2026-11-27 is a Friday; Chicago is UTC-6 in November.
        let fri_10am: Timestamp = "2026-11-27T16:00:00Z".parse().unwrap();
        let fri_8am: Timestamp = "2026-11-27T14:00:00Z".parse().unwrap();
        let sat_10am: Timestamp = "2026-11-28T16:00:00Z".parse().unwrap();
        assert!(shift.covers(fri_10am));
        assert!(!shift.covers(fri_8am));
        assert!(!shift.covers(sat_10am));
        let night = Shift {
            timezone: "UTC".into(),
            start: "22:00".into(),
            end: "06:00".into(),
            days: vec!["fri".into()],
        };
        assert!(night.covers("2026-11-27T23:00:00Z".parse().unwrap()));
        assert!(night.covers("2026-11-28T05:00:00Z".parse().unwrap()));
        assert!(!night.covers("2026-11-28T23:00:00Z".parse().unwrap()));
    }

    #[test]
    fn quota_period_is_the_local_date() {
        let mut r = rep();
        r.shift = Some(Shift {
            timezone: "America/Los_Angeles".into(),
            start: "00:00".into(),
            end: "00:00".into(),
            days: vec![],
        });
        let t: Timestamp = "2026-11-28T03:00:00Z".parse().unwrap();
        assert_eq!(r.period(t), day_number(jiff::civil::date(2026, 11, 27)));
        // The calendar is parsed once per rep value: a changed shift needs a fresh one.
        r.shift = None;
        let r = r.validate().unwrap();
        assert_eq!(r.period(t), day_number(jiff::civil::date(2026, 11, 28)));
        assert_eq!(day_number(jiff::civil::date(1970, 1, 1)), 0);
        assert_eq!(day_number(jiff::civil::date(2026, 11, 28)), 20_785);
        assert_eq!(day_number(jiff::civil::date(1969, 12, 31)), -1);
    }

    #[test]
    fn weekdays_parse_by_their_first_three_letters_in_any_case() {
        assert_eq!(parse_day("mon"), Some(Weekday::Monday));
        assert_eq!(parse_day("Monday"), Some(Weekday::Monday));
        assert_eq!(parse_day("SUN"), Some(Weekday::Sunday));
        assert_eq!(parse_day("thursday"), Some(Weekday::Thursday));
        for bad in ["mo", "", "xyz", "Ünï", "m\u{e9}n"] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }

    #[test]
    fn time_off_and_quotas_are_validated_naming_the_field() {
        let mut r = rep();
        r.time_off = vec![TimeOff {
            from: "2026-12-24".into(),
            to: "2026-12-26".into(),
        }];
        r.weekly_quota = Some(150);
        let ok = r.clone().validate().unwrap();
        assert_eq!(ok.quotas(), [None, Some(150), None, None]);
        let mut bad = r.clone();
        bad.time_off[0].to = "2026-12-23".into();
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("rep.time_off[0]"), "{e}");
        let mut bad = r.clone();
        bad.time_off[0].from = "24.12.2026".into();
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("rep.time_off[0].from"), "{e}");
        let mut bad = r.clone();
        bad.monthly_quota = Some(MAX_LIMIT + 1);
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("rep.monthly_quota"), "{e}");
        let mut bad = r;
        bad.return_ramp_days = 400;
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("rep.return_ramp_days"), "{e}");
    }

    #[test]
    fn limits_above_the_bound_are_refused_naming_the_field() {
        let mut r = rep();
        r.capacity = MAX_LIMIT + 1;
        let e = r.clone().validate().unwrap_err().to_string();
        assert!(e.contains("rep.capacity"), "{e}");
        r.capacity = MAX_LIMIT;
        r.daily_quota = Some(MAX_LIMIT + 1);
        let e = r.clone().validate().unwrap_err().to_string();
        assert!(e.contains("rep.daily_quota"), "{e}");
        r.daily_quota = Some(MAX_LIMIT);
        assert!(r.validate().is_ok());
    }
}
