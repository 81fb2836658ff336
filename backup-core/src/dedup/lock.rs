//! The markers that keep garbage collection and deduplicating backups of a
//! tenant apart (the protocol is described in the module docs of
//! `dedup`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::options::DedupOptions;
use crate::error::{Error, Result};
use crate::key::Key;
use crate::store::{ObjectMeta, PutOptions, Store, StoreExt};

/// How often a running backup or GC rewrites its marker.
const REFRESH_EVERY: Duration = Duration::from_secs(300);

pub(crate) fn inflight_prefix(tenant: &str) -> Result<Key> {
    Key::new(format!("{tenant}/_chunks/inflight"))
}

fn inflight_key(tenant: &str, backup_id: &str) -> Result<Key> {
    Key::new(format!("{tenant}/_chunks/inflight/{backup_id}"))
}

pub(crate) fn gc_marker_key(tenant: &str) -> Result<Key> {
    Key::new(format!("{tenant}/_chunks/gc-running"))
}

fn body(what: &str) -> Bytes {
    Bytes::from(
        serde_json::json!({ "by": what, "at": Utc::now(), "pid": std::process::id() }).to_string(),
    )
}

fn is_fresh(written: DateTime<Utc>, expiry: Duration) -> bool {
    let age = Utc::now() - written;
    age < chrono::Duration::from_std(expiry).unwrap_or(chrono::Duration::MAX)
}

/// A backup's in-flight marker, held from before its first chunk lookup
/// until its manifest is written.
pub(crate) struct Inflight<'a> {
    store: &'a dyn Store,
    key: Key,
    id: String,
    refreshed: Instant,
}

impl<'a> Inflight<'a> {
    /// Writes the marker, then waits (up to `gc_wait`) while a fresh GC
    /// marker exists, withdrawing the marker while it waits so the GC can
    /// finish.
    pub(crate) async fn begin(
        store: &'a dyn Store,
        tenant: &str,
        backup_id: &str,
        opts: &DedupOptions,
    ) -> Result<Inflight<'a>> {
        let key = inflight_key(tenant, backup_id)?;
        let gc = gc_marker_key(tenant)?;
        let deadline = Instant::now() + opts.gc_wait;
        loop {
            store
                .put(&key, body(backup_id), PutOptions::default())
                .await?;
            let running = match store.head(&gc).await {
                Ok(meta) if is_fresh(meta.last_modified, opts.gc_marker_expiry) => meta,
                Ok(meta) => {
                    tracing::warn!(key = %gc, since = %meta.last_modified, "ignoring a stale GC marker");
                    break;
                }
                Err(Error::NotFound { .. }) => break,
                Err(e) => {
                    let _ = store.delete(&key).await;
                    return Err(e);
                }
            };
            store.delete(&key).await?;
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Busy {
                    what: format!("tenant {tenant}"),
                    detail: format!(
                        "a garbage collection has been running since {} ({gc}); waited {} s. \
                         If no GC is running, delete that marker",
                        running.last_modified.format("%Y-%m-%dT%H:%M:%SZ"),
                        opts.gc_wait.as_secs()
                    ),
                });
            }
            tracing::info!(%tenant, "waiting for a garbage collection to finish");
            tokio::time::sleep(opts.poll_interval.min(deadline - now)).await;
        }
        Ok(Inflight {
            store,
            key,
            id: backup_id.to_string(),
            refreshed: Instant::now(),
        })
    }

    /// Rewrites the marker if it is getting old (long backups).
    pub(crate) async fn refresh_if_due(&mut self) {
        if self.refreshed.elapsed() < REFRESH_EVERY {
            return;
        }
        if let Err(e) = self
            .store
            .put(&self.key, body(&self.id), PutOptions::default())
            .await
        {
            tracing::warn!(key = %self.key, error = %e, "could not refresh the in-flight marker");
        }
        self.refreshed = Instant::now();
    }

    /// Removes the marker (best effort: a leftover one expires).
    pub(crate) async fn end(self) {
        if let Err(e) = self.store.delete(&self.key).await {
            tracing::warn!(key = %self.key, error = %e, "could not remove the in-flight marker");
        }
    }
}

/// In-flight markers under a tenant, split into fresh and expired ones.
pub(crate) async fn inflight_markers(
    store: &dyn Store,
    tenant: &str,
    expiry: Duration,
) -> Result<(Vec<ObjectMeta>, Vec<ObjectMeta>)> {
    let mut fresh = Vec::new();
    let mut stale = Vec::new();
    let mut listing = store.list(Some(&inflight_prefix(tenant)?));
    while let Some(meta) = listing.next().await {
        let meta = meta?;
        if is_fresh(meta.last_modified, expiry) {
            fresh.push(meta);
        } else {
            stale.push(meta);
        }
    }
    Ok((fresh, stale))
}

/// The GC marker, held while a GC may delete anything. It carries a random
/// token that the GC reads back before every deletion (see step 3 of the
/// protocol in the module docs of `dedup`).
pub(crate) struct GcLock<'a> {
    store: &'a dyn Store,
    tenant: String,
    key: Key,
    token: String,
    expiry: Duration,
    refreshed: Instant,
}

/// Why a GC did not run.
pub(crate) type Skip = String;

fn gc_body(token: &str) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "by": "gc",
            "at": Utc::now(),
            "pid": std::process::id(),
            "token": token,
        })
        .to_string(),
    )
}

/// The token in the GC marker, `None` if it is missing or has none.
async fn marker_token(store: &dyn Store, key: &Key) -> Result<Option<String>> {
    let bytes = match store.get_bytes(key).await {
        Ok(bytes) => bytes,
        Err(Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("token")?.as_str().map(str::to_owned)))
}

