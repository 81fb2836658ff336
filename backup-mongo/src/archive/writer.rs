//! Incremental archive writer.

use std::collections::HashSet;

use bytes::{BufMut, Bytes, BytesMut};

use super::crc64::Crc64;
use super::error::ArchiveError;
use super::format::{MAGIC, MAX_DOCUMENT_SIZE, MIN_DOCUMENT_SIZE, TERMINATOR};
use super::header::{ArchiveHeader, CollectionMetadata, NamespaceHeader};
use super::namespace::Namespace;
use super::reader::NamespaceSummary;

/// Writes a mongodump archive one collection at a time, without holding
/// any collection in memory.
///
/// The writer appends to an internal buffer; the caller moves the bytes out
/// with [`ArchiveWriter::take`] whenever it likes (after every document, or
/// once [`ArchiveWriter::buffered`] passes a chunk size), so the buffer
/// never holds more than the caller lets it. Documents are copied through
/// as raw BSON, never decoded.
///
/// For each collection listed in the prelude: [`begin_namespace`], any
/// number of [`document`] calls, [`end_namespace`]. Views and empty
/// collections get a `begin`/`end` pair with no document, as mongodump
/// writes them. [`finish`] checks that every collection of the prelude was
/// written (mongorestore fails otherwise).
///
/// ```
/// use backup_mongo::archive::*;
/// use bson::{doc, rawdoc};
///
/// let users = Namespace::new("app", "users");
/// let meta = MetadataDocument::new("users", CollectionType::Collection);
/// let mut writer = ArchiveWriter::new(
///     &ArchiveHeader::new("7.0.14", "backup-mongo 0.1.0"),
///     &[CollectionMetadata::new(users.clone(), CollectionType::Collection, meta.to_extended_json())],
/// )?;
/// let mut archive = Vec::new();
/// writer.begin_namespace("app", "users")?;
/// for name in ["ada", "grace"] {
///     writer.document(rawdoc! { "name": name }.as_bytes())?;
///     archive.extend_from_slice(&writer.take()); // stream it out
/// }
/// let summary = writer.end_namespace()?;
/// assert_eq!(summary.documents, 2);
/// archive.extend_from_slice(&writer.finish()?);
/// assert_eq!(&archive[..4], &MAGIC);
/// # Ok::<(), ArchiveError>(())
/// ```
///
/// [`begin_namespace`]: ArchiveWriter::begin_namespace
/// [`document`]: ArchiveWriter::document
/// [`end_namespace`]: ArchiveWriter::end_namespace
/// [`finish`]: ArchiveWriter::finish
#[derive(Debug)]
pub struct ArchiveWriter {
    out: BytesMut,
    /// Bytes produced so far, taken or not.
    position: u64,
    collections: Vec<CollectionMetadata>,
    written: HashSet<Namespace>,
    open: Option<OpenNamespace>,
    finished: bool,
}

#[derive(Debug)]
struct OpenNamespace {
    namespace: Namespace,
    crc: Crc64,
    documents: u64,
    bytes: u64,
}

impl ArchiveWriter {
    /// Starts an archive: writes the magic number, `header`, one metadata
    /// entry per collection and the prelude terminator.
    ///
    /// Every collection whose documents will follow must be listed here,
    /// once.
    pub fn new(
        header: &ArchiveHeader,
        collections: &[CollectionMetadata],
    ) -> Result<Self, ArchiveError> {
        let mut seen = HashSet::new();
        for entry in collections {
            if entry.namespace.collection.is_empty() {
                return Err(ArchiveError::Usage(format!(
                    "prelude entry in database {:?} has no collection name",
                    entry.namespace.db
                )));
            }
            if !seen.insert(&entry.namespace) {
                return Err(ArchiveError::Usage(format!(
                    "{} is listed twice in the prelude",
                    entry.namespace
                )));
            }
        }
        let mut out = BytesMut::with_capacity(4096);
        out.put_slice(&MAGIC);
        header.encode(&mut out)?;
        for entry in collections {
            entry.encode(&mut out)?;
        }
        out.put_slice(&TERMINATOR);
        Ok(ArchiveWriter {
            position: out.len() as u64,
            out,
            collections: collections.to_vec(),
            written: HashSet::new(),
            open: None,
            finished: false,
        })
    }

    /// Starts the documents of `db.collection`, which the prelude must list
    /// (a timeseries collection `x` writes its data as
    /// `system.buckets.x`).
    pub fn begin_namespace(&mut self, db: &str, collection: &str) -> Result<(), ArchiveError> {
        self.check_not_finished()?;
        if let Some(open) = &self.open {
            return Err(ArchiveError::Usage(format!(
                "cannot begin {db}.{collection}: {} is still open",
                open.namespace
            )));
        }
        let namespace = Namespace::new(db, collection);
        if !self
            .collections
            .iter()
            .any(|entry| entry.owns_data_namespace(&namespace))
        {
            return Err(ArchiveError::Usage(format!(
                "{namespace} is not listed in the prelude"
            )));
        }
        if self.written.contains(&namespace) {
            return Err(ArchiveError::Usage(format!(
                "{namespace} was already written"
            )));
        }
        let header = NamespaceHeader {
            namespace: namespace.clone(),
            eof: false,
            crc: 0,
        };
        self.encode_header(&header)?;
        self.open = Some(OpenNamespace {
            namespace,
            crc: Crc64::new(),
            documents: 0,
            bytes: 0,
        });
        Ok(())
    }

