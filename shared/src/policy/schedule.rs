//! Scheduled pre-scale windows: a cron expression for when a window opens, a duration,
//! and the minimum replica count while it is open — to be ready before known peaks.
//!
//! The cron syntax is the classic five fields, evaluated in UTC:
//! `minute hour day-of-month month day-of-week`, each `*`, `N`, `A-B`, `*/S`, `A-B/S`,
//! or a comma list of those; day-of-week 0-7 (0 and 7 are Sunday). As in classic (Vixie)
//! cron, when both day fields are restricted a day matches if either does; a day field
//! that starts with `*` (`*`, `*/2`) counts as unrestricted, and then a day must match
//! both fields (`0 0 */2 * 1`: odd days of the month that are Mondays).

use serde::Deserialize;
use time::{Duration, OffsetDateTime};

/// Why a cron expression was refused; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronError(pub String);

impl From<String> for CronError {
    fn from(s: String) -> Self {
        CronError(s)
    }
}

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    source: String,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_restricted: bool,
    weekdays_restricted: bool,
}

impl std::str::FromStr for Cron {
    type Err = CronError;

    fn from_str(s: &str) -> Result<Self, CronError> {
        let fields: Vec<&str> = s.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "{s:?}: expected 5 fields (minute hour day-of-month month day-of-week), got {}",
                fields.len()
            )
            .into());
        }
        let mut weekdays = field(fields[4], 0, 7, "day-of-week")?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1; // 7 is Sunday too
        }
        Ok(Cron {
            source: s.trim().to_string(),
            minutes: field(fields[0], 0, 59, "minute")?,
            hours: field(fields[1], 0, 23, "hour")?,
            days: field(fields[2], 1, 31, "day-of-month")?,
            months: field(fields[3], 1, 12, "month")?,
            weekdays,
            // Vixie cron's DOM_STAR / DOW_STAR: set when the field starts with `*`.
            days_restricted: !fields[2].starts_with('*'),
            weekdays_restricted: !fields[4].starts_with('*'),
        })
    }
}

