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
//! - [`DumpSource`] / [`RestoreTarget`] ([`source`]): an engine adapter
//!   (`backup-postgres`, `backup-mongo`) dumps a database as a byte stream
//!   and restores one.
//! - [`Store`] ([`store`]): a storage adapter (`backup-store-fs`,
//!   `backup-store-s3`) with atomic streaming uploads;
//!   [`InMemoryStore`](memory::InMemoryStore) for tests and examples.
//! - [`Compression`]: the compression stage (none, gzip, zstd), recorded
//!   in each manifest so restore reads back whatever backup wrote.
//! - [`RetentionPolicy`] ([`retention`]): which backups to keep
//!   ([`KeepLast`](retention::KeepLast) is built in).
//! - [`Engine`]: backup, restore, verify and prune over one store, with the
//!   [`Catalog`](catalog::Catalog) of committed backups read from their
//!   [`Manifest`](manifest::Manifest)s.
//! - [`BackupType::Incremental`]: backups deduplicated into the tenant's
//!   chunk store (FastCDC chunks in packs, [`DedupOptions`](dedup::DedupOptions)),
//!   each still restorable alone; [`Engine::gc`] removes unreferenced chunks
//!   and [`Engine::check`] reads and checks a whole store.
//!
//! ## Layout
//!
//! The crate root re-exports only the [`prelude`]: what a host application
//! needs for the common case (`use backup_core::prelude::*`). Everything
//! else is reached through the module that defines it: [`store`] (the
//! trait and helpers for store implementors), [`source`] (for engine
//! implementors), [`catalog`], [`manifest`], [`retention`], [`schedule`] and
//! [`scheduler`], [`events`], [`crypto`], [`compression`], [`key`],
//! [`duration`] and [`format`](mod@format) (presentation helpers), with `testing` (the
//! conformance suites, feature `testing`) for adapter crates' tests.
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
//! use backup_core::memory::InMemoryStore;
//! use backup_core::prelude::*;
//! use backup_core::source::{
//!     DumpOptions, DumpStream, RestoreReport, RestoreSession, SourceInfo, Versions,
//! };
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
//!         Ok(DumpStream::new(Box::pin(futures::stream::iter(chunks)), Versions::default()))
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
//! engine.verify(&manifest.id).await?;
//! let target = Collect::default();
//! engine.restore(&manifest.id, &target, &RestoreOptions::default()).await?;
//! assert_eq!(&*target.0.lock().unwrap(), b"hello, world");
//! # Ok::<(), Error>(()) }).unwrap();
//! ```
#![warn(missing_docs, unreachable_pub)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod backup_job;
pub mod backup_ref;
pub mod catalog;
pub mod child;
pub mod clock;
pub mod compression;
pub mod crypto;
pub mod dedup;
pub mod drill;
pub mod duration;
pub mod engine;
pub mod error;
pub mod events;
pub mod fingerprint;
pub mod format;
pub mod health;
pub mod inflight;
pub mod key;
pub mod manifest;
pub mod memory;
pub mod meter;
pub mod pipeline;
pub mod prelude;
pub mod redact;
pub mod retention;
pub mod schedule;
pub mod scheduler;
pub mod secret;
pub mod source;
pub mod store;
#[cfg(feature = "webhook")]
pub mod webhook;

#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "testing")]
pub mod testing;

pub use prelude::*;
