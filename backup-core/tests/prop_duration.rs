//! Property tests of `parse_duration` (fuzz target: `duration`): a
//! duration is its digits times its unit, exactly, or an error — values
//! whose seconds overflow, or that chrono cannot represent, are refused,
//! never wrapped; and formatting a parsed duration parses back to it.

use std::time::Duration;

use backup_core::duration::parse_duration;
use backup_core::fuzzing::format_duration;
use proptest::prelude::*;

const UNITS: [(&str, u128); 6] = [
    ("s", 1),
    ("m", 60),
    ("h", 3600),
    ("d", 86_400),
    ("w", 7 * 86_400),
    ("y", 365 * 86_400),
];

/// The longest duration accepted: `backup_core::duration::MAX_DURATION` (1000 years,
/// well within chrono's `TimeDelta`).
const CHRONO_MAX_SECS: u128 = backup_core::duration::MAX_DURATION.as_secs() as u128;

fn check(text: &str) {
    let t = text.trim();
    let unit = UNITS.iter().find(|(u, _)| {
        t.ends_with(u) && t.len() > 1 && t[..t.len() - 1].bytes().all(|b| b.is_ascii_digit())
    });
    let expected = unit.and_then(|(u, per)| {
        let n: u128 = t[..t.len() - u.len()].parse().ok()?;
        n.checked_mul(*per).filter(|s| *s <= CHRONO_MAX_SECS)
    });
    match parse_duration(text) {
        Ok(d) => {
            assert_eq!(
                Some(u128::from(d.as_secs())),
                expected,
                "{text:?} gave {d:?}"
            );
            assert_eq!(d.subsec_nanos(), 0);
            assert!(chrono::Duration::from_std(d).is_ok(), "{text:?}");
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d, "{text:?}");
        }
        Err(e) => {
            assert_eq!(expected, None, "{text:?} refused: {e}");
            assert!(!e.to_string().contains('\n'));
        }
    }
}

fn near_limits() -> impl Strategy<Value = u64> {
    let limits = [
        u64::MAX,
        i64::MAX as u64,
        (i64::MAX / 1000) as u64,
        u64::MAX / 60,
        u64::MAX / 3600,
        u64::MAX / 86_400,
        u64::MAX / (7 * 86_400),
        u64::MAX / (365 * 86_400),
        (i64::MAX / 1000) as u64 / (365 * 86_400),
        (i64::MAX / 1000) as u64 / 86_400,
    ];
    (prop::sample::select(limits.to_vec()), -3i64..=3).prop_map(|(l, d)| l.saturating_add_signed(d))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn values_are_exact_or_refused(
        n in prop_oneof![any::<u64>(), near_limits(), 0u64..10_000],
        unit in prop::sample::select(vec!["s", "m", "h", "d", "w", "y", "", "ms", "S", "x", " d", "d "]),
        pad in prop::sample::select(vec!["", " ", "0", "+", "-", "\t"]),
    ) {
        check(&format!("{pad}{n}{unit}"));
    }

    #[test]
    fn arbitrary_text_never_panics(text in prop_oneof![any::<String>(), "[0-9]{1,25}[smhdwy]"]) {
        check(&text);
    }

    #[test]
    fn formatted_durations_parse_back(secs in prop_oneof![0u64..10_000_000, 0u64..=backup_core::duration::MAX_DURATION.as_secs()]) {
        let d = Duration::from_secs(secs);
        prop_assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
    }
}

#[test]
fn regressions() {
    // Before the fix these overflowed `n * unit`: a panic in debug builds,
    // a wrapped (short) duration in release builds.
    for text in [
        "18446744073709551615y",
        "30500568904943y",
        "3074457345618258603m",
    ] {
        assert!(parse_duration(text).is_err(), "{text}");
    }
    let max = backup_core::duration::MAX_DURATION.as_secs();
    assert_eq!(parse_duration(&format!("{max}s")).unwrap().as_secs(), max);
    assert!(parse_duration(&format!("{}s", max + 1)).is_err());
    assert!(parse_duration("9223372036854775s").is_err());
}
