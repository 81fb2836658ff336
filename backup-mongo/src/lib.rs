//! # backup-mongo
//!
//! The MongoDB adapter of the backup library. For now it holds one piece:
//! the **mongodump `--archive` format**, implemented as pure, streaming,
//! I/O-free code in [`archive`]:
//!
//! - [`ArchiveWriter`] produces an archive one collection at a time from raw
//!   BSON documents, never holding a collection in memory; `mongorestore
//!   --archive` is meant to read what it writes.
//! - [`ArchiveReader`] is fed byte chunks as they arrive and yields
//!   [`Event`]s (prelude, namespace start, raw document, namespace end),
//!   verifying each namespace's CRC-64 and reporting truncation and
//!   corruption with the collection concerned.
//! - [`Lister`] / [`list_reader`] / [`list_stream`] report an archive's
//!   collections and document counts without restoring anything.
//! - [`MetadataDocument`] builds and parses the collection options and
//!   index definitions stored in the prelude.
//!
//! **Not there yet:** the driver-based [`backup_core::DumpSource`] (dumping
//! through the official `mongodb` driver into this format) and
//! [`backup_core::RestoreTarget`] (restoring natively or through
//! `mongorestore`). The `bson` version used here (2.x) is the one the
//! `mongodb` 3.x driver uses by default, so its raw documents pass straight
//! through.
//!
//! ## Example
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

pub use archive::{
    ArchiveError, ArchiveHeader, ArchiveListing, ArchiveReader, ArchiveWriter, CollectionListing,
    CollectionMetadata, CollectionType, Event, Lister, MetadataDocument, Namespace,
    NamespaceSummary, Prelude, list_reader, list_stream,
};
