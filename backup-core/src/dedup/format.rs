//! The three binary formats of the chunk store: chunk lists, packs and pack
//! indexes. All integers are little-endian; each format starts with a
//! 4-byte magic and a `u32` version, and readers refuse versions they do
//! not know.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::manifest::Digests;
use crate::pipeline::Hasher;
use crate::store::ByteStream;

/// Version of every format below.
pub(crate) const FORMAT_VERSION: u32 = 1;

const CHUNK_LIST_MAGIC: &[u8; 4] = b"DBCL";
const PACK_MAGIC: &[u8; 4] = b"DBPK";
const INDEX_MAGIC: &[u8; 4] = b"DBPI";

/// Bytes before the first chunk of a pack (magic + version).
pub(crate) const PACK_HEADER_LEN: u64 = 8;

/// Bytes of one chunk-list entry: id + raw length.
pub(crate) const LIST_ENTRY_LEN: usize = 32 + 4;

/// Bytes of one pack-index entry: id + offset + stored length + raw length.
const INDEX_ENTRY_LEN: usize = 32 + 8 + 4 + 4;

/// A chunk's name: the SHA-256 of its plaintext.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ChunkId(pub(crate) [u8; 32]);

impl ChunkId {
    pub(crate) fn of(data: &[u8]) -> ChunkId {
        ChunkId(Sha256::digest(data).into())
    }

    pub(crate) fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

fn read_id(buf: &mut impl Buf) -> ChunkId {
    let mut id = [0u8; 32];
    buf.copy_to_slice(&mut id);
    ChunkId(id)
}

/// The 8 bytes every pack starts with.
pub(crate) fn pack_header() -> Bytes {
    let mut b = BytesMut::with_capacity(PACK_HEADER_LEN as usize);
    b.put_slice(PACK_MAGIC);
    b.put_u32_le(FORMAT_VERSION);
    b.freeze()
}

/// The 8 bytes every chunk list starts with.
pub(crate) fn chunk_list_header() -> Bytes {
    let mut b = BytesMut::with_capacity(8);
    b.put_slice(CHUNK_LIST_MAGIC);
    b.put_u32_le(FORMAT_VERSION);
    b.freeze()
}

/// Appends one chunk-list entry to `buf`.
pub(crate) fn put_list_entry(buf: &mut BytesMut, id: &ChunkId, raw_len: u32) {
    buf.put_slice(&id.0);
    buf.put_u32_le(raw_len);
}

fn check_magic(what: &str, data: &[u8], magic: &[u8; 4]) -> Result<()> {
    if data.len() < 8 || &data[..4] != magic {
        return Err(Error::Integrity {
            what: what.to_string(),
            detail: "not a chunk-store object of the expected kind (bad magic)".into(),
        });
    }
    let version = u32::from_le_bytes(data[4..8].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(Error::Integrity {
            what: what.to_string(),
            detail: format!(
                "format version {version} is not supported (this build reads {FORMAT_VERSION})"
            ),
        });
    }
    Ok(())
}

/// Checks the header of a pack read whole.
pub(crate) fn check_pack_header(what: &str, data: &[u8]) -> Result<()> {
    check_magic(what, data, PACK_MAGIC)
}

/// Reads a chunk list as it streams: entries one by one, hashing every
/// byte so the caller can compare the whole object with the manifest.
pub(crate) struct ChunkListReader {
    stream: ByteStream,
    buf: BytesMut,
    hasher: Hasher,
    what: String,
    started: bool,
    ended: bool,
}

impl ChunkListReader {
    pub(crate) fn new(stream: ByteStream, what: &str) -> Self {
        ChunkListReader {
            stream,
            buf: BytesMut::new(),
            hasher: Hasher::default(),
            what: what.to_string(),
            started: false,
            ended: false,
        }
    }

