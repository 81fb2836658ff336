//! Property tests of schedules (fuzz target: `schedule`).
//!
//! Cron expressions are compared with a small reference implementation of
//! crontab(5) as Vixie/cronie read it: every expression `CronExpr` accepts
//! must mean the same to the reference, and fire at exactly the minutes the
//! reference computes (the strict parser may refuse more, never interpret
//! differently). Seconds fields and `L`/`W`/`#`/`?` are always refused.
//! In every zone, next-fire times strictly increase.

use backup_core::{Schedule, schedule::CronExpr};
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

// ---- reference crontab(5) ----

const BOUNDS: [(u32, u32); 5] = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];
const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

#[derive(Debug)]
struct Reference {
    sets: [Vec<bool>; 5],
    dom_star: bool,
    dow_star: bool,
}

fn ref_value(text: &str, field: usize) -> Option<u32> {
    let lower = text.to_ascii_lowercase();
    let named = match field {
        3 => MONTHS
            .iter()
            .position(|m| *m == lower)
            .map(|i| i as u32 + 1),
        4 => DAYS.iter().position(|d| *d == lower).map(|i| i as u32),
        _ => None,
    };
    let n = match named {
        Some(n) => n,
        None if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            text.parse().ok()?
        }
        None => return None,
    };
    let (lo, hi) = BOUNDS[field];
    (lo..=hi).contains(&n).then_some(n)
}

fn ref_field(text: &str, field: usize) -> Option<Vec<bool>> {
    let (lo, hi) = BOUNDS[field];
    let mut set = vec![false; hi as usize + 1];
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let s: u32 = s.parse().ok()?;
                if s == 0 {
                    return None;
                }
                (r, s)
            }
            None => (item, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (ref_value(a, field)?, ref_value(b, field)?)
        } else {
            let a = ref_value(range, field)?;
            if item.contains('/') { (a, hi) } else { (a, a) }
        };
        if a > b {
            return None;
        }
        let mut v = a;
        while v <= b {
            set[v as usize] = true;
            v += step;
        }
    }
    if field == 4 && set[7] {
        set[0] = true;
    }
    Some(set)
}

fn reference(expr: &str) -> Option<Reference> {
    let expanded = match expr.trim().to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
        "@monthly" => "0 0 1 * *".to_string(),
        "@weekly" => "0 0 * * 0".to_string(),
        "@daily" | "@midnight" => "0 0 * * *".to_string(),
        "@hourly" => "0 * * * *".to_string(),
        _ => expr.trim().to_string(),
    };
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    if fields.len() != 5 {
        return None;
    }
    let sets = [
        ref_field(fields[0], 0)?,
        ref_field(fields[1], 1)?,
        ref_field(fields[2], 2)?,
        ref_field(fields[3], 3)?,
        ref_field(fields[4], 4)?,
    ];
    Some(Reference {
        sets,
        // Vixie cron: a day field that starts with `*` counts as
        // unrestricted, and then both must match (AND); otherwise either.
        dom_star: fields[2].starts_with('*'),
        dow_star: fields[4].starts_with('*'),
    })
}

impl Reference {
    fn day_matches(&self, d: NaiveDate) -> bool {
        let dom = self.sets[2][d.day() as usize];
        let dow = self.sets[4][d.weekday().num_days_from_sunday() as usize];
        let day = if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        };
        day && self.sets[3][d.month() as usize]
    }

    /// The first matching minute strictly after `after`, within 30 years.
    fn next(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let mut day = after.date();
        for _ in 0..(366 * 30) {
            if self.day_matches(day) {
                for h in 0..24u32 {
                    if !self.sets[1][h as usize] {
                        continue;
                    }
                    for m in 0..60u32 {
                        if !self.sets[0][m as usize] {
                            continue;
                        }
                        let t = day.and_hms_opt(h, m, 0).unwrap();
                        if t > after {
                            return Some(t);
                        }
                    }
                }
            }
            day = day.succ_opt()?;
        }
        None
    }

    fn matches(&self, t: NaiveDateTime) -> bool {
        t.second() == 0
            && self.day_matches(t.date())
            && self.sets[1][t.hour() as usize]
            && self.sets[0][t.minute() as usize]
    }
}

// ---- generators ----

