//! `FsStore` against a real temporary directory: the shared conformance
//! suite, then what only a filesystem store has to get right.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use backup_core::testing::{Capabilities, store_conformance};
use backup_core::{Error, Store, key::Key, store::PutOptions, store::StoreExt};
use backup_store_fs::FsStore;
use bytes::Bytes;

fn store() -> (tempfile::TempDir, FsStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::new(dir.path().join("root")).unwrap();
    (dir, store)
}

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

/// Every file (not directory) below `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                walk(base, &path, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

#[tokio::test]
async fn passes_the_conformance_suite() {
    let (_dir, store) = store();
    store_conformance(&store, Capabilities::default()).await;
    assert!(
        is_empty_dir(store.root()),
        "suite left files or directories behind: {:?}",
        files(store.root())
    );
}

#[tokio::test]
async fn passes_the_conformance_suite_as_dyn_store() {
    let (_dir, store) = store();
    let shared: std::sync::Arc<dyn Store> = std::sync::Arc::new(store);
    store_conformance(&shared, Capabilities::default().large_object(3 << 20)).await;
}

#[tokio::test]
async fn new_creates_the_root_and_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a/b/c");
    let store = FsStore::new(&root).unwrap();
    assert!(root.is_dir());
    let canonical = std::fs::canonicalize(&root).unwrap();
    assert_eq!(store.root(), canonical);
    assert_eq!(store.to_string(), format!("fs:{}", canonical.display()));
    assert!(format!("{store:?}").contains(&*canonical.to_string_lossy()));
    // Opening an existing root is fine too.
    FsStore::new(&root).unwrap();
    // A file is not a root.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert!(FsStore::new(&file).is_err());
}

