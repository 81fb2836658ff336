//! Durations from users: parsed with checked arithmetic, bounded, and
//! converted into `chrono` only when they fit.
//!
//! A retention window, a sweep or GC grace and a staleness threshold all
//! decide what gets deleted or reported, so a value that cannot be taken
//! exactly is refused with an error naming it, never wrapped, saturated or
//! replaced by a default.

use std::time::Duration;

use crate::error::{Error, Result};

/// The longest duration accepted anywhere a user gives one: 1,000 years of
/// 365 days. Far beyond any retention, yet small enough that `now ± d` is
/// always a valid time.
pub const MAX_DURATION: Duration = Duration::from_secs(1000 * 365 * 86_400);

/// Parses durations such as `30d`, `12h`, `90m`, `2w`, `1y` (365 days).
/// Values beyond [`MAX_DURATION`] (1000y) are refused, naming the value.
///
/// ```
/// use backup_core::duration::parse_duration;
/// assert_eq!(parse_duration("30d").unwrap().as_secs(), 30 * 86_400);
/// assert!(parse_duration("30 days").is_err());
/// assert!(parse_duration("307445734561825861m").is_err()); // 2^64 s + 44 s
/// ```
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let bad = || {
        Error::Config(format!(
            "invalid duration {s:?} (expected e.g. 90m, 12h, 30d, 2w, 1y)"
        ))
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    if n.is_empty() {
        return Err(bad());
    }
    let unit_secs: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "y" => 365 * 86_400,
        _ => return Err(bad()),
    };
    let too_long = || {
        Error::Config(format!(
            "duration {s:?} is out of range (at most {}y)",
            MAX_DURATION.as_secs() / (365 * 86_400)
        ))
    };
    // Digits only, so a parse failure is an overflow of u64.
    let n: u64 = n.parse().map_err(|_| too_long())?;
    let secs = n.checked_mul(unit_secs).ok_or_else(too_long)?;
    let d = Duration::from_secs(secs);
    if d > MAX_DURATION {
        return Err(too_long());
    }
    Ok(d)
}

/// `d` in the syntax [`parse_duration`] reads, in the largest unit that
/// divides it exactly (`30d`, `13h`, `90m`, `45s`): what JSON outputs and
/// messages show, so a value can be copied back into a flag or a config.
///
/// ```
/// use std::time::Duration;
/// use backup_core::duration::{format_duration, parse_duration};
/// assert_eq!(format_duration(Duration::from_secs(13 * 3600)), "13h");
/// assert_eq!(format_duration(Duration::from_secs(5400)), "90m");
/// assert_eq!(parse_duration(&format_duration(Duration::from_secs(61))).unwrap().as_secs(), 61);
/// ```
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs != 0 && secs.is_multiple_of(size) {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

/// Serde for a duration field written as text (`24h`): [`format_duration`]
/// out, [`parse_duration`] in. Use with `#[serde(with = "backup_core::duration::text")]`.
pub mod text {
    use std::time::Duration;

    /// Writes `d` as [`format_duration`](crate::duration::format_duration) does.
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::duration::format_duration(*d))
    }

    /// Reads a duration as [`parse_duration`](crate::duration::parse_duration) does.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        crate::duration::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// Minutes (a CLI's `--grace-minutes`) as a duration, checked.
pub fn duration_from_minutes(n: u64) -> Result<Duration> {
    n.checked_mul(60)
        .map(Duration::from_secs)
        .filter(|d| *d <= MAX_DURATION)
        .ok_or_else(|| {
            Error::Config(format!(
                "{n} minutes is out of range (at most {} minutes)",
                MAX_DURATION.as_secs() / 60
            ))
        })
}

/// `d` as a `chrono::Duration`, or an error naming `what` and the value
/// when it is beyond [`MAX_DURATION`].
pub(crate) fn to_chrono(d: Duration, what: &str) -> Result<chrono::Duration> {
    if d > MAX_DURATION {
        return Err(Error::Config(format!(
            "{what} of {} s is out of range (at most {} s, 1000 years)",
            d.as_secs(),
            MAX_DURATION.as_secs()
        )));
    }
    chrono::Duration::from_std(d)
        .map_err(|_| Error::Config(format!("{what} of {} s is out of range", d.as_secs())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("90m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("2w").unwrap().as_secs(), 14 * 86_400);
        assert_eq!(parse_duration(" 12h ").unwrap().as_secs(), 12 * 3600);
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        for bad in ["", "d", "10", "10x", "-1d", "1.5h", "1 h", "h1"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bounds_are_exact() {
        assert_eq!(parse_duration("1000y").unwrap(), MAX_DURATION);
        assert_eq!(parse_duration("365000d").unwrap(), MAX_DURATION);
        for over in [
            "1001y",
            "365001d",
            "307445734561825861m",
            "18446744073709551615s",
            "18446744073709551616s",
            "99999999999999999999999999y",
        ] {
            let err = parse_duration(over).unwrap_err();
            assert!(err.to_string().contains(over), "{over}: {err}");
            assert!(err.to_string().contains("out of range"), "{over}: {err}");
        }
    }

    #[test]
    fn formatted_durations_parse_back() {
        for (secs, text) in [
            (0, "0s"),
            (59, "59s"),
            (5400, "90m"),
            (86_400, "1d"),
            (90_000, "25h"),
        ] {
            let d = Duration::from_secs(secs);
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text).unwrap(), d);
        }
    }

    #[test]
    fn minutes_are_checked() {
        assert_eq!(duration_from_minutes(60).unwrap().as_secs(), 3600);
        let err = duration_from_minutes(307_445_734_561_825_861).unwrap_err();
        assert!(err.to_string().contains("307445734561825861"), "{err}");
        assert!(duration_from_minutes(MAX_DURATION.as_secs() / 60 + 1).is_err());
    }

    #[test]
    fn chrono_conversion_refuses_what_does_not_fit() {
        assert_eq!(
            to_chrono(Duration::from_secs(60), "grace").unwrap(),
            chrono::Duration::minutes(1)
        );
        let err = to_chrono(Duration::MAX, "sweep grace").unwrap_err();
        assert!(err.to_string().contains("sweep grace"), "{err}");
    }
}
