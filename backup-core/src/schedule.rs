//! Schedules: standard 5-field crontab strings, `@daily`-style aliases, the
//! presets users ask for, and one-shot dates, evaluated in a time zone.
//!
//! # Cron semantics
//!
//! Strings are read exactly as crontab(5) reads them: five fields (minute,
//! hour, day of month, month, day of week), day of week `0`-`7` with `0`
//! and `7` both Sunday (so `1-5` is Monday to Friday), month and weekday
//! names, `*`, lists, ranges and `/` steps. When both day fields are
//! restricted a day matches if *either* matches (POSIX/Vixie OR); a day
//! field that starts with `*` (`*`, `*/2`) is unrestricted, as in Vixie
//! cron and cronie, so `0 0 */2 * 1` runs on odd days that are Mondays. Seconds
//! fields and non-standard extensions (`L`, `W`, `#`, `?`) are refused with
//! an error naming the field. Evaluation uses the `croner` crate, configured
//! for POSIX weekdays and OR semantics; the `cron` crate was not used
//! because it requires a seconds field, numbers weekdays Quartz-style
//! (1 = Sunday) and ANDs the day fields, so `0 1 * * 1-5` would silently
//! run Sunday to Thursday.
//!
//! # Daylight saving time
//!
//! Times are wall-clock times in the scheduler's zone. A time that does not
//! exist on a spring-forward day (02:30 when clocks jump from 02:00 to
//! 03:00) runs once, at the first instant after the gap (03:00). A time that
//! occurs twice on a fall-back day runs once, at its first occurrence.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike, Utc, Weekday,
};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A validated crontab expression.
#[derive(Clone)]
pub struct CronExpr {
    source: String,
    cron: std::sync::Arc<Cron>,
}

impl fmt::Debug for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CronExpr").field(&self.source).finish()
    }
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for CronExpr {}

const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl CronExpr {
    /// Parses a 5-field crontab string or an alias (`@yearly`, `@annually`,
    /// `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`).
    ///
    /// ```
    /// use backup_core::schedule::CronExpr;
    /// assert!(CronExpr::parse("0 1 * * 1-5").is_ok());
    /// let err = CronExpr::parse("0 25 * * *").unwrap_err().to_string();
    /// assert!(err.contains(r#"invalid cron "0 25 * * *": hour out of range"#), "{err}");
    /// assert!(CronExpr::parse("0 0 2 * * *").is_err()); // seconds are not crontab
    /// ```
    pub fn parse(input: &str) -> Result<CronExpr> {
        let source = input.trim().to_string();
        let invalid = |why: String| Error::Config(format!("invalid cron {source:?}: {why}"));
        let expanded = match source.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
            "@monthly" => "0 0 1 * *".to_string(),
            "@weekly" => "0 0 * * 0".to_string(),
            "@daily" | "@midnight" => "0 0 * * *".to_string(),
            "@hourly" => "0 * * * *".to_string(),
            alias if alias.starts_with('@') => {
                return Err(invalid(format!(
                    "unknown alias {alias} (expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)"
                )));
            }
            _ => source.clone(),
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(invalid(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                fields.len()
            )));
        }
        let mut normalised = Vec::with_capacity(5);
        for (i, field) in fields.iter().enumerate() {
            normalised.push(check_field(field, i).map_err(invalid)?);
        }
        // crontab(5): a day field starting with `*` (`*`, `*/2`) does not
        // restrict the day, so the other day field alone decides (AND);
        // only when both are restricted does either match (OR). croner's
        // OR mode would treat `*/2` as a restriction.
        let day_star = fields[2].starts_with('*') || fields[4].starts_with('*');
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .dom_and_dow(day_star)
            .alternative_weekdays(false)
            .build()
            .parse(&normalised.join(" "))
            .map_err(|e| invalid(e.to_string()))?;
        Ok(CronExpr {
            source,
            cron: std::sync::Arc::new(cron),
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    fn next_naive(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        self.cron.find_next_occurrence(&after, false).ok()
    }

    fn prev_naive(&self, before: NaiveDateTime) -> Option<NaiveDateTime> {
        self.cron.find_previous_occurrence(&before, false).ok()
    }
}

/// Checks one field against crontab(5) and returns it with names turned
/// into numbers.
fn check_field(field: &str, index: usize) -> std::result::Result<String, String> {
    let (name, min, max) = FIELDS[index];
    let value = |text: &str| -> std::result::Result<u32, String> {
        let upper = text.to_ascii_uppercase();
        let named = match index {
            3 => MONTHS
                .iter()
                .position(|m| *m == upper)
                .map(|i| i as u32 + 1),
            4 => DAYS.iter().position(|d| *d == upper).map(|i| i as u32),
            _ => None,
        };
        let n = match named {
            Some(n) => n,
            // Digits only: `str::parse` would also take a sign (`+3`),
            // which crontab(5) does not.
            None => digits(text).ok_or_else(|| {
                if text.chars().any(|c| "LW#?+".contains(c)) {
                    format!("{name}: non-standard syntax {text:?} is not supported")
                } else {
                    format!("{name}: {text:?} is not a number")
                }
            })?,
        };
        if n < min || n > max {
            return Err(format!("{name} out of range ({min}-{max}): {n}"));
        }
        Ok(n)
    };
    let mut items = Vec::new();
    for item in field.split(',') {
        if item.is_empty() {
            return Err(format!("{name}: empty list item in {field:?}"));
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step = digits(s).ok_or_else(|| format!("{name}: invalid step {s:?}"))?;
                if step == 0 || step > max {
                    return Err(format!("{name}: step out of range: {step}"));
                }
                (r, Some(step))
            }
            None => (item, None),
        };
        let range = if range == "*" {
            format!("{min}-{max}")
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a)?, value(b)?);
            if a > b {
                return Err(format!("{name}: range {a}-{b} runs backwards"));
            }
            format!("{a}-{b}")
        } else {
            let a = value(range)?;
            match step {
                // `5/15` means from 5 to the end in steps of 15.
                Some(_) => format!("{a}-{max}"),
                None => a.to_string(),
            }
        };
        // Keep `*` as written so the day-field OR rule still sees a star.
        let keep_star = item == "*";
        items.push(match (keep_star, step) {
            (true, _) => "*".to_string(),
            (false, Some(s)) if item.starts_with('*') => format!("*/{s}"),
            (false, Some(s)) => format!("{range}/{s}"),
            (false, None) => range,
        });
    }
    Ok(items.join(","))
}

