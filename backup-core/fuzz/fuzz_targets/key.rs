//! `Key::new`, `Key::join` and `validate_id` on arbitrary strings: whatever
//! is accepted is a safe relative path that stays under a store root.
#![no_main]

use std::path::{Component, Path, PathBuf};

use backup_core::{key::Key, key::MAX_KEY_LEN, key::validate_id};
use libfuzzer_sys::fuzz_target;

fn check_key(s: &str, key: &Key) {
    assert_eq!(key.as_str(), s);
    assert!(!s.is_empty() && s.len() <= MAX_KEY_LEN, "{s:?}");
    assert!(!s.starts_with('/') && !s.contains('\\'), "{s:?}");
    assert!(!s.chars().any(char::is_control), "{s:?}");
    let root = Path::new("/srv/store-root");
    // The fs store maps a key by pushing its segments onto the root.
    let mut path = PathBuf::from(root);
    for segment in key.segments() {
        assert!(
            !segment.is_empty() && segment != "." && segment != "..",
            "{s:?}"
        );
        path.push(segment);
    }
    assert!(
        path.starts_with(root),
        "{s:?} escapes to {}",
        path.display()
    );
    let below: Vec<Component<'_>> = path.strip_prefix(root).unwrap().components().collect();
    assert_eq!(below.len(), key.segments().count(), "{s:?}");
    assert!(
        below.iter().all(|c| matches!(c, Component::Normal(_))),
        "{s:?}"
    );
    if let Some(parent) = key.parent() {
        assert_eq!(parent.join(key.file_name()).unwrap(), *key);
        assert!(key.starts_with(&parent));
    }
}

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
