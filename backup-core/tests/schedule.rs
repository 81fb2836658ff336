//! Schedules as case tables: cron forms, presets, month ends and DST.

use backup_core::{Schedule, schedule::CronExpr, schedule::parse_tz};
use chrono::{DateTime, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// The next `n` fire times after `from`, formatted in `tz` as
/// `YYYY-MM-DD HH:MM Dow`.
fn fires(schedule: &str, tz: &str, from: &str, n: usize) -> Vec<String> {
    let schedule: Schedule = schedule.parse().unwrap();
    let tz: Tz = parse_tz(tz).unwrap();
    let mut at = utc(from);
    let mut out = Vec::new();
    for _ in 0..n {
        let Some(next) = schedule.next_after(at, tz) else {
            break;
        };
        out.push(
            next.with_timezone(&tz)
                .format("%Y-%m-%d %H:%M %a")
                .to_string(),
        );
        at = next;
    }
    out
}

#[test]
fn weekday_ranges_are_posix() {
    // 2025-11-22 is a Saturday.
    assert_eq!(
        fires("0 1 * * 1-5", "UTC", "2025-11-22T00:00:00Z", 6),
        [
            "2025-11-24 01:00 Mon",
            "2025-11-25 01:00 Tue",
            "2025-11-26 01:00 Wed",
            "2025-11-27 01:00 Thu",
            "2025-11-28 01:00 Fri",
            "2025-12-01 01:00 Mon",
        ]
    );
    assert_eq!(
        fires("0 1 * * MON-FRI", "UTC", "2025-11-22T00:00:00Z", 6),
        fires("0 1 * * 1-5", "UTC", "2025-11-22T00:00:00Z", 6)
    );
    // 0 and 7 are both Sunday.
    assert_eq!(
        fires("0 0 * * 7", "UTC", "2025-11-22T00:00:00Z", 1),
        ["2025-11-23 00:00 Sun"]
    );
    assert_eq!(
        fires("0 0 * * 0", "UTC", "2025-11-22T00:00:00Z", 1),
        ["2025-11-23 00:00 Sun"]
    );
}

#[test]
fn day_fields_or_when_both_restricted() {
    // The 13th OR any Friday (Vixie/POSIX), from 2025-06-01.
    assert_eq!(
        fires("0 0 13 * 5", "UTC", "2025-06-01T00:00:00Z", 4),
        [
            "2025-06-06 00:00 Fri",
            "2025-06-13 00:00 Fri",
            "2025-06-20 00:00 Fri",
            "2025-06-27 00:00 Fri",
        ]
    );
    assert_eq!(
        fires("0 0 13 * 1", "UTC", "2025-06-10T00:00:00Z", 3),
        [
            "2025-06-13 00:00 Fri",
            "2025-06-16 00:00 Mon",
            "2025-06-23 00:00 Mon"
        ]
    );
    // A star in one day field leaves the other alone.
    assert_eq!(
        fires("0 0 13 * *", "UTC", "2025-06-01T00:00:00Z", 2),
        ["2025-06-13 00:00 Fri", "2025-07-13 00:00 Sun"]
    );
}

#[test]
fn common_user_strings() {
    let from = "2025-11-26T02:30:00Z";
    assert_eq!(
        fires("0 2 * * *", "UTC", from, 2),
        ["2025-11-27 02:00 Thu", "2025-11-28 02:00 Fri"]
    );
    assert_eq!(fires("0 3 * * *", "UTC", from, 1), ["2025-11-26 03:00 Wed"]);
    assert_eq!(
        fires("*/15 * * * *", "UTC", from, 2),
        ["2025-11-26 02:45 Wed", "2025-11-26 03:00 Wed"]
    );
    assert_eq!(
        fires("30 4 1,15 * *", "UTC", from, 2),
        ["2025-12-01 04:30 Mon", "2025-12-15 04:30 Mon"]
    );
    assert_eq!(
        fires("0 0 1 JAN *", "UTC", from, 1),
        ["2026-01-01 00:00 Thu"]
    );
    assert_eq!(
        fires("5/20 * * * *", "UTC", from, 2),
        ["2025-11-26 02:45 Wed", "2025-11-26 03:05 Wed"]
    );
}

#[test]
fn aliases() {
    let from = "2025-11-26T02:30:00Z";
    for (alias, first) in [
        ("@daily", "2025-11-27 00:00 Thu"),
        ("@midnight", "2025-11-27 00:00 Thu"),
        ("@hourly", "2025-11-26 03:00 Wed"),
        ("@weekly", "2025-11-30 00:00 Sun"),
        ("@monthly", "2025-12-01 00:00 Mon"),
        ("@yearly", "2026-01-01 00:00 Thu"),
        ("@annually", "2026-01-01 00:00 Thu"),
    ] {
        assert_eq!(fires(alias, "UTC", from, 1), [first], "{alias}");
    }
}

#[test]
fn invalid_strings_say_what_is_wrong() {
    for (input, message) in [
        ("0 25 * * *", "hour out of range (0-23): 25"),
        ("60 * * * *", "minute out of range (0-59): 60"),
        ("* * 0 * *", "day of month out of range (1-31): 0"),
        ("* * * 13 *", "month out of range (1-12): 13"),
        ("* * * * 8", "day of week out of range (0-7): 8"),
        ("0 0 2 * * *", "expected 5 fields"),
        ("0 0 * *", "expected 5 fields"),
        ("0 0 L * *", "non-standard syntax"),
        ("0 0 * * 5#2", "non-standard syntax"),
        ("*/0 * * * *", "step out of range"),
        ("5-1 * * * *", "runs backwards"),
        ("@reboot", "unknown alias"),
        ("x * * * *", "is not a number"),
    ] {
        let err = input.parse::<Schedule>().unwrap_err().to_string();
        assert!(
            err.contains(&format!("invalid cron {input:?}")),
            "{input}: {err}"
        );
        assert!(err.contains(message), "{input}: {err}");
    }
    assert!(CronExpr::parse("0 0 * * *").is_ok());
}

#[test]
fn month_ends() {
    // The 31st skips shorter months; Feb 29 waits for a leap year.
    assert_eq!(
        fires("0 0 31 * *", "UTC", "2025-01-31T12:00:00Z", 3),
        [
            "2025-03-31 00:00 Mon",
            "2025-05-31 00:00 Sat",
            "2025-07-31 00:00 Thu"
        ]
    );
    assert_eq!(
        fires("0 0 29 2 *", "UTC", "2025-01-01T00:00:00Z", 1),
        ["2028-02-29 00:00 Tue"]
    );
    // Monthly presets are limited to 1-28 so every month has them.
    assert_eq!(
        fires("monthly 28 05:00", "UTC", "2025-01-29T00:00:00Z", 2),
        ["2025-02-28 05:00 Fri", "2025-03-28 05:00 Fri"]
    );
    assert!("monthly 29 05:00".parse::<Schedule>().is_err());
    assert!("monthly 0 05:00".parse::<Schedule>().is_err());
}

#[test]
fn presets() {
    let from = "2025-11-26T10:00:00Z"; // a Wednesday
    assert_eq!(
        fires("daily 03:00", "UTC", from, 1),
        ["2025-11-27 03:00 Thu"]
    );
    assert_eq!(
        fires("every_12h 15:00", "UTC", from, 3),
        [
            "2025-11-26 15:00 Wed",
            "2025-11-27 03:00 Thu",
            "2025-11-27 15:00 Thu"
        ]
    );
    assert_eq!(
        fires("every_6h 15:00", "UTC", from, 4),
        [
            "2025-11-26 15:00 Wed",
            "2025-11-26 21:00 Wed",
            "2025-11-27 03:00 Thu",
            "2025-11-27 09:00 Thu",
        ]
    );
    assert_eq!(
        fires("weekly mon 04:00", "UTC", from, 2),
        ["2025-12-01 04:00 Mon", "2025-12-08 04:00 Mon"]
    );
    assert_eq!(fires("disabled", "UTC", from, 1), Vec::<String>::new());
    assert_eq!(
        Schedule::weekly(Weekday::Mon, NaiveTime::from_hms_opt(4, 0, 0).unwrap()).to_string(),
        "0 4 * * 1"
    );
}

#[test]
fn once_fires_once() {
    assert_eq!(
        fires(
            "once 2025-12-01T03:00",
            "Europe/Madrid",
            "2025-11-26T00:00:00Z",
            3
        ),
        ["2025-12-01 03:00 Mon"]
    );
    assert!(fires("once 2025-01-01T03:00", "UTC", "2025-11-26T00:00:00Z", 1).is_empty());
    assert!("once 2025-13-01T03:00".parse::<Schedule>().is_err());
}

#[test]
fn spring_forward_runs_once_at_the_end_of_the_gap() {
    // Europe/Madrid: 2025-03-30 02:00 CET -> 03:00 CEST.
    let got = fires("30 2 * * *", "Europe/Madrid", "2025-03-28T12:00:00Z", 3);
    assert_eq!(
        got,
        [
            "2025-03-29 02:30 Sat",
            "2025-03-30 03:00 Sun",
            "2025-03-31 02:30 Mon"
        ]
    );
    let tz = parse_tz("Europe/Madrid").unwrap();
    let daily: Schedule = "daily 02:30".parse().unwrap();
    let t = daily.next_after(utc("2025-03-29T12:00:00Z"), tz).unwrap();
    assert_eq!(t, utc("2025-03-30T01:00:00Z"));
    // America/New_York: 2025-03-09 02:00 EST -> 03:00 EDT.
    assert_eq!(
        fires("30 2 * * *", "America/New_York", "2025-03-08T12:00:00Z", 2),
        ["2025-03-09 03:00 Sun", "2025-03-10 02:30 Mon"]
    );
}

#[test]
fn fall_back_runs_once_at_the_first_occurrence() {
    // Europe/Madrid: 2025-10-26 03:00 CEST -> 02:00 CET; 02:30 happens twice.
    let tz = parse_tz("Europe/Madrid").unwrap();
    let s: Schedule = "30 2 * * *".parse().unwrap();
    let first = s.next_after(utc("2025-10-25T12:00:00Z"), tz).unwrap();
    assert_eq!(first, utc("2025-10-26T00:30:00Z"), "02:30 CEST");
    let second = s.next_after(first, tz).unwrap();
    assert_eq!(
        second,
        utc("2025-10-27T01:30:00Z"),
        "not again at 02:30 CET the same day"
    );
    // Hourly jobs: each wall-clock hour once.
    let hourly: Schedule = "0 * * * *".parse().unwrap();
    let mut at = utc("2025-10-25T23:30:00Z");
    let mut runs = Vec::new();
    for _ in 0..4 {
        at = hourly.next_after(at, tz).unwrap();
        runs.push(at.with_timezone(&tz).format("%H:%M%z").to_string());
    }
    assert_eq!(
        runs,
        ["02:00+0200", "03:00+0100", "04:00+0100", "05:00+0100"]
    );
}

#[test]
fn previous_fire_for_misfire_checks() {
    let s: Schedule = "0 2 * * *".parse().unwrap();
    let tz = Tz::UTC;
    assert_eq!(
        s.prev_at_or_before(utc("2025-11-26T10:00:00Z"), tz),
        Some(utc("2025-11-26T02:00:00Z"))
    );
    assert_eq!(
        s.prev_at_or_before(utc("2025-11-26T02:00:00Z"), tz),
        Some(utc("2025-11-26T02:00:00Z"))
    );
    assert_eq!(
        s.prev_at_or_before(utc("2025-11-26T01:59:00Z"), tz),
        Some(utc("2025-11-25T02:00:00Z"))
    );
    let _ = Utc.timestamp_opt(0, 0);
}
