//! The read side of [`Engine`]: restore, verify and `open_dump`, all
//! through one verified-read primitive ([`Engine::read_verified`]).

use std::sync::Arc;

use futures::StreamExt;

use super::setup::Engine;
use crate::backup_ref::BackupRef;
use crate::compression::Compression;
use crate::dedup::{ChunkMap, group_of, precheck, pump_chunks};
use crate::error::{Error, Result};
use crate::manifest::{BackupType, Manifest};
use crate::pipeline::{
    AbortOnDrop, Expected, StoredHasher, cancelled, compare, drain, read_object, restore_into,
    verified,
};
use crate::source::{RestoreOptions, RestoreReport, RestoreTarget};
use crate::store::{ByteStream, StoreExt};

impl Engine {
    /// Restores `backup` (an id, or a [`BackupRef`]) into `target`. The artifact is verified while it
    /// streams (stored and decompressed digests against the manifest); on a
    /// mismatch the session is aborted before its end of input, so nothing
    /// is committed. A [`BackupRef`] within a tenant scopes the lookup. Cancelling
    /// [`RestoreOptions::cancel`] (or the engine's
    /// [`PipelineOptions::cancel`](crate::pipeline::PipelineOptions::cancel)) aborts
    /// the session the same way.
    pub async fn restore(
        &self,
        backup: impl Into<BackupRef>,
        target: &dyn RestoreTarget,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let manifest = self.catalog.get(backup).await?;
        match self.restore_manifest(&manifest, target, opts).await {
            Ok(report) => Ok(report),
            Err(e) => Err(self.explain_read_failure(&manifest, e).await),
        }
    }

    async fn restore_manifest(
        &self,
        manifest: &Arc<Manifest>,
        target: &dyn RestoreTarget,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let id = manifest.id.as_str();
        if manifest.engine != target.engine() || !target.accepts_format(&manifest.format) {
            return Err(Error::Incompatible {
                backup: id.to_string(),
                engine: manifest.engine.clone(),
                format: manifest.format.clone(),
                target: target.engine().to_string(),
            });
        }
        // Everything that can be found before the target is touched
        // (missing key, missing chunks, a replaced artifact) is.
        let plain = self.read_verified(manifest).await?;
        let session = target.begin(opts).await?;
        tracing::info!(%id, "restore started");
        let cancel = async {
            tokio::select! {
                _ = self.options.cancel.cancelled() => {}
                _ = cancelled(opts.cancel.as_ref()) => {}
            }
        };
        let report = restore_into(plain, session, cancel).await?;
        tracing::info!(%id, database = %report.database, "restore committed");
        Ok(report)
    }

    /// The plain dump of `backup` (decrypted, decompressed, for an
    /// incremental backup reassembled from its chunks) as a stream, verified
    /// as it goes: the stream ends with an error instead of its last bytes
    /// if any digest does not match, so a consumer that sees a clean end
    /// has a verified dump (the same holdback as a restore). Memory stays
    /// bounded; the work runs on a background task that stops when the
    /// stream is dropped.
    pub async fn open_dump(
        &self,
        backup: impl Into<BackupRef>,
    ) -> Result<(Arc<Manifest>, ByteStream)> {
        let manifest = self.catalog.get(backup).await?;
        let stream = match self.read_verified(&manifest).await {
            Ok(stream) => stream,
            Err(e) => return Err(self.explain_read_failure(&manifest, e).await),
        };
        // A failure on the way is explained like one up front.
        let (engine, m) = (self.clone(), Arc::clone(&manifest));
        let stream = stream
            .then(move |item| {
                let (engine, m) = (engine.clone(), Arc::clone(&m));
                async move {
                    match item {
                        Err(e) => Err(engine.explain_read_failure(&m, e).await),
                        ok => ok,
                    }
                }
            })
            .boxed();
        Ok((manifest, stream))
    }

    /// Re-reads `backup`, checking size, SHA-256 and MD5 of the stored
    /// bytes and, after decompression, of the dump itself. For an
    /// incremental backup: the chunk list's digests, that every chunk is in
    /// the store and hashes to its id, and the whole dump's digest.
    pub async fn verify(&self, backup: impl Into<BackupRef>) -> Result<Arc<Manifest>> {
        let manifest = self.catalog.get(backup).await?;
        let verified = async {
            let plain = self.read_verified(&manifest).await?;
            drain(plain, self.options.cancel.cancelled()).await
        };
        match verified.await {
            Ok(()) => Ok(manifest),
            Err(e) => Err(self.explain_read_failure(&manifest, e).await),
        }
    }

    /// [`Engine::verify`] of `backup` and of every backup it depends on:
    /// its [`parent`](Manifest::parent), the parent's parent, and so on
    /// (a backup that restores only with its chain is verified with it).
    /// A missing link fails with [`Error::NotFound`] naming it and the
    /// backup whose parent it is; a damaged one with its own error, the
    /// link named in it. Returns the chain, oldest first (just `backup`
    /// when it has no parent).
    pub async fn verify_chain(&self, backup: impl Into<BackupRef>) -> Result<Vec<Arc<Manifest>>> {
        let first = self.verify(backup).await?;
        let tenant = first.tenant.clone();
        let mut chain = vec![first];
        while let Some(child) = chain.last().filter(|m| m.parent.is_some()).cloned() {
            let parent = child.parent.clone().unwrap_or_default();
            let link = format!("parent {parent} of {}", child.id);
            if chain.iter().any(|m| m.id == parent) {
                return Err(Error::Manifest {
                    key: child.id.clone(),
                    detail: format!("the chain loops: {link} is already in it"),
                });
            }
            let m = match self.verify(BackupRef::in_tenant(&tenant, &parent)).await {
                Ok(m) => m,
                Err(Error::NotFound { what }) => {
                    return Err(Error::not_found(format!(
                        "backup {parent}, the {link} ({what}): {} cannot be restored",
                        chain[0].id
                    )));
                }
                Err(Error::Integrity { what, detail }) => {
                    return Err(Error::Integrity {
                        what,
                        detail: format!("{detail} (backup {parent}, the {link})"),
                    });
                }
                // Stored bytes that do not decode are damage too.
                Err(e @ Error::Codec { .. }) => {
                    return Err(Error::Integrity {
                        what: format!("backup {parent}, the {link}"),
                        detail: e.to_string(),
                    });
                }
                Err(e) => return Err(e),
            };
            chain.push(m);
        }
        chain.reverse();
        Ok(chain)
    }

