//! Checks shared by every section: ranges, schedules, compression,
//! durations and `*_var` references, each reporting into [`Problems`]
//! with the value's path in the file.

use std::time::Duration;

use backup_core::{Compression, Schedule};

use super::schema::{RawPreset, RawRetention, RawSchedule, SCHEDULE_EXPECTED};
use super::types::{MAX_BACKUPS, MAX_DURATION_SECS, MAX_RETENTION_DAYS, Problems, Retention};

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

/// `<section>.keep_last` and `<section>.max_age`, or their older
/// spellings `max_backups` and `retention_days` (with a warning in the log;
/// both spellings at once is a problem). A value out of range is a problem
/// and `None`.
pub(super) fn retention(
    raw: RawRetention<'_>,
    section: &str,
    problems: &mut Problems,
) -> Retention {
    let older = |old: &str, new: &str, example: &str, problems: &mut Problems| {
        problems.push(
            format!("{section}.{old}"),
            format!(
                "{old} is the older spelling of {new}; give only {new} (e.g. {new}: {example})"
            ),
        );
    };
    let warn = |old: &str, new: &str, example: &str| {
        tracing::warn!(
            "{section}.{old} is the older spelling of {new} (e.g. {new}: {example}); accepted for this release"
        );
    };
    let keep_last = match (raw.keep_last, raw.max_backups) {
        (Some(_), Some(_)) => {
            older("max_backups", "keep_last", "14", problems);
            None
        }
        (Some(n), None) => check_range(
            Some(n),
            1,
            MAX_BACKUPS,
            &format!("{section}.keep_last"),
            problems,
        ),
        (None, Some(n)) => {
            warn("max_backups", "keep_last", &n.to_string());
            check_range(
                Some(n),
                1,
                MAX_BACKUPS,
                &format!("{section}.max_backups"),
                problems,
            )
        }
        (None, None) => None,
    };
    let max_age = match (raw.max_age, raw.retention_days) {
        (Some(_), Some(_)) => {
            older("retention_days", "max_age", "30d", problems);
            None
        }
        (Some(text), None) => match parse_duration(text) {
            Ok(d) => Some(d),
            Err(e) => {
                problems.push(format!("{section}.max_age"), e);
                None
            }
        },
        (None, Some(days)) => {
            warn("retention_days", "max_age", &format!("{days}d"));
            check_range(
                Some(days),
                1,
                MAX_RETENTION_DAYS,
                &format!("{section}.retention_days"),
                problems,
            )
            .map(|d| Duration::from_secs(u64::from(d) * 86_400))
        }
        (None, None) => None,
    };
    Retention { keep_last, max_age }
}

/// A schedule, or a problem at `path` naming what is wrong and the
/// accepted forms.
pub(super) fn parse_schedule(
    raw: &RawSchedule,
    path: &str,
    problems: &mut Problems,
) -> Option<Schedule> {
    let text = match raw {
        RawSchedule::Text(s) => s.clone(),
        RawSchedule::Preset(p) => match preset_text(p) {
            Ok(text) => text,
            Err(e) => {
                problems.push(path, e);
                return None;
            }
        },
    };
    match text.parse::<Schedule>() {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(path, without_prefix(&e));
            None
        }
    }
}

/// The mapping form as the equivalent preset string, once each field it
/// has is one its preset takes and each field its preset needs is there.
fn preset_text(p: &RawPreset) -> Result<String, String> {
    let name = p.preset.as_str();
    // (field, whether it is set)
    let given = [
        ("time", p.time.is_some()),
        ("base", p.base.is_some()),
        ("weekday", p.weekday.is_some()),
        ("day", p.day.is_some()),
        ("at", p.at.is_some()),
    ];
    let (takes, example): (&[&str], &str) = match name {
        "disabled" | "never" | "manual" => (&[], "{preset: disabled}"),
        "daily" => (&["time"], r#"{preset: daily, time: "03:00"}"#),
        "weekly" => (
            &["weekday", "time"],
            r#"{preset: weekly, weekday: mon, time: "04:00"}"#,
        ),
        "monthly" => (
            &["day", "time"],
            r#"{preset: monthly, day: 1, time: "05:00"}"#,
        ),
        "once" | "scheduled" => (&["at"], r#"{preset: once, at: "2026-01-01T03:00"}"#),
        every if every.starts_with("every_") => (
            &["base"],
            r#"{preset: every_12h, base: "15:00"} (runs at 03:00 and 15:00)"#,
        ),
        other => {
            return Err(format!(
                "unknown preset {other:?}; expected {SCHEDULE_EXPECTED}"
            ));
        }
    };
    for (field, set) in given {
        if set && !takes.contains(&field) {
            let why = if field == "time" && takes == ["base"] {
                format!(
                    "{name} has no time of day: give `base`, the hour its cycle is counted from"
                )
            } else {
                format!("{name} takes no `{field}`")
            };
            return Err(format!("{why}; expected e.g. {example}"));
        }
    }
    if let Some((missing, _)) = given
        .iter()
        .find(|(field, set)| !set && takes.contains(field))
    {
        return Err(format!("{name} needs `{missing}`; expected e.g. {example}"));
    }
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    Ok(match takes {
        [] => "disabled".to_string(),
        ["base"] => format!("{name} {}", text(&p.base)),
        ["time"] => format!("daily {}", text(&p.time)),
        ["weekday", "time"] => format!("weekly {} {}", text(&p.weekday), text(&p.time)),
        ["day", "time"] => format!("monthly {} {}", p.day.unwrap_or_default(), text(&p.time)),
        _ => format!("once {}", text(&p.at)),
    })
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
