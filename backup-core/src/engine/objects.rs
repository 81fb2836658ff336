//! Sealed objects: data that is not a backup (a WAL segment, say) stored
//! through the same pipeline as backup artifacts — the engine's
//! compression, SHA-256 (and MD5 when on) of the raw and stored bytes,
//! age encryption when configured — and read back verified.
//!
//! A sealed object has no manifest: the caller keeps its [`SealedRecord`]
//! (in a small JSON object of its own, for example) and hands it back to
//! [`Engine::open_sealed`]. Keys are the caller's; keep them in a reserved
//! namespace (a segment starting with `_`) so that the catalog, sweep,
//! check and garbage collection never take them for backups or leftovers.

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::setup::Engine;
use crate::compression::Compression;
use crate::crypto::AGE_SCHEME;
use crate::error::{Error, Result};
use crate::key::Key;
use crate::manifest::{CompressionInfo, Digests, EncryptionInfo};
use crate::pipeline::{Expected, ObjectWriter, read_object};
use crate::store::{ByteStream, StoreExt};

/// What [`Engine::put_sealed`] stored: how to read the object back and
/// what it must hash to. Public recipient ids only, never key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedRecord {
    /// The compression of the stored bytes.
    pub compression: CompressionInfo,
    /// The encryption of the stored bytes, when encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionInfo>,
    /// Size and digests of the bytes in the store.
    pub stored: Digests,
    /// Size and digests of the bytes given to [`Engine::put_sealed`].
    pub raw: Digests,
}

/// Per-call options of [`Engine::put_sealed`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SealOptions {
    /// Cancels this upload only (the engine's own token cancels it too).
    pub cancel: Option<CancellationToken>,
}

impl SealOptions {
    /// Cancels the upload when `token` is cancelled.
    pub fn with_cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }
}

impl Engine {
    /// Streams `data` into a new object at `key`, compressed with the
    /// engine's compression, encrypted to its recipients when set, hashed
    /// before and after. The object is visible only once complete; on any
    /// failure (the stream's error, a stall, cancellation, a store error)
    /// nothing is left under `key`.
    ///
    /// Create-only: an existing `key` is refused with
    /// [`Error::AlreadyExists`] and left as it is. The check precedes the
    /// upload, so it does not exclude a concurrent writer of the same key:
    /// callers that may race give each upload a key of its own.
    pub async fn put_sealed(
        &self,
        key: &Key,
        data: ByteStream,
        opts: &SealOptions,
    ) -> Result<SealedRecord> {
        self.options.validate()?;
        if self.store.exists(key).await? {
            return Err(Error::AlreadyExists {
                key: key.to_string(),
            });
        }
        let upload = self.store.put_stream(key).await?;
        let outcome = ObjectWriter {
            store: self.store.as_ref(),
            key,
            upload,
            compression: self.compression,
            encryption: self.encryption.clone(),
            options: &self.options,
            cancel: opts.cancel.as_ref(),
            progress: None,
        }
        .write(data)
        .await?;
        Ok(SealedRecord {
            compression: CompressionInfo {
                algorithm: self.compression.algorithm(),
                level: self.compression.level(),
            },
            encryption: self.encryption.as_ref().map(|r| EncryptionInfo {
                scheme: AGE_SCHEME.to_string(),
                recipients: r.ids().to_vec(),
            }),
            stored: outcome.stored,
            raw: outcome.raw,
        })
    }

    /// The plaintext of the object at `key`, verified against `record` as
    /// it streams: the stream's last item is an error instead of the last
    /// bytes (at least the holdback of [`PipelineOptions`](crate::pipeline::PipelineOptions))
    /// if the stored size or any digest differs, so a consumer that sees
    /// a clean end has read exactly what was sealed. Fails before
    /// returning for a missing object ([`Error::NotFound`]), a stored size
    /// other than the record's, or an encrypted object without an
    /// identity. Memory stays bounded; dropping the stream stops the work.
    pub async fn open_sealed(&self, key: &Key, record: &SealedRecord) -> Result<ByteStream> {
        let identities = self.identities_for_info(key.as_str(), record.encryption.as_ref())?;
        let object = self.store.get(key).await?;
        if object.meta.size != record.stored.size {
            return Err(Error::Integrity {
                what: key.to_string(),
                detail: format!(
                    "object is {} bytes, its record says {} (truncated or replaced)",
                    object.meta.size, record.stored.size
                ),
            });
        }
        Ok(read_object(
            object.stream,
            Compression::for_algorithm(record.compression.algorithm),
            Expected {
                what: key.to_string(),
                stored: record.stored.clone(),
                raw: record.raw.clone(),
            },
            identities,
            &self.options,
        ))
    }
}
