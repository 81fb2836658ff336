//! `parse_duration` on arbitrary text: never a panic or a wrapped value;
//! what it accepts fits chrono's range and formats back to itself.
#![no_main]

use backup_core::fuzzing::format_duration;
use backup_core::duration::parse_duration;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = parse_duration(s) {
        assert!(
            chrono::Duration::from_std(d).is_ok(),
            "{s:?} -> {d:?} exceeds chrono's range"
        );
        // The digits and the unit give the value exactly.
        let t = s.trim();
        let (n, unit) = t.split_at(t.len() - 1);
        let per = match unit {
            "s" => 1u128,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            "y" => 365 * 86_400,
            other => panic!("{s:?} accepted with unit {other:?}"),
        };
        let n: u128 = n.parse().expect("digits");
        assert_eq!(u128::from(d.as_secs()), n * per, "{s:?}");
        assert_eq!(parse_duration(&format_duration(d)).ok(), Some(d), "{s:?}");
    }
});
