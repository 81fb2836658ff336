//! # backup-core
//!
//! The core of an embeddable database-backup library: the traits engines and
//! stores implement, and the streaming pipeline that joins them.
//!
//! ```text
//! DumpSource ──▶ Compression ──▶ Hasher (SHA-256 + MD5) ──▶ Store
//!  (pg_dump,      (zstd, gzip)                            (directory, S3)
//!   mongo)
//! ```
//!
//! - [`DumpSource`] / [`RestoreTarget`]: an engine adapter (`backup-postgres`,
//!   `backup-mongo`) dumps a database as a byte stream and restores one.
//! - [`Store`]: a storage adapter (`backup-store-fs`, `backup-store-s3`) with
//!   atomic streaming uploads.
//! - [`Compression`]: the compression stage (none, gzip, zstd), recorded
//!   in each manifest so restore reads back whatever backup wrote.
//! - [`RetentionPolicy`]: which backups to keep ([`KeepLast`] is built in).
//! - [`Engine`]: backup, restore, verify and prune over one store, with the
//!   [`Catalog`] of committed backups read from their [`Manifest`]s.
//! - [`BackupType::Incremental`]: backups deduplicated into the tenant's
//!   chunk store (FastCDC chunks in packs, [`DedupOptions`]), each still
//!   restorable alone; [`Engine::gc`] removes unreferenced chunks and
//!   [`Engine::check`] reads and checks a whole store.
//!
//! Every stage streams through bounded buffers, so memory stays flat
//! whatever the size of the database. A backup is committed by writing its
//! manifest last; a restore verifies the artifact while streaming and
//! aborts the target before it can commit if anything does not match.
//!
//! ## Example
//!
//! A toy source and target show the shape; real hosts use the adapter
//! crates.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use async_trait::async_trait;
//! use backup_core::*;
//! use bytes::Bytes;
//!
//! #[derive(Debug)]
//! struct Greeting;
//!
//! #[async_trait]
//! impl DumpSource for Greeting {
//!     fn info(&self) -> SourceInfo {
//!         SourceInfo {
//!             engine: "toy".into(),
//!             database: "greetings".into(),
//!             format: "text".into(),
//!             extension: "txt".into(),
//!             magic: None,
//!         }
//!     }
//!     async fn dump(&self, _: &DumpOptions) -> Result<DumpStream> {
//!         let chunks = vec![Ok(Bytes::from_static(b"hello, ")), Ok(Bytes::from_static(b"world"))];
//!         Ok(DumpStream { stream: Box::pin(futures::stream::iter(chunks)), versions: Versions::default() })
//!     }
//! }
//!
//! #[derive(Debug, Default)]
//! struct Collect(Arc<Mutex<Vec<u8>>>);
//!
//! #[derive(Debug)]
//! struct Session(Arc<Mutex<Vec<u8>>>, Vec<u8>);
//!
//! #[async_trait]
//! impl RestoreTarget for Collect {
//!     fn engine(&self) -> &str { "toy" }
//!     fn accepts_format(&self, format: &str) -> bool { format == "text" }
//!     async fn begin(&self, _: &RestoreOptions) -> Result<Box<dyn RestoreSession>> {
//!         Ok(Box::new(Session(self.0.clone(), Vec::new())))
//!     }
//! }
//!
//! #[async_trait]
//! impl RestoreSession for Session {
//!     async fn write(&mut self, data: Bytes) -> Result<()> { self.1.extend_from_slice(&data); Ok(()) }
//!     async fn commit(self: Box<Self>) -> Result<RestoreReport> {
//!         *self.0.lock().unwrap() = self.1; // applied only now
//!         Ok(RestoreReport { database: "greetings".into(), warnings: vec![] })
//!     }
//!     async fn abort(self: Box<Self>) -> Result<()> { Ok(()) }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let engine = Engine::new(Arc::new(InMemoryStore::new()));
//! let manifest = engine.backup(&Greeting, &BackupRequest::new("greeter")).await?;
//! assert_eq!(manifest.raw.size, 12);
//!
//! let listed = engine.catalog().list(&Filter::all()).await?;
//! assert_eq!(listed[0].id, manifest.id);
//!
//! engine.verify(&manifest.id, None).await?;
//! let target = Collect::default();
//! engine.restore(&manifest.id, None, &target, &RestoreOptions::default()).await?;
//! assert_eq!(&*target.0.lock().unwrap(), b"hello, world");
//! # Ok::<(), Error>(()) }).unwrap();
//! ```
#![warn(missing_docs, unreachable_pub)]
#![deny(rustdoc::broken_intra_doc_links)]

mod backup_job;
mod catalog;
pub mod child;
mod clock;
mod compression;
mod crypto;
mod dedup;
mod duration;
mod engine;
mod error;
mod events;
mod health;
mod inflight;
mod key;
mod manifest;
mod memory;
mod pipeline;
pub mod redact;
mod retention;
mod schedule;
mod scheduler;
mod secret;
mod source;
mod store;
#[cfg(feature = "webhook")]
mod webhook;

#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "testing")]
pub mod testing;

pub use backup_job::BackupJob;
pub use catalog::{
    BackupPage, Catalog, ChunkSweep, Filter, HealthOptions, HealthStatus, Page, RUN_RECORD_NAME,
    RunRecord, SourceHealth, Stats, StatsReport, SweepReport,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use compression::{
    Algorithm, BoxWrite, Compression, DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL, DEFAULT_ZSTD_WORKERS,
    ZSTD_JOB_SIZE,
};
pub use crypto::{AGE_SCHEME, AgeIdentities, AgeRecipients};
pub use dedup::{CheckReport, CorruptChunk, DedupOptions, GcReport, MissingChunk, Problem};
pub use duration::{MAX_DURATION, duration_from_minutes, parse_duration};
pub use engine::{BackupRequest, Engine, PruneReport};
pub use error::{BoxError, Error, Result};
pub use events::{Event, EventBus, LogNotifier, Notifier, RetryPolicy, spawn_notifier};
pub use health::spawn_health_monitor;
pub use inflight::INFLIGHT_STALE_AFTER;
pub use key::{Key, MAX_KEY_LEN, validate_id};
pub use manifest::{
    BackupKind, BackupType, CompressionInfo, DEFAULT_TENANT, DedupInfo, Digests, EncryptionInfo,
    Layout, MANIFEST_SUFFIX, MANIFEST_VERSION, Manifest, human_bytes, is_backup_id, new_backup_id,
    sanitize_name,
};
pub use memory::InMemoryStore;
pub use pipeline::PipelineOptions;
pub use retention::{
    Decision, KeepGfs, KeepLast, KeepWithin, PlanOptions, RetentionPlan, RetentionPolicy, plan,
};
pub use schedule::{CronExpr, Schedule, parse_tz};
pub use scheduler::{
    Job, JobInfo, JobOutcome, JobSpec, MisfirePolicy, Scheduler, SchedulerConfig, Shutdown, Trigger,
};
pub use secret::Secret;
pub use source::{
    Candidate, DumpOptions, DumpSource, DumpStream, Leftover, LeftoverReport, Removal,
    RestoreOptions, RestoreReport, RestoreSession, RestoreTarget, SourceInfo, Versions,
};
pub use store::{
    ByteStream, GetResult, MAX_SMALL_OBJECT, ObjectMeta, PutMode, PutOptions, Store, StoreExt,
    TemporaryObject, TemporarySweep, Upload, check_range, delete_each,
};
#[cfg(feature = "webhook")]
pub use webhook::{WebhookFormat, WebhookNotifier};
