//! Push-based archive reader.

use std::collections::HashMap;

use bytes::{Buf, Bytes, BytesMut};

use super::crc64::Crc64;
use super::error::ArchiveError;
use super::format::{MAGIC, MAX_DOCUMENT_SIZE, MIN_DOCUMENT_SIZE};
use super::header::{ArchiveHeader, CollectionMetadata, NamespaceHeader};
use super::namespace::Namespace;

/// The archive's prelude: its header and the collections it lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prelude {
    /// Format, server and tool versions.
    pub header: ArchiveHeader,
    /// One entry per collection, view or timeseries collection, in archive
    /// order.
    pub collections: Vec<CollectionMetadata>,
}

/// A namespace whose EOF block was read (or written) and whose CRC matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceSummary {
    /// The namespace the documents were written under.
    pub namespace: Namespace,
    /// Number of documents.
    pub documents: u64,
    /// Total size of the documents in bytes.
    pub bytes: u64,
    /// CRC-64/XZ of the documents, as stored in the EOF block.
    pub crc: u64,
}

/// What the reader found next in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArchiveEvent {
    /// The prelude; always the first event.
    Prelude(Prelude),
    /// The [`ArchiveEvent::Document`]s that follow, up to the next
    /// `NamespaceStart` or [`ArchiveEvent::NamespaceEnd`], belong to `namespace`.
    /// `resumed` is true when the namespace already had a segment earlier
    /// (mongodump interleaves collections dumped in parallel).
    NamespaceStart {
        /// Where the documents go.
        namespace: Namespace,
        /// Whether this continues an earlier segment of the namespace.
        resumed: bool,
    },
    /// One raw BSON document of the current namespace, framing checked,
    /// content not decoded.
    Document(Bytes),
    /// A namespace is complete and the CRC of all its documents matched.
    NamespaceEnd(NamespaceSummary),
}

/// A push-based, incremental archive parser.
///
/// Feed it bytes as they arrive with [`ArchiveReader::feed`], drain
/// [`ArchiveReader::next_event`] until it returns `Ok(None)`, repeat, and
/// call [`ArchiveReader::finish`] at the end of the input: only then is a
/// stream that stops between two blocks told apart from a complete archive.
///
/// The reader keeps the bytes of at most one incomplete item (a document
/// or header, at most 16 MiB) plus whatever was fed and not yet consumed,
/// one CRC state per namespace and the prelude. Documents are handed out
/// before their namespace's CRC can be checked (it comes at the end of the
/// namespace); a consumer that must not apply corrupt data has to hold back
/// its commit until [`ArchiveEvent::NamespaceEnd`], or until `finish`.
///
/// Any error is final: later calls return [`ArchiveError::Usage`].
///
/// ```
/// use backup_mongo::archive::*;
/// use bson::rawdoc;
///
/// let mut writer = ArchiveWriter::new(
///     &ArchiveHeader::new("7.0.14", "backup-mongo"),
///     &[CollectionMetadata::new(Namespace::new("app", "users"), CollectionType::Collection, "")],
/// )?;
/// writer.begin_namespace("app", "users")?;
/// writer.document(rawdoc! { "name": "ada" }.as_bytes())?;
/// writer.end_namespace()?;
/// let archive = writer.finish()?;
///
/// let mut reader = ArchiveReader::new();
/// let mut documents = 0;
/// for chunk in archive.chunks(7) {
///     reader.feed(chunk);
///     while let Some(event) = reader.next_event()? {
///         if let ArchiveEvent::Document(raw) = event {
///             assert_eq!(bson::RawDocument::from_bytes(&raw)?.get_str("name")?, "ada");
///             documents += 1;
///         }
///     }
/// }
/// reader.finish()?;
/// assert_eq!(documents, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct ArchiveReader {
    buf: BytesMut,
    /// Stream offset of `buf[0]`.
    offset: u64,
    state: State,
    header: Option<ArchiveHeader>,
    collections: Vec<CollectionMetadata>,
    namespaces: HashMap<Namespace, NamespaceState>,
    /// The namespace of the segment being read, or of the EOF block whose
    /// terminator is expected.
    current: Option<Namespace>,
    /// A second event produced by one item (an EOF block for a namespace
    /// that had no segment yields a start and an end).
    pending: Option<ArchiveEvent>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Magic,
    PreludeHeader,
    PreludeCollections,
    BlockHeader,
    BlockBody,
    EofTerminator,
    Finished,
    Failed,
}