/// A non-empty run of ASCII digits as a number.
fn digits(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// When a job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Never runs on its own (manual backups only).
    Disabled,
    /// A crontab expression (presets compile to one).
    Cron(CronExpr),
    /// Once, at a wall-clock date-time in the scheduler's zone; afterwards
    /// the job disables itself.
    Once(NaiveDateTime),
}

impl Schedule {
    /// Every day at `at`.
    pub fn daily(at: NaiveTime) -> Schedule {
        Schedule::cron_for(&format!("{} {} * * *", minute(at), hour(at)))
    }

    /// Every `hours` hours (a divisor of 24: 1, 2, 3, 4, 6, 8, 12) counted
    /// from `base`: `every(12, 15:00)` runs at 03:00 and 15:00.
    pub fn every(hours: u32, base: NaiveTime) -> Result<Schedule> {
        if hours == 0 || 24 % hours != 0 {
            return Err(Error::Config(format!(
                "every {hours}h: the interval must divide 24 (1, 2, 3, 4, 6, 8 or 12)"
            )));
        }
        let first = hour(base) % hours;
        let list: Vec<String> = (first..24)
            .step_by(hours as usize)
            .map(|h| h.to_string())
            .collect();
        Ok(Schedule::cron_for(&format!(
            "{} {} * * *",
            minute(base),
            list.join(",")
        )))
    }

    /// Every week on `weekday` at `at`.
    pub fn weekly(weekday: Weekday, at: NaiveTime) -> Schedule {
        Schedule::cron_for(&format!(
            "{} {} * * {}",
            minute(at),
            hour(at),
            weekday.num_days_from_sunday()
        ))
    }

    /// Every month on `day` (1-28, so every month has it) at `at`.
    pub fn monthly(day: u32, at: NaiveTime) -> Result<Schedule> {
        if !(1..=28).contains(&day) {
            return Err(Error::Config(format!(
                "monthly day {day} out of range (1-28, so that every month has it)"
            )));
        }
        Ok(Schedule::cron_for(&format!(
            "{} {} {day} * *",
            minute(at),
            hour(at)
        )))
    }

    fn cron_for(expr: &str) -> Schedule {
        Schedule::Cron(CronExpr::parse(expr).expect("presets build valid cron"))
    }

