//! Listing an archive's collections without restoring it.

use std::io::Read;

use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::error::ArchiveError;
use super::header::ArchiveHeader;
use super::namespace::{CollectionType, Namespace};
use super::reader::{ArchiveEvent, ArchiveReader, NamespaceSummary};

/// What an archive contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveListing {
    /// Format, server and tool versions.
    pub header: ArchiveHeader,
    /// The prelude's collections in archive order, then any namespace that
    /// had data without being listed.
    pub collections: Vec<CollectionListing>,
}

impl ArchiveListing {
    /// The entry for `db.collection`, if any.
    pub fn get(&self, db: &str, collection: &str) -> Option<&CollectionListing> {
        self.collections
            .iter()
            .find(|c| c.namespace.db == db && c.namespace.collection == collection)
    }

    /// Documents over all collections.
    pub fn total_documents(&self) -> u64 {
        self.collections.iter().map(|c| c.documents).sum()
    }
}

/// One collection of an [`ArchiveListing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionListing {
    /// The collection as the prelude lists it.
    pub namespace: Namespace,
    /// Collection, view or timeseries ([`CollectionType::Unspecified`] for
    /// data the prelude does not list).
    pub collection_type: CollectionType,
    /// Whether the prelude lists it.
    pub listed: bool,
    /// Documents in its data (for timeseries: buckets).
    pub documents: u64,
    /// Total document bytes.
    pub bytes: u64,
    /// The verified CRC of its data; `None` if it had no data block (only
    /// possible for timeseries collections in a complete archive).
    pub crc: Option<u64>,
}

/// Reads a whole archive, checking every CRC, and keeps only the counts.
///
/// Memory stays at one document plus the chunk being fed, whatever the
/// archive's size.
#[derive(Debug, Default)]
pub struct Lister {
    reader: ArchiveReader,
    listing: Option<ArchiveListing>,
}

impl Lister {
    /// A lister expecting the start of an archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes the next bytes of the archive.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), ArchiveError> {
        self.reader.feed(chunk);
        while let Some(event) = self.reader.next_event()? {
            match event {
                ArchiveEvent::Prelude(prelude) => {
                    self.listing = Some(ArchiveListing {
                        header: prelude.header,
                        collections: prelude
                            .collections
                            .into_iter()
                            .map(|entry| CollectionListing {
                                namespace: entry.namespace,
                                collection_type: entry.collection_type,
                                listed: true,
                                documents: 0,
                                bytes: 0,
                                crc: None,
                            })
                            .collect(),
                    });
                }
                ArchiveEvent::NamespaceEnd(summary) => self.record(summary),
                _ => {}
            }
        }
        Ok(())
    }

    /// Declares the end of the archive and returns the listing; fails if
    /// the archive was incomplete.
    pub fn finish(mut self) -> Result<ArchiveListing, ArchiveError> {
        self.reader.finish()?;
        self.listing
            .ok_or_else(|| ArchiveError::Usage("archive ended without a prelude".to_string()))
    }

    fn record(&mut self, summary: NamespaceSummary) {
        let listing = self
            .listing
            .as_mut()
            .expect("the reader yields the prelude first");
        let owner = listing.collections.iter_mut().find(|c| {
            c.listed
                && (c.namespace == summary.namespace
                    || (c.collection_type == CollectionType::Timeseries
                        && c.namespace.db == summary.namespace.db
                        && summary.namespace.collection.strip_prefix("system.buckets.")
                            == Some(c.namespace.collection.as_str())))
        });
        match owner {
            Some(entry) => {
                entry.documents += summary.documents;
                entry.bytes += summary.bytes;
                entry.crc = Some(summary.crc);
            }
            None => listing.collections.push(CollectionListing {
                namespace: summary.namespace,
                collection_type: CollectionType::Unspecified,
                listed: false,
                documents: summary.documents,
                bytes: summary.bytes,
                crc: Some(summary.crc),
            }),
        }
    }
}

/// Lists an archive read from a blocking reader, in 64 KiB chunks.
pub fn list_reader(mut input: impl Read) -> Result<ArchiveListing, ArchiveError> {
    let mut lister = Lister::new();
    let mut chunk = vec![0; 64 * 1024];
    loop {
        let n = match input.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        lister.feed(&chunk[..n])?;
    }
    lister.finish()
}

/// Lists an archive arriving as a byte stream, such as a
/// [`backup_core::store::ByteStream`] from a store (already decompressed).
/// Archive errors become [`backup_core::Error::Integrity`].
pub async fn list_stream<S>(stream: S) -> backup_core::Result<ArchiveListing>
where
    S: Stream<Item = backup_core::Result<Bytes>>,
{
    let mut stream = std::pin::pin!(stream);
    let mut lister = Lister::new();
    while let Some(chunk) = stream.next().await {
        lister.feed(&chunk?)?;
    }
    Ok(lister.finish()?)
}
