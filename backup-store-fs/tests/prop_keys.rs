//! Property test of the fs store's key-to-path mapping (fuzz target `key`
//! checks the same mapping without a disk): any key `Key::new` accepts is
//! either refused by the store (names starting with `.` are its own) or
//! written to exactly one file below the root, at the path its segments
//! name, listed back under the same key, and removed without a trace.

use std::path::{Path, PathBuf};

use backup_core::{Error, Store, key::Key, store::PutOptions, store::StoreExt};
use backup_store_fs::FsStore;
use bytes::Bytes;
use futures::StreamExt;
use proptest::prelude::*;

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            assert!(
                !kind.is_symlink(),
                "the store made a link: {:?}",
                entry.path()
            );
            if kind.is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_-]{1,10}",
        "[a-z]{1,4}\\.[a-z.]{1,6}",
        Just("...".to_string()),
        Just(".hidden".to_string()),
        Just("..a".to_string()),
        Just("a..".to_string()),
        Just("C:".to_string()),
        Just("ñandú ü".to_string()),
        Just("with space".to_string()),
        "\\PC{1,6}",
    ]
}

fn key_text() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 1..6).prop_map(|s| s.join("/"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn keys_map_to_one_file_below_the_root(text in key_text()) {
        let Ok(key) = Key::new(text.as_str()) else {
            return Ok(());
        };
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let store = FsStore::new(&root).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let body = Bytes::from(format!("object {text}"));
            let put = store.put(&key, body.clone(), PutOptions::default()).await;
            if key.segments().any(|s| s.starts_with('.')) {
                assert!(matches!(put, Err(Error::InvalidKey { .. })), "{text:?}: {put:?}");
                assert!(files_under(&root).is_empty(), "{text:?} left a file");
                return;
            }
            put.unwrap_or_else(|e| panic!("{text:?}: {e}"));
            let files = files_under(&root);
            assert_eq!(files.len(), 1, "{text:?}: {files:?}");
            let file = files[0].canonicalize().unwrap();
            assert!(file.starts_with(&root), "{text:?} landed at {}", file.display());
            let expected: PathBuf = key.segments().fold(root.clone(), |p, s| p.join(s));
            assert_eq!(file, expected, "{text:?}");
            let listed: Vec<Key> = store
                .list(None)
                .map(|m| m.unwrap().key)
                .collect()
                .await;
            assert_eq!(listed, vec![key.clone()]);
            assert_eq!(store.get_bytes(&key).await.unwrap(), body);
            store.delete(&key).await.unwrap();
            assert!(files_under(&root).is_empty(), "{text:?} left a file after delete");
        });
    }
}
