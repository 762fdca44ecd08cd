//! A rep's calendar, parsed once: shift times and days, time off as day numbers, quota periods
//! (day, ISO week, month, quarter) of a local date, and the next instant any of them changes.
use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// Quota periods, in this order everywhere (stores pack them in this order too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
    Month,
    Quarter,
}

pub const PERIODS: [Period; 4] = [Period::Day, Period::Week, Period::Month, Period::Quarter];

impl Period {
    /// "today", "this week"...: how a verdict names a full period.
    pub fn phrase(self) -> &'static str {
        match self {
            Period::Day => "today",
            Period::Week => "this week",
            Period::Month => "this month",
            Period::Quarter => "this quarter",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Quarter => "quarter",
        }
    }
}

/// The number of each quota period that a local date falls in: day (days since 1970-01-01),
/// ISO week (Monday-based weeks since the week of 1970-01-01), month (year * 12 + month - 1)
/// and quarter (year * 4 + quarter - 1). All fit comfortably in an i32 and stay non-negative
/// for dates after 1969.
pub type Periods = [i32; 4];

/// Days since 1970-01-01 (negative before).
pub fn day_number(date: Date) -> i32 {
    let days = date
        .duration_since(jiff::civil::date(1970, 1, 1))
        .as_secs()
        .div_euclid(86_400);
    // jiff dates span years -9999..=9999, about ±4.4 million days: always fits.
    i32::try_from(days).unwrap_or(i32::MAX)
}

pub fn periods_of(date: Date) -> Periods {
    let day = day_number(date);
    // 1970-01-01 was a Thursday, so Monday 1969-12-29 (day -3) starts week 0.
    let week = (day + 3).div_euclid(7);
    let month = i32::from(date.year()) * 12 + i32::from(date.month()) - 1;
    let quarter = i32::from(date.year()) * 4 + (i32::from(date.month()) - 1) / 3;
    [day, week, month, quarter]
}

/// "HH:MM" as minutes since midnight.
pub fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 23 && m <= 59).then_some(h * 60 + m)
}

/// "mon", "Monday", "TUE"...: the first three letters, any case.
pub fn parse_day(s: &str) -> Option<Weekday> {
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

/// "YYYY-MM-DD" as a date.
pub fn parse_date(s: &str) -> Option<Date> {
    s.parse::<Date>().ok()
}

fn day_bit(d: Weekday) -> u8 {
    1 << (d.to_monday_zero_offset() as u8)
}

/// Everything about a rep's time that ranking asks, parsed from its strings once.
#[derive(Debug, Clone)]
pub struct Calendar {
    /// None: the rep's time zone did not parse (it is then never on shift).
    pub tz: Option<TimeZone>,
    pub zone_name: String,
    /// (start, end) minutes of the shift; None = always on shift.
    pub shift: Option<(u32, u32)>,
    /// Weekdays the shift starts on, one bit each (Monday = bit 0); 0 = every day.
    pub days: u8,
    /// Inclusive (from, to) local day numbers.
    pub off: Vec<(i32, i32)>,
    pub ramp_days: u32,
}

/// Where a rep stands at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Availability {
    pub on_shift: bool,
    pub on_leave: bool,
    pub periods: Periods,
    /// Share of capacity in use after time off (permille; 1000 = full capacity).
    pub ramp_permille: u32,
}

/// Local time and periods per time zone, shared by the reps of one ranking: the zone lookup
/// and the local date happen once per zone, not once per rep.
#[derive(Default)]
pub struct ZoneCache(Vec<(String, Zoned, Periods)>);

impl ZoneCache {
    fn get(&mut self, name: &str, tz: &TimeZone, now: Timestamp) -> (&Zoned, Periods) {
        let i = match self.0.iter().position(|(n, ..)| n == name) {
            Some(i) => i,
            None => {
                let local = now.to_zoned(tz.clone());
                let p = periods_of(local.date());
                self.0.push((name.to_string(), local, p));
                self.0.len() - 1
            }
        };
        (&self.0[i].1, self.0[i].2)
    }

    /// How many zones it holds.
    #[cfg(test)]
    pub fn zones(&self) -> usize {
        self.0.len()
    }
}

impl Calendar {
    fn day_ok(&self, d: Weekday) -> bool {
        self.days == 0 || self.days & day_bit(d) != 0
    }

    fn covers_local(&self, local: &Zoned) -> bool {
        let Some((start, end)) = self.shift else {
            return true;
        };
        let minute = u32::from(local.hour() as u8) * 60 + u32::from(local.minute() as u8);
        if start < end {
            start <= minute && minute < end && self.day_ok(local.weekday())
        } else {
            // A night shift belongs to the day it starts on.
            (minute >= start && self.day_ok(local.weekday()))
                || (minute < end && self.day_ok(local.weekday().previous()))
        }
    }