#[tokio::test]
async fn objects_are_plain_files_under_the_root() {
    let (_dir, store) = store();
    store
        .put(
            &key("t/db/x.json"),
            Bytes::from_static(b"{}"),
            PutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(files(store.root()), ["t/db/x.json"]);
    assert_eq!(
        std::fs::read(store.root().join("t/db/x.json")).unwrap(),
        b"{}"
    );
}

#[tokio::test]
async fn temp_files_are_never_listed() {
    let (_dir, store) = store();
    store
        .put(&key("t/a"), Bytes::from_static(b"a"), PutOptions::default())
        .await
        .unwrap();
    // An upload in progress has a temporary file on disk...
    let mut upload = store.put_stream(&key("t/b")).await.unwrap();
    upload.write(Bytes::from(vec![1u8; 3 << 20])).await.unwrap();
    let on_disk = files(store.root());
    assert_eq!(on_disk.len(), 2, "{on_disk:?}");
    assert!(
        on_disk.iter().any(|f| f.starts_with("t/.b.tmp-")),
        "{on_disk:?}"
    );
    // ... plus leftovers of a crash and other hidden things.
    std::fs::write(store.root().join("t/.c.tmp-0123456789abcdef"), b"junk").unwrap();
    std::fs::create_dir_all(store.root().join(".hidden-dir")).unwrap();
    std::fs::write(store.root().join(".hidden-dir/x"), b"x").unwrap();
    for prefix in [None, Some(key("t"))] {
        let listed: Vec<String> = store
            .list_all(prefix.as_ref())
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key.to_string())
            .collect();
        assert_eq!(listed, ["t/a"], "prefix {prefix:?}");
    }
    upload.complete().await.unwrap();
    assert_eq!(store.list_all(None).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_dropped_upload_leaves_no_temp_file() {
    let (_dir, store) = store();
    let mut upload = store.put_stream(&key("x/y/z.bin")).await.unwrap();
    upload.write(Bytes::from(vec![1u8; 100])).await.unwrap();
    upload.write(Bytes::from(vec![2u8; 2 << 20])).await.unwrap();
    assert_eq!(files(store.root()).len(), 1);
    drop(upload);
    assert!(
        is_empty_dir(store.root()),
        "dropping removed the file and the directories made for it: {:?}",
        files(store.root())
    );
}

#[tokio::test]
async fn a_failed_create_leaves_no_temp_file() {
    let (_dir, store) = store();
    let k = key("lease/lock");
    store
        .put(&k, Bytes::from_static(b"one"), PutOptions::create())
        .await
        .unwrap();
    let err = store
        .put(&k, Bytes::from_static(b"two"), PutOptions::create())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    assert_eq!(files(store.root()), ["lease/lock"]);
}

#[tokio::test]
async fn racing_creators_on_a_fresh_directory() {
    // Many creators, each on its own new directory chain, plus deletes
    // pruning directories underneath them: every put still lands.
    let (_dir, store) = store();
    let keys: Vec<Key> = (0..32).map(|i| key(&format!("r/{}/k", i % 4))).collect();
    let puts = keys.iter().enumerate().map(|(i, k)| {
        let store = &store;
        async move {
            let r = store
                .put(k, Bytes::from(vec![i as u8]), PutOptions::create())
                .await;
            if r.is_ok() && i % 3 == 0 {
                store.delete(k).await.unwrap();
            }
            r
        }
    });
    let results = futures::future::join_all(puts).await;
    for r in &results {
        assert!(
            matches!(r, Ok(_) | Err(Error::AlreadyExists { .. })),
            "{r:?}"
        );
    }
}

#[tokio::test]
async fn delete_prunes_empty_directories_but_never_the_root() {
    let (_dir, store) = store();
    let deep = key("a/b/c/d");
    let sibling = key("a/x");
    for k in [&deep, &sibling] {
        store
            .put(k, Bytes::from_static(b"."), PutOptions::default())
            .await
            .unwrap();
    }
    store.delete(&deep).await.unwrap();
    assert!(!store.root().join("a/b").exists(), "empty chain pruned");
    assert!(store.root().join("a").is_dir(), "non-empty parent kept");
    store.delete(&sibling).await.unwrap();
    assert!(store.root().is_dir(), "root kept");
    assert!(is_empty_dir(store.root()));
    // Deleting a "directory" key is deleting a missing object.
    store
        .put(&deep, Bytes::from_static(b"."), PutOptions::default())
        .await
        .unwrap();
    store.delete(&key("a/b")).await.unwrap();
    assert!(store.exists(&deep).await.unwrap());
    assert!(matches!(
        store.head(&key("a/b")).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.get(&key("a/b/c/d/e")).await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn remove_stale_temp_files_removes_only_old_temp_files() {
    let (_dir, store) = store();
    store
        .put(
            &key("t/obj"),
            Bytes::from_static(b"o"),
            PutOptions::default(),
        )
        .await
        .unwrap();
    let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
    let age = |path: PathBuf| {
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.set_modified(two_hours_ago).unwrap();
    };
    // Crash leftovers, one alone in its directory.
    std::fs::write(store.root().join("t/.obj.tmp-00000000000000aa"), b"x").unwrap();
    age(store.root().join("t/.obj.tmp-00000000000000aa"));
    std::fs::create_dir_all(store.root().join("u/v")).unwrap();
    std::fs::write(store.root().join("u/v/.w.tmp-00000000000000bb"), b"x").unwrap();
    age(store.root().join("u/v/.w.tmp-00000000000000bb"));
    // Old, but not a temporary file of ours.
    std::fs::write(store.root().join("t/.keep"), b"x").unwrap();
    age(store.root().join("t/.keep"));
    // A live upload's file is fresh.
    let mut upload = store.put_stream(&key("t/live")).await.unwrap();
    upload.write(Bytes::from_static(b"live")).await.unwrap();

    let removed = store
        .remove_stale_temp_files(Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(removed, 2);
    let left = files(store.root());
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(left.contains(&"t/.keep".to_string()));
    assert!(left.contains(&"t/obj".to_string()));
    assert!(left.iter().any(|f| f.starts_with("t/.live.tmp-")));
    assert!(
        !store.root().join("u").exists(),
        "emptied directories pruned"
    );

    upload.complete().await.unwrap();
    assert_eq!(&store.get_bytes(&key("t/live")).await.unwrap()[..], b"live");
    assert_eq!(
        store.remove_stale_temp_files(Duration::ZERO).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn reserved_dot_names_are_rejected() {
    let (_dir, store) = store();
    for k in [".hidden", "a/.b", "a/.b.tmp-0123456789abcdef"] {
        let k = key(k);
        let err = store
            .put(&k, Bytes::from_static(b"x"), PutOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidKey { .. }), "{err:?}");
        assert!(matches!(
            store.put_stream(&k).await,
            Err(Error::InvalidKey { .. })
        ));
        assert!(matches!(store.head(&k).await, Err(Error::NotFound { .. })));
        store.delete(&k).await.unwrap();
    }
    // A temporary file is never reachable through its name.
    let mut upload = store.put_stream(&key("a/b")).await.unwrap();
    upload.write(Bytes::from_static(b"secret")).await.unwrap();
    let temp = files(store.root()).pop().unwrap();
    assert!(matches!(
        store.get(&key(&temp)).await,
        Err(Error::NotFound { .. })
    ));
    store.delete(&key(&temp)).await.unwrap();
    assert_eq!(files(store.root()), [temp]);
    upload.abort().await.unwrap();
}

#[tokio::test]
async fn an_object_cannot_also_be_a_directory() {
    let (_dir, store) = store();
    store
        .put(&key("a"), Bytes::from_static(b"a"), PutOptions::default())
        .await
        .unwrap();
    let err = store
        .put(&key("a/b"), Bytes::from_static(b"b"), PutOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Store { .. }), "{err:?}");
    assert!(store.list_all(Some(&key("a"))).await.unwrap().is_empty());
    assert_eq!(&store.get_bytes(&key("a")).await.unwrap()[..], b"a");
}

#[cfg(unix)]
#[tokio::test]
async fn paths_never_escape_the_root() {
    let (dir, store) = store();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"secret").unwrap();
    // Links planted inside the root, to a directory and to a file outside.
    std::os::unix::fs::symlink(&outside, store.root().join("link")).unwrap();
    std::fs::create_dir(store.root().join("d")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), store.root().join("d/file")).unwrap();

    for k in ["link/secret", "d/file"] {
        let k = key(k);
        assert!(store.get(&k).await.is_err(), "get {k} through a link");
        assert!(store.head(&k).await.is_err(), "head {k} through a link");
        assert!(store.delete(&k).await.is_err(), "delete {k} through a link");
    }
    let put = store
        .put(
            &key("link/new"),
            Bytes::from_static(b"x"),
            PutOptions::default(),
        )
        .await;
    assert!(put.is_err(), "put through a link: {put:?}");
    assert!(store.put_stream(&key("link/deeper/new")).await.is_err());
    assert!(store.list_all(Some(&key("link"))).await.is_err());
    let all = store.list_all(None).await.unwrap();
    assert!(all.is_empty(), "listing followed a link: {all:?}");
    // Nothing outside was touched.
    assert_eq!(files(&outside), ["secret"]);
    assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"secret");
    // And keys that try to climb out never get built.
    for bad in ["../outside/secret", "/etc/passwd", "a/../../x"] {
        assert!(Key::new(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn large_uploads_round_trip_in_big_chunks() {
    let (_dir, store) = store();
    let data = backup_core::testing::pattern(9 << 20, 11);
    let k = key("big/blob");
    let mut upload = store.put_stream(&k).await.unwrap();
    for chunk in data.chunks(1 << 20) {
        upload.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    assert_eq!(upload.complete().await.unwrap().size, data.len() as u64);
    let got = store.get(&k).await.unwrap();
    let mut read = Vec::new();
    let mut chunks = 0;
    let mut stream = got.stream;
    use futures::StreamExt;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert!(chunk.len() <= 1 << 20);
        read.extend_from_slice(&chunk);
        chunks += 1;
    }
    assert!(read == data);
    assert!(chunks >= 9, "streamed in chunks, not one buffer");
}
