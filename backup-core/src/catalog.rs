//! The catalog: backups as recorded by the manifests in a store.
//!
//! Nothing else is consulted: a store alone is enough to rebuild the list of
//! backups. Artifacts without a manifest are never listed; [`Catalog::sweep`]
//! removes them once they are older than a grace period and their backup
//! no longer runs (see the commit protocol in the `inflight` module docs).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::duration::to_chrono;
use crate::error::{Error, Result};
use crate::inflight::{INFLIGHT_STALE_AFTER, marker_key, parse_marker_key};
use crate::key::{Key, validate_id};
use crate::manifest::{BackupKind, BackupType, Layout, Manifest, is_backup_id};
use crate::store::{ObjectMeta, Store, StoreExt, TemporaryObject, TemporarySweep};

/// Which backups [`Catalog::list`] returns. Empty fields match everything.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Filter {
    /// Only this tenant's backups.
    pub tenant: Option<String>,
    /// Only this source's backups.
    pub source_id: Option<String>,
    /// Only manual or only scheduled backups.
    pub kind: Option<BackupKind>,
    /// Only full or only incremental backups.
    #[serde(rename = "type")]
    pub backup_type: Option<BackupType>,
    /// Started at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Started before this instant.
    pub until: Option<DateTime<Utc>>,
}

impl Filter {
    /// Every backup.
    pub fn all() -> Self {
        Filter::default()
    }

    /// Backups of one tenant.
    pub fn tenant(tenant: impl Into<String>) -> Self {
        Filter {
            tenant: Some(tenant.into()),
            ..Filter::default()
        }
    }

    /// Narrows to one source.
    pub fn source(mut self, source_id: impl Into<String>) -> Self {
        self.source_id = Some(source_id.into());
        self
    }

    /// Whether a manifest passes the filter.
    pub fn matches(&self, m: &Manifest) -> bool {
        self.tenant.as_ref().is_none_or(|t| *t == m.tenant)
            && self.source_id.as_ref().is_none_or(|s| *s == m.source_id)
            && self.kind.is_none_or(|k| k == m.kind)
            && self.backup_type.is_none_or(|t| t == m.backup_type)
            && self.since.is_none_or(|t| m.started_at >= t)
            && self.until.is_none_or(|t| m.started_at < t)
    }

    /// The narrowest store prefix that holds every match.
    fn prefix(&self) -> Result<Option<Key>> {
        match (&self.tenant, &self.source_id) {
            (Some(t), Some(s)) => {
                validate_id(t)?;
                validate_id(s)?;
                Ok(Some(Key::new(format!("{t}/{s}"))?))
            }
            (Some(t), None) => {
                validate_id(t)?;
                Ok(Some(Key::new(t.as_str())?))
            }
            _ => Ok(None),
        }
    }
}

/// What [`Catalog::sweep`] (and [`Engine::sweep`](crate::Engine::sweep))
/// removed and what it left, with the reason.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SweepReport {
    /// Keys of orphaned artifacts that were deleted.
    pub removed: Vec<String>,
    /// Orphans left because they are younger than the grace period.
    pub too_recent: Vec<String>,
    /// Orphans left because their backup is still running (it holds a fresh
    /// in-progress marker; see the commit protocol in the `inflight`
    /// module docs).
    #[serde(default)]
    pub in_progress: Vec<String>,
    /// In-progress markers left by backups that stopped without removing
    /// them (not rewritten for [`INFLIGHT_STALE_AFTER`]), removed.
    #[serde(default)]
    pub stale_markers: Vec<String>,
    /// The store's temporary objects (uploads killed with their process)
    /// that were removed.
    #[serde(default)]
    pub temporary_removed: Vec<TemporaryObject>,
    /// Temporary objects left: younger than the grace period or than
    /// [`INFLIGHT_STALE_AFTER`] (an upload may be writing them).
    #[serde(default)]
    pub temporary_too_recent: Vec<TemporaryObject>,
    /// Leftovers of incremental backups, per tenant with a chunk store
    /// ([`Engine::sweep`](crate::Engine::sweep) only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunk_stores: Vec<ChunkSweep>,
    /// Bytes freed (artifacts, temporary objects and packs removed).
    #[serde(default)]
    pub freed_bytes: u64,
}

