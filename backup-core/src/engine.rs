//! [`Engine`]: backup, restore, verify and prune over one store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, Filter, RunRecord, SweepReport};
use crate::compression::{Compression, Compressor};
use crate::crypto::{AGE_SCHEME, AgeIdentities, AgeRecipients};
use crate::dedup::{
    CheckReport, ChunkCodec, ChunkMap, DedupBackup, DedupOptions, GcReport, check, collect,
    group_of, inflight_markers, precheck, pump_chunks, sweep_chunk_store,
};
use crate::duration::to_chrono;
use crate::events::{Event, EventBus};
use crate::inflight::{INFLIGHT_DIR, INFLIGHT_STALE_AFTER, InflightMarker, parse_marker_key};
use crate::manifest::{
    BackupKind, BackupType, CompressionInfo, DEFAULT_TENANT, EncryptionInfo, Layout,
    MANIFEST_VERSION, Manifest, new_backup_id,
};
use crate::pipeline::{
    AbortOnDrop, Expected, PipelineOptions, Progress, RestoreSink, check_dump, deliver, run_backup,
    run_restore,
};
use crate::retention::{PlanOptions, RetentionPlan, RetentionPolicy, plan};
use crate::source::{
    DumpOptions, DumpSource, RestoreOptions, RestoreReport, RestoreTarget, SourceInfo,
};
use crate::store::{Store, StoreExt, TemporarySweep};
use crate::{Error, Key, Result, validate_id};

/// Who, for whom and why a backup is taken.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BackupRequest {
    /// Id of the configured source (database entry); part of every key.
    pub source_id: String,
    /// Tenant the backup belongs to ([`DEFAULT_TENANT`] by default).
    pub tenant: String,
    /// Manual or scheduled.
    pub kind: BackupKind,
    /// Full (one self-contained artifact, the default) or incremental
    /// (deduplicated into the tenant's chunk store; see [`DedupOptions`]).
    pub backup_type: BackupType,
    /// What the source should dump.
    pub dump: DumpOptions,
    /// Recorded in the manifest (`cli`, `scheduler`, `api:admin`).
    pub created_by: Option<String>,
    /// Free-form labels recorded in the manifest.
    pub labels: BTreeMap<String, String>,
    /// Cancels this backup (cleanly: nothing is committed) when triggered.
    pub cancel: Option<CancellationToken>,
    /// The schedule time a scheduled backup stands for, recorded in the
    /// source's [`RunRecord`] so a restarted scheduler knows that trigger
    /// ran ([`BackupJob`](crate::BackupJob) sets it).
    pub scheduled_for: Option<DateTime<Utc>>,
}

impl BackupRequest {
    /// A manual backup of `source_id` for the default tenant.
    pub fn new(source_id: impl Into<String>) -> Self {
        BackupRequest {
            source_id: source_id.into(),
            tenant: DEFAULT_TENANT.to_string(),
            kind: BackupKind::Manual,
            backup_type: BackupType::Full,
            dump: DumpOptions::default(),
            created_by: None,
            labels: BTreeMap::new(),
            cancel: None,
            scheduled_for: None,
        }
    }

    /// Sets [`BackupRequest::scheduled_for`].
    pub fn scheduled_for(mut self, at: Option<DateTime<Utc>>) -> Self {
        self.scheduled_for = at;
        self
    }

    /// Sets a cancellation token for this backup.
    pub fn cancel_token(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Sets the tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = tenant.into();
        self
    }

    /// Sets manual or scheduled.
    pub fn kind(mut self, kind: BackupKind) -> Self {
        self.kind = kind;
        self
    }

    /// Sets full or incremental (deduplicated).
    pub fn backup_type(mut self, backup_type: BackupType) -> Self {
        self.backup_type = backup_type;
        self
    }

    /// Sets who asked.
    pub fn created_by(mut self, who: impl Into<String>) -> Self {
        self.created_by = Some(who.into());
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
}

/// What a prune run did (or, for a dry run, would do), per source.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PruneReport {
    /// Whether anything was actually deleted.
    pub dry_run: bool,
    /// The plan per `tenant/source_id`.
    pub sources: BTreeMap<String, RetentionPlan>,
    /// Garbage collection per tenant, when asked for with
    /// [`PlanOptions::collect_garbage`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gc: BTreeMap<String, GcReport>,
}

