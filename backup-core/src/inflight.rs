//! In-progress markers: how a running backup keeps [`Catalog::sweep`]
//! (and anything else that removes orphans) away from its artifact.
//!
//! # The commit protocol
//!
//! A backup's artifact exists before its manifest does, so for a moment it
//! looks exactly like the orphan of a failed backup. Without more, a sweep
//! with a short grace could list it, see no manifest, and delete it just
//! before the backup writes its manifest: a listed backup without data.
//! The protocol:
//!
//! 1. **Marker first.** Once its artifact upload is open (store problems
//!    surface first) and before the dump starts, a backup writes
//!    `{tenant}/_inflight/{backup_id}` (small JSON: id, artifact key, time,
//!    pid). An upload is invisible until it completes (the [`Store`]
//!    contract), so the marker exists before the artifact can be listed.
//! 2. **Kept fresh.** While the backup runs, a background task rewrites the
//!    marker every 5 minutes. A marker not rewritten for
//!    [`INFLIGHT_STALE_AFTER`] (1 hour) is stale: its backup crashed.
//! 3. **Belt and braces at commit.** The backup heads its artifact, writes
//!    the manifest create-only, and heads the artifact again. If the
//!    artifact is gone either time (a stale marker let a sweep take it),
//!    the backup fails, removing the manifest it wrote: nothing is listed
//!    without data. A manifest write that fails ambiguously (an error after
//!    the object may have been stored) is read back: the backup succeeds if
//!    it is there and removes its artifact only if it is certainly absent.
//! 4. **Marker last.** Only then is the marker removed (also on failure,
//!    after the upload has been aborted).
//!
//! A sweep lists the store; for every artifact without a manifest that is
//! older than its grace it then reads, in this order, (a) the marker, and
//! leaves the artifact alone if a fresh one exists, (b) the manifest, and
//! leaves the artifact alone if it exists now; only then deletes. The order
//! makes it safe: the artifact was seen, so its marker was written before
//! (a); if (a) finds no marker, the backup removed it, which it does only
//! after its manifest exists, so (b) finds the manifest. A marker counts as
//! fresh for `max(grace, INFLIGHT_STALE_AFTER)`: a grace of zero cannot
//! break a running backup. Stale markers are swept too.
//!
//! Ages compare the store's timestamps with the sweeper's clock (`now`). A
//! sweeper whose clock runs more than an hour ahead of the store's sees
//! running backups' markers as stale: those backups then fail at step 3
//! instead of committing, which costs a retry, never data.
//!
//! Deleting a backup ([`Catalog::delete`], retention) removes the manifest
//! first and the artifact second, so a listed backup always has its data;
//! a restore or verify that loses the race reports
//! [`Error::NotFound`](crate::Error::NotFound) for the backup.
//!
//! Incremental backups also hold the chunk store's own in-flight marker
//! (`{tenant}/_chunks/inflight/{id}`, see the dedup module), which keeps
//! garbage collection away from their chunks.
//!
//! [`Catalog::sweep`]: crate::catalog::Catalog::sweep
//! [`Catalog::delete`]: crate::catalog::Catalog::delete

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::key::Key;
use crate::manifest::is_backup_id;
use crate::store::{PutOptions, Store};

/// Segment of the in-progress markers below a tenant.
pub(crate) const INFLIGHT_DIR: &str = "_inflight";

/// An in-progress marker not rewritten for this long belongs to a backup
/// that is no longer running; sweeps ignore and remove it. Sweeps also
/// leave a store's temporary objects (uploads in progress) younger than
/// this alone, whatever grace they are given.
pub const INFLIGHT_STALE_AFTER: Duration = Duration::from_secs(3600);

/// How often a running backup rewrites its marker.
const REFRESH_EVERY: Duration = Duration::from_secs(300);

/// `{tenant}/_inflight/{backup_id}`.
pub(crate) fn marker_key(tenant: &str, backup_id: &str) -> Result<Key> {
    Key::new(format!("{tenant}/{INFLIGHT_DIR}/{backup_id}"))
}

/// The tenant and backup id of a marker key, or `None` for other keys.
pub(crate) fn parse_marker_key(key: &Key) -> Option<(&str, &str)> {
    let mut segments = key.segments();
    match (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) {
        (Some(tenant), Some(INFLIGHT_DIR), Some(id), None) if is_backup_id(id) => {
            Some((tenant, id))
        }
        _ => None,
    }
}

fn body(backup_id: &str, artifact: &Key) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "backup_id": backup_id,
            "artifact": artifact.as_str(),
            "at": Utc::now(),
            "pid": std::process::id(),
        })
        .to_string(),
    )
}

/// A running backup's marker: written by [`InflightMarker::begin`], kept
/// fresh by a background task, removed by [`InflightMarker::end`] (or, if
/// the backup future is dropped, by a task spawned on drop).
pub(crate) struct InflightMarker {
    store: Arc<dyn Store>,
    key: Key,
    refresher: Option<(CancellationToken, JoinHandle<()>)>,
}

impl InflightMarker {
    /// Writes the marker of `backup_id`, whose artifact will be `artifact`.
    pub(crate) async fn begin(
        store: Arc<dyn Store>,
        tenant: &str,
        backup_id: &str,
        artifact: &Key,
    ) -> Result<InflightMarker> {
        let key = marker_key(tenant, backup_id)?;
        let data = body(backup_id, artifact);
        store.put(&key, data.clone(), PutOptions::default()).await?;
        let stop = CancellationToken::new();
        let task = {
            let (store, key, stop) = (Arc::clone(&store), key.clone(), stop.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(REFRESH_EVERY) => {}
                    }
                    // Not raced against `stop`: a rewrite in flight finishes
                    // before `end` deletes the marker.
                    if let Err(e) = store.put(&key, data.clone(), PutOptions::default()).await {
                        tracing::warn!(%key, error = %e, "could not refresh the in-progress marker");
                    }
                }
            })
        };
        Ok(InflightMarker {
            store,
            key,
            refresher: Some((stop, task)),
        })
    }

    /// Stops refreshing and removes the marker (best effort: a leftover
    /// one goes stale and is swept).
    pub(crate) async fn end(mut self) {
        if let Some((stop, task)) = self.refresher.take() {
            stop.cancel();
            let _ = task.await;
        }
        if let Err(e) = self.store.delete(&self.key).await {
            tracing::warn!(key = %self.key, error = %e, "could not remove the in-progress marker");
        }
    }
}

impl Drop for InflightMarker {
    fn drop(&mut self) {
        let Some((stop, task)) = self.refresher.take() else {
            return;
        };
        // The backup was dropped mid-way (its caller gave up): its upload is
        // discarded with it, so the marker can go too.
        stop.cancel();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (store, key) = (Arc::clone(&self.store), self.key.clone());
            runtime.spawn(async move {
                let _ = task.await;
                let _ = store.delete(&key).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_keys_round_trip() {
        let key = marker_key("acme", "20250101T000000Z-0000abcd").unwrap();
        assert_eq!(key.as_str(), "acme/_inflight/20250101T000000Z-0000abcd");
        assert_eq!(
            parse_marker_key(&key),
            Some(("acme", "20250101T000000Z-0000abcd"))
        );
        for other in [
            "acme/_inflight/notanid",
            "acme/_inflight/20250101T000000Z-0000abcd/x",
            "acme/_chunks/inflight/20250101T000000Z-0000abcd",
            "acme/_inflight",
        ] {
            assert_eq!(parse_marker_key(&Key::new(other).unwrap()), None, "{other}");
        }
    }
}