    /// The next run strictly after `after`, in UTC; `None` when the
    /// schedule is disabled or a one-shot is in the past.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Disabled => None,
            Schedule::Once(at) => Some(resolve_local(*at, tz)).filter(|t| *t > after),
            Schedule::Cron(expr) => {
                let mut cursor = after.with_timezone(&tz).naive_local();
                // A handful of iterations covers any DST fold.
                for _ in 0..8 {
                    let candidate = expr.next_naive(cursor)?;
                    let at = resolve_local(candidate, tz);
                    if at > after {
                        return Some(at);
                    }
                    cursor = candidate;
                }
                None
            }
        }
    }

    /// The latest run at or before `at` (for misfire checks).
    pub fn prev_at_or_before(&self, at: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Disabled => None,
            Schedule::Once(when) => Some(resolve_local(*when, tz)).filter(|t| *t <= at),
            Schedule::Cron(expr) => {
                let mut cursor = at.with_timezone(&tz).naive_local() + Duration::seconds(1);
                for _ in 0..8 {
                    let candidate = expr.prev_naive(cursor)?;
                    let t = resolve_local(candidate, tz);
                    if t <= at {
                        return Some(t);
                    }
                    cursor = candidate;
                }
                None
            }
        }
    }

    /// Whether the job disables itself after running.
    pub fn is_once(&self) -> bool {
        matches!(self, Schedule::Once(_))
    }
}

/// Maps a wall-clock time to an instant: the first of two on a fall-back
/// day, the end of the gap on a spring-forward day.
fn resolve_local(naive: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    use chrono::LocalResult;
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // Walk forward minute by minute to the first wall time that
            // exists (gaps are at most a few hours).
            let mut probe = naive;
            for _ in 0..(24 * 60) {
                probe += Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    return t.with_timezone(&Utc);
                }
            }
            Utc.from_utc_datetime(&naive)
        }
    }
}

fn hour(t: NaiveTime) -> u32 {
    t.hour()
}

fn minute(t: NaiveTime) -> u32 {
    t.minute()
}

fn parse_time(s: &str) -> Result<NaiveTime> {
    NaiveTime::parse_from_str(s, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(s, "%H:%M:%S"))
        .map_err(|_| Error::Config(format!("invalid time {s:?} (expected HH:MM)")))
}

fn parse_weekday(s: &str) -> Result<Weekday> {
    s.parse::<Weekday>()
        .map_err(|_| Error::Config(format!("invalid weekday {s:?} (expected mon..sun)")))
}

/// The accepted schedule strings, one example each, for error messages.
pub const SCHEDULE_FORMS: &str = "a crontab line (\"0 3 * * *\"), an alias (\"@daily\"), \"disabled\", \"daily 03:00\", \"every_12h 15:00\" (every 1, 2, 3, 4, 6, 8 or 12 hours counted from 15:00), \"weekly mon 04:00\", \"monthly 1 05:00\" or \"once 2026-01-01T03:00\"";

/// The preset words and the arguments each takes, for error messages.
fn preset_usage(preset: &str) -> Option<&'static str> {
    Some(match preset {
        "daily" => "daily HH:MM (e.g. daily 03:00)",
        "weekly" => "weekly DAY HH:MM (e.g. weekly mon 04:00)",
        "monthly" => "monthly DAY-OF-MONTH HH:MM (e.g. monthly 1 05:00)",
        "once" | "scheduled" => "once YYYY-MM-DDTHH:MM (e.g. once 2026-01-01T03:00)",
        p if every_hours(p).is_some() => {
            "every_Nh BASE (e.g. every_12h 15:00: at 03:00 and 15:00; N divides 24)"
        }
        _ => return None,
    })
}

/// `every_12h` -> 12 (any number; [`Schedule::every`] checks it divides 24).
fn every_hours(word: &str) -> Option<u32> {
    word.strip_prefix("every_")?
        .strip_suffix('h')
        .and_then(digits)
}

impl FromStr for Schedule {
    type Err = Error;