/// Leftovers of one tenant's chunk store found by a sweep.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChunkSweep {
    /// The tenant.
    pub tenant: String,
    /// Packs without an index (a backup or GC killed between writing a
    /// pack and its index) that were removed. Pack ids.
    pub orphaned_packs: Vec<String>,
    /// Such packs left because they are younger than the grace period.
    pub young_packs: Vec<String>,
    /// Expired in-flight markers (crashed incremental backups) removed.
    pub expired_markers: Vec<String>,
    /// Why nothing was removed (a backup or GC is running: it may be about
    /// to write the index of a pack that has none yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Bytes of the packs removed.
    pub freed_bytes: u64,
}

impl SweepReport {
    /// Whether anything was removed.
    pub fn removed_anything(&self) -> bool {
        !self.removed.is_empty()
            || !self.stale_markers.is_empty()
            || !self.temporary_removed.is_empty()
            || self
                .chunk_stores
                .iter()
                .any(|c| !c.orphaned_packs.is_empty() || !c.expired_markers.is_empty())
    }
}

/// Backups in a store, read from their manifests.
///
/// Manifests never change once written, so parsed manifests are cached by
/// key; every call still lists the store, which stays the source of truth.
#[derive(Debug)]
pub struct Catalog {
    store: Arc<dyn Store>,
    cache: Mutex<HashMap<Key, Arc<Manifest>>>,
}

impl Catalog {
    /// A catalog over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Catalog {
            store,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The store the catalog reads.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Backups matching `filter`, newest first. Manifests that cannot be
    /// read or parsed are skipped with a warning, not fatal to the listing.
    pub async fn list(&self, filter: &Filter) -> Result<Vec<Arc<Manifest>>> {
        self.list_inner(filter, false).await
    }

    /// Like [`Catalog::list`], but an unreadable manifest is an error: for
    /// garbage collection, which must know every backup's references.
    pub(crate) async fn list_strict(&self, filter: &Filter) -> Result<Vec<Arc<Manifest>>> {
        self.list_inner(filter, true).await
    }

