//! [`S3Store`]: the [`Store`] implementation over an S3 bucket.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use backup_core::{
    Error, Result, Store, key::Key, store::GetResult, store::ObjectMeta, store::PutMode,
    store::PutOptions, store::Upload, store::check_range, store::delete_each,
};
use bytes::Bytes;
use chrono::Utc;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::Op;
use crate::inner::{ConditionalPut, Inner, Probe};
use crate::upload::S3Upload;

/// The probe object, under the store's prefix (`_` segments are the
/// library's; the catalog never lists them). Removed after the probe; one
/// left by a process killed mid-probe is a temporary object
/// ([`Store::sweep_temporary`]).
const PROBE_PREFIX: &str = "_probe/conditional-put-";

/// The directory of [`PROBE_PREFIX`].
const PROBE_DIR: &str = "_probe";

/// A [`Store`] over an S3 bucket (AWS S3 or any S3-compatible server:
/// MinIO, Cloudflare R2, Supabase Storage, Garage, Ceph), built on
/// `object_store`'s S3 client.
///
/// # How it keeps the contract
///
/// - **Atomic objects**: S3 makes an object visible only when its PUT or
///   its multipart upload completes. Streamed uploads are cut into parts
///   (see [`S3StoreBuilder::part_size`](crate::S3StoreBuilder::part_size)); a stream smaller than one part is
///   sent in a single PUT on completion. A failed, aborted or dropped
///   upload aborts its multipart upload (on drop, from a task spawned on
///   the current Tokio runtime), so no part is left behind when the server
///   can be reached. When it cannot (a crash, a dead network), the parts
///   stay invisible and billed until a bucket lifecycle rule
///   (`AbortIncompleteMultipartUpload`) removes them: configure one.
/// - **Access is checked before data flows**: [`Store::put_stream`] lists
///   at most one key under the store's prefix before returning, so wrong
///   credentials ([`Error::AccessDenied`] with a hint) or a missing bucket
///   fail before a database is read. The credentials therefore need
///   `s3:ListBucket`, which the catalog needs anyway.
/// - **Create-only puts** ([`PutMode::Create`]) send `If-None-Match: *`;
///   the server refuses an existing key with 412, reported as
///   [`Error::AlreadyExists`]. Some servers ignore the header and overwrite
///   (Garage, reported), so the store does not trust it blindly: before its
///   first create-only put it probes the server once (see
///   [`S3Store::supports_conditional_put`]). On a server that ignores or
///   refuses conditional PUTs, or with
///   [`S3StoreBuilder::conditional_put`](crate::S3StoreBuilder::conditional_put)`(false)`, every create-only put
///   fails with [`Error::Unsupported`] naming the reason; none is ever sent
///   as a plain overwrite. Manifests are still written there (they use
///   [`StoreExt::create_best_effort`](backup_core::store::StoreExt::create_best_effort));
///   scheduler leases refuse to work and the dedup GC takes its marker
///   another way (see `backup_core`).
///   A 409 answer (AWS: a concurrent conditional write) is a retryable
///   [`Error::Store`].
/// - **Listings** use `ListObjectsV2` under `{prefix}/{key}/`, page by page,
///   so they are by whole segments; incomplete multipart uploads are never
///   listed. Objects under the prefix whose names are not valid [`Key`]s
///   (written by other tools) are skipped.
/// - **Deletes** are idempotent; [`Store::delete_many`] sends
///   `DeleteObjects` requests of up to 1,000 keys, falling back to one
///   `DELETE` per key on servers without it.
/// - **Errors**: not found, already exists, access denied and unsupported
///   map onto their [`Error`] variants; everything else is an
///   [`Error::Store`], retryable for 5xx, 408, 429 and network failures
///   (after the client's own retries with backoff). Messages are one line
///   and never contain the secret key.
///
/// `ObjectMeta::last_modified` returned by `put` and `complete` is the
/// local clock; listings and `head` report the server's.
#[derive(Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

impl S3Store {
    pub(crate) fn from_inner(inner: Arc<Inner>) -> S3Store {
        S3Store { inner }
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.inner.ctx.bucket
    }

    /// The prefix every key lives under, if any.
    pub fn prefix(&self) -> Option<&str> {
        self.inner.prefix.as_deref()
    }

    /// The endpoint requests go to (`https://s3.{region}.amazonaws.com` on
    /// AWS).
    pub fn endpoint(&self) -> &str {
        &self.inner.ctx.endpoint
    }