#[derive(Debug)]
struct NamespaceState {
    /// Order of first appearance, for error messages.
    seq: usize,
    crc: Crc64,
    documents: u64,
    bytes: u64,
    ended: bool,
}

enum Item {
    Terminator,
    Document(Bytes),
}

impl ArchiveReader {
    /// A reader expecting the start of an archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the next bytes of the stream.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Bytes fed and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Stream offset of the first byte not yet consumed.
    pub fn position(&self) -> u64 {
        self.offset
    }

    /// The archive header, once the prelude has been read.
    pub fn header(&self) -> Option<&ArchiveHeader> {
        self.header.as_ref()
    }

    /// The namespace the next [`ArchiveEvent::Document`]s belong to, while inside
    /// a segment.
    pub fn current_namespace(&self) -> Option<&Namespace> {
        match self.state {
            State::BlockBody => self.current.as_ref(),
            _ => None,
        }
    }

    /// The next event, `Ok(None)` when more input is needed.
    pub fn next_event(&mut self) -> Result<Option<ArchiveEvent>, ArchiveError> {
        if let Some(event) = self.pending.take() {
            return Ok(Some(event));
        }
        match self.state {
            State::Failed => {
                return Err(ArchiveError::Usage(
                    "the reader already reported an error".to_string(),
                ));
            }
            State::Finished => {
                return Err(ArchiveError::Usage("next_event after finish".to_string()));
            }
            _ => {}
        }
        let result = self.step();
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    /// Declares the end of input. Succeeds only if the archive was
    /// complete: prelude read, no partial item, every namespace that was
    /// started ended, and every collection the prelude lists (timeseries
    /// excepted, as in mongorestore) reached its EOF block.
    ///
    /// Call it after [`ArchiveReader::next_event`] returned `Ok(None)`.
    pub fn finish(&mut self) -> Result<(), ArchiveError> {
        match self.state {
            State::Failed => {
                return Err(ArchiveError::Usage(
                    "the reader already reported an error".to_string(),
                ));
            }
            State::Finished => return Ok(()),
            _ => {}
        }
        if self.pending.is_some() || self.has_complete_item() {
            return Err(ArchiveError::Usage(
                "finish called while events were still pending; drain next_event first".to_string(),
            ));
        }
        let reading = match self.state {
            State::Magic => "the magic number",
            State::PreludeHeader => "the prelude header",
            State::PreludeCollections => "the prelude's collection list",
            State::BlockHeader if self.buf.is_empty() => {
                let namespaces = self.unfinished();
                if namespaces.is_empty() {
                    self.state = State::Finished;
                    return Ok(());
                }
                self.state = State::Failed;
                return Err(ArchiveError::Truncated {
                    offset: self.offset,
                    reading: "the next namespace block",
                    namespaces,
                });
            }
            State::BlockHeader => "a namespace header",
            State::BlockBody => "a document",
            State::EofTerminator => "the terminator of an EOF block",
            State::Finished | State::Failed => unreachable!("handled above"),
        };
        self.state = State::Failed;
        Err(ArchiveError::Truncated {
            offset: self.offset + self.buf.len() as u64,
            reading,
            namespaces: self.unfinished(),
        })
    }

    fn step(&mut self) -> Result<Option<ArchiveEvent>, ArchiveError> {
        loop {
            match self.state {
                State::Magic => {
                    if self.buf.len() < MAGIC.len() {
                        return Ok(None);
                    }
                    let found = [self.buf[0], self.buf[1], self.buf[2], self.buf[3]];
                    if found != MAGIC {
                        return Err(ArchiveError::BadMagic { found });
                    }
                    self.consume(MAGIC.len());
                    self.state = State::PreludeHeader;
                }
                State::PreludeHeader => {
                    let offset = self.offset;
                    match self.read_item()? {
                        None => return Ok(None),
                        Some(Item::Terminator) => {
                            return Err(malformed(offset, "the prelude has no header document"));
                        }
                        Some(Item::Document(doc)) => {
                            let header = ArchiveHeader::decode(&doc).map_err(|detail| {
                                malformed(offset, format!("prelude header: {detail}"))
                            })?;
                            self.header = Some(header);
                            self.state = State::PreludeCollections;
                        }
                    }
                }
                State::PreludeCollections => {
                    let offset = self.offset;
                    match self.read_item()? {
                        None => return Ok(None),
                        Some(Item::Terminator) => {
                            self.state = State::BlockHeader;
                            let header = self.header.clone().expect("read before the collections");
                            return Ok(Some(ArchiveEvent::Prelude(Prelude {
                                header,
                                collections: self.collections.clone(),
                            })));
                        }
                        Some(Item::Document(doc)) => {
                            let entry = CollectionMetadata::decode(&doc).map_err(|detail| {
                                malformed(offset, format!("prelude collection entry: {detail}"))
                            })?;
                            self.collections.push(entry);
                        }
                    }
                }
                State::BlockHeader => {
                    let offset = self.offset;
                    match self.read_item()? {
                        None => return Ok(None),
                        Some(Item::Terminator) => {
                            return Err(malformed(
                                offset,
                                "terminator where a namespace header was expected",
                            ));
                        }
                        Some(Item::Document(doc)) => {
                            let header = NamespaceHeader::decode(&doc).map_err(|detail| {
                                malformed(offset, format!("namespace header: {detail}"))
                            })?;
                            return self.on_header(offset, header).map(Some);
                        }
                    }
                }
                State::BlockBody => match self.read_item()? {
                    None => return Ok(None),
                    Some(Item::Terminator) => {
                        self.current = None;
                        self.state = State::BlockHeader;
                    }
                    Some(Item::Document(doc)) => {
                        let namespace = self.current.as_ref().expect("set with BlockBody");
                        let state = self
                            .namespaces
                            .get_mut(namespace)
                            .expect("inserted at its header");
                        state.crc.update(&doc);
                        state.documents += 1;
                        state.bytes += doc.len() as u64;
                        return Ok(Some(ArchiveEvent::Document(doc)));
                    }
                },
                State::EofTerminator => {
                    let offset = self.offset;
                    match self.read_item()? {
                        None => return Ok(None),
                        Some(Item::Terminator) => {
                            self.current = None;
                            self.state = State::BlockHeader;
                        }
                        Some(Item::Document(_)) => {
                            let namespace = self.current.as_ref().expect("set with EofTerminator");
                            return Err(malformed(
                                offset,
                                format!("document after the EOF header of {namespace}"),
                            ));
                        }
                    }
                }
                State::Finished | State::Failed => unreachable!("checked by next_event"),
            }
        }
    }

    fn on_header(
        &mut self,
        offset: u64,
        header: NamespaceHeader,
    ) -> Result<ArchiveEvent, ArchiveError> {
        let namespace = header.namespace;
        let seq = self.namespaces.len();
        let is_new = !self.namespaces.contains_key(&namespace);
        let state = self
            .namespaces
            .entry(namespace.clone())
            .or_insert_with(|| NamespaceState {
                seq,
                crc: Crc64::new(),
                documents: 0,
                bytes: 0,
                ended: false,
            });
        if state.ended {
            return Err(malformed(
                offset,
                format!("{namespace} has another block after its EOF block"),
            ));
        }
        self.current = Some(namespace.clone());
        if !header.eof {
            self.state = State::BlockBody;
            return Ok(ArchiveEvent::NamespaceStart {
                namespace,
                resumed: !is_new,
            });
        }
        let actual = state.crc.value();
        let expected = header.crc as u64;
        if actual != expected {
            return Err(ArchiveError::CrcMismatch {
                namespace,
                expected,
                actual,
            });
        }
        state.ended = true;
        self.state = State::EofTerminator;
        let end = ArchiveEvent::NamespaceEnd(NamespaceSummary {
            namespace: namespace.clone(),
            documents: state.documents,
            bytes: state.bytes,
            crc: actual,
        });
        if is_new {
            self.pending = Some(end);
            return Ok(ArchiveEvent::NamespaceStart {
                namespace,
                resumed: false,
            });
        }
        Ok(end)
    }

    /// The next terminator or complete BSON item, if it has fully arrived.
    fn read_item(&mut self) -> Result<Option<Item>, ArchiveError> {
        let Some(prefix) = self.buf.get(..4) else {
            return Ok(None);
        };
        let raw = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if raw == u32::MAX {
            self.consume(4);
            return Ok(Some(Item::Terminator));
        }
        let length = raw as i32;
        let size = usize::try_from(length)
            .ok()
            .filter(|size| (MIN_DOCUMENT_SIZE..=MAX_DOCUMENT_SIZE).contains(size))
            .ok_or_else(|| ArchiveError::InvalidLength {
                offset: self.offset,
                length,
                namespace: self.current_namespace().cloned(),
            })?;
        if self.buf.len() < size {
            self.buf.reserve(size - self.buf.len());
            return Ok(None);
        }
        if self.buf[size - 1] != 0 {
            return Err(ArchiveError::InvalidDocument {
                offset: self.offset,
                namespace: self.current_namespace().cloned(),
                detail: format!("{size}-byte document does not end with a NUL byte"),
            });
        }
        let doc = self.buf.split_to(size).freeze();
        self.offset += size as u64;
        Ok(Some(Item::Document(doc)))
    }

    fn has_complete_item(&self) -> bool {
        match self.state {
            State::Magic => self.buf.len() >= MAGIC.len(),
            _ => match self.buf.get(..4) {
                None => false,
                Some(prefix) => {
                    let raw = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
                    // An invalid length is an error next_event has not
                    // reported yet: also "pending".
                    raw == u32::MAX
                        || usize::try_from(raw as i32).map_or(true, |size| {
                            !(MIN_DOCUMENT_SIZE..=MAX_DOCUMENT_SIZE).contains(&size)
                                || self.buf.len() >= size
                        })
                }
            },
        }
    }

    fn consume(&mut self, n: usize) {
        self.buf.advance(n);
        self.offset += n as u64;
    }

    /// Namespaces that are incomplete: the current one, the others started
    /// in order of appearance, then the prelude's never started.
    fn unfinished(&self) -> Vec<Namespace> {
        let mut list = Vec::new();
        if let Some(current) = &self.current
            && self.namespaces.get(current).is_some_and(|s| !s.ended)
        {
            list.push(current.clone());
        }
        let mut started: Vec<(&Namespace, &NamespaceState)> = self
            .namespaces
            .iter()
            .filter(|(ns, s)| !s.ended && Some(*ns) != self.current.as_ref())
            .collect();
        started.sort_by_key(|(_, s)| s.seq);
        list.extend(started.into_iter().map(|(ns, _)| ns.clone()));
        for entry in &self.collections {
            if entry.requires_data_block()
                && !self.namespaces.contains_key(&entry.namespace)
                && !list.contains(&entry.namespace)
            {
                list.push(entry.namespace.clone());
            }
        }
        list
    }
}

fn malformed(offset: u64, detail: impl Into<String>) -> ArchiveError {
    ArchiveError::Malformed {
        offset,
        detail: detail.into(),
    }
}
