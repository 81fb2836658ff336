//! `Key::new`, `Key::join` and `validate_id` on arbitrary strings: whatever
//! is accepted is a safe relative path that stays under a store root.
#![no_main]

use backup_core::fuzzing::check_key;
use backup_core::{key::Key, key::validate_id};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(key) = Key::new(s) {
        check_key(s, &key);
    }
    if validate_id(s).is_ok() {
        assert!(!s.contains('/') && !s.starts_with('.'), "{s:?}");
        let key = Key::new(s).expect("an id is a valid one-segment key");
        check_key(s, &key);
    }
    // Joining: the first line is a valid base, the rest is appended.
    if let Some((base, rest)) = s.split_once('\n')
        && let Ok(base) = Key::new(base)
        && let Ok(joined) = base.join(rest)
    {
        check_key(joined.as_str(), &joined);
        assert!(joined.starts_with(&base));
    }
});
