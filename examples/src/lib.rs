//! What the runnable example and the applications share: opening a store
//! from where it lives ([`StoreLocation`]: a directory or
//! `s3://bucket/prefix`, see [`open_store`]) and printing backups
//! ([`backup_table`]). The example is `quickstart` (`cargo run --release
//! --example quickstart`); the applications are the `backupctl` CLI and
//! the `backupd` daemon, packages of their own under `examples/`.
#![warn(missing_docs, unreachable_pub)]

mod store_url;

pub use store_url::{
    S3Credentials, S3Settings, STORE_MARKER, StoreLocation, init_store, open_existing_store,
    open_store, open_store_for_writing, open_store_spec,
};

use std::sync::Arc;

use backup_core::{format::human_bytes, manifest::Manifest};

/// One line per backup, newest first, with a header: its type (full or
/// incremental), its logical size (the dump's bytes, what a restore
/// produces) and what it added to the store (for an incremental backup,
/// only its new chunks and chunk list; for a full one, its artifact).
pub fn backup_table(backups: &[Arc<Manifest>]) -> String {
    let mut out = format!(
        "{:<26} {:<10} {:<16} {:<11} {:<9} {:<20} {:>10} {:>10}  {}\n",
        "ID", "TENANT", "SOURCE", "TYPE", "KIND", "STARTED (UTC)", "SIZE", "ADDED", "ARTIFACT"
    );
    for m in backups {
        out.push_str(&format!(
            "{:<26} {:<10} {:<16} {:<11} {:<9} {:<20} {:>10} {:>10}  {}\n",
            m.id,
            m.tenant,
            m.source_id,
            m.backup_type,
            m.kind,
            m.started_at.format("%Y-%m-%d %H:%M:%S"),
            human_bytes(m.raw.size),
            human_bytes(m.bytes_stored()),
            m.artifact.rsplit('/').next().unwrap_or(&m.artifact),
        ));
    }
    out
}

/// The README's Rust examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
