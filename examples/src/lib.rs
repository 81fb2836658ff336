//! Shared code of the runnable examples: opening a store from a command-line
//! spec and printing backups. The examples themselves are `quickstart`
//! (`cargo run --example quickstart`) and the `backupctl` CLI.
#![warn(missing_docs, unreachable_pub)]

use std::sync::Arc;

use backup_core::{Error, Manifest, Result, Store, human_bytes};
use backup_store_fs::FsStore;

/// Opens the store named on a command line: a directory path (created if
/// missing).
pub fn open_store(spec: &str) -> Result<Arc<dyn Store>> {
    if spec.is_empty() {
        return Err(Error::Config("--store must not be empty".into()));
    }
    if let Some((scheme, _)) = spec.split_once("://") {
        return Err(Error::Config(format!(
            "unsupported store scheme {scheme}:// (expected a directory path)"
        )));
    }
    Ok(Arc::new(FsStore::new(spec)?))
}

/// One line per backup, newest first, with a header.
pub fn backup_table(backups: &[Arc<Manifest>]) -> String {
    let mut out = format!(
        "{:<26} {:<10} {:<16} {:<9} {:<20} {:>10}  {}\n",
        "ID", "TENANT", "SOURCE", "KIND", "STARTED (UTC)", "SIZE", "ARTIFACT"
    );
    for m in backups {
        out.push_str(&format!(
            "{:<26} {:<10} {:<16} {:<9} {:<20} {:>10}  {}\n",
            m.id,
            m.tenant,
            m.source_id,
            m.kind,
            m.started_at.format("%Y-%m-%d %H:%M:%S"),
            human_bytes(m.stored.size),
            m.artifact.rsplit('/').next().unwrap_or(&m.artifact),
        ));
    }
    out
}

/// The README's Rust examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
