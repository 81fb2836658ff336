//! What crashed backups leave in a directory store, and how `sweep` and
//! `check` see and remove it (issue #10, finding 2).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backup_core::{Engine, Store};
use backup_store_fs::FsStore;
use chrono::Utc;

fn age(path: &Path, by: Duration) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - by).unwrap();
}

fn setup() -> (tempfile::TempDir, Arc<FsStore>, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FsStore::new(dir.path().join("root")).unwrap());
    let engine = Engine::new(Arc::clone(&store) as Arc<dyn Store>);
    (dir, store, engine)
}

/// A killed backup's hidden temporary file: 1 MiB, two hours old.
fn killed_upload(store: &FsStore) -> std::path::PathBuf {
    let dir = store.root().join("default/db/2025/01");
    std::fs::create_dir_all(&dir).unwrap();
    let path =
        dir.join(".manual-pgdump-db-20250101T000000Z-0000abcd.dump.zst.tmp-00000000000000aa");
    std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
    age(&path, Duration::from_secs(2 * 3600));
    path
}

#[tokio::test]
async fn sweep_removes_temporary_files_of_killed_backups() {
    let (_dir, store, engine) = setup();
    let temp = killed_upload(&store);
    engine
        .catalog()
        .sweep(Duration::from_secs(3600), Utc::now())
        .await
        .unwrap();
    assert!(
        !temp.exists(),
        "the killed upload's temporary file is still there"
    );
}

/// Everything a crashed incremental backup can leave: a pack whose index
/// was never written, its in-flight markers (the chunk store's and the
/// catalog's), a chunk list without manifest, and the temporary file of
/// the upload it was killed in.
struct Crashed {
    pack: std::path::PathBuf,
    chunk_marker: std::path::PathBuf,
    marker: std::path::PathBuf,
    chunk_list: std::path::PathBuf,
    temp: std::path::PathBuf,
}

fn crashed_incremental(store: &FsStore, age_by: Duration) -> Crashed {
    let root = store.root();
    let id = "20250101T000000Z-0000beef";
    let file = |rel: &str, bytes: usize| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, vec![1u8; bytes]).unwrap();
        age(&path, age_by);
        path
    };
    Crashed {
        pack: file(
            "default/_chunks/packs/ab/ab0123456789abcdef0123456789abcd.pack",
            64 * 1024,
        ),
        chunk_marker: file(&format!("default/_chunks/inflight/{id}"), 10),
        marker: file(&format!("default/_inflight/{id}"), 10),
        chunk_list: file(
            &format!("default/db/2025/01/manual-pgdump-db-{id}.dump.chunks"),
            72,
        ),
        temp: file(
            &format!("default/db/2025/01/.manual-pgdump-db-{id}.dump.chunks.tmp-00000000000000bb"),
            4096,
        ),
    }
}

#[tokio::test]
async fn sweep_and_check_see_every_leftover_of_a_crashed_incremental_backup() {
    let (_dir, store, engine) = setup();
    let killed = killed_upload(&store);
    let c = crashed_incremental(&store, Duration::from_secs(2 * 24 * 3600));

    let check = engine.check(None).await.unwrap();
    assert!(check.is_ok(), "{check:?}");
    assert!(check.has_garbage());
    assert_eq!(check.orphaned_packs.len(), 1, "{check:?}");
    assert_eq!(check.orphaned_artifacts.len(), 1, "{check:?}");
    assert_eq!(check.stale_markers.len(), 2, "{check:?}");
    assert_eq!(check.temporary_objects.len(), 2, "{check:?}");
    assert!(check.in_progress.is_empty());

    let report = engine
        .sweep(Duration::from_secs(3600), Utc::now())
        .await
        .unwrap();
    assert_eq!(report.removed.len(), 1, "{report:?}");
    assert_eq!(report.stale_markers.len(), 1, "{report:?}");
    assert_eq!(report.temporary_removed.len(), 2, "{report:?}");
    assert_eq!(report.chunk_stores.len(), 1, "{report:?}");
    let chunks = &report.chunk_stores[0];
    assert_eq!(chunks.orphaned_packs.len(), 1, "{report:?}");
    assert_eq!(chunks.expired_markers.len(), 1, "{report:?}");
    assert_eq!(
        report.freed_bytes,
        (1 << 20) + 64 * 1024 + 72 + 4096,
        "{report:?}"
    );
    for gone in [
        &killed,
        &c.pack,
        &c.chunk_marker,
        &c.marker,
        &c.chunk_list,
        &c.temp,
    ] {
        assert!(!gone.exists(), "{} is still there", gone.display());
    }
    let check = engine.check(None).await.unwrap();
    assert!(!check.has_garbage(), "{check:?}");
}

/// With no grace at all, a sweep still leaves what a running backup may be
/// writing: temporary files and markers younger than an hour, and a fresh
/// marker's artifact.
#[tokio::test]
async fn a_zero_grace_sweep_spares_what_may_still_be_written() {
    let (_dir, store, engine) = setup();
    let c = crashed_incremental(&store, Duration::from_secs(60));
    let report = engine.sweep(Duration::ZERO, Utc::now()).await.unwrap();
    assert!(report.removed.is_empty(), "{report:?}");
    assert_eq!(report.in_progress.len(), 1, "{report:?}");
    assert!(report.stale_markers.is_empty(), "{report:?}");
    assert!(report.temporary_removed.is_empty(), "{report:?}");
    assert_eq!(report.temporary_too_recent.len(), 1, "{report:?}");
    // The chunk store's own marker is fresh too: the pack may get its
    // index yet, so its sweep backs off.
    let chunks = &report.chunk_stores[0];
    assert!(chunks.orphaned_packs.is_empty(), "{report:?}");
    assert!(chunks.skipped.is_some(), "{report:?}");
    for kept in [&c.pack, &c.chunk_marker, &c.marker, &c.chunk_list, &c.temp] {
        assert!(kept.exists(), "{} was removed", kept.display());
    }
    let check = engine.check(None).await.unwrap();
    assert_eq!(check.in_progress.len(), 1, "{check:?}");
    assert!(check.orphaned_artifacts.is_empty(), "{check:?}");
}
