//! The backup side of [`Engine`]: one writer for full and incremental
//! artifacts, the manifest written last, the run recorded.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::request::BackupRequest;
use super::setup::Engine;
use crate::backup_ref::BackupRef;
use crate::catalog::RunRecord;
use crate::crypto::AGE_SCHEME;
use crate::dedup::{ChunkCodec, DedupBackup, DedupStarted, Inflight};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::inflight::InflightMarker;
use crate::key::{Key, validate_id};
use crate::manifest::{
    BackupType, CompressionInfo, DedupInfo, Digests, EncryptionInfo, Layout, MANIFEST_VERSION,
    Manifest, new_backup_id,
};
use crate::pipeline::{ObjectWriter, Progress, check_dump};
use crate::source::{Details, DumpSource, SourceInfo, Versions};
use crate::store::{Created, StoreExt, Upload};

/// An artifact opened for writing, full or deduplicated: what
/// [`Engine::open_artifact`] returns and [`ArtifactWriter::write`] fills.
enum ArtifactWriter<'a> {
    /// One compressed (and encrypted) object.
    Full(Box<dyn Upload>),
    /// A chunk list, its new chunks appended to the tenant's packs.
    Dedup(Box<DedupStarted<'a>>),
}

/// What a written artifact is: its digests and, for an incremental
/// backup, the dedup section and the chunk-store marker held until the
/// manifest is written.
struct Written<'a> {
    stored: Digests,
    raw: Digests,
    dedup: Option<DedupInfo>,
    dedup_marker: Option<Inflight<'a>>,
}

/// Where a backup goes.
struct Target<'a> {
    info: SourceInfo,
    layout: Layout,
    artifact: Key,
    id: String,
    started_at: DateTime<Utc>,
    req: &'a BackupRequest,
}

impl Engine {
    /// Takes a backup of `source` and commits it by writing its manifest
    /// last. On any failure nothing is listed and no artifact remains
    /// (the upload is aborted; a crash mid-way leaves at most an orphan for
    /// [`Catalog::sweep`](crate::catalog::Catalog::sweep)).
    pub async fn backup(&self, source: &dyn DumpSource, req: &BackupRequest) -> Result<Manifest> {
        validate_id(&req.tenant)?;
        validate_id(&req.source_id)?;
        for id in [&req.tenant, &req.source_id] {
            if id.starts_with('_') {
                return Err(Error::InvalidKey {
                    key: id.clone(),
                    reason: "tenant and source ids starting with '_' are reserved",
                });
            }
        }
        let started_at = Utc::now();
        self.events.emit(Event::Started {
            tenant: req.tenant.clone(),
            source_id: req.source_id.clone(),
            kind: req.kind,
            at: started_at,
        });
        let result = self.backup_inner(source, req, started_at).await;
        let finished_at = Utc::now();
        let seconds = (finished_at - started_at).num_milliseconds() as f64 / 1000.0;
        let record = RunRecord {
            tenant: req.tenant.clone(),
            source_id: req.source_id.clone(),
            kind: req.kind,
            started_at,
            finished_at,
            succeeded: result.is_ok(),
            backup_id: result.as_ref().ok().map(|m| m.id.clone()),
            error: result.as_ref().err().map(|e| e.to_string()),
            scheduled_for: req.scheduled_for,
        };
        if matches!(result, Err(Error::Cancelled)) {
            // Stopped on purpose (a shutdown, a removed source): not a
            // failure of the source, so no `Failed` event and the previous
            // run record stays. A scheduled trigger cancelled this way is
            // not marked as run, so a restarted scheduler may catch it up.
            tracing::info!(source = %req.source_id, tenant = %req.tenant, "backup cancelled; nothing was committed");
            return result;
        }
        match &result {
            Ok(m) => self.events.emit(Event::Succeeded {
                tenant: m.tenant.clone(),
                source_id: m.source_id.clone(),
                backup_id: m.id.clone(),
                kind: m.kind,
                bytes: m.bytes_stored(),
                duration_seconds: seconds,
                at: finished_at,
            }),
            Err(e) => {
                tracing::warn!(source = %req.source_id, tenant = %req.tenant, error = %e, "backup failed");
                self.events.emit(Event::Failed {
                    tenant: req.tenant.clone(),
                    source_id: req.source_id.clone(),
                    kind: req.kind,
                    error: e.to_string(),
                    duration_seconds: seconds,
                    at: finished_at,
                })
            }
        }
        if let Err(e) = record.save(self.store.as_ref()).await {
            tracing::warn!(source = %req.source_id, error = %e, "could not record the run status");
        }
        result
    }

