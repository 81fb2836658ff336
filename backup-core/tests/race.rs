//! The race suite against `InMemoryStore` (the store crates run it against
//! their real backends): sweep, prune and gc looping with no grace against
//! concurrent full and incremental backups, restores, verifies and deletes.

use std::sync::Arc;

use backup_core::memory::InMemoryStore;
use backup_core::testing::{RaceOptions, race_cleanup_against_backups};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cleanups_racing_backups_never_lose_committed_data() {
    let report = race_cleanup_against_backups(
        Arc::new(InMemoryStore::new()),
        RaceOptions::default().backups(40, 4).seed(3),
    )
    .await;
    println!("{report:?}");
    assert!(report.committed > 0, "{report:?}");
}