fn number(field: usize) -> impl Strategy<Value = String> {
    let (lo, hi) = BOUNDS[field];
    prop_oneof![
        8 => (lo..=hi).prop_map(|n| n.to_string()),
        1 => (0u32..100).prop_map(|n| n.to_string()),
        1 => (lo..=hi).prop_map(|n| format!("0{n}")),
    ]
}

fn name(field: usize) -> BoxedStrategy<String> {
    let case = |s: &'static str, upper: bool| {
        if upper {
            s.to_ascii_uppercase()
        } else {
            s.to_string()
        }
    };
    match field {
        3 => (prop::sample::select(MONTHS.to_vec()), any::<bool>())
            .prop_map(move |(m, u)| case(m, u))
            .boxed(),
        4 => (prop::sample::select(DAYS.to_vec()), any::<bool>())
            .prop_map(move |(d, u)| case(d, u))
            .boxed(),
        _ => number(field).boxed(),
    }
}

fn value(field: usize) -> BoxedStrategy<String> {
    prop_oneof![3 => number(field), 1 => name(field)].boxed()
}

fn item(field: usize) -> impl Strategy<Value = String> {
    let step = prop_oneof![8 => 1u32..13, 1 => 0u32..80].prop_map(|s| s.to_string());
    prop_oneof![
        2 => Just("*".to_string()),
        2 => step.clone().prop_map(|s| format!("*/{s}")),
        4 => value(field),
        3 => (value(field), value(field)).prop_map(|(a, b)| format!("{a}-{b}")),
        2 => (value(field), value(field), step.clone()).prop_map(|(a, b, s)| format!("{a}-{b}/{s}")),
        1 => (value(field), step).prop_map(|(a, s)| format!("{a}/{s}")),
        1 => prop::sample::select(vec!["L", "5L", "15W", "LW", "1#2", "?", "5#3", "*/", "", "-", "1-", "+3"])
            .prop_map(str::to_string),
    ]
}

fn field(field: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(item(field), 1..4).prop_map(|items| items.join(","))
}

fn cron_text() -> impl Strategy<Value = String> {
    prop_oneof![
        10 => (field(0), field(1), field(2), field(3), field(4))
            .prop_map(|(a, b, c, d, e)| format!("{a} {b} {c} {d} {e}")),
        1 => prop::sample::select(vec![
            "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly",
            "@reboot", "@every 5m", "@DAILY",
        ])
        .prop_map(str::to_string),
    ]
}

fn naive_instant() -> impl Strategy<Value = NaiveDateTime> {
    // 2000 to 2060, any second.
    (946_684_800i64..2_840_140_800)
        .prop_map(|s| DateTime::from_timestamp(s, 0).unwrap().naive_utc())
}