    async fn backup_inner(
        &self,
        source: &dyn DumpSource,
        req: &BackupRequest,
        started_at: DateTime<Utc>,
    ) -> Result<Manifest> {
        self.options.validate()?;
        if req.backup_type == BackupType::Incremental {
            self.dedup.validate()?;
        }
        let info = source.info();
        let id = new_backup_id(started_at);
        let layout = Layout::new(
            &req.tenant,
            &req.source_id,
            req.kind,
            &info.format,
            &info.database,
            &id,
            started_at,
        )?;
        let artifact = match req.backup_type {
            BackupType::Full => layout.artifact_key(&format!(
                "{}{}{}",
                info.extension,
                self.compression.extension(),
                if self.encryption.is_some() {
                    ".age"
                } else {
                    ""
                }
            ))?,
            BackupType::Incremental => {
                layout.artifact_key(&format!("{}.chunks", info.extension))?
            }
        };
        let to = Target {
            info,
            layout,
            artifact,
            id,
            started_at,
            req,
        };
        let mut marker = None;
        let result = self.write_and_commit(source, &to, &mut marker).await;
        if let Some(marker) = marker {
            marker.end().await;
        }
        result
    }

    /// Opens the artifact (so store problems, credentials or a missing
    /// bucket, surface before the database is read), writes the
    /// in-progress marker into `marker` (left there for the caller to end,
    /// whatever happens), starts the dump, streams it into the artifact and
    /// commits it with its manifest.
    async fn write_and_commit(
        &self,
        source: &dyn DumpSource,
        to: &Target<'_>,
        marker: &mut Option<InflightMarker>,
    ) -> Result<Manifest> {
        let req = to.req;
        let writer = self.open_artifact(to).await?;
        // The marker exists from before the artifact can be listed until
        // after its manifest is (see the `inflight` module docs).
        match InflightMarker::begin(Arc::clone(&self.store), &req.tenant, &to.id, &to.artifact)
            .await
        {
            Ok(m) => *marker = Some(m),
            Err(e) => {
                writer.abandon().await;
                return Err(e);
            }
        }
        let dump = match source.dump(&req.dump).await {
            Ok(dump) => dump,
            Err(e) => {
                writer.abandon().await;
                return Err(e);
            }
        };
        tracing::info!(id = %to.id, source = %req.source_id, tenant = %req.tenant, backup_type = ?req.backup_type, "backup started");
        // The details the source promised are awaited after its last byte
        // and before the artifact completes: a source that does not
        // deliver them fails the write, so nothing is committed.
        let parts = dump.into_engine_parts(&to.info.engine);
        if let Some(parent) = &parts.parent {
            // Before a byte is stored: dropping the parts stops the dump.
            if let Err(e) = self.check_parent(req, parent).await {
                writer.abandon().await;
                return Err(e);
            }
        }
        let written = writer
            .write(self, to, check_dump(parts.stream, &to.info))
            .await?;
        let details = std::mem::take(&mut *parts.details.lock().expect("details slot"));
        let mut manifest = self.manifest_for(to, &written, parts.versions, details);
        manifest.parent = parts.parent;
        manifest.fingerprint = crate::source::receive_fingerprint(parts.fingerprint).await;
        let committed = match &manifest.parent {
            // Deleted while the dump ran: the backup would not restore.
            Some(parent) => match self.check_parent(req, parent).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    let _ = self.store.delete(&to.artifact).await;
                    Err(e)
                }
            },
            None => Ok(()),
        };
        let committed = match committed {
            Ok(()) => {
                self.commit(&manifest, &to.layout.manifest_key()?, &to.artifact)
                    .await
            }
            Err(e) => Err(e),
        };
        if let Some(marker) = written.dedup_marker {
            marker.end().await;
        }
        committed?;
        tracing::info!(
            id = %manifest.id,
            bytes = manifest.bytes_stored(),
            raw_bytes = manifest.raw.size,
            "backup committed"
        );
        Ok(manifest)
    }

    /// `Ok` when `parent`, declared by the dump of `req`
    /// ([`DumpStream::with_parent`](crate::source::DumpStream::with_parent)),
    /// is a listed backup of the same tenant and source.
    async fn check_parent(&self, req: &BackupRequest, parent: &str) -> Result<()> {
        let missing = |why: String| {
            Error::not_found(format!(
                "parent backup {parent} among the backups of tenant {}, source {} ({why}); \
                 nothing was stored",
                req.tenant, req.source_id
            ))
        };
        match self
            .catalog
            .get(BackupRef::in_tenant(&req.tenant, parent))
            .await
        {
            Ok(m) if m.source_id == req.source_id => Ok(()),
            Ok(m) => Err(missing(format!("it is a backup of source {}", m.source_id))),
            Err(Error::NotFound { .. }) => Err(missing("no such backup".into())),
            Err(Error::InvalidKey { .. }) => Err(missing("not a backup id".into())),
            Err(e) => Err(e),
        }
    }

    /// Opens the artifact of `to` for writing.
    async fn open_artifact<'a>(&'a self, to: &'a Target<'_>) -> Result<ArtifactWriter<'a>> {
        match to.req.backup_type {
            BackupType::Full => Ok(ArtifactWriter::Full(
                self.store.put_stream(&to.artifact).await?,
            )),
            BackupType::Incremental => {
                if self.encryption.as_ref().is_some_and(|r| r.is_passphrase()) {
                    return Err(Error::Config(
                        "incremental backups encrypt every chunk: use age X25519 recipients \
                         (age1...), not a passphrase (scrypt would run for every chunk)"
                            .into(),
                    ));
                }
                let started = DedupBackup {
                    store: self.store.as_ref(),
                    tenant: &to.req.tenant,
                    backup_id: &to.id,
                    options: &self.dedup,
                    pipeline: &self.options,
                    codec: Arc::new(ChunkCodec::for_backup(
                        self.compression,
                        self.encryption.clone(),
                    )),
                    cancel: to.req.cancel.as_ref(),
                    progress: Some(self.progress(to.req)),
                }
                .start(&to.artifact)
                .await?;
                Ok(ArtifactWriter::Dedup(Box::new(started)))
            }
        }
    }

    /// Reports raw bytes read as [`Event::Progress`].
    fn progress(&self, req: &BackupRequest) -> Progress {
        let events = self.events.clone();
        let (tenant, source_id) = (req.tenant.clone(), req.source_id.clone());
        Arc::new(move |bytes| {
            events.emit(Event::Progress {
                tenant: tenant.clone(),
                source_id: source_id.clone(),
                bytes,
                at: Utc::now(),
            })
        })
    }

    /// The manifest committing `written`.
    fn manifest_for(
        &self,
        to: &Target<'_>,
        written: &Written<'_>,
        versions: Versions,
        details: Details,
    ) -> Manifest {
        let req = to.req;
        Manifest {
            manifest_version: MANIFEST_VERSION,
            id: to.id.clone(),
            tenant: req.tenant.clone(),
            source_id: req.source_id.clone(),
            engine: to.info.engine.clone(),
            database: to.info.database.clone(),
            kind: req.kind,
            backup_type: req.backup_type,
            format: to.info.format.clone(),
            compression: CompressionInfo {
                algorithm: self.compression.algorithm(),
                level: self.compression.level(),
            },
            encryption: self.encryption.as_ref().map(|r| EncryptionInfo {
                scheme: AGE_SCHEME.to_string(),
                recipients: r.ids().to_vec(),
            }),
            started_at: to.started_at,
            finished_at: Utc::now(),
            artifact: to.artifact.to_string(),
            stored: written.stored.clone(),
            raw: written.raw.clone(),
            versions,
            parent: None,
            created_by: req.created_by.clone(),
            labels: req.labels.clone(),
            dedup: written.dedup.clone(),
            details,
            fingerprint: None,
        }
    }

    /// Writes the manifest (create-only), making sure the artifact exists
    /// right before and right after: a backup whose artifact vanished (a
    /// sweep that found its marker stale) fails and withdraws its manifest
    /// instead of being listed without data. An ambiguous manifest write is
    /// read back; the artifact is removed only when the manifest is
    /// certainly absent.
    async fn commit(&self, manifest: &Manifest, manifest_key: &Key, artifact: &Key) -> Result<()> {
        let vanished = |when: &str| Error::Integrity {
            what: artifact.to_string(),
            detail: format!(
                "the artifact vanished {when} the manifest was written (removed by a sweep?); \
                 the backup was not committed: run it again"
            ),
        };
        match self.store.head(artifact).await {
            Ok(_) => {}
            Err(Error::NotFound { .. }) => return Err(vanished("before")),
            Err(e) => return Err(e),
        }
        let body = Bytes::from(manifest.to_json());
        // Not `PutMode::Create`: the id is fresh and random, so create-only
        // only guards against a collision, and the write must work on
        // stores without atomic create-only puts (see the `Store` contract).
        match self.store.create_settled(manifest_key, body).await {
            Created::Stored => {}
            Created::Absent(e) => {
                // Without a manifest the artifact is an orphan: remove it
                // now rather than waiting for a sweep.
                let _ = self.store.delete(artifact).await;
                return Err(e);
            }
            // Not ours, or unknown: leave the artifact to a sweep, which
            // removes it only if no manifest exists.
            Created::Taken => {
                return Err(Error::AlreadyExists {
                    key: manifest_key.to_string(),
                });
            }
            Created::Unknown(e) => return Err(e),
        }
        match self.store.head(artifact).await {
            Ok(_) => Ok(()),
            Err(Error::NotFound { .. }) => {
                if let Err(e) = self.store.delete(manifest_key).await {
                    tracing::error!(key = %manifest_key, error = %e, "a manifest without its artifact could not be withdrawn: delete it");
                }
                self.catalog.forget(manifest_key);
                Err(vanished("while"))
            }
            Err(e) => {
                // Present a moment ago; a failed head is no evidence of loss.
                tracing::warn!(key = %artifact, error = %e, "could not re-check the artifact after committing");
                Ok(())
            }
        }
    }
}

