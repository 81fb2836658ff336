//! The race suite against `S3Store` on a real S3-compatible server (a local
//! `s3s-fs`, or the server named by `BACKUP_TEST_S3_ENDPOINT`): sweep, prune
//! and gc looping with no grace against concurrent full and incremental
//! backups, restores, verifies and deletes (see
//! `backup_core::testing::race_cleanup_against_backups`).
//!
//! A longer run: `BACKUP_RACE_BACKUPS=200 cargo test -p backup-store-s3 --release --test race -- --nocapture`.

use std::sync::Arc;

use backup_core::Store;
use backup_core::testing::{RaceOptions, SerializedCreates, race_cleanup_against_backups};
use backup_store_s3::S3TestServer;

fn backups() -> usize {
    std::env::var("BACKUP_RACE_BACKUPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(24)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cleanups_racing_backups_never_lose_committed_data() {
    let server = S3TestServer::from_env_or_start()
        .unwrap_or_else(|e| panic!("no S3 server for the tests: {e}"));
    let s3 = server
        .store_builder()
        .prefix(format!("race-{:08x}", rand::random::<u32>()))
        .build()
        .unwrap();
    // `s3s-fs` checks `If-None-Match: *` and writes without a lock, so
    // racing create-only puts can all win there (AWS, MinIO and R2 decide
    // atomically); the garbage collector's marker needs them atomic.
    let store: Arc<dyn Store> = if server.is_local() {
        Arc::new(SerializedCreates::new(Arc::new(s3)))
    } else {
        Arc::new(s3)
    };
    let report =
        race_cleanup_against_backups(store, RaceOptions::default().backups(backups(), 4).seed(11))
            .await;
    println!("{report:?}");
    assert!(report.committed > 0, "{report:?}");
}
