//! Entry points into private parsers for the fuzz targets
//! (`backup-core/fuzz`) and the property tests (`tests/prop_*.rs`), feature
//! `testing`. Each function calls the parser the library itself uses; the
//! types here only mirror the private ones so tests can build and compare
//! values. Not a stable API.

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};

use crate::dedup::format::{self, ChunkId, ChunkListReader};
use crate::error::Result;
use crate::manifest::Digests;

/// A chunk-list entry: the chunk's SHA-256 and its raw length.
pub type ListEntry = ([u8; 32], u32);

/// Encodes a chunk list as a deduplicated backup writes it.
pub fn encode_chunk_list(entries: &[ListEntry]) -> Bytes {
    let mut body = BytesMut::new();
    body.extend_from_slice(&format::chunk_list_header());
    for (id, raw_len) in entries {
        format::put_list_entry(&mut body, &ChunkId(*id), *raw_len);
    }
    body.freeze()
}

/// Reads a chunk list delivered as `pieces` (one stream item each) with the
/// streaming reader restores, checks and GC use: every entry, then the
/// digests of all bytes read.
pub fn read_chunk_list(pieces: Vec<Bytes>) -> Result<(Vec<ListEntry>, Digests)> {
    let stream = futures::stream::iter(pieces.into_iter().map(Ok));
    let mut reader = ChunkListReader::new(Box::pin(stream), "fuzz.chunks");
    futures::executor::block_on(async {
        let mut entries = Vec::new();
        while let Some((id, raw_len)) = reader.next_entry().await? {
            entries.push((id.0, raw_len));
        }
        Ok((entries, reader.finish()))
    })
}

/// The JSON header of a pack index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackHeader {
    /// Pack id.
    pub pack: String,
    /// Pack size in bytes.
    pub size: u64,
    /// Compression of every chunk.
    pub compression: String,
    /// Compression level.
    pub level: Option<i32>,
    /// Sorted age recipients.
    pub recipients: Vec<String>,
    /// When the pack was written.
    pub created_at: DateTime<Utc>,
    /// Who wrote it.
    pub written_by: String,
}

/// One pack-index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Chunk id.
    pub id: [u8; 32],
    /// Offset in the pack.
    pub offset: u64,
    /// Stored (encoded) length.
    pub stored_len: u32,
    /// Raw length.
    pub raw_len: u32,
}

/// A pack index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackIndex {
    /// Its header.
    pub header: PackHeader,
    /// Its entries, in pack order.
    pub entries: Vec<IndexEntry>,
}

impl PackIndex {
    fn to_private(&self) -> format::PackIndex {
        let h = &self.header;
        format::PackIndex {
            header: format::PackHeader {
                pack: h.pack.clone(),
                size: h.size,
                compression: h.compression.clone(),
                level: h.level,
                recipients: h.recipients.clone(),
                created_at: h.created_at,
                written_by: h.written_by.clone(),
            },
            entries: self
                .entries
                .iter()
                .map(|e| format::IndexEntry {
                    id: ChunkId(e.id),
                    offset: e.offset,
                    stored_len: e.stored_len,
                    raw_len: e.raw_len,
                })
                .collect(),
        }
    }

    fn from_private(index: format::PackIndex) -> PackIndex {
        let h = index.header;
        PackIndex {
            header: PackHeader {
                pack: h.pack,
                size: h.size,
                compression: h.compression,
                level: h.level,
                recipients: h.recipients,
                created_at: h.created_at,
                written_by: h.written_by,
            },
            entries: index
                .entries
                .iter()
                .map(|e| IndexEntry {
                    id: e.id.0,
                    offset: e.offset,
                    stored_len: e.stored_len,
                    raw_len: e.raw_len,
                })
                .collect(),
        }
    }

    /// Encodes the index as the pack writer stores it.
    pub fn encode(&self) -> Bytes {
        self.to_private().encode()
    }

    /// Decodes an index as restores, checks and GC read it.
    pub fn decode(data: &[u8]) -> Result<PackIndex> {
        format::PackIndex::decode("fuzz.idx", data).map(PackIndex::from_private)
    }
}

/// Recomputes the SHA-256 seal at the end of a pack index over the bytes
/// before it, so a fuzzer's changes reach the parser behind the seal.
/// Inputs shorter than the seal are returned unchanged.
pub fn reseal_pack_index(data: &mut [u8]) {
    use sha2::{Digest, Sha256};
    if data.len() < 32 {
        return;
    }
    let (body, seal) = data.split_at_mut(data.len() - 32);
    seal.copy_from_slice(&Sha256::digest(body));
}

/// Checks the 8-byte header of a pack read whole.
pub fn check_pack_header(data: &[u8]) -> Result<()> {
    format::check_pack_header("fuzz.pack", data)
}

/// Formats a duration the way retention labels show it (`30d`, `12h`,
/// `90s`); [`parse_duration`](crate::duration::parse_duration) reads it back.
pub fn format_duration(d: std::time::Duration) -> String {
    crate::retention::format_duration(d)
}

/// Panics unless `key` (parsed from `s`) is what a store may safely use:
/// the same text, within [`MAX_KEY_LEN`](crate::key::MAX_KEY_LEN),
/// relative, no backslash or control character, and its segments pushed
/// onto a root (what the fs store does) stay below it, one normal
/// component per segment; its parent joined with its file name gives it
/// back.
pub fn check_key(s: &str, key: &crate::key::Key) {
    use std::path::{Component, Path, PathBuf};
    assert_eq!(key.as_str(), s);
    assert!(!s.is_empty() && s.len() <= crate::key::MAX_KEY_LEN, "{s:?}");
    assert!(!s.starts_with('/') && !s.contains('\\'), "{s:?}");
    assert!(!s.chars().any(char::is_control), "{s:?}");
    let root = Path::new("/srv/store-root");
    let mut path = PathBuf::from(root);
    for segment in key.segments() {
        assert!(
            !segment.is_empty() && segment != "." && segment != "..",
            "{s:?}"
        );
        path.push(segment);
    }
    assert!(
        path.starts_with(root),
        "{s:?} escapes to {}",
        path.display()
    );
    let below: Vec<Component<'_>> = path
        .strip_prefix(root)
        .expect("below the root")
        .components()
        .collect();
    assert_eq!(below.len(), key.segments().count(), "{s:?}");
    assert!(
        below.iter().all(|c| matches!(c, Component::Normal(_))),
        "{s:?}"
    );
    if let Some(parent) = key.parent() {
        assert_eq!(
            parent.join(key.file_name()).expect("parent + file name"),
            *key
        );
        assert!(key.starts_with(&parent));
    }
}