    /// The largest object a streamed upload can hold: [`crate::parts::MAX_PARTS`]
    /// parts of the configured, growing size.
    pub fn max_object_size(&self) -> u64 {
        self.inner.plan.capacity()
    }

    /// The most memory one streamed upload holds in part buffers: the parts
    /// in flight plus the one being filled, at the largest part size.
    pub fn upload_memory_limit(&self) -> u64 {
        self.inner.plan.memory_bound(crate::parts::MAX_PARTS - 1)
    }

    /// Whether the server honours conditional PUTs (`If-None-Match: *`),
    /// which create-only puts need. Asked once per store (shared by its
    /// clones) and cached: a create-only PUT of a fresh probe object under
    /// `{prefix}/_probe/`, the same PUT again, which must be refused with
    /// 412, and a DELETE of the probe object (three requests; 15–25 ms
    /// against a local `s3s-fs` on a loaded 2-core machine). `false`
    /// without any request when turned off with
    /// [`S3StoreBuilder::conditional_put`](crate::S3StoreBuilder::conditional_put). A failure to ask (no access, no
    /// network) is returned and not cached.
    ///
    /// The probe shows whether the server evaluates the header at all, not
    /// whether it does so atomically under concurrent writers: that is the
    /// server's documented promise (AWS, MinIO, R2), or not (`s3s-fs`,
    /// the test server, checks and writes without a lock).
    pub async fn supports_conditional_put(&self) -> Result<bool> {
        Ok(self.conditional_put().await? == Some(Probe::Honoured))
    }

    /// The cached probe result, probing first if needed; `None` when
    /// conditional PUTs are turned off.
    async fn conditional_put(&self) -> Result<Option<Probe>> {
        match &self.inner.conditional_put {
            ConditionalPut::Disabled => Ok(None),
            ConditionalPut::Probed(cell) => cell
                .get_or_try_init(|| self.probe_conditional_put())
                .await
                .map(|p| Some(*p)),
        }
    }

    async fn probe_conditional_put(&self) -> Result<Probe> {
        let name = format!("{PROBE_PREFIX}{:016x}", rand::random::<u64>());
        let key = Key::new(name.as_str())?;
        let path = self.path(&key)?;
        let create = || object_store::PutOptions {
            mode: object_store::PutMode::Create,
            ..Default::default()
        };
        let client = &self.inner.client;
        let map = |e| self.inner.ctx.map(Op::PutCreate, &name, e);
        match client
            .put_opts(&path, PutPayload::from_static(b"1"), create())
            .await
            .map_err(map)
        {
            Ok(_) => {}
            Err(Error::Unsupported { .. }) => {
                tracing::warn!(store = %self, "the S3 server refuses conditional PUTs (If-None-Match)");
                return Ok(Probe::Refused);
            }
            Err(e) => return Err(e),
        }
        let second = client
            .put_opts(&path, PutPayload::from_static(b"2"), create())
            .await
            .map_err(map);
        if let Err(e) = self.delete(&key).await {
            tracing::warn!(store = %self, %key, error = %e, "could not remove the conditional-PUT probe object");
        }
        match second {
            Err(Error::AlreadyExists { .. }) => {
                tracing::debug!(store = %self, "the S3 server honours conditional PUTs");
                Ok(Probe::Honoured)
            }
            Ok(_) => {
                tracing::warn!(
                    store = %self,
                    "the S3 server ignores If-None-Match (a second conditional PUT overwrote the probe object): create-only puts are refused on this store"
                );
                Ok(Probe::Ignored)
            }
            Err(Error::Unsupported { .. }) => Ok(Probe::Refused),
            Err(e) => Err(e),
        }
    }

    /// Checks that the bucket exists and the credentials may list it (one
    /// `ListObjectsV2` request for at most one key). [`Store::put_stream`]
    /// runs this before every upload; hosts may call it at startup.
    pub async fn check_access(&self) -> Result<()> {
        self.preflight("").await
    }

    async fn preflight(&self, key: &str) -> Result<()> {
        let prefix = self.inner.prefix.as_ref().map(|p| format!("{p}/"));
        let opts = PaginatedListOptions {
            max_keys: Some(1),
            ..PaginatedListOptions::default()
        };
        self.inner
            .client
            .list_paginated(prefix.as_deref(), opts)
            .await
            .map(|_| ())
            .map_err(|e| {
                let what = if key.is_empty() {
                    &self.inner.ctx.name
                } else {
                    key
                };
                self.inner.ctx.map(Op::Preflight, what, e)
            })
    }

