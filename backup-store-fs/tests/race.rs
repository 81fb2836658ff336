//! The race suite against `FsStore`: sweep, prune and gc looping with no
//! grace against concurrent full and incremental backups, restores,
//! verifies and deletes (see `backup_core::testing::race_cleanup_against_backups`).
//!
//! A longer run: `BACKUP_RACE_BACKUPS=400 cargo test -p backup-store-fs --release --test race -- --nocapture`.

use std::sync::Arc;

use backup_core::testing::{RaceOptions, race_cleanup_against_backups};
use backup_store_fs::FsStore;

fn backups() -> usize {
    std::env::var("BACKUP_RACE_BACKUPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(40)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cleanups_racing_backups_never_lose_committed_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FsStore::new(dir.path().join("root")).unwrap());
    let report =
        race_cleanup_against_backups(store, RaceOptions::default().backups(backups(), 4).seed(7))
            .await;
    println!("{report:?}");
    assert!(report.committed > 0, "{report:?}");
}
