//! Checks shared by every section: ranges, schedules, compression,
//! durations and `*_var` references, each reporting into [`Problems`]
//! with the value's path in the file.

use std::time::Duration;

use backup_core::{Compression, Schedule};

use super::schema::RawSchedule;
use super::types::{MAX_DURATION_SECS, Problems};

/// Reads an environment variable through a lookup function (the real
/// environment in production, a map in tests).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Parses `90m`, `12h`, `30d`, `2w`, `1y` (or `s`) with checked
/// arithmetic: zero, overflow and anything above 100 years are errors.
///
/// The grammar is [`backup_core::duration::parse_duration`]'s; backupd's bounds are
/// narrower (a staleness threshold of zero or above 100 years is a typo).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = backup_core::duration::parse_duration(s).map_err(|e| without_prefix(&e))?;
    if d.is_zero() || d.as_secs() > MAX_DURATION_SECS {
        return Err(format!("duration {s:?} is out of range (1s to 100y)"));
    }
    Ok(d)
}

/// A core error's message without the `invalid configuration: ` prefix
/// (the path in the file says where already).
fn without_prefix(e: &backup_core::Error) -> String {
    let msg = e.to_string();
    msg.strip_prefix("invalid configuration: ")
        .unwrap_or(&msg)
        .to_string()
}

/// `value` when it is within `min..=max`; otherwise a problem at `path`
/// and `None`.
pub(super) fn check_range<T: PartialOrd + std::fmt::Display + Copy>(
    value: Option<T>,
    min: T,
    max: T,
    path: &str,
    problems: &mut Problems,
) -> Option<T> {
    match value {
        Some(v) if v < min || v > max => {
            problems.push(path, format!("{v} is out of range ({min} to {max})"));
            None
        }
        v => v,
    }
}

pub(super) fn parse_schedule(
    raw: &RawSchedule,
    path: &str,
    problems: &mut Problems,
) -> Option<Schedule> {
    match raw.compact().parse::<Schedule>() {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(path, without_prefix(&e));
            None
        }
    }
}

pub(super) fn parse_compression(
    raw: &str,
    path: &str,
    problems: &mut Problems,
) -> Option<Compression> {
    match raw.parse::<Compression>() {
        Ok(c) => Some(c),
        Err(e) => {
            problems.push(path, without_prefix(&e));
            None
        }
    }
}

/// The non-empty value of the variable `var`, or a problem at `path`.
pub(super) fn env_var(
    var: &str,
    path: &str,
    env: EnvLookup<'_>,
    problems: &mut Problems,
) -> Option<String> {
    match env(var) {
        Some(v) if !v.is_empty() => Some(v),
        Some(_) => {
            problems.push(path, format!("environment variable {var} is empty"));
            None
        }
        None => {
            problems.push(path, format!("environment variable {var} is not set"));
            None
        }
    }
}
