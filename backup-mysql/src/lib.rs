//! # backup-mysql
//!
//! MySQL / MariaDB adapter for [`backup_core`]: [`MysqlSource`] streams
//! `mariadb-dump` (or MySQL's `mysqldump`) of one database — one
//! consistent InnoDB snapshot, routines, triggers and events, binary
//! columns as hex — into the pipeline; [`MysqlTarget`] restores such a
//! dump through a hidden staging database and moves every table into the
//! target with one `RENAME TABLE` only after every digest of the backup
//! matched. Credentials reach the tools only in an in-memory option file.
//!
//! ```no_run
//! use std::sync::Arc;
//! use backup_core::{BackupRequest, Engine, RestoreOptions, memory::InMemoryStore};
//! use backup_mysql::{MysqlConnection, MysqlSource, MysqlTarget};
//!
//! # async fn run() -> backup_core::Result<()> {
//! let engine = Engine::new(Arc::new(InMemoryStore::new()));
//! let conn = MysqlConnection::from_url("mysql://backup@db.internal/shop")?
//!     .with_password_from_env("MYSQL_PWD");
//!
//! let manifest = engine.backup(&MysqlSource::new(conn.clone()), &BackupRequest::new("shop")).await?;
//!
//! // Into a new database: nothing of it is visible before the tables
//! // move in together, after the whole backup verified.
//! let opts = RestoreOptions::into_database("shop_restored").new_database_only(true);
//! engine.restore(&manifest.id, &MysqlTarget::new(conn), &opts).await?;
//! # Ok(()) }
//! ```
//!
//! The pieces:
//!
//! - [`MysqlConnection`]: server, account and database, parsed from
//!   `mysql://` / `mariadb://` URLs; the password is a
//!   [`Secret`](backup_core::Secret).
//! - [`MysqlSource`]: the dump ([`DUMP_FLAGS`], preflight errors, what
//!   the manifest records).
//! - [`MysqlTarget`]: the restore; its docs say exactly what is atomic
//!   and what is not.
//! - [`MysqlTools`]: which client tools run.
//! - [`MysqlDrill`]: restore drills into scratch databases, comparing
//!   the rows counted from the dump script at backup time.
//! - `TestServer` (feature `throwaway`): a throwaway MariaDB for tests.
#![warn(missing_docs, unreachable_pub)]
#![deny(rustdoc::broken_intra_doc_links)]

mod catalog;
mod client;
mod conn;
mod drill;
mod fingerprint;
mod leftovers;
mod promote;
mod source;
mod target;
#[cfg(feature = "throwaway")]
mod testing;

pub use client::{ENGINE, MysqlTools};
pub use conn::{DEFAULT_PORT, MysqlConnection, redact_url};
pub use drill::{DRILL_MARKER_TABLE, DRILL_PREFIX, MysqlDrill};
pub use leftovers::{DEFAULT_STAGING_GRACE, MARKER_TABLE, STAGING_PREFIX};
pub use source::{DUMP_FLAGS, FORMAT, MysqlSource};
pub use target::MysqlTarget;
#[cfg(feature = "throwaway")]
pub use testing::{TEST_URL_VAR, TestServer};
