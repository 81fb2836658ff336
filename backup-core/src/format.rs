//! Presentation helpers: sizes, ages and names as people and file names
//! want them.

use chrono::{DateTime, Utc};

/// A size in bytes in human form, with binary units: `1.5 MiB`.
///
/// ```
/// assert_eq!(backup_core::format::human_bytes(1536 * 1024), "1.5 MiB");
/// assert_eq!(backup_core::format::human_bytes(512), "512 B");
/// ```
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    // 1023.96 KiB would print as "1024.0 KiB": that is 1.0 MiB.
    while value >= 1023.95 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// How long before `now` something happened, in the largest whole unit:
/// `now`, `45s ago`, `12m ago`, `3h ago`, `9d ago`. A time after `now`
/// (another machine's clock ahead of ours) reads `in 5m`, never as a past.
///
/// ```
/// use chrono::{Duration, Utc};
/// let now = Utc::now();
/// assert_eq!(backup_core::format::human_age(now - Duration::hours(3), now), "3h ago");
/// ```
pub fn human_age(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = now.signed_duration_since(then).num_seconds();
    let span = match secs.unsigned_abs() {
        0 => return "now".into(),
        s @ 1..60 => format!("{s}s"),
        s @ 60..3600 => format!("{}m", s / 60),
        s @ 3600..86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    };
    if secs < 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// Replaces anything outside `[A-Za-z0-9_-]` with `_`, so database names
/// can appear in file names (`shop.eu` becomes `shop_eu`).
pub fn sanitize_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            // `.` is not kept: the first dot of a file name starts its
            // extensions, which is how ids are found in keys.
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches('.').to_string();
    if cleaned.is_empty() {
        "db".to_string()
    } else {
        cleaned.chars().take(64).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    #[test]
    fn sizes_at_the_unit_edges() {
        let cases: &[(u64, &str)] = &[
            (0, "0 B"),
            (1, "1 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (1024 * 1024 - 1, "1.0 MiB"),
            (1024 * 1024, "1.0 MiB"),
            (5 << 30, "5.0 GiB"),
            (1 << 50, "1.0 PiB"),
            (1 << 60, "1.0 EiB"),
            (u64::MAX, "16.0 EiB"),
        ];
        for (bytes, want) in cases {
            assert_eq!(human_bytes(*bytes), *want, "{bytes} bytes");
        }
    }

    #[test]
    fn ages_past_present_and_future() {
        let now = Utc
            .with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
            .single()
            .expect("time");
        let cases: &[(Duration, &str)] = &[
            (Duration::zero(), "now"),
            (Duration::milliseconds(999), "now"),
            (Duration::seconds(1), "1s ago"),
            (Duration::seconds(59), "59s ago"),
            (Duration::seconds(60), "1m ago"),
            (Duration::seconds(3599), "59m ago"),
            (Duration::hours(3), "3h ago"),
            (Duration::seconds(86399), "23h ago"),
            (Duration::days(1), "1d ago"),
            (Duration::days(400), "400d ago"),
            (Duration::seconds(-1), "in 1s"),
            (Duration::minutes(-5), "in 5m"),
            (Duration::days(-2), "in 2d"),
        ];
        for (age, want) in cases {
            assert_eq!(human_age(now - *age, now), *want, "{age}");
        }
        // The extremes chrono can represent neither overflow nor panic.
        assert!(human_age(DateTime::<Utc>::MIN_UTC, now).ends_with("d ago"));
        assert!(human_age(DateTime::<Utc>::MAX_UTC, now).starts_with("in "));
    }
}
