//! # backup-postgres
//!
//! PostgreSQL adapter for [`backup_core`]: [`PostgresSource`] dumps a
//! database with `pg_dump --format=custom`, [`PostgresTarget`] restores one
//! with `pg_restore --single-transaction`, both streamed through the core
//! pipeline (compression, checksums, store) without temporary files.
//!
//! Credentials are a [`Secret`](backup_core::Secret) inside
//! [`PgConnection`]. The tools start from a cleared environment plus an
//! allow-list ([`backup_core::child`]) and read the password from a
//! `PGPASSFILE` that exists only in memory (a sealed 0600 `memfd` that the
//! one tool inherits as `/dev/fd/3`): never from their command line or
//! environment, never from a file a crash could leave behind. Errors are
//! specific: tool missing or older than the server, connection refused,
//! authentication failed, database missing.
//!
//! A restore that creates its target builds it under a staging name and
//! renames it at commit; leftovers of killed restores are found and
//! dropped by [`RestoreTarget::remove_leftovers`](backup_core::RestoreTarget::remove_leftovers).
//!
//! ```no_run
//! use std::sync::Arc;
//! use backup_core::{BackupRequest, Engine, memory::InMemoryStore, RestoreOptions};
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
//!         &PostgresTarget::new(conn),
//!         &RestoreOptions::into_database("sales_copy").create(true),
//!     )
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Physical backups: [`BaseBackupSource`] streams `pg_basebackup` into
//! the store, [`DataDirTarget`] restores one into a new data directory,
//! and [`PointInTimeRestore`] then replays archived WAL (any
//! [`WalSource`]; [`DirWalSource`] for an `archive_command = 'cp ...'`
//! directory) up to a [`RecoveryTarget`]: it either reaches the target or
//! fails and leaves the directory marked unusable.
//!
//! ```no_run
//! use std::sync::Arc;
//! use backup_core::{Engine, RestoreOptions};
//! use backup_postgres::{
//!     DataDirTarget, DirWalSource, PointInTimeRestore, RecoveryTarget, StartOptions,
//! };
//!
//! # async fn run(engine: Engine, backup_id: &str) -> backup_core::Result<()> {
//! let data = "/srv/pg/restored";
//! engine
//!     .restore(backup_id, &DataDirTarget::new(data), &RestoreOptions::default())
//!     .await?;
//! let report = PointInTimeRestore::new(
//!     data,
//!     Arc::new(DirWalSource::new("/srv/pg/archive")),
//!     RecoveryTarget::time("2026-12-02T07:17:29Z")?,
//!     "/usr/lib/postgresql/15/bin",
//! )
//! .start_server(StartOptions::on_port(5433))
//! .run()
//! .await?;
//! println!("replayed up to {:?}", report.server.and_then(|s| s.end_lsn));
//! # Ok(()) }
//! ```
//!
//! Block-level incremental base backups (PostgreSQL 17+, `summarize_wal =
//! on`): [`BaseBackupSource::incremental`] stores only the blocks changed
//! since a parent ([`ParentManifest`], fetched from the store), and
//! [`ChainRestore`] restores a backup with its chain through
//! `pg_combinebackup`; the result replays WAL like any restored base
//! backup.
//!
//! ```no_run
//! use backup_core::{BackupRequest, Engine};
//! use backup_postgres::{BaseBackupSource, ChainRestore, ParentManifest, PgConnection};
//!
//! # async fn run(engine: Engine, conn: PgConnection) -> backup_core::Result<()> {
//! let source = BaseBackupSource::new(conn);
//! let req = BackupRequest::new("cluster");
//! let full = engine.backup(&source, &req).await?;
//! let parent = ParentManifest::fetch(&engine, &full).await?;
//! let inc = engine.backup(&source.clone().incremental(parent), &req).await?;
//! assert_eq!(inc.parent.as_deref(), Some(full.id.as_str()));
//! ChainRestore::new("/srv/pg/restored").run(&engine, &inc.id).await?;
//! # Ok(()) }
//! ```
//!
//! With the `throwaway` feature, `ThrowawayCluster` starts a disposable
//! local server for tests, demos and benchmarks.
#![warn(missing_docs, unreachable_pub)]
#![deny(rustdoc::broken_intra_doc_links)]