    /// The verified-read primitive: the plaintext of backup `manifest` as a
    /// stream that ends with an error instead of its last bytes when a
    /// digest does not match. Fails before returning for what can be
    /// checked up front: the identity an encrypted backup needs, the
    /// artifact's size, an incremental backup's chunk list and chunks.
    pub(crate) async fn read_verified(&self, manifest: &Arc<Manifest>) -> Result<ByteStream> {
        let identities = self.identities_for(manifest)?;
        let expected = Expected {
            what: manifest.artifact.clone(),
            stored: manifest.stored.clone(),
            raw: manifest.raw.clone(),
        };
        if manifest.backup_type == BackupType::Incremental {
            let map = Arc::new(self.chunk_map(manifest).await?);
            precheck(self.store.as_ref(), manifest, &map).await?;
            let (tx, rx) = tokio::sync::mpsc::channel(self.options.queue_depth.max(1));
            let pump = AbortOnDrop(Some(tokio::spawn(pump_chunks(
                Arc::clone(&self.store),
                Arc::clone(manifest),
                map,
                identities,
                tx,
                self.dedup.concurrency,
            ))));
            return Ok(verified(rx, pump, expected, self.options.holdback));
        }
        let decompressor = Compression::for_algorithm(manifest.compression.algorithm);
        let artifact_key = manifest.artifact_key()?;
        let artifact = self.store.get(&artifact_key).await?;
        if artifact.meta.size != manifest.stored.size {
            return Err(Error::Integrity {
                what: artifact_key.to_string(),
                detail: format!(
                    "artifact is {} bytes, manifest records {} (truncated or replaced)",
                    artifact.meta.size, manifest.stored.size
                ),
            });
        }
        Ok(read_object(
            artifact.stream,
            decompressor,
            expected,
            identities,
            &self.options,
        ))
    }

    /// Checks only the stored bytes of backup `id` (size, SHA-256, MD5):
    /// no key needed, so it suits encrypted backups on machines that must
    /// not hold the identity. [`Engine::verify`] checks the dump too. For
    /// an incremental backup: the chunk list's digests and that every
    /// chunk it names is in a pack index of the tenant.
    pub async fn verify_stored(&self, backup: impl Into<BackupRef>) -> Result<Arc<Manifest>> {
        let manifest = self.catalog.get(backup).await?;
        match self.verify_stored_manifest(&manifest).await {
            Ok(()) => Ok(manifest),
            Err(e) => Err(self.explain_read_failure(&manifest, e).await),
        }
    }

    async fn verify_stored_manifest(&self, manifest: &Manifest) -> Result<()> {
        if manifest.backup_type == BackupType::Incremental {
            let map = self.chunk_map(manifest).await?;
            precheck(self.store.as_ref(), manifest, &map).await?;
            return Ok(());
        }
        let artifact_key = manifest.artifact_key()?;
        let mut artifact = self.store.get(&artifact_key).await?.stream;
        let mut hasher = StoredHasher::with_md5(manifest.stored.md5.is_some());
        while let Some(chunk) = artifact.next().await {
            hasher.update(&chunk?).await;
        }
        if let Some(diff) = compare(&manifest.stored, &hasher.finish().await) {
            return Err(Error::Integrity {
                what: artifact_key.to_string(),
                detail: format!("stored bytes: {diff}"),
            });
        }
        Ok(())
    }

    /// The chunks an incremental backup can use: its tenant's packs with
    /// the same recipients.
    pub(super) async fn chunk_map(&self, manifest: &Manifest) -> Result<ChunkMap> {
        if manifest.dedup.is_none() {
            return Err(Error::Manifest {
                key: manifest.artifact.clone(),
                detail: "an incremental backup without its dedup section".into(),
            });
        }
        let group = group_of(
            manifest
                .encryption
                .as_ref()
                .map(|e| e.recipients.as_slice()),
        );
        ChunkMap::load(
            self.store.as_ref(),
            &manifest.tenant,
            &group,
            self.dedup.concurrency.saturating_mul(2),
        )
        .await
    }

    /// A read of backup `m` failed with `e`: if the backup was deleted
    /// meanwhile (its manifest is gone), say so with a
    /// [`Error::NotFound`] for the backup rather than a missing object.
    async fn explain_read_failure(&self, m: &Manifest, e: Error) -> Error {
        if !matches!(e, Error::NotFound { .. } | Error::Integrity { .. }) {
            return e;
        }
        match m.manifest_key() {
            Ok(key) => match self.store.exists(&key).await {
                Ok(false) => {
                    self.catalog.forget(&key);
                    Error::not_found(format!("backup {} (deleted while it was being read)", m.id))
                }
                _ => e,
            },
            Err(_) => e,
        }
    }
}