    fn path(&self, key: &Key) -> Result<Path> {
        let full = match &self.inner.prefix {
            Some(prefix) => format!("{prefix}/{key}"),
            None => key.to_string(),
        };
        Path::parse(full).map_err(|_| Error::InvalidKey {
            key: key.to_string(),
            reason: "not a valid S3 object name",
        })
    }

    fn list_location(&self, prefix: Option<&Key>) -> Result<Option<Path>> {
        match (prefix, &self.inner.prefix) {
            (Some(key), _) => self.path(key).map(Some),
            (None, Some(root)) => Path::parse(root)
                .map(Some)
                .map_err(|_| Error::Config(format!("invalid S3 prefix {root:?}"))),
            (None, None) => Ok(None),
        }
    }
}

fn object_meta(key: Key, meta: &object_store::ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        key,
        size: meta.size,
        last_modified: meta.last_modified,
    }
}

#[async_trait]
impl Store for S3Store {
    async fn put(&self, key: &Key, data: Bytes, opts: PutOptions) -> Result<ObjectMeta> {
        let path = self.path(key)?;
        let (mode, op) = match opts.mode {
            PutMode::Overwrite => (object_store::PutMode::Overwrite, Op::Put),
            PutMode::Create => {
                if let Some(operation) = refusal(self.conditional_put().await?) {
                    return Err(Error::Unsupported {
                        store: self.inner.ctx.name.clone(),
                        operation,
                    });
                }
                (object_store::PutMode::Create, Op::PutCreate)
            }
            _ => {
                return Err(Error::Unsupported {
                    store: self.inner.ctx.name.clone(),
                    operation: "this put mode",
                });
            }
        };
        let size = data.len() as u64;
        let options = object_store::PutOptions {
            mode,
            ..Default::default()
        };
        self.inner
            .client
            .put_opts(&path, PutPayload::from_bytes(data), options)
            .await
            .map_err(|e| self.inner.ctx.map(op, key.as_str(), e))?;
        Ok(ObjectMeta {
            key: key.clone(),
            size,
            last_modified: Utc::now(),
        })
    }

    async fn put_stream(&self, key: &Key) -> Result<Box<dyn Upload>> {
        let path = self.path(key)?;
        self.preflight(key.as_str()).await?;
        Ok(Box::new(S3Upload::new(
            Arc::clone(&self.inner),
            key.clone(),
            path,
        )))
    }

    async fn get(&self, key: &Key) -> Result<GetResult> {
        let path = self.path(key)?;
        let result = self
            .inner
            .client
            .get(&path)
            .await
            .map_err(|e| self.inner.ctx.map(Op::Get, key.as_str(), e))?;
        let meta = object_meta(key.clone(), &result.meta);
        let inner = Arc::clone(&self.inner);
        let shown = key.to_string();
        let stream = result
            .into_stream()
            .map(move |chunk| chunk.map_err(|e| inner.ctx.map(Op::Get, &shown, e)))
            .boxed();
        Ok(GetResult { meta, stream })
    }

