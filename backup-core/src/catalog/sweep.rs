//! [`Catalog::sweep`]: removing what failed and crashed backups left behind.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::listing::{Catalog, is_reserved};
use crate::duration::to_chrono;
use crate::error::{Error, Result};
use crate::inflight::{INFLIGHT_STALE_AFTER, marker_key, parse_marker_key};
use crate::key::Key;
use crate::manifest::Layout;
use crate::store::{ObjectMeta, StoreExt, TemporaryObject, TemporarySweep};

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

impl Catalog {
    /// Removes what failed and crashed backups left behind, once it is
    /// older than `grace` (measured against `now`):
    ///
    /// - artifacts without a manifest, unless their backup is still running
    ///   (a fresh in-progress marker; see the commit protocol in the
    ///   `inflight` module docs), re-checking the manifest just before each
    ///   delete;
    /// - in-progress markers not rewritten for `max(grace,`
    ///   [`INFLIGHT_STALE_AFTER`]`)` (a crashed backup's);
    /// - the store's temporary objects ([`Store::sweep_temporary`](crate::store::Store::sweep_temporary)) older
    ///   than `max(grace, INFLIGHT_STALE_AFTER)`, so an upload in progress
    ///   keeps its file whatever the grace.
    ///
    /// Younger leftovers are reported, not touched. A grace beyond
    /// [`MAX_DURATION`](crate::duration::MAX_DURATION) is refused. Chunk-store
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
