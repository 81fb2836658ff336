//! `Manifest::from_json` on arbitrary bytes and the key-layout parsers on
//! arbitrary keys: never a panic; whatever parses serialises and parses
//! back to the same manifest.
#![no_main]

use backup_core::{key::Key, manifest::Layout, manifest::Manifest, manifest::is_backup_id};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key =
        Key::new("t/s/2025/11/manual-pgdump-db-20251126T030000Z-0badf00d.manifest.json").unwrap();
    if let Ok(m) = Manifest::from_json(&key, data) {
        assert!(Key::new(m.artifact.as_str()).is_ok());
        let again = Manifest::from_json(&key, &m.to_json()).expect("a parsed manifest re-parses");
        assert_eq!(again, m);
        let _ = m.manifest_key();
        let _ = m.duration();
        let _ = m.bytes_stored();
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(l) = Layout::from_manifest_key(s) {
            assert!(is_backup_id(l.id()));
            assert_eq!(
                l.manifest_key().map(|k| k.to_string()).ok().as_deref(),
                Key::new(s).ok().as_ref().map(Key::as_str)
            );
        }
        if let Some(l) = Layout::from_artifact(s) {
            assert!(is_backup_id(l.id()));
            assert!(s.starts_with(l.base()), "{s:?} vs {}", l.base());
        }
    }
});
