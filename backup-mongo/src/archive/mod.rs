//! The mongodump `--archive` format: a streaming [`ArchiveWriter`], a
//! push-based [`ArchiveReader`] and a [`Lister`], all free of I/O.
//!
//! # Format note
//!
//! Checked against mongo-tools (`common/archive/{spec.md, archive.go,
//! prelude.go, parser.go, multiplexer.go, demultiplexer.go}`,
//! `mongodump/{mongodump.go, prepare.go, metadata_dump.go}`) and against the
//! bytes of a real archive written by mongodump 100.5.2 (server 5.0.6).
//! All integers are little-endian.
//!
//! ```text
//! archive   = magic header metadata* TERM block*
//! magic     = 6d e2 99 81                  (u32 0x8199E26D, little-endian)
//! header    = BSON { concurrent_collections: int32, version: string "0.1",
//!                    server_version: string, tool_version: string }
//! metadata  = BSON { db: string, collection: string, metadata: string,
//!                    size: int32 (int64 only if it does not fit), type: string }
//! TERM      = ff ff ff ff                  (where a BSON length would be)
//! block     = segment | eof
//! segment   = BSON { db, collection, EOF: false, CRC: int64 0 } document* TERM
//! eof       = BSON { db, collection, EOF: true,  CRC: int64 crc } TERM
//! ```
//!
//! - Fields are written in the order shown; a namespace header takes 50
//!   bytes plus the lengths of the two names.
//! - `metadata` is canonical Extended JSON v2 of `{options, indexes, uuid,
//!   collectionName, type}` in that order; `options` is omitted when empty,
//!   `uuid` (32 lowercase hex digits) when unknown, `type` when empty;
//!   `indexes` is always present (`[]` for views). See [`MetadataDocument`].
//! - `type` is `collection`, `view` or `timeseries` (empty from old tools).
//!   `size` is always 0 in mongodump's output (it never fills it in).
//! - `crc` is CRC-64/XZ (Go's `crc64.MakeTable(crc64.ECMA)`) over the
//!   concatenated bytes of every document of the namespace, across all its
//!   segments, stored as the int64 with the same bits. An empty namespace
//!   has CRC 0.
//! - mongodump writes, for every collection, one or more segments (it
//!   flushes a per-collection buffer of up to 16 MiB, so segments of
//!   several collections interleave) and then one `eof` block.
//!   **Empty collections and views get a segment with no document** followed
//!   by their `eof` block: mongorestore creates a view only when its
//!   namespace appears in the data, and fails with "archive finished before
//!   all collections were seen" if any non-timeseries collection of the
//!   prelude never reaches `eof`.
//! - Timeseries collections are listed under their own name with type
//!   `timeseries`; their data is written under `system.buckets.<name>`
//!   (servers before 8.3) and is exempt from that check.
//! - A BSON length must be between 5 and 16 MiB (mongo-tools' parser rejects
//!   anything else); a document must end with a NUL byte.
//!
//! This crate writes one collection at a time: a single segment, then the
//! `eof` block, which is what mongodump itself produces with
//! `--numParallelCollections=1` and collections under 16 MiB. The reader
//! accepts interleaved segments as mongodump writes them.

mod crc64;
mod error;
mod format;
mod header;
mod list;
mod metadata;
mod namespace;
mod reader;
mod writer;

#[cfg(test)]
mod tests;

pub use crc64::{Crc64, crc64};
pub use error::ArchiveError;
pub use format::{FORMAT_VERSION, MAGIC, MAX_DOCUMENT_SIZE, TERMINATOR};
pub use header::{ArchiveHeader, CollectionMetadata};
pub use list::{ArchiveListing, CollectionListing, Lister, list_reader, list_stream};
pub use metadata::MetadataDocument;
pub use namespace::{CollectionType, Namespace};
pub use reader::{ArchiveEvent, ArchiveReader, NamespaceSummary, Prelude};
pub use writer::ArchiveWriter;
