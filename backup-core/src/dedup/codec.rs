//! One chunk in, one stored blob out: compression, then age encryption.
//! Each blob is a complete zstd/gzip frame (and a complete age file when
//! encrypted), so any chunk can be read on its own with a range read.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::format::{ChunkId, PackHeader};
use crate::compression::{Algorithm, Compression};
use crate::crypto::{AgeIdentities, AgeRecipients};
use crate::error::{Error, Result};

/// How the chunks of one pack are encoded.
#[derive(Debug, Clone)]
pub(crate) struct ChunkCodec {
    compression: Compression,
    recipients: Option<AgeRecipients>,
}

impl ChunkCodec {
    /// The codec for new chunks of a backup using `compressor` and
    /// `recipients`. Chunks are compressed one at a time on the blocking
    /// pool, several at once, so zstd runs single-threaded per chunk.
    pub(crate) fn for_backup(compression: Compression, recipients: Option<AgeRecipients>) -> Self {
        ChunkCodec {
            compression: compression.with_workers(0),
            recipients,
        }
    }

    /// Compresses and (if configured) encrypts one chunk.
    pub(crate) fn encode(&self, plain: &[u8]) -> Result<Vec<u8>> {
        let compressed = run_writer(|sink| self.compression.encoder(sink), plain)
            .map_err(|e| Error::from_io("compressing a chunk", e))?;
        match &self.recipients {
            Some(r) => r.encrypt_blob(&compressed),
            None => Ok(compressed),
        }
    }

    /// The recipients recorded in pack headers: sorted public ids.
    pub(crate) fn group(&self) -> Vec<String> {
        group_of(self.recipients.as_ref().map(|r| r.ids()))
    }

    pub(crate) fn algorithm(&self) -> Algorithm {
        self.compression.algorithm()
    }

    pub(crate) fn level(&self) -> Option<i32> {
        self.compression.level()
    }
}

/// The dedup group of a recipient list: sorted ids, empty for plaintext.
/// Chunks are shared only between backups of the same group.
pub(crate) fn group_of(ids: Option<&[String]>) -> Vec<String> {
    let mut ids: Vec<String> = ids.map(<[String]>::to_vec).unwrap_or_default();
    ids.sort();
    ids.dedup();
    ids
}

/// Decodes blobs of one pack, given its header.
#[derive(Debug, Clone)]
pub(crate) struct ChunkDecoder {
    compression: Compression,
    identities: Option<AgeIdentities>,
}

impl ChunkDecoder {
    /// A decoder for chunks written as `header` says; encrypted packs need
    /// `identities`.
    pub(crate) fn for_pack(
        header: &PackHeader,
        identities: Option<&AgeIdentities>,
    ) -> Result<Self> {
        let compression = Compression::for_algorithm(header.compression.parse()?);
        let identities = match (header.recipients.is_empty(), identities) {
            (true, _) => None,
            (false, Some(ids)) if !ids.is_empty() => Some(ids.clone()),
            (false, _) => {
                return Err(Error::Decryption {
                    what: format!("pack {}", header.pack),
                    detail: "the chunks are encrypted and no identity was supplied".into(),
                });
            }
        };
        Ok(ChunkDecoder {
            compression,
            identities,
        })
    }

    /// Decrypts and decompresses one blob and checks it is chunk `id` of
    /// `raw_len` bytes.
    pub(crate) fn decode(&self, blob: &[u8], id: &ChunkId, raw_len: u32) -> Result<Bytes> {
        let what = format!("chunk {id}");
        let decrypted;
        let compressed = match &self.identities {
            Some(ids) => {
                decrypted = ids.decrypt_blob(blob, &what)?;
                &decrypted[..]
            }
            None => blob,
        };
        let plain = run_writer(|sink| self.compression.decoder(sink), compressed).map_err(|e| {
            Error::Integrity {
                what: what.clone(),
                detail: format!("cannot decompress: {e}"),
            }
        })?;
        if plain.len() != raw_len as usize {
            return Err(Error::Integrity {
                what,
                detail: format!("{} bytes, the index records {raw_len}", plain.len()),
            });
        }
        if ChunkId::of(&plain) != *id {
            return Err(Error::Integrity {
                what,
                detail: format!("content hashes to {}", ChunkId::of(&plain)),
            });
        }
        Ok(Bytes::from(plain))
    }
}

/// Pushes `input` through a write stage built by `stage` into memory. The
/// stages are async writers over an in-memory sink, so they never wait:
/// a trivial executor drives them on the calling (blocking-pool) thread.
fn run_writer(
    stage: impl FnOnce(crate::compression::BoxWrite) -> crate::compression::BoxWrite,
    input: &[u8],
) -> std::io::Result<Vec<u8>> {
    let out = Shared::default();
    let mut writer = stage(Box::pin(out.clone()));
    futures::executor::block_on(async {
        writer.write_all(input).await?;
        writer.shutdown().await
    })?;
    drop(writer);
    let mut out = out.0.lock().expect("codec buffer");
    Ok(std::mem::take(&mut *out))
}

/// An in-memory sink the write stages own a handle to.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl AsyncWrite for Shared {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.lock().expect("codec buffer").extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn header(codec: &ChunkCodec) -> PackHeader {
        PackHeader {
            pack: "p".into(),
            size: 0,
            compression: codec.algorithm().to_string(),
            level: codec.level(),
            recipients: codec.group(),
            created_at: Utc::now(),
            written_by: "t".into(),
        }
    }

    #[test]
    fn chunks_round_trip_through_every_codec() {
        let (identities, recipient, _) = AgeIdentities::generate();
        let plain: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let plain = [plain.as_slice(), &[0u8; 50_000]].concat();
        let id = ChunkId::of(&plain);
        for spec in ["none", "gzip:6", "zstd:3"] {
            let c: Compression = spec.parse().unwrap();
            for recipients in [
                None,
                Some(AgeRecipients::parse([recipient.as_str()]).unwrap()),
            ] {
                let encrypted = recipients.is_some();
                let codec = ChunkCodec::for_backup(c, recipients);
                let blob = codec.encode(&plain).unwrap();
                if spec != "none" {
                    assert!(blob.len() < plain.len(), "{spec} compresses");
                }
                assert_eq!(blob.starts_with(b"age-encryption.org/v1"), encrypted);
                let decoder = ChunkDecoder::for_pack(&header(&codec), Some(&identities)).unwrap();
                assert_eq!(
                    &decoder.decode(&blob, &id, plain.len() as u32).unwrap()[..],
                    &plain[..]
                );
                let mut bad = blob.clone();
                let n = bad.len();
                bad[n - 5] ^= 0x40;
                assert!(
                    decoder.decode(&bad, &id, plain.len() as u32).is_err(),
                    "{spec}"
                );
                assert!(
                    decoder
                        .decode(&blob, &ChunkId::of(b"x"), plain.len() as u32)
                        .is_err()
                );
            }
        }
    }
}
