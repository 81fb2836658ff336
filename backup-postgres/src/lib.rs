//! # backup-postgres
//!
//! PostgreSQL adapter for [`backup_core`]: [`PostgresSource`] dumps a
//! database with `pg_dump --format=custom`, [`PostgresTarget`] restores one
//! with `pg_restore --single-transaction`, both streamed through the core
//! pipeline (compression, checksums, store) without temporary files.
//!
//! Credentials are a [`Secret`](backup_core::Secret) inside
//! [`PgConnection`]; the tools read them from a 0600 `PGPASSFILE`, never
//! from their command line. Errors are specific: tool missing or older than
//! the server, connection refused, authentication failed, database missing.
//!
//! ```no_run
//! use std::sync::Arc;
//! use backup_core::{BackupRequest, Engine, InMemoryStore, RestoreOptions};
//! use backup_postgres::{PgConnection, PostgresSource, PostgresTarget};
//!
//! # async fn run() -> backup_core::Result<()> {
//! let conn = PgConnection::from_url("postgres://app@db.internal/sales")?.with_password_from_env();
//! let engine = Engine::new(Arc::new(InMemoryStore::new()));
//! let manifest = engine
//!     .backup(&PostgresSource::new(conn.clone()), &BackupRequest::new("sales"))
//!     .await?;
//! engine
//!     .restore(
//!         &manifest.id,
//!         None,
//!         &PostgresTarget::new(conn),
//!         &RestoreOptions::into_database("sales_copy").create(true),
//!     )
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! With the `throwaway` feature, [`ThrowawayCluster`] starts a disposable
//! local server for tests, demos and benchmarks.
#![warn(missing_docs, unreachable_pub)]
#![deny(rustdoc::broken_intra_doc_links)]

mod conn;
mod dump;
mod restore;
mod tools;

#[cfg(feature = "throwaway")]
mod cluster;

/// The format name recorded in manifests: pg_dump's custom format.
pub const FORMAT: &str = "pgdump";

#[cfg(feature = "throwaway")]
pub use cluster::{TEST_URL_VAR, TestServer, ThrowawayCluster};
pub use conn::{PgConnection, redact_url};
pub use dump::PostgresSource;
pub use restore::PostgresTarget;
pub use tools::PgTools;