    pub fn at(&self, now: Timestamp, cache: &mut ZoneCache) -> Availability {
        let utc = TimeZone::UTC;
        let (local, periods) = cache.get(&self.zone_name, self.tz.as_ref().unwrap_or(&utc), now);
        let day = periods[0];
        let on_leave = self.off.iter().any(|&(from, to)| from <= day && day <= to);
        let mut ramp_permille = 1000;
        if self.ramp_days > 0 {
            // Days since the most recent time off ended (0 = the first day back).
            let back = self
                .off
                .iter()
                .filter(|&&(_, to)| to < day)
                .map(|&(_, to)| day - to - 1)
                .min();
            if let Some(k) = back.and_then(|k| u32::try_from(k).ok())
                && k < self.ramp_days
            {
                ramp_permille = 500 + 500 * k / self.ramp_days;
            }
        }
        Availability {
            on_shift: self.tz.is_some() && self.covers_local(local),
            on_leave,
            periods,
            ramp_permille,
        }
    }

    /// The next instant after `now` at which this rep's availability or quota periods may
    /// change: a shift start, or (when `midnights` is set: quotas, time off or a ramp) the next
    /// local midnight. None when nothing ever changes (no shift and no midnights).
    pub fn next_change(&self, now: Timestamp, midnights: bool) -> Option<Timestamp> {
        let tz = self.tz.clone()?;
        let local = now.to_zoned(tz.clone());
        let mut best: Option<Timestamp> = None;
        let mut consider = |t: Timestamp| {
            if t > now && best.is_none_or(|b| t < b) {
                best = Some(t);
            }
        };
        if midnights && let Ok(next) = local.date().tomorrow().and_then(|d| d.to_zoned(tz.clone()))
        {
            consider(next.timestamp());
        }
        if let Some((start, _)) = self.shift {
            let mut date = local.date();
            for _ in 0..8 {
                if self.day_ok(date.weekday()) {
                    let at = date.at((start / 60) as i8, (start % 60) as i8, 0, 0);
                    if let Ok(z) = at.to_zoned(tz.clone())
                        && z.timestamp() > now
                    {
                        consider(z.timestamp());
                        break;
                    }
                }
                match date.tomorrow() {
                    Ok(d) => date = d,
                    Err(_) => break,
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal(tz: &str, shift: Option<(u32, u32)>, days: &[Weekday]) -> Calendar {
        Calendar {
            tz: TimeZone::get(tz).ok(),
            zone_name: tz.into(),
            shift,
            days: days.iter().fold(0, |m, d| m | day_bit(*d)),
            off: vec![],
            ramp_days: 0,
        }
    }

    #[test]
    fn periods_follow_iso_weeks_months_and_quarters() {
        let p = |s: &str| periods_of(parse_date(s).unwrap());
        assert_eq!(p("1970-01-01")[0], 0);
        assert_eq!(p("2026-11-28")[0], 20_785);
        // Sunday and the Monday after are in different ISO weeks; Monday to Sunday share one.
        assert_eq!(p("2026-11-29")[1] + 1, p("2026-11-30")[1]);
        assert_eq!(p("2026-11-30")[1], p("2026-12-06")[1]);
        assert_eq!(p("2026-11-30")[2] + 1, p("2026-12-01")[2]);
        assert_eq!(p("2026-09-30")[3] + 1, p("2026-10-01")[3]);
        assert_eq!(p("2026-10-01")[3], p("2026-12-31")[3]);
        assert_eq!(p("2026-12-31")[3] + 1, p("2027-01-01")[3]);
    }

    #[test]
    fn next_change_is_the_next_shift_start_or_midnight() {
        // 2026-11-27 is a Friday; Chicago is UTC-6.
        let c = cal(
            "America/Chicago",
            Some((9 * 60, 17 * 60)),
            &[Weekday::Monday],
        );
        let fri: Timestamp = "2026-11-27T16:00:00Z".parse().unwrap();
        let mon_9am: Timestamp = "2026-11-30T15:00:00Z".parse().unwrap();
        assert_eq!(c.next_change(fri, false), Some(mon_9am));
        let midnight: Timestamp = "2026-11-28T06:00:00Z".parse().unwrap();
        assert_eq!(c.next_change(fri, true), Some(midnight));
        let always = cal("UTC", None, &[]);
        assert_eq!(always.next_change(fri, false), None);
        // At 02:00 UTC an every-day 09:00 shift starts at 09:00 the same day.
        let night = cal("UTC", Some((9 * 60, 17 * 60)), &[]);
        let two: Timestamp = "2026-11-27T02:00:00Z".parse().unwrap();
        assert_eq!(
            night.next_change(two, false),
            Some("2026-11-27T09:00:00Z".parse().unwrap())
        );
    }

    #[test]
    fn leave_and_ramp_follow_local_dates() {
        let mut c = cal("UTC", None, &[]);
        let d = |s: &str| day_number(parse_date(s).unwrap());
        c.off = vec![(d("2026-12-01"), d("2026-12-03"))];
        c.ramp_days = 4;
        let at = |s: &str| {
            let t: Timestamp = format!("{s}T12:00:00Z").parse().unwrap();
            c.at(t, &mut ZoneCache::default())
        };
        assert!(!at("2026-11-30").on_leave);
        assert!(at("2026-12-01").on_leave && at("2026-12-03").on_leave);
        assert_eq!(at("2026-11-30").ramp_permille, 1000);
        assert_eq!(at("2026-12-04").ramp_permille, 500);
        assert_eq!(at("2026-12-06").ramp_permille, 750);
        assert_eq!(at("2026-12-08").ramp_permille, 1000);
    }
}
