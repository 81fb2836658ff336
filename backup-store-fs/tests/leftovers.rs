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
    let path = dir.join(".manual-pgdump-db-20250101T000000Z-0000abcd.dump.zst.tmp-00000000000000aa");
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
    assert!(!temp.exists(), "the killed upload's temporary file is still there");
}
