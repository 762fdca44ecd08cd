//! A sales rep: skills, capacity, quota, availability and working hours.
use std::collections::BTreeMap;

use jiff::{Timestamp, civil::Weekday, tz::TimeZone};
use serde::{Deserialize, Serialize};

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
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<Shift>,
}

pub fn default_pool() -> String {
    "default".into()
}

fn yes() -> bool {
    true
}

fn parse_hhmm(field: &str, s: &str) -> Result<u32, Error> {
    let bad = || Error::invalid(field, format!("{s:?} is not HH:MM"));
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// "mon", "Monday", "TUE"...: the first three letters, any case. Runs for every shift day of
/// every rep in each ranking, so it does not allocate.
fn parse_day(s: &str) -> Option<Weekday> {
    const DAYS: [(&str, Weekday); 7] = [
        ("mon", Weekday::Monday),
        ("tue", Weekday::Tuesday),
        ("wed", Weekday::Wednesday),
        ("thu", Weekday::Thursday),
        ("fri", Weekday::Friday),
        ("sat", Weekday::Saturday),
        ("sun", Weekday::Sunday),
    ];
    let prefix = s.get(..3)?;
    DAYS.iter()
        .find(|(name, _)| prefix.eq_ignore_ascii_case(name))
        .map(|(_, day)| *day)
}

impl Shift {
    fn zone(&self) -> Result<TimeZone, Error> {
        TimeZone::get(&self.timezone).map_err(|_| {
            Error::invalid(
                "rep.shift.timezone",
                format!("{:?} is not an IANA time zone", self.timezone),
            )
        })
    }

    fn validate(&self) -> Result<(), Error> {
        self.zone()?;
        parse_hhmm("rep.shift.start", &self.start)?;
        parse_hhmm("rep.shift.end", &self.end)?;
        for d in &self.days {
            parse_day(d).ok_or_else(|| {
                Error::invalid("rep.shift.days", format!("{d:?} is not a weekday"))
            })?;
        }
        Ok(())
    }

    /// Whether `now` falls inside the shift. A night shift belongs to the day it starts on.
    pub fn covers(&self, now: Timestamp) -> bool {
        let (Ok(tz), Ok(start), Ok(end)) = (
            self.zone(),
            parse_hhmm("", &self.start),
            parse_hhmm("", &self.end),
        ) else {
            return false;
        };
        self.covers_local(&now.to_zoned(tz), start, end)
    }

    /// `covers` for a time already in the shift's zone, with its parsed start and end minutes.
    fn covers_local(&self, local: &jiff::Zoned, start: u32, end: u32) -> bool {
        let minute = u32::from(local.hour() as u8) * 60 + u32::from(local.minute() as u8);
        let day_ok = |wd: Weekday| {
            self.days.is_empty() || self.days.iter().any(|d| parse_day(d) == Some(wd))
        };
        if start < end {
            start <= minute && minute < end && day_ok(local.weekday())
        } else {
            (minute >= start && day_ok(local.weekday()))
                || (minute < end && day_ok(local.weekday().previous()))
        }
    }
}

/// Upper bound for a rep's capacity and daily quota.
pub const MAX_LIMIT: u32 = 1_000_000_000;

impl Rep {
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
        if self.daily_quota.is_some_and(|q| q > MAX_LIMIT) {
            return Err(Error::invalid(
                "rep.daily_quota",
                format!("is above {MAX_LIMIT}"),
            ));
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
        Ok(self)
    }

    /// Whether the rep works at `now` (no shift means always).
    pub fn on_shift(&self, now: Timestamp) -> bool {
        self.shift.as_ref().is_none_or(|s| s.covers(now))
    }

    /// The quota period at `now`: the rep's local date as a day number (days since
    /// 1970-01-01), so stores compare and pack it as an integer.
    pub fn period(&self, now: Timestamp) -> i32 {
        self.shift_and_period(now, &mut Vec::new()).1
    }

    /// `on_shift` and `period` together, reusing `cache` (time zone name -> local time and
    /// day number) across the reps of one ranking: zone lookup and local date happen once per
    /// zone, not once per rep.
    pub fn shift_and_period(
        &self,
        now: Timestamp,
        cache: &mut Vec<(String, bool, jiff::Zoned, i32)>,
    ) -> (bool, i32) {
        let name = self.shift.as_ref().map_or("UTC", |s| s.timezone.as_str());
        let i = match cache.iter().position(|(n, ..)| n == name) {
            Some(i) => i,
            None => {
                let (valid, tz) = match &self.shift {
                    None => (true, TimeZone::UTC),
                    Some(s) => match TimeZone::get(&s.timezone) {
                        Ok(tz) => (true, tz),
                        Err(_) => (false, TimeZone::UTC),
                    },
                };
                let local = now.to_zoned(tz);
                let date = day_number(local.date());
                cache.push((name.to_string(), valid, local, date));
                cache.len() - 1
            }
        };
        let (_, valid, local, date) = &cache[i];
        let on = match &self.shift {
            None => true,
            Some(s) => match (parse_hhmm("", &s.start), parse_hhmm("", &s.end)) {
                (Ok(start), Ok(end)) if *valid => s.covers_local(local, start, end),
                _ => false,
            },
        };
        (on, *date)
    }

    pub fn skill(&self, name: &str) -> f64 {
        self.skills.get(name).copied().unwrap_or(0.0)
    }
}

/// Days since 1970-01-01 (negative before).
pub fn day_number(date: jiff::civil::Date) -> i32 {
    let days = date
        .duration_since(jiff::civil::date(1970, 1, 1))
        .as_secs()
        .div_euclid(86_400);
    // jiff dates span years -9999..=9999, about ±4.4 million days: always fits.
    i32::try_from(days).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep() -> Rep {
        Rep {
            id: "r1".into(),
            name: "Ann".into(),
            pool: "".into(),
            skills: [("Language:DE".to_string(), 1.0)].into(),
            capacity: 3,
            daily_quota: None,
            active: true,
            shift: None,
        }
    }

    #[test]
    fn shift_and_period_with_a_shared_cache_agree_with_the_plain_methods() {
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
            let mut cache = Vec::new();
            for r in &reps {
                assert_eq!(
                    r.shift_and_period(now, &mut cache),
                    (r.on_shift(now), r.period(now)),
                    "{r:?} at {now}"
                );
            }
            assert_eq!(cache.len(), 4, "one entry per zone");
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
        r.shift = None;
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