fn running_since(meta: &ObjectMeta) -> Skip {
    format!(
        "another garbage collection has been running since {}",
        meta.last_modified.format("%Y-%m-%dT%H:%M:%SZ")
    )
}

impl<'a> GcLock<'a> {
    /// Takes the GC marker and checks that no backup is in flight.
    /// `Ok(Err(reason))` means: back off, nothing was changed except
    /// removing expired in-flight markers (listed in `removed`).
    pub(crate) async fn acquire(
        store: &'a dyn Store,
        tenant: &str,
        opts: &DedupOptions,
        removed: &mut Vec<String>,
    ) -> Result<std::result::Result<GcLock<'a>, Skip>> {
        let key = gc_marker_key(tenant)?;
        let token = format!("{:032x}", rand::random::<u128>());
        let taken = match store.put(&key, gc_body(&token), PutOptions::create()).await {
            Ok(_) => Ok(()),
            Err(Error::AlreadyExists { .. }) => match store.head(&key).await {
                Ok(meta) if is_fresh(meta.last_modified, opts.gc_marker_expiry) => {
                    return Ok(Err(running_since(&meta)));
                }
                _ => {
                    tracing::warn!(%key, "taking over a stale GC marker");
                    Self::settle(store, &key, &token, opts).await?
                }
            },
            Err(Error::Unsupported { .. }) => {
                tracing::warn!(
                    store = %store,
                    %key,
                    settle_seconds = opts.gc_lock_settle.as_secs_f64(),
                    "no exclusive create-only puts in this store: taking the GC marker by writing a token and reading it back after a settle delay"
                );
                Self::settle(store, &key, &token, opts).await?
            }
            Err(e) => return Err(e),
        };
        if let Err(reason) = taken {
            return Ok(Err(reason));
        }
        let lock = GcLock {
            store,
            tenant: tenant.to_string(),
            key,
            token,
            expiry: opts.inflight_expiry,
            refreshed: Instant::now(),
        };
        match lock.backups_in_flight(removed).await {
            Ok(None) => Ok(Ok(lock)),
            Ok(Some(reason)) => {
                lock.release().await;
                Ok(Err(reason))
            }
            Err(e) => {
                lock.release().await;
                Err(e)
            }
        }
    }

    /// Takes the marker without a create-only put: unless a fresh marker
    /// exists, overwrites it with `token`, waits the settle delay and reads
    /// it back. Of GCs racing this way only the last writer finds its own
    /// token.
    async fn settle(
        store: &dyn Store,
        key: &Key,
        token: &str,
        opts: &DedupOptions,
    ) -> Result<std::result::Result<(), Skip>> {
        match store.head(key).await {
            Ok(meta) if is_fresh(meta.last_modified, opts.gc_marker_expiry) => {
                return Ok(Err(running_since(&meta)));
            }
            Ok(_) | Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        store
            .put(key, gc_body(token), PutOptions::default())
            .await?;
        tokio::time::sleep(opts.gc_lock_settle).await;
        if marker_token(store, key).await?.as_deref() == Some(token) {
            return Ok(Ok(()));
        }
        Ok(Err(
            "another garbage collection took the GC marker at the same time".to_string(),
        ))
    }

    /// `Some(reason)` if a fresh in-flight marker exists; removes expired
    /// ones (recorded in `removed`).
    async fn backups_in_flight(&self, removed: &mut Vec<String>) -> Result<Option<Skip>> {
        let (fresh, stale) = inflight_markers(self.store, &self.tenant, self.expiry).await?;
        for meta in stale {
            tracing::warn!(key = %meta.key, since = %meta.last_modified, "removing an expired in-flight marker");
            self.store.delete(&meta.key).await?;
            removed.push(meta.key.to_string());
        }
        if fresh.is_empty() {
            return Ok(None);
        }
        let names: Vec<&str> = fresh.iter().map(|m| m.key.file_name()).collect();
        Ok(Some(format!("backup(s) in progress: {}", names.join(", "))))
    }

    /// Called before every deletion: fails with [`Error::Busy`] if the GC
    /// marker no longer holds this GC's token (another GC took over) or a
    /// backup started meanwhile (one that ignored an expired GC marker),
    /// and keeps the marker fresh.
    pub(crate) async fn before_delete(&mut self, removed: &mut Vec<String>) -> Result<()> {
        if marker_token(self.store, &self.key).await?.as_deref() != Some(self.token.as_str()) {
            return Err(Error::Busy {
                what: format!("tenant {}", self.tenant),
                detail: format!(
                    "garbage collection stopped: {} no longer holds its token (another garbage collection took over)",
                    self.key
                ),
            });
        }
        if let Some(reason) = self.backups_in_flight(removed).await? {
            return Err(Error::Busy {
                what: format!("tenant {}", self.tenant),
                detail: format!("garbage collection stopped: {reason}"),
            });
        }
        if self.refreshed.elapsed() >= REFRESH_EVERY {
            self.store
                .put(&self.key, gc_body(&self.token), PutOptions::default())
                .await?;
            self.refreshed = Instant::now();
        }
        Ok(())
    }

    /// Removes the marker if it still holds this GC's token (best effort:
    /// a leftover one expires).
    pub(crate) async fn release(self) {
        match marker_token(self.store, &self.key).await {
            Ok(Some(token)) if token == self.token => {}
            Ok(_) => {
                tracing::warn!(key = %self.key, "the GC marker was taken over: leaving it to its holder");
                return;
            }
            Err(e) => {
                tracing::warn!(key = %self.key, error = %e, "could not read the GC marker back; leaving it to expire");
                return;
            }
        }
        if let Err(e) = self.store.delete(&self.key).await {
            tracing::warn!(key = %self.key, error = %e, "could not remove the GC marker");
        }
    }
}
