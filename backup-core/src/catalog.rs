//! The catalog: backups as recorded by the manifests in a store.
//!
//! Nothing else is consulted: a store alone is enough to rebuild the list of
//! backups. Artifacts without a manifest are never listed; [`Catalog::sweep`]
//! removes them once they are older than a grace period (so an upload still
//! in progress is left alone).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::manifest::{BackupKind, BackupType, Layout, Manifest, is_backup_id};
use crate::store::{ObjectMeta, Store, StoreExt};
use crate::{Error, Key, Result, validate_id};

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

/// What [`Catalog::sweep`] removed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SweepReport {
    /// Keys of orphaned artifacts that were deleted.
    pub removed: Vec<String>,
    /// Orphans left because they are younger than the grace period.
    pub too_recent: Vec<String>,
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
        let prefix = filter.prefix()?;
        let mut keys = Vec::new();
        let mut listing = self.store.list(prefix.as_ref());
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            if Layout::from_manifest_key(meta.key.as_str()).is_some() {
                keys.push(meta.key);
            }
        }
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            match self.load(&key).await {
                Ok(m) if filter.matches(&m) => out.push(m),
                Ok(_) => {}
                Err(Error::NotFound { .. }) => {} // deleted meanwhile
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

    /// Removes artifacts that have no manifest and were last written more
    /// than `grace` ago (failed or interrupted backups). Younger orphans may
    /// belong to a backup in progress and are reported, not touched.
    pub async fn sweep(&self, grace: Duration, now: DateTime<Utc>) -> Result<SweepReport> {
        let objects: Vec<ObjectMeta> = self.store.list_all(None).await?;
        let committed: HashSet<String> = objects
            .iter()
            .filter_map(|o| Layout::from_manifest_key(o.key.as_str()))
            .map(|l| l.base().to_string())
            .collect();
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        let mut report = SweepReport::default();
        for object in objects {
            let Some(layout) = Layout::from_artifact(object.key.as_str()) else {
                continue;
            };
            if committed.contains(layout.base()) {
                continue;
            }
            if now - object.last_modified < grace {
                report.too_recent.push(object.key.to_string());
                continue;
            }
            self.store.delete(&object.key).await?;
            tracing::info!(key = %object.key, "removed orphaned artifact");
            report.removed.push(object.key.to_string());
        }
        Ok(report)
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
            if Layout::from_manifest_key(meta.key.as_str()).is_some_and(|l| l.id() == id) {
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
        self.cache
            .lock()
            .expect("catalog cache poisoned")
            .insert(key.clone(), Arc::clone(&manifest));
        Ok(manifest)
    }
}
