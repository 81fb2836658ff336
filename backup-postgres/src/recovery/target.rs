//! [`RecoveryTarget`]: where a point-in-time restore stops, parsed from
//! the strings a user types, refusing anything that could mean two things.

use std::fmt;
use std::str::FromStr;

use backup_core::{Error, Result};
use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};

/// The longest restore point name PostgreSQL keeps (`MAXFNAMELEN - 1`).
const MAX_NAME_BYTES: usize = 63;

/// Where recovery stops. It always ends with `recovery_target_action =
/// 'promote'`: the restored server opens for writes at the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// Replay every archived segment (`recovery_target` unset).
    Latest,
    /// Replay every transaction committed at or before this instant
    /// (`recovery_target_time`, inclusive).
    Time(DateTime<Utc>),
    /// Replay up to and including the record at this WAL position
    /// (`recovery_target_lsn`); the value is the 64-bit LSN.
    Lsn(u64),
    /// Replay up to a restore point made with
    /// `pg_create_restore_point(name)` (`recovery_target_name`).
    Name(String),
}

impl RecoveryTarget {
    /// A time target from an RFC 3339 timestamp or PostgreSQL's own
    /// output (`2026-12-02T07:17:29Z`, `2026-12-02 07:17:29.5+01:00`,
    /// `2026-12-02 07:17:29.123456+00`). A time without a zone is refused:
    /// it would mean a different instant on every host.
    pub fn time(text: &str) -> Result<RecoveryTarget> {
        let text = text.trim();
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Ok(RecoveryTarget::Time(t.with_timezone(&Utc)));
        }
        for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
            if let Ok(t) = DateTime::<FixedOffset>::parse_from_str(text, format) {
                return Ok(RecoveryTarget::Time(t.with_timezone(&Utc)));
            }
        }
        for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
            if NaiveDateTime::parse_from_str(text, format).is_ok() {
                return Err(Error::Config(format!(
                    "recovery target time {text:?} has no time zone: add one (Z or +HH:MM), e.g. {text}Z"
                )));
            }
        }
        Err(Error::Config(format!(
            "recovery target time {text:?} is not a timestamp with a zone: use RFC 3339, e.g. 2026-12-02T07:17:29Z"
        )))
    }

    /// An LSN target from PostgreSQL's `X/Y` form (two hexadecimal
    /// numbers of at most 8 digits, e.g. `0/3000060`).
    pub fn lsn(text: &str) -> Result<RecoveryTarget> {
        parse_lsn(text.trim())
            .map(RecoveryTarget::Lsn)
            .ok_or_else(|| {
                Error::Config(format!(
                    "recovery target LSN {text:?} is not of the form X/Y in hexadecimal (e.g. 0/3000060)"
                ))
            })
    }

    /// A restore point name: not empty, at most 63 bytes, no control
    /// characters (the name is matched exactly, so no trimming either).
    pub fn name(text: &str) -> Result<RecoveryTarget> {
        if text.is_empty() {
            return Err(Error::Config(
                "recovery target name is empty: give the name passed to pg_create_restore_point"
                    .into(),
            ));
        }
        if text.len() > MAX_NAME_BYTES || text.chars().any(char::is_control) {
            return Err(Error::Config(format!(
                "recovery target name {text:?} cannot be a restore point name (at most {MAX_NAME_BYTES} bytes, no control characters)"
            )));
        }
        Ok(RecoveryTarget::Name(text.to_string()))
    }

    /// The `recovery_target_*` setting for this target, as
    /// `(name, value)`; `None` for [`RecoveryTarget::Latest`].
    pub(crate) fn setting(&self) -> Option<(&'static str, String)> {
        match self {
            RecoveryTarget::Latest => None,
            RecoveryTarget::Time(t) => Some((
                "recovery_target_time",
                t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
            )),
            RecoveryTarget::Lsn(lsn) => Some(("recovery_target_lsn", format_lsn(*lsn))),
            RecoveryTarget::Name(name) => Some(("recovery_target_name", name.clone())),
        }
    }
}

