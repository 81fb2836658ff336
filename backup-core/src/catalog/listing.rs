//! The [`Catalog`] itself: listing, finding, loading and deleting backups
//! by their manifests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;

use super::filter::Filter;
use crate::backup_ref::BackupRef;
use crate::error::{Error, Result};
use crate::key::{Key, validate_id};
use crate::manifest::{Layout, Manifest, is_backup_id};
use crate::store::{Store, StoreExt};

/// Backups in a store, read from their manifests.
///
/// Manifests never change once written, so parsed manifests are cached by
/// key; every call still lists the store, which stays the source of truth.
#[derive(Debug)]
pub struct Catalog {
    pub(super) store: Arc<dyn Store>,
    pub(super) cache: Mutex<HashMap<Key, Arc<Manifest>>>,
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

    /// The backup `backup` names (an id, or a [`BackupRef`]). A reference
    /// within a tenant restricts the search to that tenant's backups
    /// (another tenant's id is then [`Error::NotFound`]).
    /// Ids that are not backup ids (traversal attempts included) are
    /// rejected with [`Error::InvalidKey`] before the store is touched.
    pub async fn get(&self, backup: impl Into<BackupRef>) -> Result<Arc<Manifest>> {
        let backup = backup.into();
        let id = backup.id();
        let key = self.find_manifest_key(id, backup.tenant()).await?;
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
    ///
    /// A backup that is the [`parent`](Manifest::parent) of another backup
    /// of its tenant and source is refused with
    /// [`Error::HasDependents`]: deleting it would leave them listed but
    /// unrestorable. Delete the dependents first (newest first), or let
    /// retention decide, which keeps every parent a kept backup needs.
    pub async fn delete(&self, backup: impl Into<BackupRef>) -> Result<Arc<Manifest>> {
        let manifest = self.get(backup).await?;
        let dependents: Vec<String> = self
            .list(&Filter::tenant(manifest.tenant.clone()).source(manifest.source_id.clone()))
            .await?
            .iter()
            .filter(|m| m.parent.as_deref() == Some(manifest.id.as_str()))
            .map(|m| m.id.clone())
            .collect();
        if !dependents.is_empty() {
            return Err(Error::HasDependents {
                backup: manifest.id.clone(),
                dependents,
            });
        }
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

/// Keys with a segment starting with `_` belong to reserved namespaces
/// (`_locks`, `_packages`, ...) and are never backups.
pub(crate) fn is_reserved(key: &Key) -> bool {
    key.segments().any(|s| s.starts_with('_'))
}