    /// Accepts a crontab string or alias, `disabled`, or a preset:
    /// `daily 03:00`, `every_12h 15:00` (any `every_Nh` with N dividing 24),
    /// `weekly mon 04:00`, `monthly 1 05:00`, `once 2025-12-01T03:00`.
    /// An unknown word or a preset with the wrong arguments is refused with
    /// the accepted forms ([`SCHEDULE_FORMS`]).
    ///
    /// ```
    /// use backup_core::Schedule;
    /// assert!("every_8h 01:00".parse::<Schedule>().is_ok());
    /// let err = "daily".parse::<Schedule>().unwrap_err().to_string();
    /// assert!(err.contains("expected daily HH:MM (e.g. daily 03:00)"), "{err}");
    /// let err = "dayly 03:00".parse::<Schedule>().unwrap_err().to_string();
    /// assert!(err.contains(r#"unknown schedule "dayly""#), "{err}");
    /// ```
    fn from_str(s: &str) -> Result<Schedule> {
        let s = s.trim();
        let words: Vec<&str> = s.split_whitespace().collect();
        let bad = |what: &str| Error::Config(format!("invalid schedule {s:?}: {what}"));
        match words.as_slice() {
            ["disabled" | "never" | "manual"] => Ok(Schedule::Disabled),
            ["daily", at] => Ok(Schedule::daily(parse_time(at)?)),
            [every, base] if every_hours(every).is_some() => Schedule::every(
                every_hours(every).expect("checked by the guard"),
                parse_time(base)?,
            ),
            ["weekly", day, at] => Ok(Schedule::weekly(parse_weekday(day)?, parse_time(at)?)),
            ["monthly", day, at] => {
                let day = digits(day).ok_or_else(|| bad("the day of month must be 1-28"))?;
                Schedule::monthly(day, parse_time(at)?)
            }
            ["once" | "scheduled", at] => Ok(Schedule::Once(parse_datetime(at)?)),
            [preset, ..] if preset_usage(preset).is_some() => Err(bad(&format!(
                "expected {}",
                preset_usage(preset).expect("checked by the guard")
            ))),
            // A crontab line starts with a minute (digits or `*`), an alias
            // with `@`: a word is a mistyped preset — unless the line has
            // a crontab's five fields, where the cron parser names the
            // field that is wrong.
            [word, ..]
                if words.len() != 5 && word.starts_with(|c: char| c.is_ascii_alphabetic()) =>
            {
                Err(Error::Config(format!(
                    "unknown schedule {word:?}; expected {SCHEDULE_FORMS}"
                )))
            }
            [] => Err(Error::Config(format!(
                "empty schedule; expected {SCHEDULE_FORMS}"
            ))),
            _ => CronExpr::parse(s).map(Schedule::Cron),
        }
    }
}

/// Parses `2025-12-01T03:00`, `2025-12-01 03:00` or with seconds.
pub(crate) fn parse_datetime(s: &str) -> Result<NaiveDateTime> {
    for fmt in [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t);
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_time(NaiveTime::MIN));
    }
    Err(Error::Config(format!(
        "invalid date-time {s:?} (expected YYYY-MM-DDTHH:MM)"
    )))
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Disabled => f.write_str("disabled"),
            Schedule::Cron(c) => f.write_str(c.as_str()),
            // Seconds only when there are any, so the text parses back to
            // the same instant (`Serialize` writes this).
            Schedule::Once(at) if at.second() != 0 => {
                write!(f, "once {}", at.format("%Y-%m-%dT%H:%M:%S"))
            }
            Schedule::Once(at) => write!(f, "once {}", at.format("%Y-%m-%dT%H:%M")),
        }
    }
}

impl Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses a time zone name (`UTC`, `Europe/Madrid`).
pub fn parse_tz(name: &str) -> Result<Tz> {
    name.parse::<Tz>().map_err(|_| {
        Error::Config(format!(
            "unknown time zone {name:?} (expected an IANA name such as Europe/Madrid)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_strings_parse_or_name_the_accepted_forms() {
        let ok = [
            ("0 3 * * *", "0 3 * * *"),
            ("@daily", "@daily"),
            ("daily 03:00", "0 3 * * *"),
            ("every_12h 15:00", "0 3,15 * * *"),
            ("every_6h 15:00", "0 3,9,15,21 * * *"),
            ("every_8h 01:30", "30 1,9,17 * * *"),
            ("weekly mon 04:00", "0 4 * * 1"),
            ("monthly 1 05:00", "0 5 1 * *"),
            ("once 2026-01-01T03:00", "once 2026-01-01T03:00"),
            ("disabled", "disabled"),
        ];
        for (text, shown) in ok {
            let s: Schedule = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(s.to_string(), shown, "{text}");
        }
        let refused = [
            ("daily", "expected daily HH:MM (e.g. daily 03:00)"),
            ("daily 03:00 04:00", "expected daily HH:MM"),
            ("every_12h", "expected every_Nh BASE (e.g. every_12h 15:00"),
            ("every_5h 01:00", "the interval must divide 24"),
            ("weekly 04:00", "expected weekly DAY HH:MM"),
            ("monthly x 05:00", "the day of month must be 1-28"),
            ("once", "expected once YYYY-MM-DDTHH:MM"),
            (
                "dayly 03:00",
                r#"unknown schedule "dayly"; expected a crontab line"#,
            ),
            ("", "empty schedule; expected"),
            ("0 3 * *", "expected 5 fields"),
        ];
        for (text, want) in refused {
            let err = text.parse::<Schedule>().unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(
                !err.contains("wrong number of arguments"),
                "{text:?}: {err}"
            );
        }
        let err = "dayly 03:00".parse::<Schedule>().unwrap_err().to_string();
        for form in [
            "\"daily 03:00\"",
            "\"every_12h 15:00\"",
            "\"weekly mon 04:00\"",
            "\"@daily\"",
        ] {
            assert!(err.contains(form), "{form} missing: {err}");
        }
    }
}