impl<'a> ArtifactWriter<'a> {
    /// Gives up before the dump started: aborts the upload(s).
    async fn abandon(self) {
        match self {
            ArtifactWriter::Full(upload) => {
                let _ = upload.abort().await;
            }
            ArtifactWriter::Dedup(started) => started.abandon().await,
        }
    }

    /// Streams the dump into the artifact; on failure nothing of it is
    /// left (completed packs of an incremental backup stay for GC).
    async fn write(
        self,
        engine: &'a Engine,
        to: &'a Target<'_>,
        dump: crate::store::ByteStream,
    ) -> Result<Written<'a>> {
        match self {
            ArtifactWriter::Full(upload) => {
                let outcome = ObjectWriter {
                    store: engine.store.as_ref(),
                    key: &to.artifact,
                    upload,
                    compression: engine.compression,
                    encryption: engine.encryption.clone(),
                    options: &engine.options,
                    cancel: to.req.cancel.as_ref(),
                    progress: Some(engine.progress(to.req)),
                }
                .write(dump)
                .await?;
                Ok(Written {
                    stored: outcome.stored,
                    raw: outcome.raw,
                    dedup: None,
                    dedup_marker: None,
                })
            }
            ArtifactWriter::Dedup(started) => {
                let outcome = started.run(dump).await?;
                Ok(Written {
                    stored: outcome.stored,
                    raw: outcome.raw,
                    dedup: Some(outcome.info),
                    dedup_marker: Some(outcome.marker),
                })
            }
        }
    }
}