impl<'de> Deserialize<'de> for Cron {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Cron {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

/// One field as a bit set of allowed values.
fn field(text: &str, lo: u32, hi: u32, name: &str) -> Result<u64, CronError> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let bad = |why: &str| CronError(format!("{name} field {text:?}: {why}"));
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| bad("step is not a number"))?;
                if step == 0 {
                    return Err(bad("step must be at least 1"));
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let a: u32 = a.parse().map_err(|_| bad("not a number"))?;
            let b: u32 = b.parse().map_err(|_| bad("not a number"))?;
            (a, b)
        } else {
            let a: u32 = range.parse().map_err(|_| bad("not a number"))?;
            // `N/S` means N, N+S, ... up to the maximum, as in Vixie cron.
            (a, if step > 1 { hi } else { a })
        };
        if a < lo || b > hi || a > b {
            return Err(bad(&format!(
                "values must be within {lo}-{hi}, low to high"
            )));
        }
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl Cron {
    /// Does the minute starting at `t` (UTC) match?
    pub fn matches(&self, t: OffsetDateTime) -> bool {
        let t = t.to_offset(time::UtcOffset::UTC);
        let bit = |set: u64, v: u8| set & (1 << v) != 0;
        let day_ok = bit(self.days, t.day());
        let wd_ok = bit(self.weekdays, t.weekday().number_days_from_sunday());
        // Both restricted: either matches. Otherwise both must (a plain `*` allows
        // every value, so this only narrows for `*/S`).
        let day_match = if self.days_restricted && self.weekdays_restricted {
            day_ok || wd_ok
        } else {
            day_ok && wd_ok
        };
        bit(self.minutes, t.minute())
            && bit(self.hours, t.hour())
            && bit(self.months, u8::from(t.month()))
            && day_match
    }

    /// Did a window of `duration_mins` opened by this expression cover `now`? That is:
    /// is there a matching minute in `(now - duration, now]`?
    pub fn window_open(&self, now: OffsetDateTime, duration_mins: u32) -> bool {
        let minute = now
            .replace_second(0)
            .and_then(|t| t.replace_nanosecond(0))
            .expect("0 is a valid second and nanosecond");
        (0..i64::from(duration_mins)).any(|m| self.matches(minute - Duration::minutes(m)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn parses_and_matches() {
        let c: Cron = "30 8 * * 1-5".parse().unwrap();
        // 2026-11-25 is a Wednesday.
        assert!(c.matches(datetime!(2026-11-25 08:30 UTC)));
        assert!(!c.matches(datetime!(2026-11-25 08:31 UTC)));
        assert!(!c.matches(datetime!(2026-11-29 08:30 UTC)), "Sunday");
        let every15: Cron = "*/15 * * * *".parse().unwrap();
        assert!(every15.matches(datetime!(2026-01-01 00:45 UTC)));
        assert!(!every15.matches(datetime!(2026-01-01 00:46 UTC)));
        let sunday7: Cron = "0 0 * * 7".parse().unwrap();
        assert!(sunday7.matches(datetime!(2026-11-29 00:00 UTC)));
        let either: Cron = "0 0 1 * 3".parse().unwrap();
        assert!(
            either.matches(datetime!(2026-11-25 00:00 UTC)),
            "a Wednesday"
        );
        assert!(either.matches(datetime!(2026-12-01 00:00 UTC)), "the 1st");
        let list: Cron = "0,30 9-17/4 * 1,6 *".parse().unwrap();
        assert!(list.matches(datetime!(2026-06-10 13:30 UTC)));
        assert!(!list.matches(datetime!(2026-06-10 14:30 UTC)));
    }

    /// Vixie cron: a day field starting with `*` is "unrestricted" for the either-day
    /// rule, so `*/2` in day-of-month does not widen a day-of-week restriction to OR.
    #[test]
    fn a_starred_step_day_field_is_unrestricted_for_the_or_rule() {
        // Odd days of the month (1, 3, ...) AND Mondays.
        let c: Cron = "0 0 */2 * 1".parse().unwrap();
        assert!(
            c.matches(datetime!(2026-11-23 00:00 UTC)),
            "Monday the 23rd"
        );
        assert!(
            !c.matches(datetime!(2026-11-25 00:00 UTC)),
            "Wednesday the 25th"
        );
        assert!(
            !c.matches(datetime!(2026-11-30 00:00 UTC)),
            "Monday the 30th"
        );
        // The same the other way round: Sundays, Tuesdays, ... (*/2) that are the 1st.
        let c: Cron = "0 0 1 * */2".parse().unwrap();
        assert!(
            c.matches(datetime!(2026-12-01 00:00 UTC)),
            "Tuesday the 1st"
        );
        assert!(
            !c.matches(datetime!(2027-01-01 00:00 UTC)),
            "Friday the 1st"
        );
        assert!(
            !c.matches(datetime!(2026-12-15 00:00 UTC)),
            "Tuesday the 15th"
        );
        // A range is a restriction: either day matches.
        let c: Cron = "0 0 1-2 * 1".parse().unwrap();
        assert!(c.matches(datetime!(2026-11-23 00:00 UTC)), "a Monday");
        assert!(c.matches(datetime!(2026-12-02 00:00 UTC)), "the 2nd");
    }

    #[test]
    fn windows_cover_their_duration() {
        let c: Cron = "30 8 * * *".parse().unwrap();
        assert!(c.window_open(datetime!(2026-11-25 08:30:59 UTC), 60));
        assert!(c.window_open(datetime!(2026-11-25 09:29 UTC), 60));
        assert!(!c.window_open(datetime!(2026-11-25 09:30 UTC), 60));
        assert!(!c.window_open(datetime!(2026-11-25 08:29 UTC), 60));
    }

    #[test]
    fn bad_expressions_say_why() {
        for (e, why) in [
            ("* * * *", "5 fields"),
            ("60 * * * *", "minute"),
            ("* * 0 * *", "day-of-month"),
            ("*/0 * * * *", "step"),
            ("a * * * *", "not a number"),
            ("5-1 * * * *", "low to high"),
        ] {
            let err = e.parse::<Cron>().unwrap_err();
            assert!(err.0.contains(why), "{e}: {err}");
        }
    }
}