    async fn fill(&mut self, want: usize) -> Result<bool> {
        while self.buf.len() < want && !self.ended {
            match self.stream.next().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    self.hasher.update(&chunk);
                    self.buf.extend_from_slice(&chunk);
                }
                None => self.ended = true,
            }
        }
        Ok(self.buf.len() >= want)
    }

    /// The next `(chunk id, raw length)`, or `None` at the end.
    pub(crate) async fn next_entry(&mut self) -> Result<Option<(ChunkId, u32)>> {
        if !self.started {
            self.fill(8).await?;
            check_magic(&self.what, &self.buf, CHUNK_LIST_MAGIC)?;
            self.buf.advance(8);
            self.started = true;
        }
        if !self.fill(LIST_ENTRY_LEN).await? {
            if self.buf.is_empty() {
                return Ok(None);
            }
            return Err(Error::Integrity {
                what: self.what.clone(),
                detail: format!(
                    "chunk list ends inside an entry ({} stray bytes)",
                    self.buf.len()
                ),
            });
        }
        let id = read_id(&mut self.buf);
        let raw_len = self.buf.get_u32_le();
        Ok(Some((id, raw_len)))
    }

    /// Digests of every byte read; call after `next_entry` returned `None`.
    pub(crate) fn finish(self) -> Digests {
        self.hasher.finish()
    }
}

/// What a pack index says about its pack as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PackHeader {
    /// The pack id (its key's file stem).
    pub(crate) pack: String,
    /// Size of the pack object in bytes.
    pub(crate) size: u64,
    /// How every chunk in the pack is compressed.
    pub(crate) compression: String,
    /// Compression level, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) level: Option<i32>,
    /// Sorted age recipients every chunk is encrypted to; empty for
    /// plaintext chunks. Only backups with the same set reuse the chunks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) recipients: Vec<String>,
    /// When the pack was written.
    pub(crate) created_at: DateTime<Utc>,
    /// The backup (or `gc`) that wrote it.
    pub(crate) written_by: String,
}

/// Where one chunk lies in its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub(crate) id: ChunkId,
    pub(crate) offset: u64,
    pub(crate) stored_len: u32,
    pub(crate) raw_len: u32,
}

impl IndexEntry {
    pub(crate) fn end(&self) -> u64 {
        self.offset + u64::from(self.stored_len)
    }
}

/// A pack index: a JSON header and fixed-size entries, sealed by the
/// SHA-256 of everything before it.
///
/// ```text
/// "DBPI" u32:version u32:header_len header(JSON) u32:count
/// count × (id[32] u64:offset u32:stored_len u32:raw_len)  sha256[32]
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PackIndex {
    pub(crate) header: PackHeader,
    pub(crate) entries: Vec<IndexEntry>,
}

impl PackIndex {
    pub(crate) fn encode(&self) -> Bytes {
        let header = serde_json::to_vec(&self.header).expect("pack header serialises");
        let mut b =
            BytesMut::with_capacity(16 + header.len() + self.entries.len() * INDEX_ENTRY_LEN + 32);
        b.put_slice(INDEX_MAGIC);
        b.put_u32_le(FORMAT_VERSION);
        b.put_u32_le(header.len() as u32);
        b.put_slice(&header);
        b.put_u32_le(self.entries.len() as u32);
        for e in &self.entries {
            b.put_slice(&e.id.0);
            b.put_u64_le(e.offset);
            b.put_u32_le(e.stored_len);
            b.put_u32_le(e.raw_len);
        }
        let seal = Sha256::digest(&b);
        b.put_slice(&seal);
        b.freeze()
    }