fn zone() -> impl Strategy<Value = Tz> {
    prop::sample::select(vec![
        Tz::UTC,
        Tz::Europe__Madrid,
        Tz::America__New_York,
        Tz::Australia__Lord_Howe,
        Tz::Asia__Kathmandu,
        Tz::America__Santiago,
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn accepted_cron_means_what_crontab_means(text in cron_text(), after in naive_instant()) {
        let Ok(expr) = CronExpr::parse(&text) else {
            return Ok(());
        };
        let reference = reference(&text);
        prop_assert!(reference.is_some(), "{:?} accepted but not crontab(5)", text);
        let reference = reference.unwrap();
        let schedule = Schedule::Cron(expr);
        let mut cursor = after;
        for _ in 0..3 {
            let expected = reference.next(cursor);
            let got = schedule
                .next_after(Utc.from_utc_datetime(&cursor), Tz::UTC)
                .map(|t| t.naive_utc());
            prop_assert_eq!(got, expected, "{:?} after {}", text, cursor);
            let Some(next) = got else { break };
            prop_assert!(reference.matches(next));
            cursor = next;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn seconds_fields_and_extensions_are_refused(
        fields in (field(0), field(0), field(1), field(2), field(3), field(4)),
        ext in prop::sample::select(vec!["L", "5L", "15W", "LW", "1#2", "?", "MON#1", "L-3"]),
        at in 0usize..5,
    ) {
        let (s, m, h, dom, mon, dow) = fields;
        let six = format!("{s} {m} {h} {dom} {mon} {dow}");
        prop_assert!(CronExpr::parse(&six).is_err(), "{:?}", six);
        let mut five = [m, h, dom, mon, dow];
        five[at] = ext.to_string();
        let text = five.join(" ");
        prop_assert!(CronExpr::parse(&text).is_err(), "{:?}", text);
    }

    #[test]
    fn next_fire_times_strictly_increase_in_every_zone(
        text in prop_oneof![cron_text(), Just("30 2 * * *".to_string()), Just("0,30 1-3 * * *".to_string())],
        after in naive_instant(),
        tz in zone(),
    ) {
        let Ok(schedule) = text.parse::<Schedule>() else {
            return Ok(());
        };
        let mut t = Utc.from_utc_datetime(&after);
        for _ in 0..6 {
            let Some(next) = schedule.next_after(t, tz) else { break };
            prop_assert!(next > t, "{:?} in {}: {} after {}", text, tz, next, t);
            let prev = schedule.prev_at_or_before(next, tz);
            prop_assert!(prev.is_some_and(|p| p <= next), "{:?} in {}: prev of {} is {:?}", text, tz, next, prev);
            t = next;
        }
    }

    #[test]
    fn arbitrary_schedule_text_never_panics(text in any::<String>(), after in naive_instant()) {
        if let Ok(s) = text.parse::<Schedule>() {
            let _ = s.next_after(Utc.from_utc_datetime(&after), Tz::UTC);
            prop_assert_eq!(s.to_string().parse::<Schedule>().ok(), Some(s));
        }
    }
}

#[test]
fn reference_agrees_on_known_cases() {
    let r = reference("0 1 * * 1-5").unwrap();
    let sat = NaiveDate::from_ymd_opt(2025, 11, 29)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    assert_eq!(
        r.next(sat),
        Some(
            NaiveDate::from_ymd_opt(2025, 12, 1)
                .unwrap()
                .and_hms_opt(1, 0, 0)
                .unwrap()
        )
    );
    assert!(reference("0 0 * * 7").unwrap().sets[4][0]);
    assert!(reference("0 0 5/15 * *").is_some());
    assert!(reference("0 0 * * 0 0").is_none());
}

#[test]
fn regressions() {
    // Found by `accepted_cron_means_what_crontab_means` before the fixes:
    // a day field starting with `*` does not restrict the day (AND, as
    // crontab(5) runs it), and signs are not numbers.
    let tuesday_night = NaiveDate::from_ymd_opt(2002, 2, 12)
        .unwrap()
        .and_hms_opt(23, 59, 0)
        .unwrap();
    let next = Schedule::Cron(CronExpr::parse("* * */1 * */2").unwrap())
        .next_after(Utc.from_utc_datetime(&tuesday_night), Tz::UTC)
        .unwrap();
    assert_eq!(
        next.naive_utc(),
        NaiveDate::from_ymd_opt(2002, 2, 14)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
    );
    let odd_monday = Schedule::Cron(CronExpr::parse("0 0 */2 * 1").unwrap())
        .next_after(Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(), Tz::UTC)
        .unwrap();
    assert_eq!(
        odd_monday,
        Utc.with_ymd_and_hms(2025, 1, 13, 0, 0, 0).unwrap()
    );
    for text in ["0-0/1 * +3 * 0", "0 0 * * 1/+2", "+0 0 * * *"] {
        assert!(CronExpr::parse(text).is_err(), "{text}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn one_shot_schedules_display_and_parse_back(at in naive_instant(), form in 0usize..3) {
        let text = match form {
            0 => at.format("once %Y-%m-%dT%H:%M:%S").to_string(),
            1 => at.format("scheduled %Y-%m-%dT%H:%M").to_string(),
            _ => at.format("once %Y-%m-%d").to_string(),
        };
        let schedule: Schedule = text.parse().unwrap();
        prop_assert_eq!(schedule.to_string().parse::<Schedule>().unwrap(), schedule, "{}", text);
    }
}

#[test]
fn one_shot_seconds_survive_display() {
    // Lost before the fix: `Display` (and so `Serialize`) wrote minutes
    // only, so a PATCH that rebuilt the entry moved the run.
    let s: Schedule = "once 2030-01-01T03:00:30".parse().unwrap();
    assert_eq!(s.to_string().parse::<Schedule>().unwrap(), s);
}
