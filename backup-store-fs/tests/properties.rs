//! The property suite (`backup_core::testing::backup_properties`) against
//! `FsStore` under random faults: random sequences of full, incremental and
//! encrypted backups, restores, verifies, deletes, sweeps, garbage
//! collections and prunes; after every step every listed backup restores,
//! and after a final sweep and GC nothing is orphaned (no temporary file
//! either).
//!
//! More cases: `BACKUP_PROPTEST_CASES=2000 cargo test -p backup-store-fs --release --test properties -- --nocapture`;
//! one case again: `BACKUP_PROPTEST_SEED=<seed> BACKUP_PROPTEST_CASES=1`; more
//! faults: `BACKUP_PROPTEST_FAULT_RATE=0.2`.

use std::sync::Arc;

use backup_core::testing::{PropertyOptions, backup_properties};
use backup_store_fs::FsStore;

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_operations_under_faults_keep_every_promise() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FsStore::new(dir.path().join("root")).unwrap());
    let opts = PropertyOptions::default()
        .cases(env("BACKUP_PROPTEST_CASES").unwrap_or(60), 10)
        .seed(env("BACKUP_PROPTEST_SEED").unwrap_or(1_000_001))
        .fault_rate(env("BACKUP_PROPTEST_FAULT_RATE").unwrap_or(0.03));
    let report = backup_properties(store, opts).await;
    println!("{report:?}");
    assert!(report.backups_ok > 0 && report.faults > 0, "{report:?}");
    let left: Vec<_> = std::fs::read_dir(dir.path().join("root"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "cases leave nothing behind: {left:?}");
}