    async fn list_inner(&self, filter: &Filter, strict: bool) -> Result<Vec<Arc<Manifest>>> {
        let prefix = filter.prefix()?;
        let mut keys = Vec::new();
        let mut listing = self.store.list(prefix.as_ref());
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            if !is_reserved(&meta.key) && Layout::from_manifest_key(meta.key.as_str()).is_some() {
                keys.push(meta.key);
            }
        }
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            match self.load(&key).await {
                Ok(m) if filter.matches(&m) => out.push(m),
                Ok(_) => {}
                Err(Error::NotFound { .. }) => {} // deleted meanwhile
                Err(e) if strict => return Err(e),
                Err(e) => tracing::warn!(%key, error = %e, "skipping unreadable manifest"),
            }
        }
        out.sort_by(|a, b| {
            b.started_at
                .cmp(&a.started_at)
                .then_with(|| b.id.cmp(&a.id))
        });
        Ok(out)
    }

    /// The backup with this id. `tenant` restricts the search to one
    /// tenant's backups (another tenant's id is then [`Error::NotFound`]).
    /// Ids that are not backup ids (traversal attempts included) are
    /// rejected with [`Error::InvalidKey`] before the store is touched.
    pub async fn get(&self, id: &str, tenant: Option<&str>) -> Result<Arc<Manifest>> {
        let key = self.find_manifest_key(id, tenant).await?;
        let manifest = self.load(&key).await?;
        if manifest.id != id {
            return Err(Error::Manifest {
                key: key.to_string(),
                detail: format!("records id {} but is named for {id}", manifest.id),
            });
        }
        Ok(manifest)
    }

    /// Deletes a backup: the manifest first (so it stops being listed), then
    /// the artifact. A crash in between leaves an orphan that
    /// [`Catalog::sweep`] removes, never a listed backup without data.
    pub async fn delete(&self, id: &str, tenant: Option<&str>) -> Result<Arc<Manifest>> {
        let manifest = self.get(id, tenant).await?;
        self.delete_manifest(&manifest).await?;
        Ok(manifest)
    }

    /// Deletes the backup a manifest describes, manifest first.
    pub async fn delete_manifest(&self, manifest: &Manifest) -> Result<()> {
        let manifest_key = manifest.manifest_key()?;
        self.store.delete(&manifest_key).await?;
        self.cache
            .lock()
            .expect("catalog cache poisoned")
            .remove(&manifest_key);
        self.store.delete(&manifest.artifact_key()?).await
    }

    /// Removes what failed and crashed backups left behind, once it is
    /// older than `grace` (measured against `now`):
    ///
    /// - artifacts without a manifest, unless their backup is still running
    ///   (a fresh in-progress marker; see the commit protocol in the
    ///   `inflight` module docs), re-checking the manifest just before each
    ///   delete;
    /// - in-progress markers not rewritten for `max(grace,`
    ///   [`INFLIGHT_STALE_AFTER`]`)` (a crashed backup's);
    /// - the store's temporary objects ([`Store::sweep_temporary`]) older
    ///   than `max(grace, INFLIGHT_STALE_AFTER)`, so an upload in progress
    ///   keeps its file whatever the grace.
    ///
    /// Younger leftovers are reported, not touched. A grace beyond
    /// [`MAX_DURATION`](crate::MAX_DURATION) is refused. Chunk-store
    /// leftovers of incremental backups need the engine's options:
    /// [`Engine::sweep`](crate::Engine::sweep) covers them too.
    pub async fn sweep(&self, grace: Duration, now: DateTime<Utc>) -> Result<SweepReport> {
        let grace_c = to_chrono(grace, "sweep grace")?;
        let held = grace.max(INFLIGHT_STALE_AFTER);
        let held_c = to_chrono(held, "sweep grace")?;
        let mut report = SweepReport::default();
        let objects = self.store.list_all(None).await?;
        let markers: Vec<ObjectMeta> = objects
            .iter()
            .filter(|o| parse_marker_key(&o.key).is_some())
            .cloned()
            .collect();
        for object in orphans_in(objects) {
            if now - object.last_modified < grace_c {
                report.too_recent.push(object.key.to_string());
                continue;
            }
            let Some(layout) = Layout::from_artifact(object.key.as_str()) else {
                continue;
            };
            let tenant = object.key.segments().next().unwrap_or_default();
            // (a) Is its backup still running? Read now, after the listing
            // that showed the artifact.
            match self.store.head(&marker_key(tenant, layout.id())?).await {
                Ok(marker) if now - marker.last_modified < held_c => {
                    report.in_progress.push(object.key.to_string());
                    continue;
                }
                Ok(_) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            // (b) Has it committed since the listing?
            if self.store.exists(&layout.manifest_key()?).await? {
                continue;
            }
            self.store.delete(&object.key).await?;
            tracing::info!(key = %object.key, "removed orphaned artifact");
            report.removed.push(object.key.to_string());
            report.freed_bytes = report.freed_bytes.saturating_add(object.size);
        }
        for marker in markers {
            // Read again: the backup may have rewritten it since the listing.
            match self.store.head(&marker.key).await {
                Ok(meta) if now - meta.last_modified >= held_c => {
                    self.store.delete(&marker.key).await?;
                    tracing::info!(key = %marker.key, since = %meta.last_modified, "removed a stale in-progress marker");
                    report.stale_markers.push(marker.key.to_string());
                }
                Ok(_) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        for temp in self
            .store
            .sweep_temporary(&TemporarySweep::older_than(held))
            .await?
        {
            if temp.removed {
                tracing::info!(location = %temp.location, size = temp.size, "removed a temporary object");
                report.freed_bytes = report.freed_bytes.saturating_add(temp.size);
                report.temporary_removed.push(temp);
            } else {
                report.temporary_too_recent.push(temp);
            }
        }
        Ok(report)
    }

    /// Artifacts under `prefix` (the whole store when `None`) that follow
    /// the backup naming scheme but have no manifest.
    pub(crate) async fn orphans(&self, prefix: Option<&Key>) -> Result<Vec<ObjectMeta>> {
        Ok(orphans_in(self.store.list_all(prefix).await?))
    }

    /// Drops a cached manifest (one that was withdrawn or deleted).
    pub(crate) fn forget(&self, key: &Key) {
        self.cache
            .lock()
            .expect("catalog cache poisoned")
            .remove(key);
    }

    /// The manifest stored at `key` (cached).
    pub(crate) async fn load_key(&self, key: &Key) -> Result<Arc<Manifest>> {
        self.load(key).await
    }

    async fn find_manifest_key(&self, id: &str, tenant: Option<&str>) -> Result<Key> {
        if !is_backup_id(id) {
            return Err(Error::InvalidKey {
                key: id.chars().take(200).collect(),
                reason: "not a backup id (expected YYYYMMDDTHHMMSSZ-xxxxxxxx)",
            });
        }
        let prefix = match tenant {
            Some(t) => {
                validate_id(t)?;
                Some(Key::new(t)?)
            }
            None => None,
        };
        let mut listing = self.store.list(prefix.as_ref());
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            if !is_reserved(&meta.key)
                && Layout::from_manifest_key(meta.key.as_str()).is_some_and(|l| l.id() == id)
            {
                return Ok(meta.key);
            }
        }
        Err(Error::not_found(format!("backup {id}")))
    }

    async fn load(&self, key: &Key) -> Result<Arc<Manifest>> {
        if let Some(m) = self.cache.lock().expect("catalog cache poisoned").get(key) {
            return Ok(Arc::clone(m));
        }
        let bytes = self.store.get_bytes(key).await?;
        let manifest = Arc::new(Manifest::from_json(key, &bytes)?);
        // A manifest may only describe the artifact beside it: one naming
        // another key (another tenant's, say) is refused, so deleting it can
        // never delete someone else's data.
        let own = Layout::from_manifest_key(key.as_str());
        let named = Layout::from_artifact(&manifest.artifact);
        if own.is_none()
            || named.is_none()
            || own.map(|l| l.base().to_string()) != named.map(|l| l.base().to_string())
        {
            return Err(Error::Manifest {
                key: key.to_string(),
                detail: format!("its artifact {} is not beside it", manifest.artifact),
            });
        }
        self.cache
            .lock()
            .expect("catalog cache poisoned")
            .insert(key.clone(), Arc::clone(&manifest));
        Ok(manifest)
    }
}

/// Artifacts among `objects` that follow the backup naming scheme but have
/// no manifest among them.
fn orphans_in(objects: Vec<ObjectMeta>) -> Vec<ObjectMeta> {
    let committed: HashSet<String> = objects
        .iter()
        .filter_map(|o| Layout::from_manifest_key(o.key.as_str()))
        .map(|l| l.base().to_string())
        .collect();
    objects
        .into_iter()
        .filter(|o| {
            !is_reserved(&o.key)
                && Layout::from_artifact(o.key.as_str())
                    .is_some_and(|l| !committed.contains(l.base()))
        })
        .collect()
}

/// Keys with a segment starting with `_` belong to reserved namespaces
/// (`_locks`, `_packages`, ...) and are never backups.
pub(crate) fn is_reserved(key: &Key) -> bool {
    key.segments().any(|s| s.starts_with('_'))
}

/// File name of a source's last-run record, beside its backups.
pub const RUN_RECORD_NAME: &str = "last-run.json";

/// The outcome of the latest backup attempt of a source, stored at
/// `{tenant}/{source_id}/last-run.json` so health survives restarts and is
/// shared by every process using the store. Never holds secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Tenant.
    pub tenant: String,
    /// Source id.
    pub source_id: String,
    /// Manual or scheduled.
    pub kind: BackupKind,
    /// When the attempt started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Whether a backup was committed.
    pub succeeded: bool,
    /// The committed backup, on success.
    pub backup_id: Option<String>,
    /// The error, on failure (one line, no secrets).
    pub error: Option<String>,
    /// For a scheduled attempt, the schedule time it stood for (in the
    /// scheduler's clock): a restarted scheduler reads it to know that
    /// trigger ran already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<DateTime<Utc>>,
}

