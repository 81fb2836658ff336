//! What crashed incremental backups leave in a tenant's chunk store, found
//! and removed by [`Engine::sweep`](crate::Engine::sweep): packs whose
//! index was never written, and expired in-flight markers. (Chunk lists
//! without a manifest are artifacts: the catalog's sweep takes them.)

use chrono::{DateTime, Utc};

use super::lock::{GcLock, inflight_markers};
use super::options::DedupOptions;
use super::packs::{PackListing, pack_key};
use crate::catalog::ChunkSweep;
use crate::error::{Error, Result};
use crate::store::Store;

/// Removes `tenant`'s packs without index older than `grace` and its
/// expired in-flight markers, holding the GC marker while it deletes (so no
/// backup or GC is writing a pack meanwhile); backs off, reported in
/// [`ChunkSweep::skipped`], while one runs.
pub(crate) async fn sweep_chunk_store(
    store: &dyn Store,
    tenant: &str,
    grace: chrono::Duration,
    now: DateTime<Utc>,
    opts: &DedupOptions,
) -> Result<ChunkSweep> {
    let mut report = ChunkSweep {
        tenant: tenant.to_string(),
        ..ChunkSweep::default()
    };
    let listing = PackListing::load(store, tenant).await?;
    let mut old = Vec::new();
    for (id, meta) in &listing.packs {
        if listing.indexes.contains_key(id) {
            continue;
        }
        if now - meta.last_modified < grace {
            report.young_packs.push(id.clone());
        } else {
            old.push((id.clone(), meta.size));
        }
    }
    let (_, expired) = inflight_markers(store, tenant, opts.inflight_expiry).await?;
    if old.is_empty() && expired.is_empty() {
        return Ok(report);
    }
    // Taking the GC marker removes expired in-flight markers and fails if a
    // backup is in flight.
    let mut lock = match GcLock::acquire(store, tenant, opts, &mut report.expired_markers).await? {
        Ok(lock) => lock,
        Err(reason) => {
            report.skipped = Some(reason);
            return Ok(report);
        }
    };
    let result = async {
        // A pack may have gained its index since the first listing.
        let now_listed = PackListing::load(store, tenant).await?;
        for (id, size) in old {
            if now_listed.indexes.contains_key(&id) || !now_listed.packs.contains_key(&id) {
                continue;
            }
            lock.before_delete(&mut report.expired_markers).await?;
            store.delete(&pack_key(tenant, &id)?).await?;
            tracing::info!(%tenant, pack = %id, "removed a pack without index");
            report.orphaned_packs.push(id);
            report.freed_bytes += size;
        }
        Ok::<(), Error>(())
    }
    .await;
    lock.release().await;
    result.map(|()| report)
}
