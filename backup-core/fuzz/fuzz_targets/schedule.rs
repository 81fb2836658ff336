//! `Schedule::from_str` on arbitrary text. Accepted schedules fire at
//! strictly increasing times, each a fire time of the schedule (the
//! previous fire at or before it is itself) with none skipped in between.
//!
//! Input: byte 0 picks the zone, bytes 1..5 the start instant, the rest is
//! the schedule text.
#![no_main]

use backup_core::Schedule;
use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use libfuzzer_sys::fuzz_target;

const ZONES: [Tz; 5] = [
    Tz::UTC,
    Tz::Europe__Madrid,
    Tz::America__New_York,
    Tz::Australia__Lord_Howe, // 30-minute DST shift
    Tz::Asia__Kathmandu,      // +05:45
];

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let tz = ZONES[data[0] as usize % ZONES.len()];
    let minutes = u32::from_le_bytes([data[1], data[2], data[3], data[4]]) % (60 * 24 * 366 * 8);
    let Ok(text) = std::str::from_utf8(&data[5..]) else {
        return;
    };
    let Ok(schedule) = text.parse::<Schedule>() else {
        return;
    };
    // Display re-parses to the same schedule.
    assert_eq!(
        schedule.to_string().parse::<Schedule>().ok(),
        Some(schedule.clone())
    );
    let start: DateTime<Utc> =
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + Duration::minutes(minutes.into());
    let mut after = start;
    for _ in 0..4 {
        let Some(next) = schedule.next_after(after, tz) else {
            break;
        };
        assert!(next > after, "{text:?} in {tz}: {next} after {after}");
        if tz == Tz::UTC && matches!(schedule, Schedule::Cron(_)) {
            assert_eq!(
                schedule.prev_at_or_before(next, tz),
                Some(next),
                "{text:?}: {next} is not a fire time"
            );
            let before = schedule.prev_at_or_before(next - Duration::seconds(1), tz);
            assert!(
                before.is_none_or(|b| b <= after),
                "{text:?}: fire time {before:?} skipped between {after} and {next}"
            );
        }
        after = next;
    }
    let _ = schedule.prev_at_or_before(start, tz);
});