    pub(crate) fn decode(what: &str, data: &[u8]) -> Result<PackIndex> {
        let corrupt = |detail: String| Error::Integrity {
            what: what.to_string(),
            detail,
        };
        check_magic(what, data, INDEX_MAGIC)?;
        if data.len() < 8 + 4 + 4 + 32 {
            return Err(corrupt("pack index too short".into()));
        }
        let (body, seal) = data.split_at(data.len() - 32);
        if Sha256::digest(body)[..] != seal[..] {
            return Err(corrupt("pack index checksum mismatch".into()));
        }
        let mut buf = &body[8..];
        let header_len = buf.get_u32_le() as usize;
        if buf.remaining() < header_len + 4 {
            return Err(corrupt("pack index header truncated".into()));
        }
        let header: PackHeader = serde_json::from_slice(&buf[..header_len])
            .map_err(|e| corrupt(format!("pack index header: {e}")))?;
        buf.advance(header_len);
        let count = buf.get_u32_le() as usize;
        if buf.remaining() != count * INDEX_ENTRY_LEN {
            return Err(corrupt(format!(
                "pack index holds {} bytes of entries, expected {count} entries",
                buf.remaining()
            )));
        }
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let entry = IndexEntry {
                id: read_id(&mut buf),
                offset: buf.get_u64_le(),
                stored_len: buf.get_u32_le(),
                raw_len: buf.get_u32_le(),
            };
            // Readers compute `end()`: an entry whose end does not fit in a
            // u64 cannot describe bytes of any pack.
            if entry
                .offset
                .checked_add(u64::from(entry.stored_len))
                .is_none()
            {
                return Err(corrupt(format!(
                    "pack index entry for chunk {} ends past the largest offset",
                    entry.id
                )));
            }
            entries.push(entry);
        }
        Ok(PackIndex { header, entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> PackIndex {
        PackIndex {
            header: PackHeader {
                pack: "00aa".into(),
                size: 100,
                compression: "zstd".into(),
                level: Some(3),
                recipients: vec!["age1x".into()],
                created_at: Utc::now(),
                written_by: "b".into(),
            },
            entries: vec![
                IndexEntry {
                    id: ChunkId::of(b"one"),
                    offset: 8,
                    stored_len: 40,
                    raw_len: 3,
                },
                IndexEntry {
                    id: ChunkId::of(b"two"),
                    offset: 48,
                    stored_len: 52,
                    raw_len: 3,
                },
            ],
        }
    }

    #[test]
    fn pack_index_round_trips_and_detects_damage() {
        let idx = index();
        let bytes = idx.encode();
        assert_eq!(PackIndex::decode("x", &bytes).unwrap(), idx);
        for i in [0, 5, 20, bytes.len() - 40, bytes.len() - 1] {
            let mut bad = bytes.to_vec();
            bad[i] ^= 1;
            assert!(PackIndex::decode("x", &bad).is_err(), "flip at {i}");
        }
        assert!(PackIndex::decode("x", &bytes[..bytes.len() - 1]).is_err());
    }

    #[tokio::test]
    async fn chunk_lists_stream_in_any_split() {
        let mut body = BytesMut::new();
        body.extend_from_slice(&chunk_list_header());
        let ids: Vec<ChunkId> = (0..50u32).map(|i| ChunkId::of(&i.to_le_bytes())).collect();
        for (i, id) in ids.iter().enumerate() {
            put_list_entry(&mut body, id, i as u32);
        }
        let body = body.freeze();
        for split in [1, 7, 36, 1000] {
            let pieces: Vec<Result<Bytes>> = body
                .chunks(split)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let mut reader = ChunkListReader::new(futures::stream::iter(pieces).boxed(), "l");
            let mut got = Vec::new();
            while let Some((id, len)) = reader.next_entry().await.unwrap() {
                got.push((id, len));
            }
            assert_eq!(got.len(), 50);
            assert_eq!(got[7], (ids[7], 7));
            assert_eq!(reader.finish().size, body.len() as u64);
        }
        let cut: Vec<Result<Bytes>> = vec![Ok(body.slice(..body.len() - 3))];
        let mut reader = ChunkListReader::new(futures::stream::iter(cut).boxed(), "l");
        let mut result = Ok(None);
        for _ in 0..51 {
            result = reader.next_entry().await;
            if result.is_err() {
                break;
            }
        }
        assert!(result.is_err(), "a truncated list is an error");
    }
}