impl RunRecord {
    fn key(tenant: &str, source_id: &str) -> Result<Key> {
        Key::new(format!("{tenant}/{source_id}/{RUN_RECORD_NAME}"))
    }

    /// The latest record of a source, or `None` if it never ran.
    pub async fn load(store: &dyn Store, tenant: &str, source_id: &str) -> Result<Option<Self>> {
        validate_id(tenant)?;
        validate_id(source_id)?;
        let key = Self::key(tenant, source_id)?;
        match store.get_bytes(&key).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Manifest {
                    key: key.to_string(),
                    detail: format!("unreadable run record: {e}"),
                }),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// When the source last ran, for a scheduler deciding whether a missed
    /// trigger still needs a run: the trigger a scheduled attempt stood for,
    /// else (a manual attempt) when it started.
    pub fn last_run(&self) -> DateTime<Utc> {
        self.scheduled_for.unwrap_or(self.started_at)
    }

    /// Writes the record (overwriting the previous one).
    pub async fn save(&self, store: &dyn Store) -> Result<()> {
        let key = Self::key(&self.tenant, &self.source_id)?;
        let body = serde_json::to_vec_pretty(self).expect("run records serialise");
        store
            .put(
                &key,
                bytes::Bytes::from(body),
                crate::store::PutOptions::default(),
            )
            .await
            .map(|_| ())
    }
}

