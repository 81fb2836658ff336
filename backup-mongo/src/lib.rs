//! # backup-mongo
//!
//! MongoDB adapter for [`backup_core`]: [`MongoSource`] dumps a database
//! through the official `mongodb` driver into **mongodump's `--archive`
//! format**, streaming raw BSON from cursors with bounded memory;
//! [`MongoTarget`] restores such an archive natively (or an archive
//! written by `mongodump --archive`), verifying every collection's CRC as
//! it reads and staging the data so that a corrupt artifact leaves the
//! target database untouched. No external tool is needed; [`Method::Tools`]
//! uses `mongodump`/`mongorestore` instead for those who prefer them.
//!
//! ```no_run
//! use std::sync::Arc;
//! use backup_core::{BackupRequest, source::DumpOptions, Engine, memory::InMemoryStore, RestoreOptions};
//! use backup_mongo::{MongoConnection, MongoSource, MongoTarget};
//!
//! # async fn run() -> backup_core::Result<()> {
//! // The password stays inside the connection (a `Secret`): never logged,
//! // never in a manifest or an error.
//! let conn = MongoConnection::from_uri("mongodb://backup:pw@db1,db2/sales?replicaSet=rs0")?;
//! let engine = Engine::new(Arc::new(InMemoryStore::new()));
//!
//! // A point-in-time dump (snapshot reads on a replica set) of two collections.
//! let mut request = BackupRequest::new("sales");
//! request.dump = DumpOptions::default().only(vec!["orders".into(), "customers".into()]);
//! let manifest = engine.backup(&MongoSource::new(conn.clone()), &request).await?;
//!
//! // Restore into another database; staged, so a corrupt artifact changes nothing.
//! engine
//!     .restore(&manifest.id, &MongoTarget::new(conn), &RestoreOptions::into_database("sales_copy"))
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! The pieces:
//!
//! - [`MongoConnection`]: URI and optional explicit credentials
//!   ([`backup_core::Secret`]); `Debug`, `Display` and errors show a
//!   redacted URI ([`redact_uri`]).
//! - [`MongoSource`]: the dump; [`Consistency`] says how point-in-time it
//!   must be. Manifests record engine `mongodb`, format `archive`, the
//!   driver and server versions, and a content fingerprint per
//!   collection ([`FINGERPRINT_METHOD`]).
//! - [`MongoTarget`]: the restore; [`RestoreStrategy`] chooses staging
//!   (default) or direct writes. See its docs for exactly what a failure
//!   leaves behind.
//! - [`MongoDrill`]: restore drills
//!   ([`Engine::drill`](backup_core::Engine::drill)) into scratch
//!   databases `_backup_drill_<hex>`, compared with that fingerprint.
//! - [`archive`]: the format itself, pure and I/O-free: [`ArchiveWriter`],
//!   [`ArchiveReader`] (push parser verifying CRC-64s), [`Lister`] /
//!   [`list_stream`] (what an archive holds, without restoring it),
//!   [`MetadataDocument`].
//! - With the `throwaway` feature, `TestServer` and
//!   `ThrowawaySecantus`: a MongoDB-compatible stand-in server
//!   (SecantusDB) or the one named by `MONGODB_URI`, for tests and demos.
//!
//! ## The archive format
//!
//! Write an archive with one collection and one view, then list it.
//!
//! ```
//! use backup_mongo::*;
//! use bson::{doc, rawdoc};
//!
//! let events = MetadataDocument {
//!     indexes: vec![doc! { "v": 2, "key": { "_id": 1 }, "name": "_id_" }],
//!     ..MetadataDocument::new("events", CollectionType::Collection)
//! };
//! let recent = MetadataDocument {
//!     options: doc! { "viewOn": "events", "pipeline": [{ "$sort": { "at": -1 } }] },
//!     ..MetadataDocument::new("recent", CollectionType::View)
//! };
//! let mut writer = ArchiveWriter::new(
//!     &ArchiveHeader::new("7.0.14", concat!("backup-mongo ", env!("CARGO_PKG_VERSION"))),
//!     &[
//!         CollectionMetadata::new(Namespace::new("app", "events"), CollectionType::Collection, events.to_extended_json()),
//!         CollectionMetadata::new(Namespace::new("app", "recent"), CollectionType::View, recent.to_extended_json()),
//!     ],
//! )?;
//! let mut archive = Vec::new();
//! writer.begin_namespace("app", "events")?;
//! for at in 0..3 {
//!     writer.document(rawdoc! { "at": at }.as_bytes())?;
//!     archive.extend_from_slice(&writer.take());
//! }
//! writer.end_namespace()?;
//! writer.begin_namespace("app", "recent")?; // a view: no documents
//! writer.end_namespace()?;
//! archive.extend_from_slice(&writer.finish()?);
//!
//! let listing = list_reader(&archive[..])?;
//! assert_eq!(listing.get("app", "events").unwrap().documents, 3);
//! assert_eq!(listing.get("app", "recent").unwrap().collection_type, CollectionType::View);
//! # Ok::<(), ArchiveError>(())
//! ```
#![warn(missing_docs, unreachable_pub)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod archive;
mod client;
mod conn;
mod drill;
mod dump;
mod error;
mod fingerprint;
mod restore;
mod server;
mod tools;

#[cfg(feature = "throwaway")]
mod testing;

pub use archive::{
    ArchiveError, ArchiveEvent, ArchiveHeader, ArchiveListing, ArchiveReader, ArchiveWriter,
    CollectionListing, CollectionMetadata, CollectionType, Lister, MetadataDocument, Namespace,
    NamespaceSummary, Prelude, list_reader, list_stream,
};
pub use conn::{DEFAULT_SERVER_SELECTION_TIMEOUT, MongoConnection, redact_uri};
pub use drill::{DRILL_MARKER_COLLECTION, DRILL_PREFIX, MongoDrill};
pub use dump::{Consistency, DEFAULT_CHUNK_SIZE, DEFAULT_QUEUE_DEPTH, FORMAT, MongoSource};
pub use fingerprint::FINGERPRINT_METHOD;
pub use restore::staging::DEFAULT_STAGING_GRACE;
pub use restore::{
    DEFAULT_BATCH_BYTES, DEFAULT_BATCH_DOCUMENTS, DEFAULT_INSERT_CONCURRENCY, MongoTarget,
    RestoreStrategy,
};
pub use server::is_system_database;
#[cfg(feature = "throwaway")]
pub use testing::{SECANTUS_VAR, TEST_URI_VAR, TestServer, ThrowawaySecantus};
pub use tools::{Method, MongoTools, Tool};