/// `latest`, `time:<timestamp>`, `lsn:<X/Y>` or `name:<restore point>`
/// (each as its constructor parses it).
impl FromStr for RecoveryTarget {
    type Err = Error;

    fn from_str(text: &str) -> Result<RecoveryTarget> {
        if text == "latest" {
            return Ok(RecoveryTarget::Latest);
        }
        match text.split_once(':') {
            Some(("time", t)) => RecoveryTarget::time(t),
            Some(("lsn", l)) => RecoveryTarget::lsn(l),
            Some(("name", n)) => RecoveryTarget::name(n),
            _ => Err(Error::Config(format!(
                "recovery target {text:?} is none of latest, time:<timestamp with zone>, lsn:<X/Y>, name:<restore point>"
            ))),
        }
    }
}

impl fmt::Display for RecoveryTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryTarget::Latest => f.write_str("latest"),
            RecoveryTarget::Time(t) => write!(f, "time {}", t.to_rfc3339()),
            RecoveryTarget::Lsn(lsn) => write!(f, "LSN {}", format_lsn(*lsn)),
            RecoveryTarget::Name(name) => write!(f, "restore point {name:?}"),
        }
    }
}

/// Which timeline recovery follows (`recovery_target_timeline`): after a
/// restored copy was promoted and archived into the same archive, the
/// WAL of a base backup continues on more than one timeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RecoveryTimeline {
    /// The newest timeline whose history descends from the base backup's
    /// timeline at a switch point after the backup's start (PostgreSQL's
    /// `latest`, the default of PostgreSQL 12 on, pgBackRest and WAL-G;
    /// unlike PostgreSQL, a newer timeline of an unrelated branch is
    /// passed over rather than refused). The base backup's own timeline
    /// when none does.
    #[default]
    Latest,
    /// The base backup's own timeline, to its end in the archive.
    Current,
    /// This timeline, which must descend from the base backup's timeline
    /// at a switch point after the backup's start.
    Id(u32),
}

/// `latest`, `current` or a timeline number (decimal, as PostgreSQL
/// prints it).
impl FromStr for RecoveryTimeline {
    type Err = Error;

    fn from_str(text: &str) -> Result<RecoveryTimeline> {
        match text {
            "latest" => Ok(RecoveryTimeline::Latest),
            "current" => Ok(RecoveryTimeline::Current),
            _ => match text.parse::<u32>() {
                Ok(n) if n > 0 && text.bytes().all(|b| b.is_ascii_digit()) => {
                    Ok(RecoveryTimeline::Id(n))
                }
                _ => Err(Error::Config(format!(
                    "recovery target timeline {text:?} is none of latest, current or a timeline number (1 or more)"
                ))),
            },
        }
    }
}

impl fmt::Display for RecoveryTimeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryTimeline::Latest => f.write_str("latest"),
            RecoveryTimeline::Current => f.write_str("current"),
            RecoveryTimeline::Id(n) => write!(f, "{n}"),
        }
    }
}

/// `X/Y` (hexadecimal, at most 8 digits each) as a 64-bit LSN.
pub(crate) fn parse_lsn(text: &str) -> Option<u64> {
    text.parse::<crate::lsn::Lsn>().ok().map(|l| l.0)
}