/// Which slice of a listing to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// Items to skip.
    pub offset: usize,
    /// Most items to return.
    pub limit: usize,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            offset: 0,
            limit: 100,
        }
    }
}

/// One page of backups, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct BackupPage {
    /// The backups on this page.
    pub items: Vec<Arc<Manifest>>,
    /// Matching backups in all pages.
    pub total: usize,
    /// Offset of the next page, if there is one.
    pub next_offset: Option<usize>,
}

/// Counts and sizes of a set of backups.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Number of backups.
    pub count: usize,
    /// Bytes they added to the store (for incremental backups the new
    /// chunks, not the size of the dump: see [`Manifest::bytes_stored`]).
    pub total_bytes: u64,
    /// Start time of the newest.
    pub last: Option<DateTime<Utc>>,
    /// Start time of the oldest.
    pub oldest: Option<DateTime<Utc>>,
}

impl Stats {
    fn add(&mut self, m: &Manifest) {
        self.count += 1;
        self.total_bytes = self.total_bytes.saturating_add(m.bytes_stored());
        self.last = Some(self.last.map_or(m.started_at, |t| t.max(m.started_at)));
        self.oldest = Some(self.oldest.map_or(m.started_at, |t| t.min(m.started_at)));
    }
}

/// [`Stats`] overall, per tenant and per source (`tenant/source_id`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    /// Everything matched.
    pub total: Stats,
    /// Per tenant.
    pub tenants: std::collections::BTreeMap<String, Stats>,
    /// Per `tenant/source_id`.
    pub sources: std::collections::BTreeMap<String, Stats>,
}

/// Health of one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// A backup succeeded within the threshold and the last run did not fail.
    Healthy,
    /// No successful backup within the threshold (or none at all).
    Stale,
    /// The latest attempt failed.
    Failing,
}

/// The health of one source, as [`Catalog::health`] reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceHealth {
    /// Tenant.
    pub tenant: String,
    /// Source id.
    pub source_id: String,
    /// Verdict.
    pub status: HealthStatus,
    /// Start time of the newest committed backup.
    pub last_success: Option<DateTime<Utc>>,
    /// Hours since then.
    pub hours_since_success: Option<f64>,
    /// The error of the latest attempt, when it failed.
    pub last_error: Option<String>,
    /// The threshold applied, in hours.
    pub stale_after_hours: f64,
}

/// Thresholds for [`Catalog::health`].
#[derive(Debug, Clone)]
pub struct HealthOptions {
    /// Default threshold (24 h).
    pub stale_after: Duration,
    /// Per-source thresholds, keyed `tenant/source_id`.
    pub per_source: HashMap<String, Duration>,
    /// Sources to report even if the store has nothing for them yet
    /// (`(tenant, source_id)`); they are stale until their first backup.
    pub expected: Vec<(String, String)>,
}

impl Default for HealthOptions {
    fn default() -> Self {
        HealthOptions {
            stale_after: Duration::from_secs(24 * 3600),
            per_source: HashMap::new(),
            expected: Vec::new(),
        }
    }
}

