//! # backup-sqlite
//!
//! SQLite adapter for [`backup_core`]: [`SqliteSource`] takes a consistent
//! snapshot of a live database file (WAL mode or rollback journal) while
//! other connections keep writing, through SQLite's online backup API, and
//! streams it into the pipeline; [`SqliteTarget`] restores such a snapshot
//! into a new file (or over an existing one only when asked), checked with
//! `PRAGMA integrity_check` and made visible by an atomic rename only after
//! every digest of the backup matched. SQLite is built in (`rusqlite`'s
//! bundled amalgamation): no tool or system library is needed.
//!
//! ```no_run
//! use std::sync::Arc;
//! use backup_core::{BackupRequest, Engine, RestoreOptions, memory::InMemoryStore};
//! use backup_sqlite::{SqliteSource, SqliteTarget};
//!
//! # async fn run() -> backup_core::Result<()> {
//! let engine = Engine::new(Arc::new(InMemoryStore::new()));
//!
//! // A snapshot of the live file, spooled privately (0600) and streamed.
//! let source = SqliteSource::new("/var/lib/app/app.db").with_spool_dir("/var/tmp");
//! let manifest = engine.backup(&source, &BackupRequest::new("app")).await?;
//!
//! // Restore into a new file: refused if it exists, nothing visible
//! // unless the artifact verifies and the result passes integrity_check.
//! let target = SqliteTarget::new("/var/lib/app/restored.db");
//! engine.restore(&manifest.id, &target, &RestoreOptions::default()).await?;
//!
//! // Or over the live file's path (keeping its mode and owner): only with
//! // the application stopped, since open connections keep the old file.
//! let over = RestoreOptions::into_database("/var/lib/app/app.db").clean(true);
//! engine.restore(&manifest.id, &target, &over).await?;
//! # Ok(()) }
//! ```
//!
//! The pieces:
//!
//! - [`SqliteSource`] and its [`SnapshotOptions`]: how a snapshot is
//!   taken, where it is spooled (SQLite forces a spool: its backup API
//!   writes a database, not a stream, and restarts when another
//!   connection writes), what the manifest records (engine [`ENGINE`],
//!   format [`FORMAT`], SQLite version, page size and count, row counts).
//! - [`SqliteTarget`]: the restore, through a `0600` temporary file beside
//!   the target; exactly what a failure leaves is in its docs.
//! - [`table_checksums`]: an ordered checksum per table, to compare a
//!   restored database with its source; every backup records them as its
//!   content fingerprint ([`FINGERPRINT_METHOD`]) unless
//!   `DumpOptions::skip_fingerprint`.
//! - [`SqliteDrill`]: restore drills
//!   ([`Engine::drill`](backup_core::Engine::drill)) into private scratch
//!   directories, compared with that fingerprint.
#![warn(missing_docs, unreachable_pub)]
#![deny(rustdoc::broken_intra_doc_links)]

mod checksum;
mod drill;
mod error;
mod header;
mod leftovers;
mod session;
mod snapshot;
mod source;
mod target;

pub use checksum::{FINGERPRINT_METHOD, TableChecksum, table_checksums};
pub use drill::{DRILL_PREFIX, SqliteDrill};
pub use header::MAGIC;
pub use leftovers::DEFAULT_LEFTOVER_GRACE;
pub use snapshot::SnapshotOptions;
pub use source::{DEFAULT_CHUNK_SIZE, ENGINE, FORMAT, SqliteSource};
pub use target::SqliteTarget;