mod archiver;
mod baseinfo;
mod chain;
mod conn;
mod datadir;
mod drill;
mod dump;
mod dump_fingerprint;
mod fingerprint;
mod incremental;
mod latest;
mod libpq;
mod lsn;
mod physical;
mod recovery;
mod restore;
mod staging;
mod tarscan;
mod tools;
mod wal;
mod wal_glue;
mod wal_hold;
mod window;

#[cfg(feature = "throwaway")]
mod cluster;

pub use archiver::{
    ArchiverOptions, ArchiverStatus, DirSink, SegmentSink, SinkOutcome, WalArchiver,
    WalArchiverHandle,
};
pub use baseinfo::BaseBackupInfo;
pub use chain::{ChainReport, ChainRestore, MAX_CHAIN_LINKS};
#[cfg(feature = "throwaway")]
pub use cluster::restored::query_data_dir;
#[cfg(feature = "throwaway")]
pub use cluster::test_server::TestServer;
#[cfg(feature = "throwaway")]
pub use cluster::{TEST_PG18_BIN_VAR, TEST_PG18_URL_VAR, TEST_URL_VAR, ThrowawayCluster};
pub use conn::{PgConnection, redact_url};
pub use datadir::DataDirTarget;
pub use drill::{DRILL_PREFIX, PostgresDrill};
pub use dump::{FORMAT, PostgresSource};
pub use incremental::ParentManifest;
pub use latest::{IncrementalOnLatest, latest_base_backup};
pub use libpq::{DEFAULT_SOCKET_DIR, LibpqEnv, PasswordOrigin, Resolved};
pub use lsn::{Lsn, check_segment_size, parse_segment_file_name, segment_file_name};
pub use physical::{BASEBACKUP_FORMAT, BaseBackupSource, FELL_BACK};
pub use recovery::{
    DirWalSource, PHYSICAL_DRILL_PREFIX, PhysicalDrill, PointInTimeRestore, RESTORE_FAILED_FILE,
    RecoveredServer, RecoveryReport, RecoveryTarget, RecoveryTimeline, StartOptions, WalSource,
    mark_unusable,
};
pub use restore::PostgresTarget;
pub use staging::DEFAULT_STAGING_GRACE;
pub use tools::PgTools;
pub use wal::{
    PushOutcome, WAL_DIR, WalArchive, WalConflict, WalFileKind, WalFileName, WalPruneReport,
    WalRecord,
};
pub use wal_hold::HOLD_SLOT_PREFIX;
pub use window::{PitrRange, PitrWindow, base_backups, pitr_window, prune_wal};

/// (Feature `throwaway`.) Defines a test that runs once per PostgreSQL major version of the test
/// matrix, as two tests named after them: `<name>::postgres_15` on
/// [`TestServer::shared`] (Debian's PostgreSQL 15, or the server of
/// [`TEST_URL_VAR`]) and `<name>::postgres_18` on
/// [`TestServer::shared_pg18`]. The body gets the server as the named
/// variable; build sources and targets with its [`TestServer::tools`].
///
/// ```ignore
/// backup_postgres::each_major! {
///     /// Round trip.
///     async fn round_trip(server) {
///         let db = server.create_database("x").await.unwrap();
///     }
/// }
/// ```
#[cfg(feature = "throwaway")]
#[macro_export]
macro_rules! each_major {
    ($($(#[$meta:meta])* async fn $name:ident($server:ident) $body:block)*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($server: &'static $crate::TestServer) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_15() {
                run($crate::TestServer::shared()).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_18() {
                let server = $crate::TestServer::shared_pg18();
                assert_eq!(server.major().await.unwrap(), 18, "the PostgreSQL 18 server");
                run(server).await
            }
        }
    )*};
}