/// The library's front door: takes, lists, verifies, restores and prunes
/// backups in one [`Store`].
///
/// ```
/// # use std::sync::Arc;
/// # use backup_core::{Engine, InMemoryStore, Compression};
/// let engine = Engine::new(Arc::new(InMemoryStore::new()))
///     .with_compressor(Arc::new(Compression::gzip(6)));
/// ```
#[derive(Debug, Clone)]
pub struct Engine {
    store: Arc<dyn Store>,
    catalog: Arc<Catalog>,
    compressor: Arc<dyn Compressor>,
    options: PipelineOptions,
    events: EventBus,
    encryption: Option<AgeRecipients>,
    identities: AgeIdentities,
    dedup: DedupOptions,
}

impl Engine {
    /// An engine over `store` with the default compression and buffering.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Engine {
            catalog: Arc::new(Catalog::new(Arc::clone(&store))),
            store,
            compressor: Arc::new(Compression::default()),
            options: PipelineOptions::default(),
            events: EventBus::default(),
            encryption: None,
            identities: AgeIdentities::default(),
            dedup: DedupOptions::default(),
        }
    }

    /// Sets chunking, packing and garbage-collection options of
    /// incremental (deduplicated) backups.
    pub fn with_dedup(mut self, options: DedupOptions) -> Self {
        self.dedup = options;
        self
    }

    /// The options of incremental backups.
    pub fn dedup_options(&self) -> &DedupOptions {
        &self.dedup
    }

    /// Encrypts new backups to these age recipients (after compression).
    pub fn with_encryption(mut self, recipients: AgeRecipients) -> Self {
        self.encryption = Some(recipients);
        self
    }

    /// Keys for restoring and verifying encrypted backups.
    pub fn with_identities(mut self, identities: AgeIdentities) -> Self {
        self.identities = identities;
        self
    }

    /// The identities for an encrypted manifest, or an error saying that
    /// one is needed.
    fn identities_for(&self, manifest: &Manifest) -> Result<Option<AgeIdentities>> {
        match &manifest.encryption {
            None => Ok(None),
            Some(_) if self.identities.is_empty() => Err(Error::Decryption {
                what: manifest.artifact.clone(),
                detail: "the backup is encrypted and no identity was supplied".into(),
            }),
            Some(e) if e.scheme != AGE_SCHEME => Err(Error::Decryption {
                what: manifest.artifact.clone(),
                detail: format!("unknown encryption scheme {:?}", e.scheme),
            }),
            Some(_) => Ok(Some(self.identities.clone())),
        }
    }

    /// Publishes events on `bus` (started, progress, succeeded, failed,
    /// pruned). By default the engine has a bus of its own.
    pub fn with_events(mut self, bus: EventBus) -> Self {
        self.events = bus;
        self
    }

    /// The event bus backups report to.
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// Uses `compressor` for new backups (restores use what each manifest
    /// recorded).
    pub fn with_compressor(mut self, compressor: Arc<dyn Compressor>) -> Self {
        self.compressor = compressor;
        self
    }

    /// Sets buffering, stall watchdog and cancellation.
    pub fn with_options(mut self, options: PipelineOptions) -> Self {
        self.options = options;
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The catalog of committed backups.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The pipeline options.
    pub fn options(&self) -> &PipelineOptions {
        &self.options
    }

    /// Takes a backup of `source` and commits it by writing its manifest
    /// last. On any failure nothing is listed and no artifact remains
    /// (the upload is aborted; a crash mid-way leaves at most an orphan for
    /// [`Catalog::sweep`]).
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
        started_at: chrono::DateTime<Utc>,
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
                self.compressor.extension(),
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
        let mut marker = None;
        let result = self
            .write_and_commit(
                source,
                req,
                WriteTo {
                    info,
                    layout: &layout,
                    artifact: &artifact,
                    id: &id,
                    started_at,
                },
                &mut marker,
            )
            .await;
        if let Some(marker) = marker {
            marker.end().await;
        }
        result
    }

    /// Writes the in-progress marker of backup `to.id` into `slot`, once its
    /// upload is open (so store problems surface first) and before the dump
    /// starts: the marker exists from before the artifact can be listed
    /// until after its manifest is (see the `inflight` module docs).
    async fn begin_marker(
        &self,
        req: &BackupRequest,
        to: &WriteTo<'_>,
        slot: &mut Option<InflightMarker>,
    ) -> Result<()> {
        *slot = Some(
            InflightMarker::begin(Arc::clone(&self.store), &req.tenant, to.id, to.artifact).await?,
        );
        Ok(())
    }

    /// Streams the dump into `to.artifact`, then commits it with its
    /// manifest; the in-progress marker it writes is left in `marker` for
    /// the caller to end, whatever happens.
    async fn write_and_commit(
        &self,
        source: &dyn DumpSource,
        req: &BackupRequest,
        to: WriteTo<'_>,
        marker: &mut Option<InflightMarker>,
    ) -> Result<Manifest> {
        let (artifact, id, started_at) = (to.artifact, to.id, to.started_at);
        let progress: Progress = {
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
        };
        let mut dedup_marker = None;
        let (stored, raw, versions, dedup) = match req.backup_type {
            BackupType::Full => {
                // Open the upload before starting the dump so store problems
                // (credentials, missing bucket) surface before the database is read.
                let upload = self.store.put_stream(artifact).await?;
                if let Err(e) = self.begin_marker(req, &to, marker).await {
                    let _ = upload.abort().await;
                    return Err(e);
                }
                let dump = match source.dump(&req.dump).await {
                    Ok(dump) => dump,
                    Err(e) => {
                        let _ = upload.abort().await;
                        return Err(e);
                    }
                };
                tracing::info!(%id, source = %req.source_id, tenant = %req.tenant, "backup started");
                let outcome = run_backup(
                    self.store.as_ref(),
                    artifact,
                    upload,
                    check_dump(dump.stream, &to.info),
                    Arc::clone(&self.compressor),
                    &self.options,
                    req.cancel.as_ref(),
                    Some(progress),
                    self.encryption.clone(),
                )
                .await?;
                (outcome.stored, outcome.raw, dump.versions, None)
            }
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
                    tenant: &req.tenant,
                    backup_id: id,
                    options: &self.dedup,
                    pipeline: &self.options,
                    codec: Arc::new(ChunkCodec::for_backup(
                        self.compressor.as_ref(),
                        self.encryption.clone(),
                    )?),
                    cancel: req.cancel.as_ref(),
                    progress: Some(progress),
                }
                .start(artifact)
                .await?;
                if let Err(e) = self.begin_marker(req, &to, marker).await {
                    started.abandon().await;
                    return Err(e);
                }
                let dump = match source.dump(&req.dump).await {
                    Ok(dump) => dump,
                    Err(e) => {
                        started.abandon().await;
                        return Err(e);
                    }
                };
                tracing::info!(%id, source = %req.source_id, tenant = %req.tenant, "incremental backup started");
                let outcome = started.run(check_dump(dump.stream, &to.info)).await?;
                dedup_marker = Some(outcome.marker);
                (
                    outcome.stored,
                    outcome.raw,
                    dump.versions,
                    Some(outcome.info),
                )
            }
        };
        let manifest = Manifest {
            manifest_version: MANIFEST_VERSION,
            id: id.to_string(),
            tenant: req.tenant.clone(),
            source_id: req.source_id.clone(),
            engine: to.info.engine.clone(),
            database: to.info.database.clone(),
            kind: req.kind,
            backup_type: req.backup_type,
            format: to.info.format.clone(),
            compression: CompressionInfo {
                algorithm: self.compressor.algorithm().to_string(),
                level: self.compressor.level(),
            },
            encryption: self.encryption.as_ref().map(|r| EncryptionInfo {
                scheme: AGE_SCHEME.to_string(),
                recipients: r.ids().to_vec(),
            }),
            started_at,
            finished_at: Utc::now(),
            artifact: artifact.to_string(),
            stored,
            raw,
            versions,
            parent: None,
            created_by: req.created_by.clone(),
            labels: req.labels.clone(),
            dedup,
        };
        let committed = self
            .commit(&manifest, &to.layout.manifest_key()?, artifact)
            .await;
        if let Some(marker) = dedup_marker {
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
        if let Err(e) = self
            .store
            .create_best_effort(manifest_key, body.clone())
            .await
        {
            match self.store.get_bytes(manifest_key).await {
                Ok(stored) if stored == body => {
                    tracing::warn!(key = %manifest_key, error = %e, "the manifest write reported an error but the manifest is stored: committed");
                }
                Err(Error::NotFound { .. }) => {
                    // Without a manifest the artifact is an orphan: remove it
                    // now rather than waiting for a sweep.
                    let _ = self.store.delete(artifact).await;
                    return Err(e);
                }
                // Not ours, or unknown: leave the artifact to a sweep, which
                // removes it only if no manifest exists.
                _ => return Err(e),
            }
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

    /// Restores backup `id` into `target`. The artifact is verified while it
    /// streams (stored and decompressed digests against the manifest); on a
    /// mismatch the session is aborted before its end of input, so nothing
    /// is committed. `tenant` scopes the lookup.
    pub async fn restore(
        &self,
        id: &str,
        tenant: Option<&str>,
        target: &dyn RestoreTarget,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let manifest = self.catalog.get(id, tenant).await?;
        match self
            .restore_manifest(Arc::clone(&manifest), target, opts)
            .await
        {
            Ok(report) => Ok(report),
            Err(e) => Err(self.explain_read_failure(&manifest, e).await),
        }
    }

    async fn restore_manifest(
        &self,
        manifest: Arc<Manifest>,
        target: &dyn RestoreTarget,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let id = manifest.id.as_str();
        if manifest.engine != target.engine() || !target.accepts_format(&manifest.format) {
            return Err(Error::Config(format!(
                "backup {id} is a {} {} dump; the target restores {}",
                manifest.engine,
                manifest.format,
                target.engine()
            )));
        }
        let identities = self.identities_for(&manifest)?;
        if manifest.backup_type == BackupType::Incremental {
            let report = self
                .read_deduplicated(Arc::clone(&manifest), identities, Some((target, opts)))
                .await?
                .expect("a session sink reports");
            tracing::info!(%id, database = %report.database, "restore committed");
            return Ok(report);
        }
        let decompressor: Arc<dyn Compressor> =
            Arc::new(Compression::for_algorithm(&manifest.compression.algorithm)?);
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
        let session = target.begin(opts).await?;
        tracing::info!(%id, "restore started");
        let report = run_restore(
            artifact.stream,
            decompressor,
            Expected {
                what: artifact_key.as_str(),
                stored: &manifest.stored,
                raw: &manifest.raw,
            },
            RestoreSink::Session(session),
            &self.options,
            identities,
        )
        .await?
        .expect("a session sink reports");
        tracing::info!(%id, database = %report.database, "restore committed");
        Ok(report)
    }

    /// The plain dump of backup `id` (decrypted, decompressed, for an
    /// incremental backup reassembled from its chunks) as a stream, verified
    /// as it goes: the stream ends with an error instead of its last bytes
    /// if any digest does not match, so a consumer that sees a clean end
    /// has a verified dump (the same holdback as a restore). Memory stays
    /// bounded; the work runs on a background task that stops when the
    /// stream is dropped.
    pub async fn open_dump(
        &self,
        id: &str,
        tenant: Option<&str>,
    ) -> Result<(Arc<Manifest>, crate::store::ByteStream)> {
        let manifest = self.catalog.get(id, tenant).await?;
        self.identities_for(&manifest)?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes>>(self.options.queue_depth);
        let target = ChannelTarget {
            engine: manifest.engine.clone(),
            format: manifest.format.clone(),
            tx: tx.clone(),
        };
        let engine = self.clone();
        let id = id.to_string();
        let tenant = manifest.tenant.clone();
        tokio::spawn(async move {
            let options = RestoreOptions::default();
            let restore = engine.restore(&id, Some(&tenant), &target, &options);
            tokio::select! {
                result = restore => {
                    if let Err(e) = result {
                        let _ = tx.send(Err(e)).await;
                    }
                }
                _ = tx.closed() => {}
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok((manifest, Box::pin(stream)))
    }

    /// Re-reads backup `id`, checking size, SHA-256 and MD5 of the stored
    /// bytes and, after decompression, of the dump itself. For an
    /// incremental backup: the chunk list's digests, that every chunk is in
    /// the store and hashes to its id, and the whole dump's digest.
    pub async fn verify(&self, id: &str, tenant: Option<&str>) -> Result<Arc<Manifest>> {
        let manifest = self.catalog.get(id, tenant).await?;
        match self.verify_manifest(Arc::clone(&manifest)).await {
            Ok(m) => Ok(m),
            Err(e) => Err(self.explain_read_failure(&manifest, e).await),
        }
    }

    async fn verify_manifest(&self, manifest: Arc<Manifest>) -> Result<Arc<Manifest>> {
        let identities = self.identities_for(&manifest)?;
        if manifest.backup_type == BackupType::Incremental {
            self.read_deduplicated(Arc::clone(&manifest), identities, None)
                .await?;
            return Ok(manifest);
        }
        let decompressor: Arc<dyn Compressor> =
            Arc::new(Compression::for_algorithm(&manifest.compression.algorithm)?);
        let artifact_key = manifest.artifact_key()?;
        let artifact = self.store.get(&artifact_key).await?;
        run_restore(
            artifact.stream,
            decompressor,
            Expected {
                what: artifact_key.as_str(),
                stored: &manifest.stored,
                raw: &manifest.raw,
            },
            RestoreSink::Discard,
            &self.options,
            identities,
        )
        .await?;
        Ok(manifest)
    }

    /// Checks only the stored bytes of backup `id` (size, SHA-256, MD5):
    /// no key needed, so it suits encrypted backups on machines that must
    /// not hold the identity. [`Engine::verify`] checks the dump too. For
    /// an incremental backup: the chunk list's digests and that every
    /// chunk it names is in a pack index of the tenant.
    pub async fn verify_stored(&self, id: &str, tenant: Option<&str>) -> Result<Arc<Manifest>> {
        let manifest = self.catalog.get(id, tenant).await?;
        match self.verify_stored_manifest(Arc::clone(&manifest)).await {
            Ok(m) => Ok(m),
            Err(e) => Err(self.explain_read_failure(&manifest, e).await),
        }
    }

    async fn verify_stored_manifest(&self, manifest: Arc<Manifest>) -> Result<Arc<Manifest>> {
        use futures::StreamExt;
        if manifest.backup_type == BackupType::Incremental {
            let map = self.chunk_map(&manifest).await?;
            precheck(self.store.as_ref(), &manifest, &map).await?;
            return Ok(manifest);
        }
        let artifact_key = manifest.artifact_key()?;
        let mut artifact = self.store.get(&artifact_key).await?.stream;
        let mut hasher = crate::pipeline::StoredHasher::with_md5(manifest.stored.md5.is_some());
        while let Some(chunk) = artifact.next().await {
            hasher.update(&chunk?).await;
        }
        if let Some(diff) = crate::pipeline::compare(&manifest.stored, &hasher.finish().await) {
            return Err(Error::Integrity {
                what: artifact_key.to_string(),
                detail: format!("stored bytes: {diff}"),
            });
        }
        Ok(manifest)
    }

    /// The chunks an incremental backup can use: its tenant's packs with
    /// the same recipients.
    async fn chunk_map(&self, manifest: &Manifest) -> Result<ChunkMap> {
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

    /// Streams an incremental backup's chunks, checked one by one, into a
    /// restore session (committed only once the whole dump's digest
    /// matches) or nowhere (verification). Missing chunks and a damaged
    /// chunk list are found before the session begins.
    async fn read_deduplicated(
        &self,
        manifest: Arc<Manifest>,
        identities: Option<AgeIdentities>,
        target: Option<(&dyn RestoreTarget, &RestoreOptions)>,
    ) -> Result<Option<RestoreReport>> {
        let map = Arc::new(self.chunk_map(&manifest).await?);
        precheck(self.store.as_ref(), &manifest, &map).await?;
        let sink = match target {
            Some((target, opts)) => RestoreSink::Session(target.begin(opts).await?),
            None => RestoreSink::Discard,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(self.options.queue_depth.max(1));
        let pump = AbortOnDrop(Some(tokio::spawn(pump_chunks(
            Arc::clone(&self.store),
            Arc::clone(&manifest),
            map,
            identities,
            tx,
            self.dedup.concurrency,
        ))));
        deliver(
            rx,
            pump,
            Expected {
                what: &manifest.artifact,
                stored: &manifest.stored,
                raw: &manifest.raw,
            },
            sink,
            &self.options,
        )
        .await
    }

    /// Collects the garbage of `tenant`'s chunk store: deletes packs no
    /// incremental backup references any more and repacks mostly-garbage
    /// ones, leaving packs younger than `grace` alone. Backs off (reported
    /// in [`GcReport::skipped`], nothing deleted) while a deduplicating
    /// backup of the tenant is in flight; see the protocol in
    /// [`DedupOptions`]' module docs. `dry_run` only reports the plan.
    ///
    /// Needs no key: encrypted chunks are copied as they are.
    pub async fn gc(&self, tenant: &str, grace: Duration, dry_run: bool) -> Result<GcReport> {
        self.dedup.validate()?;
        to_chrono(grace, "gc grace")?;
        let report = collect(
            self.store.as_ref(),
            &self.catalog,
            tenant,
            grace,
            dry_run,
            &self.dedup,
        )
        .await?;
        tracing::info!(
            %tenant,
            deleted = report.deleted_packs.len(),
            repacked = report.repacked_packs.len(),
            freed = report.freed_bytes,
            skipped = report.skipped.as_deref().unwrap_or("no"),
            "garbage collection done"
        );
        Ok(report)
    }

    /// Reads everything of one tenant (or, with `None`, of every tenant in
    /// the store) and reports missing, corrupt and orphaned objects: every
    /// chunk of every pack is decoded and hashed (encrypted chunks only
    /// with the engine's identities, else they are counted as unverified),
    /// every chunk list and full artifact is checked against its manifest.
    /// Changes nothing.
    pub async fn check(&self, tenant: Option<&str>) -> Result<CheckReport> {
        let mut report = check(&self.store, &self.catalog, tenant, &self.identities).await?;
        self.check_leftovers(tenant, &mut report).await?;
        Ok(report)
    }

    /// Adds to `report` what a sweep would look at: in-progress markers
    /// (fresh ones make their artifacts "in progress" rather than orphans;
    /// stale ones are garbage), expired chunk-store markers, and the
    /// store's temporary objects.
    async fn check_leftovers(&self, tenant: Option<&str>, report: &mut CheckReport) -> Result<()> {
        let now = Utc::now();
        let held = to_chrono(INFLIGHT_STALE_AFTER, "marker age")?;
        let mut running = std::collections::HashSet::new();
        for t in report.tenants.clone() {
            let prefix = Key::new(format!("{t}/{INFLIGHT_DIR}"))?;
            for meta in self.store.list_all(Some(&prefix)).await? {
                match parse_marker_key(&meta.key) {
                    Some((_, id)) if now - meta.last_modified < held => {
                        running.insert(id.to_string());
                    }
                    Some(_) => report.stale_markers.push(meta.key.to_string()),
                    None => {}
                }
            }
            let (_, expired) =
                inflight_markers(self.store.as_ref(), &t, self.dedup.inflight_expiry).await?;
            report
                .stale_markers
                .extend(expired.into_iter().map(|m| m.key.to_string()));
        }
        let orphans = std::mem::take(&mut report.orphaned_artifacts);
        for key in orphans {
            if Layout::from_artifact(&key).is_some_and(|l| running.contains(l.id())) {
                report.in_progress.push(key);
            } else {
                report.orphaned_artifacts.push(key);
            }
        }
        let temporary = self
            .store
            .sweep_temporary(&TemporarySweep::report_only())
            .await?;
        report.temporary_objects = temporary
            .into_iter()
            .filter(|t| tenant.is_none_or(|tn| t.location.starts_with(&format!("{tn}/"))))
            .collect();
        Ok(())
    }

    /// Removes what failed and crashed backups left behind: everything
    /// [`Catalog::sweep`] removes (orphaned artifacts of backups no longer
    /// running, stale in-progress markers, the store's temporary objects),
    /// plus, in every tenant's chunk store, packs without an index older
    /// than `grace` and expired in-flight markers. The chunk stores are
    /// swept under the GC marker, so that part backs off (reported in
    /// [`ChunkSweep::skipped`](crate::ChunkSweep::skipped)) while an
    /// incremental backup or a GC of the tenant runs. `now` is the time
    /// ages are measured against (`Utc::now()` outside tests).
    pub async fn sweep(&self, grace: Duration, now: DateTime<Utc>) -> Result<SweepReport> {
        self.dedup.validate()?;
        let grace_c = to_chrono(grace, "sweep grace")?;
        let mut report = self.catalog.sweep(grace, now).await?;
        let mut tenants = std::collections::BTreeSet::new();
        for meta in self.store.list_all(None).await? {
            let mut segments = meta.key.segments();
            if let (Some(tenant), Some("_chunks")) = (segments.next(), segments.next())
                && !tenant.starts_with('_')
            {
                tenants.insert(tenant.to_string());
            }
        }
        for tenant in tenants {
            let chunks =
                sweep_chunk_store(self.store.as_ref(), &tenant, grace_c, now, &self.dedup).await?;
            report.freed_bytes = report.freed_bytes.saturating_add(chunks.freed_bytes);
            report.chunk_stores.push(chunks);
        }
        Ok(report)
    }

    /// Applies retention to every source matching `filter`: plans with
    /// [`plan`], then (unless `dry_run`) deletes each doomed backup manifest
    /// first, artifact second. With [`PlanOptions::collect_garbage`] it
    /// then runs [`Engine::gc`] on each tenant it pruned (never implicitly:
    /// chunks of deleted incremental backups otherwise stay until a GC).
    pub async fn prune(
        &self,
        filter: &Filter,
        policies: &[&dyn RetentionPolicy],
        opts: PlanOptions,
        dry_run: bool,
    ) -> Result<PruneReport> {
        let mut groups: BTreeMap<String, Vec<Arc<Manifest>>> = BTreeMap::new();
        for m in self.catalog.list(filter).await? {
            groups
                .entry(format!("{}/{}", m.tenant, m.source_id))
                .or_default()
                .push(m);
        }
        let now = Utc::now();
        let mut report = PruneReport {
            dry_run,
            ..PruneReport::default()
        };
        for (source, backups) in groups {
            let p = plan(&backups, policies, now, opts);
            if !dry_run {
                for doomed in &p.delete {
                    let m = backups
                        .iter()
                        .find(|m| m.id == doomed.id)
                        .expect("plan only names listed backups");
                    self.catalog.delete_manifest(m).await?;
                    tracing::info!(id = %m.id, %source, "pruned backup");
                    self.events.emit(Event::Pruned {
                        tenant: m.tenant.clone(),
                        source_id: m.source_id.clone(),
                        backup_id: m.id.clone(),
                        at: Utc::now(),
                    });
                }
            }
            report.sources.insert(source, p);
        }
        if let (Some(grace), false) = (opts.collect_garbage, dry_run) {
            let tenants: std::collections::BTreeSet<String> = report
                .sources
                .keys()
                .filter_map(|s| s.split_once('/').map(|(t, _)| t.to_string()))
                .collect();
            for tenant in tenants {
                let gc = self.gc(&tenant, grace, false).await?;
                report.gc.insert(tenant, gc);
            }
        }
        Ok(report)
    }
}

/// Where a backup goes: what [`Engine::write_and_commit`] writes.
struct WriteTo<'a> {
    info: SourceInfo,
    layout: &'a Layout,
    artifact: &'a Key,
    id: &'a str,
    started_at: DateTime<Utc>,
}

/// A restore target that hands the verified dump to a channel
/// ([`Engine::open_dump`]).
#[derive(Debug)]
struct ChannelTarget {
    engine: String,
    format: String,
    tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes>>,
}

#[derive(Debug)]
struct ChannelSession(tokio::sync::mpsc::Sender<Result<bytes::Bytes>>);

#[async_trait::async_trait]
impl RestoreTarget for ChannelTarget {
    fn engine(&self) -> &str {
        &self.engine
    }

    fn accepts_format(&self, format: &str) -> bool {
        format == self.format
    }

    async fn begin(&self, _opts: &RestoreOptions) -> Result<Box<dyn crate::RestoreSession>> {
        Ok(Box::new(ChannelSession(self.tx.clone())))
    }
}

#[async_trait::async_trait]
impl crate::RestoreSession for ChannelSession {
    async fn write(&mut self, data: bytes::Bytes) -> Result<()> {
        self.0.send(Ok(data)).await.map_err(|_| Error::Cancelled)
    }

    async fn commit(self: Box<Self>) -> Result<RestoreReport> {
        Ok(RestoreReport::default())
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