    async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Bytes> {
        let path = self.path(key)?;
        if range.start >= range.end {
            // HTTP has no empty range: check the bounds against the size.
            let meta = self.head(key).await?;
            check_range(self, key, &range, meta.size)?;
            return Ok(Bytes::new());
        }
        let wanted = range.end - range.start;
        let (start, end) = (range.start, range.end);
        let bytes = self
            .inner
            .client
            .get_range(&path, range)
            .await
            .map_err(|e| self.inner.ctx.map(Op::Get, key.as_str(), e))?;
        if bytes.len() as u64 != wanted {
            // A server answers a range reaching past the end with what
            // there is: that is an error here, never a short read.
            return Err(self.inner.ctx.refuse(format!(
                "range {start}..{end} of {key}: got {} bytes (past the end of the object?)",
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        let path = self.path(key)?;
        let meta = self
            .inner
            .client
            .head(&path)
            .await
            .map_err(|e| self.inner.ctx.map(Op::Head, key.as_str(), e))?;
        Ok(object_meta(key.clone(), &meta))
    }

    fn list(&self, prefix: Option<&Key>) -> BoxStream<'static, Result<ObjectMeta>> {
        let location = match self.list_location(prefix) {
            Ok(location) => location,
            Err(e) => return stream::once(async move { Err(e) }).boxed(),
        };
        let inner = Arc::clone(&self.inner);
        let shown = prefix.map_or_else(|| inner.ctx.name.clone(), |p| p.to_string());
        self.inner
            .client
            .list(location.as_ref())
            .filter_map(move |item| {
                let mapped = match item {
                    Ok(meta) => inner
                        .key_of(&meta.location)
                        .map(|key| Ok(object_meta(key, &meta))),
                    Err(e) => Some(Err(inner.ctx.map(Op::List, &shown, e))),
                };
                futures::future::ready(mapped)
            })
            // A failed listing ends with its one error.
            .scan(false, |failed, item| {
                let next = (!*failed).then(|| {
                    *failed = item.is_err();
                    item
                });
                futures::future::ready(next)
            })
            .boxed()
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let path = self.path(key)?;
        match self.inner.client.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.inner.ctx.map(Op::Delete, key.as_str(), e)),
        }
    }

    /// The conditional-PUT probe objects of processes killed mid-probe
    /// (`_probe/conditional-put-…`): the only objects this store writes
    /// outside the catalog's keys. Parts of multipart uploads killed with
    /// their process are not listed here: S3 keeps them out of every
    /// listing until a bucket lifecycle rule
    /// (`AbortIncompleteMultipartUpload`) removes them.
    async fn sweep_temporary(
        &self,
        opts: &backup_core::store::TemporarySweep,
    ) -> Result<Vec<backup_core::store::TemporaryObject>> {
        let dir = Key::new(PROBE_DIR)?;
        let mut found = Vec::new();
        let mut listing = self.list(Some(&dir));
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            if !meta.key.as_str().starts_with(PROBE_PREFIX) {
                continue;
            }
            let age = (Utc::now() - meta.last_modified)
                .to_std()
                .unwrap_or_default();
            let remove = !opts.dry_run && age >= opts.older_than;
            if remove {
                self.delete(&meta.key).await?;
                tracing::info!(store = %self, key = %meta.key, "removed the probe object of an interrupted conditional-PUT probe");
            }
            found.push(backup_core::store::TemporaryObject::new(
                meta.key.as_str(),
                meta.size,
                meta.last_modified,
                remove,
            ));
        }
        Ok(found)
    }

    async fn delete_many(&self, keys: &[Key]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let paths = keys
            .iter()
            .map(|key| self.path(key))
            .collect::<Result<Vec<_>>>()?;
        let mut results = self
            .inner
            .client
            .delete_stream(stream::iter(paths.into_iter().map(Ok)).boxed());
        let what = format!("{} keys", keys.len());
        while let Some(result) = results.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => match self.inner.ctx.map(Op::Delete, &what, e) {
                    Error::Unsupported { .. } => {
                        tracing::debug!(store = %self, "no bulk delete: deleting one key at a time");
                        return delete_each(self, keys).await;
                    }
                    err => return Err(err),
                },
            }
        }
        Ok(())
    }
}

/// Why create-only puts are refused, if they are.
fn refusal(probe: Option<Probe>) -> Option<&'static str> {
    match probe {
        Some(Probe::Honoured) => None,
        Some(Probe::Ignored) => Some(
            "create-only puts: the server ignores If-None-Match (a second conditional PUT of a probe object overwrote it), so scheduler leases and dedup GC markers cannot be exclusive on it; run one scheduler replica without leases, or use a server that honours conditional writes",
        ),
        Some(Probe::Refused) => Some(
            "create-only puts: the server answers conditional PUTs (If-None-Match) with 501 Not Implemented, so scheduler leases and dedup GC markers cannot be exclusive on it; run one scheduler replica without leases, or use a server that honours conditional writes",
        ),
        None => Some(
            "create-only puts: conditional PUT is turned off for this store (S3StoreBuilder::conditional_put(false))",
        ),
    }
}

impl fmt::Display for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.ctx.name)
    }
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.inner.ctx.bucket)
            .field("prefix", &self.inner.prefix)
            .field("endpoint", &self.inner.ctx.endpoint)
            .field("region", &self.inner.region)
            .field("virtual_hosted", &self.inner.virtual_hosted)
            .field("plan", &self.inner.plan)
            .field("conditional_put", &self.inner.conditional_put)
            .finish_non_exhaustive()
    }
}