impl Catalog {
    /// One page of [`Catalog::list`].
    pub async fn page(&self, filter: &Filter, page: Page) -> Result<BackupPage> {
        let all = self.list(filter).await?;
        let total = all.len();
        let items: Vec<Arc<Manifest>> =
            all.into_iter().skip(page.offset).take(page.limit).collect();
        let end = page.offset + items.len();
        Ok(BackupPage {
            items,
            total,
            next_offset: (end < total).then_some(end),
        })
    }

    /// Count, total size, newest and oldest backup: overall, per tenant and
    /// per source.
    pub async fn stats(&self, filter: &Filter) -> Result<StatsReport> {
        let mut report = StatsReport::default();
        for m in self.list(filter).await? {
            report.total.add(&m);
            report.tenants.entry(m.tenant.clone()).or_default().add(&m);
            report
                .sources
                .entry(format!("{}/{}", m.tenant, m.source_id))
                .or_default()
                .add(&m);
        }
        Ok(report)
    }

    /// The latest run record of every source under `filter`'s tenant (or
    /// all), keyed `tenant/source_id`.
    pub async fn run_records(&self, filter: &Filter) -> Result<HashMap<String, RunRecord>> {
        let prefix = filter.prefix()?;
        let mut out = HashMap::new();
        for meta in self.store.list_all(prefix.as_ref()).await? {
            let parts: Vec<&str> = meta.key.segments().collect();
            if parts.len() != 3 || parts[2] != RUN_RECORD_NAME {
                continue;
            }
            match self.store.get_bytes(&meta.key).await {
                Ok(bytes) => match serde_json::from_slice::<RunRecord>(&bytes) {
                    Ok(r) if filter.source_id.as_ref().is_none_or(|s| *s == r.source_id) => {
                        out.insert(format!("{}/{}", r.tenant, r.source_id), r);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(key = %meta.key, error = %e, "unreadable run record"),
                },
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Health of every source with backups or run records under `filter`
    /// (plus `opts.expected`): `failing` if the latest attempt failed,
    /// `stale` if no backup succeeded within the threshold, else `healthy`.
    pub async fn health(
        &self,
        filter: &Filter,
        opts: &HealthOptions,
        now: DateTime<Utc>,
    ) -> Result<Vec<SourceHealth>> {
        let mut newest: std::collections::BTreeMap<
            String,
            (String, String, Option<DateTime<Utc>>),
        > = std::collections::BTreeMap::new();
        for (tenant, source) in &opts.expected {
            let probe = format!("{tenant}/{source}");
            if filter.tenant.as_ref().is_none_or(|t| t == tenant)
                && filter.source_id.as_ref().is_none_or(|s| s == source)
            {
                newest.insert(probe, (tenant.clone(), source.clone(), None));
            }
        }
        for m in self.list(filter).await? {
            let entry = newest
                .entry(format!("{}/{}", m.tenant, m.source_id))
                .or_insert_with(|| (m.tenant.clone(), m.source_id.clone(), None));
            entry.2 = Some(entry.2.map_or(m.started_at, |t| t.max(m.started_at)));
        }
        let records = self.run_records(filter).await?;
        for (key, r) in &records {
            newest
                .entry(key.clone())
                .or_insert_with(|| (r.tenant.clone(), r.source_id.clone(), None));
        }
        let mut out = Vec::new();
        for (key, (tenant, source_id, last)) in newest {
            let threshold = opts
                .per_source
                .get(&key)
                .copied()
                .unwrap_or(opts.stale_after);
            let age_seconds = last.map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
            let hours = age_seconds.map(|s| s / 3600.0);
            let record = records.get(&key);
            let failing = record.is_some_and(|r| !r.succeeded);
            let stale = age_seconds.is_none_or(|s| s > threshold.as_secs_f64());
            out.push(SourceHealth {
                tenant,
                source_id,
                status: if failing {
                    HealthStatus::Failing
                } else if stale {
                    HealthStatus::Stale
                } else {
                    HealthStatus::Healthy
                },
                last_success: last,
                hours_since_success: hours.map(|h| (h * 100.0).round() / 100.0),
                last_error: record
                    .filter(|r| !r.succeeded)
                    .and_then(|r| r.error.clone()),
                stale_after_hours: threshold.as_secs_f64() / 3600.0,
            });
        }
        Ok(out)
    }
}
