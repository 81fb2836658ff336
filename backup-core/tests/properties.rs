//! The property suite (`backup_core::testing::backup_properties`) against
//! `InMemoryStore` under random faults: random sequences of full,
//! incremental and encrypted backups, restores, verifies, deletes, sweeps,
//! garbage collections and prunes; after every step every listed backup
//! verifies and restores, and after a final sweep and GC nothing is
//! orphaned. The store crates run it against their real backends.
//!
//! More cases: `BACKUP_PROPTEST_CASES=5000 cargo test -p backup-core --release --test properties -- --nocapture`;
//! one case again: `BACKUP_PROPTEST_SEED=<seed> BACKUP_PROPTEST_CASES=1`; more
//! faults: `BACKUP_PROPTEST_FAULT_RATE=0.2`.

use std::sync::Arc;

use backup_core::memory::InMemoryStore;
use backup_core::testing::{PropertyOptions, backup_properties};

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_operations_under_faults_keep_every_promise() {
    let opts = PropertyOptions::default()
        .cases(env("BACKUP_PROPTEST_CASES").unwrap_or(200), 10)
        .seed(env("BACKUP_PROPTEST_SEED").unwrap_or(1))
        .fault_rate(env("BACKUP_PROPTEST_FAULT_RATE").unwrap_or(0.03));
    let report = backup_properties(Arc::new(InMemoryStore::new()), opts).await;
    println!("{report:?}");
    assert!(
        report.backups_ok > 0 && report.backups_failed > 0 && report.faults > 0,
        "{report:?}"
    );
}