    /// Appends one raw BSON document (e.g. `RawDocumentBuf::as_bytes()`) to
    /// the open namespace. Its framing is checked (length prefix equal to
    /// `doc.len()`, at most 16 MiB, trailing NUL); its content is not.
    pub fn document(&mut self, doc: &[u8]) -> Result<(), ArchiveError> {
        let position = self.position;
        let Some(open) = self.open.as_mut() else {
            return Err(ArchiveError::Usage(
                "document written outside a namespace".to_string(),
            ));
        };
        if let Err(detail) = check_document(doc) {
            return Err(ArchiveError::InvalidDocument {
                offset: position,
                namespace: Some(open.namespace.clone()),
                detail,
            });
        }
        open.crc.update(doc);
        open.documents += 1;
        open.bytes += doc.len() as u64;
        self.out.put_slice(doc);
        self.position += doc.len() as u64;
        Ok(())
    }

    /// Ends the open namespace: its segment terminator, then its EOF block
    /// carrying the CRC of its documents.
    pub fn end_namespace(&mut self) -> Result<NamespaceSummary, ArchiveError> {
        let Some(open) = self.open.take() else {
            return Err(ArchiveError::Usage(
                "end_namespace without begin_namespace".to_string(),
            ));
        };
        self.put(&TERMINATOR);
        let crc = open.crc.value();
        let header = NamespaceHeader {
            namespace: open.namespace.clone(),
            eof: true,
            crc: crc as i64,
        };
        self.encode_header(&header)?;
        self.put(&TERMINATOR);
        self.written.insert(open.namespace.clone());
        Ok(NamespaceSummary {
            namespace: open.namespace,
            documents: open.documents,
            bytes: open.bytes,
            crc,
        })
    }

    /// Ends the archive and returns the bytes not yet taken. Fails if a
    /// namespace is open or a collection of the prelude (other than a
    /// timeseries one) was never written.
    pub fn finish(&mut self) -> Result<Bytes, ArchiveError> {
        self.check_not_finished()?;
        if let Some(open) = &self.open {
            return Err(ArchiveError::Usage(format!(
                "finish with {} still open",
                open.namespace
            )));
        }
        let missing: Vec<String> = self
            .collections
            .iter()
            .filter(|entry| entry.requires_data_block() && !self.written.contains(&entry.namespace))
            .map(|entry| entry.namespace.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(ArchiveError::Usage(format!(
                "listed in the prelude but never written: {}",
                missing.join(", ")
            )));
        }
        self.finished = true;
        Ok(self.take())
    }

    /// Moves out everything written so far.
    pub fn take(&mut self) -> Bytes {
        self.out.split().freeze()
    }

    /// How many bytes are waiting to be taken.
    pub fn buffered(&self) -> usize {
        self.out.len()
    }

    /// Total archive bytes produced so far, taken or not.
    pub fn position(&self) -> u64 {
        self.position
    }

    fn put(&mut self, bytes: &[u8]) {
        self.out.put_slice(bytes);
        self.position += bytes.len() as u64;
    }

    fn encode_header(&mut self, header: &NamespaceHeader) -> Result<(), ArchiveError> {
        let before = self.out.len();
        header.encode(&mut self.out)?;
        self.position += (self.out.len() - before) as u64;
        Ok(())
    }

    fn check_not_finished(&self) -> Result<(), ArchiveError> {
        if self.finished {
            return Err(ArchiveError::Usage("archive already finished".to_string()));
        }
        Ok(())
    }
}

/// Checks the framing of one raw BSON document.
pub(crate) fn check_document(doc: &[u8]) -> Result<(), String> {
    if doc.len() < MIN_DOCUMENT_SIZE {
        return Err(format!("{} bytes is too short for BSON", doc.len()));
    }
    if doc.len() > MAX_DOCUMENT_SIZE {
        return Err(format!(
            "{} bytes exceeds the 16 MiB mongorestore accepts",
            doc.len()
        ));
    }
    let declared = i32::from_le_bytes([doc[0], doc[1], doc[2], doc[3]]);
    if usize::try_from(declared).ok() != Some(doc.len()) {
        return Err(format!(
            "length prefix says {declared} bytes, {} given",
            doc.len()
        ));
    }
    if doc[doc.len() - 1] != 0 {
        return Err("does not end with a NUL byte".to_string());
    }
    Ok(())
}
