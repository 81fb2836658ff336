//! Property tests of key and id validation (fuzz target: `key`).
//!
//! Whatever `Key::new` or `validate_id` accepts is a relative path with no
//! empty, `.` or `..` segment, no backslash and no control character, and
//! pushing its segments onto a root (what the fs store does) stays below
//! the root, one normal component per segment.

use backup_core::fuzzing::check_key;
use backup_core::{key::Key, key::MAX_KEY_LEN, key::validate_id};
use proptest::prelude::*;

/// Path-like strings built from the pieces traversal attempts use.
fn pathish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("..".to_string()),
        Just(".".to_string()),
        Just(String::new()),
        Just("\\".to_string()),
        Just("C:".to_string()),
        Just("\0".to_string()),
        Just("\n".to_string()),
        Just("\u{7f}".to_string()),
        Just("\u{85}".to_string()),
        Just("ñandú".to_string()),
        Just("...".to_string()),
        Just(".hidden".to_string()),
        "[a-zA-Z0-9_.-]{1,8}",
        any::<char>().prop_map(String::from),
    ];
    (any::<bool>(), prop::collection::vec(piece, 1..8)).prop_map(|(absolute, pieces)| {
        let joined = pieces.join("/");
        if absolute {
            format!("/{joined}")
        } else {
            joined
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn accepted_keys_stay_under_the_root(s in prop_oneof![pathish(), any::<String>()]) {
        if let Ok(key) = Key::new(s.as_str()) {
            check_key(&s, &key);
        }
    }

    #[test]
    fn accepted_ids_are_single_safe_segments(s in prop_oneof![pathish(), "[a-zA-Z0-9_./-]{0,12}", any::<String>()]) {
        if validate_id(&s).is_ok() {
            prop_assert!(!s.contains('/') && !s.starts_with('.') && s.len() <= 128, "{:?}", s);
            let key = Key::new(s.as_str()).expect("an id is a valid one-segment key");
            check_key(&s, &key);
        }
    }

    #[test]
    fn joins_validate_what_they_append(base in "[a-z]{1,4}(/[a-z]{1,4}){0,2}", rest in pathish()) {
        let base = Key::new(base).unwrap();
        if let Ok(joined) = base.join(&rest) {
            check_key(joined.as_str(), &joined);
            prop_assert!(joined.starts_with(&base));
        }
    }
}

#[test]
fn overlong_keys_and_ids_are_refused() {
    assert!(Key::new("a".repeat(MAX_KEY_LEN)).is_ok());
    assert!(Key::new("a".repeat(MAX_KEY_LEN + 1)).is_err());
    // 1024 bytes of 2-byte characters plus one more byte.
    assert!(Key::new(format!("{}a", "é".repeat(MAX_KEY_LEN / 2))).is_err());
    assert!(validate_id(&"a".repeat(128)).is_ok());
    assert!(validate_id(&"a".repeat(129)).is_err());
}