/// A 64-bit LSN in PostgreSQL's `X/Y` form.
pub(crate) fn format_lsn(lsn: u64) -> String {
    crate::lsn::Lsn(lsn).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_need_a_zone() {
        let cases = [
            ("2026-12-02T07:17:29Z", Some("2026-12-02T07:17:29+00:00")),
            (
                "2026-12-02 07:17:29.5+01:00",
                Some("2026-12-02T06:17:29.500+00:00"),
            ),
            (
                "2026-12-02 07:17:29.123456+00",
                Some("2026-12-02T07:17:29.123456+00:00"),
            ),
            (
                "2026-12-02 07:17:29-0230",
                Some("2026-12-02T09:47:29+00:00"),
            ),
            ("2026-12-02 07:17:29", None),
            ("2026-12-02T07:17:29.25", None),
            ("yesterday", None),
            ("", None),
        ];
        for (text, want) in cases {
            match (RecoveryTarget::time(text), want) {
                (Ok(RecoveryTarget::Time(t)), Some(w)) => {
                    assert_eq!(t, DateTime::parse_from_rfc3339(w).unwrap(), "{text}")
                }
                (Err(e), None) => assert!(e.to_string().contains("zone"), "{text}: {e}"),
                (got, _) => panic!("{text}: {got:?}"),
            }
        }
        let err = RecoveryTarget::time("2026-12-02 07:17:29").unwrap_err();
        assert!(err.to_string().contains("has no time zone"), "{err}");
    }

    #[test]
    fn lsns_are_two_hex_numbers() {
        assert_eq!(parse_lsn("0/3000060"), Some(0x300_0060));
        assert_eq!(parse_lsn("1A/FF"), Some((0x1A << 32) | 0xFF));
        assert_eq!(parse_lsn("FFFFFFFF/FFFFFFFF"), Some(u64::MAX));
        for bad in [
            "",
            "0",
            "0/",
            "/1",
            "0/3000060/1",
            "g/1",
            "100000000/0",
            "+1/0",
            " 0/1",
        ] {
            assert_eq!(parse_lsn(bad), None, "{bad:?}");
        }
        assert_eq!(format_lsn(0x1_0300_0060), "1/3000060");
        assert!(RecoveryTarget::lsn("3000060").is_err());
    }

    #[test]
    fn names_are_exact() {
        assert!(RecoveryTarget::name("").is_err());
        assert!(RecoveryTarget::name(&"x".repeat(64)).is_err());
        assert!(RecoveryTarget::name("a\nb").is_err());
        assert_eq!(
            RecoveryTarget::name(" it's ").unwrap(),
            RecoveryTarget::Name(" it's ".into())
        );
    }

    #[test]
    fn timelines() {
        for (text, want) in [
            ("latest", Some(RecoveryTimeline::Latest)),
            ("current", Some(RecoveryTimeline::Current)),
            ("2", Some(RecoveryTimeline::Id(2))),
            ("0", None),
            ("+2", None),
            ("0x2", None),
            ("Latest", None),
            ("", None),
        ] {
            assert_eq!(text.parse::<RecoveryTimeline>().ok(), want, "{text:?}");
        }
        assert_eq!(RecoveryTimeline::Id(12).to_string(), "12");
    }

    #[test]
    fn cli_forms() {
        assert_eq!(
            "latest".parse::<RecoveryTarget>().unwrap(),
            RecoveryTarget::Latest
        );
        assert_eq!(
            "lsn:0/10".parse::<RecoveryTarget>().unwrap(),
            RecoveryTarget::Lsn(0x10)
        );
        assert_eq!(
            "name:rp".parse::<RecoveryTarget>().unwrap(),
            RecoveryTarget::Name("rp".into())
        );
        assert!(
            "time:2026-12-02T07:17:29Z"
                .parse::<RecoveryTarget>()
                .is_ok()
        );
        for bad in [
            "",
            "Latest",
            "now",
            "time:2026-12-02 07:17:29",
            "name:",
            "lsn:1",
        ] {
            assert!(bad.parse::<RecoveryTarget>().is_err(), "{bad:?}");
        }
        assert_eq!(
            RecoveryTarget::time("2026-12-02T07:17:29.5Z")
                .unwrap()
                .setting(),
            Some((
                "recovery_target_time",
                "2026-12-02 07:17:29.500000+00".into()
            ))
        );
    }
}
