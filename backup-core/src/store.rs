//! The [`Store`] trait: where artifacts and manifests live.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::key::Key;

/// A stream of byte chunks; an `Err` item ends it.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// What a store knows about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key.
    pub key: Key,
    /// Size in bytes.
    pub size: u64,
    /// When it was last written (store clock).
    pub last_modified: DateTime<Utc>,
}

/// How a small-object [`Store::put`] treats an existing object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutMode {
    /// Replace whatever is there (the default).
    #[default]
    Overwrite,
    /// Fail with [`Error::AlreadyExists`] if the key exists; the check and the
    /// write are one atomic step, or the store refuses with
    /// [`Error::Unsupported`] (never a silent overwrite). Used for what
    /// must be exclusive: scheduler leases and the dedup GC marker. For
    /// keys that are unique by construction (manifests under a fresh random
    /// backup id) use [`StoreExt::create_best_effort`], which also works
    /// where this mode is unsupported.
    Create,
}

/// Per-call options of [`Store::put`]; `Default` is an overwrite.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PutOptions {
    /// Overwrite or create-only.
    pub mode: PutMode,
}

impl PutOptions {
    /// Create-only: fails if the key exists.
    pub fn create() -> Self {
        PutOptions {
            mode: PutMode::Create,
        }
    }
}

/// Per-call options of [`Store::sweep_temporary`]. No `Default`: what to
/// remove is always said explicitly ([`TemporarySweep::older_than`],
/// [`TemporarySweep::report_only`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TemporarySweep {
    /// Remove only temporary objects last written at least this long ago.
    pub older_than: Duration,
    /// Report what there is without removing anything.
    pub dry_run: bool,
}

impl TemporarySweep {
    /// Removes temporary objects older than `age`.
    pub fn older_than(age: Duration) -> Self {
        TemporarySweep {
            older_than: age,
            dry_run: false,
        }
    }

    /// Only reports every temporary object, whatever its age.
    pub fn report_only() -> Self {
        TemporarySweep {
            older_than: Duration::ZERO,
            dry_run: true,
        }
    }
}

/// One of a store's own temporary objects (the temporary file of an upload
/// that never finished), which listings never show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TemporaryObject {
    /// Where it is, relative to the store's root or prefix
    /// (`acme/db/2025/01/.x.dump.zst.tmp-…`): not a [`Key`], since stores
    /// keep these outside the key space.
    pub location: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written (store clock).
    pub last_modified: DateTime<Utc>,
    /// Whether this call removed it.
    pub removed: bool,
}

impl TemporaryObject {
    /// Describes a temporary object.
    pub fn new(
        location: impl Into<String>,
        size: u64,
        last_modified: DateTime<Utc>,
        removed: bool,
    ) -> Self {
        TemporaryObject {
            location: location.into(),
            size,
            last_modified,
            removed,
        }
    }
}

/// The result of [`Store::get`]: metadata plus the body as a stream.
pub struct GetResult {
    /// Metadata of the object being read.
    pub meta: ObjectMeta,
    /// The body, in store-sized chunks.
    pub stream: ByteStream,
}

impl fmt::Debug for GetResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetResult")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

/// A storage backend for artifacts and manifests: a local directory, an S3
/// bucket, memory.
///
/// # Contract
///
/// - **Atomicity**: an object is either absent or complete. [`Store::put`] and
///   a completed [`Upload`] become visible in one step; readers never see a
///   partial object, and an aborted, dropped or failed upload leaves nothing
///   visible under its key.
/// - **Keys** arrive pre-validated as [`Key`]s; stores map them to their own
///   namespace below their configured root or prefix and never outside it.
/// - **Delete is idempotent**: deleting a missing key succeeds.
/// - **Listing** returns every committed object whose key lies under the
///   prefix (by whole segments), in no particular order, and never includes
///   in-progress uploads or the store's temporary files.
/// - **Create-only puts**: [`PutMode::Create`] is atomic with respect to
///   concurrent writers (of this process and of every other one sharing
///   the backend), or the store returns [`Error::Unsupported`]. A store
///   must never turn a create-only put into an overwrite: where the
///   backend's answer is unknown (an S3 server that may ignore
///   `If-None-Match`, a filesystem that may lack hard links) the store
///   finds out before its first create-only put and caches the answer.
///   What relies on exclusivity (scheduler leases, the dedup GC marker)
///   uses [`PutMode::Create`] and refuses to work, or uses a documented
///   fallback, on [`Error::Unsupported`]; it never degrades silently.
///   Manifests only need "do not replace an existing backup": they use
///   [`StoreExt::create_best_effort`] (create-only where supported, else a
///   `head` then an overwrite), which is correct because backup ids are
///   random and each is written by one process.
/// - A listing that fails ends with one `Err` item.
/// - Stores may refuse keys a backend cannot represent: a key that is both
///   an object and the prefix of other objects (`a` and `a/b`) on a
///   filesystem, or segments starting with `.`, which stores may reserve
///   for their temporary files. The library's own key layout uses neither.
/// - If [`Upload::complete`] is cancelled mid-call, the object may or may
///   not be committed; callers that need certainty check with
///   [`Store::head`].
/// - **Temporary objects** a store keeps outside the key space (the
///   temporary file of an upload killed with its process) are found and
///   removed only through [`Store::sweep_temporary`]. Wrappers must forward
///   that call to the store they wrap; the default (for stores that leave
///   nothing behind, or whose backend expires leftovers itself, such as an
///   S3 lifecycle rule for incomplete multipart uploads) finds nothing.
///
/// The trait is object safe: hosts hold an `Arc<dyn Store>` picked from
/// configuration. Convenience methods live in [`StoreExt`].
#[async_trait]
pub trait Store: fmt::Display + fmt::Debug + Send + Sync + 'static {
    /// Writes a small object (manifest, lease) in one request.
    async fn put(&self, key: &Key, data: Bytes, opts: PutOptions) -> Result<ObjectMeta>;

    /// Starts a streaming upload of an object of unknown size. Nothing is
    /// visible under `key` until [`Upload::complete`] returns.
    async fn put_stream(&self, key: &Key) -> Result<Box<dyn Upload>>;

    /// Reads an object as a stream.
    async fn get(&self, key: &Key) -> Result<GetResult>;

    /// Reads bytes `range` of an object (a chunk of a pack) in one request.
    /// Meant for small reads: the whole range is returned in memory.
    /// [`Error::NotFound`] for a missing key; a range that is reversed or
    /// ends past the end of the object is an error, never a short read. An
    /// empty range within the object reads nothing.
    async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Bytes>;

    /// Metadata of one object, or [`Error::NotFound`].
    async fn head(&self, key: &Key) -> Result<ObjectMeta>;

    /// Every object under `prefix` (the whole store when `None`).
    fn list(&self, prefix: Option<&Key>) -> BoxStream<'static, Result<ObjectMeta>>;

    /// Deletes one object; missing objects are not an error.
    async fn delete(&self, key: &Key) -> Result<()>;

    /// Deletes several objects, in as few requests as the backend allows;
    /// missing objects are not an error. Deletion happens in slice order
    /// where the backend has to issue one request per key.
    async fn delete_many(&self, keys: &[Key]) -> Result<()>;

    /// Every temporary object the store holds outside its listing (the
    /// files of uploads that never completed), removing those last written
    /// at least `opts.older_than` ago unless `opts.dry_run`. An upload in
    /// progress may own a young one: callers choose the age (the catalog's
    /// sweep never goes below an hour). The default finds nothing; wrappers
    /// must forward this call.
    async fn sweep_temporary(&self, opts: &TemporarySweep) -> Result<Vec<TemporaryObject>> {
        let _ = opts;
        Ok(Vec::new())
    }
}

/// A streaming upload started by [`Store::put_stream`].
///
/// Call [`Upload::complete`] to commit or [`Upload::abort`] to discard.
/// Dropping an upload without completing it discards it too (best effort;
/// prefer an explicit abort, which reports failures).
#[async_trait]
pub trait Upload: fmt::Debug + Send {
    /// Appends bytes. May wait (backpressure) while earlier parts upload.
    async fn write(&mut self, data: Bytes) -> Result<()>;

    /// Makes the object visible under its key, atomically.
    async fn complete(self: Box<Self>) -> Result<ObjectMeta>;

    /// Discards everything written so far.
    async fn abort(self: Box<Self>) -> Result<()>;
}

macro_rules! forward_store {
    ($ty:ty) => {
        #[async_trait]
        impl<T: Store + ?Sized> Store for $ty {
            async fn put(&self, key: &Key, data: Bytes, opts: PutOptions) -> Result<ObjectMeta> {
                (**self).put(key, data, opts).await
            }
            async fn put_stream(&self, key: &Key) -> Result<Box<dyn Upload>> {
                (**self).put_stream(key).await
            }
            async fn get(&self, key: &Key) -> Result<GetResult> {
                (**self).get(key).await
            }
            async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Bytes> {
                (**self).get_range(key, range).await
            }
            async fn head(&self, key: &Key) -> Result<ObjectMeta> {
                (**self).head(key).await
            }
            fn list(&self, prefix: Option<&Key>) -> BoxStream<'static, Result<ObjectMeta>> {
                (**self).list(prefix)
            }
            async fn delete(&self, key: &Key) -> Result<()> {
                (**self).delete(key).await
            }
            async fn delete_many(&self, keys: &[Key]) -> Result<()> {
                (**self).delete_many(keys).await
            }
            async fn sweep_temporary(&self, opts: &TemporarySweep) -> Result<Vec<TemporaryObject>> {
                (**self).sweep_temporary(opts).await
            }
        }
    };
}

forward_store!(Arc<T>);
forward_store!(Box<T>);

/// Largest object [`StoreExt::get_bytes`] reads into memory.
pub const MAX_SMALL_OBJECT: u64 = 16 * 1024 * 1024;

/// How a [`StoreExt::create_settled`] write ended: every case there is
/// (not `non_exhaustive`, so callers decide each).
#[derive(Debug)]
pub enum Created {
    /// The key holds exactly the data written.
    Stored,
    /// The key holds another object (another writer's): nothing was
    /// written.
    Taken,
    /// The write failed (the error) and the key holds nothing.
    Absent(Error),
    /// The write failed (the error) and the key could not be read back:
    /// the object may or may not be stored.
    Unknown(Error),
}

/// Convenience methods for every [`Store`], kept out of the trait so
/// wrappers cannot shadow the inner store's behaviour.
#[async_trait]
pub trait StoreExt: Store {
    /// Reads a small object (manifest, lease) fully into memory; refuses
    /// objects over [`MAX_SMALL_OBJECT`].
    async fn get_bytes(&self, key: &Key) -> Result<Bytes> {
        let GetResult { meta, mut stream } = self.get(key).await?;
        if meta.size > MAX_SMALL_OBJECT {
            return Err(Error::TooLarge {
                what: key.to_string(),
                size: meta.size,
                limit: MAX_SMALL_OBJECT,
            });
        }
        let mut buf = BytesMut::with_capacity(meta.size as usize);
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk?);
            if buf.len() as u64 > MAX_SMALL_OBJECT {
                return Err(Error::TooLarge {
                    what: key.to_string(),
                    size: buf.len() as u64,
                    limit: MAX_SMALL_OBJECT,
                });
            }
        }
        Ok(buf.freeze())
    }

    /// Whether the key exists.
    async fn exists(&self, key: &Key) -> Result<bool> {
        match self.head(key).await {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Uploads a whole stream through [`Store::put_stream`], aborting the
    /// upload if the stream or the store fails.
    async fn put_from_stream(&self, key: &Key, mut body: ByteStream) -> Result<ObjectMeta> {
        let mut upload = self.put_stream(key).await?;
        while let Some(chunk) = body.next().await {
            let written = match chunk {
                Ok(chunk) => upload.write(chunk).await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                if let Err(abort) = upload.abort().await {
                    tracing::warn!(%key, error = %abort, "abort after failed upload also failed");
                }
                return Err(e);
            }
        }
        upload.complete().await
    }

    /// Writes an object that must not exist yet under a key that only this
    /// caller writes (a manifest under a fresh random backup id):
    /// [`PutMode::Create`] where the store supports it, otherwise (the
    /// store said [`Error::Unsupported`]) a [`Store::head`] and, if the key
    /// is absent, an overwriting put.
    ///
    /// The fallback is **not atomic**: a concurrent writer of the same key
    /// can be overwritten, or overwrite this object. Never use it for
    /// mutual exclusion (leases, locks): use [`PutMode::Create`] and handle
    /// [`Error::Unsupported`] there.
    async fn create_best_effort(&self, key: &Key, data: Bytes) -> Result<ObjectMeta> {
        match self.put(key, data.clone(), PutOptions::create()).await {
            Err(Error::Unsupported { .. }) => {
                if self.exists(key).await? {
                    return Err(Error::AlreadyExists {
                        key: key.to_string(),
                    });
                }
                self.put(key, data, PutOptions::default()).await
            }
            other => other,
        }
    }

    /// Writes a small object that must not exist yet under a key that
    /// only this caller writes (a manifest, a WAL record: what makes
    /// something else count as committed), through
    /// [`StoreExt::create_best_effort`], and settles what an error means
    /// by reading the key back: [`Created::Stored`] when it holds exactly
    /// `data` (also after an error: a retried request whose first attempt
    /// landed), [`Created::Taken`] when it holds something else,
    /// [`Created::Absent`] when it holds nothing (what the object would
    /// have referred to can be removed), [`Created::Unknown`] when the
    /// read failed too (keep it: an orphan is garbage, a dangling
    /// reference is data loss).
    ///
    /// Not atomic where create-only puts are unsupported (see
    /// [`StoreExt::create_best_effort`]); never a lock.
    async fn create_settled(&self, key: &Key, data: Bytes) -> Created {
        let error = match self.create_best_effort(key, data.clone()).await {
            Ok(_) => return Created::Stored,
            Err(e) => e,
        };
        match self.get_bytes(key).await {
            Ok(stored) if stored == data => {
                tracing::warn!(%key, %error, "the write reported an error but the object is stored");
                Created::Stored
            }
            Ok(_) => Created::Taken,
            Err(Error::NotFound { .. }) => Created::Absent(error),
            Err(read) => {
                tracing::warn!(%key, error = %read, "could not read back an object whose write failed");
                Created::Unknown(error)
            }
        }
    }

    /// Checks that create-only puts are really exclusive in this store:
    /// writes a probe object under `under` with [`PutMode::Create`], writes
    /// it again the same way (which must fail with
    /// [`Error::AlreadyExists`]), and deletes it. Three or four requests.
    ///
    /// `Ok(())` when they are; [`Error::Unsupported`] (the store's own, or
    /// one saying the second create-only put overwrote the first) when they
    /// are not; any other error when the store could not be asked. For
    /// features that need exclusivity (scheduler leases) to refuse to start
    /// instead of failing at their first use.
    async fn check_create_only(&self, under: &Key) -> Result<()> {
        let probe = under.join(&format!(
            "_create-only-check-{:016x}",
            rand::random::<u64>()
        ))?;
        self.put(&probe, Bytes::from_static(b"1"), PutOptions::create())
            .await?;
        let second = self
            .put(&probe, Bytes::from_static(b"2"), PutOptions::create())
            .await;
        if let Err(e) = self.delete(&probe).await {
            tracing::warn!(key = %probe, error = %e, "could not remove the create-only probe object");
        }
        match second {
            Err(Error::AlreadyExists { .. }) => Ok(()),
            Ok(_) => Err(Error::Unsupported {
                store: self.to_string(),
                operation: "exclusive create-only puts (a second create-only put of the same key overwrote the first)",
            }),
            Err(e) => Err(e),
        }
    }

    /// Collects a listing into a vector, sorted by key.
    async fn list_all(&self, prefix: Option<&Key>) -> Result<Vec<ObjectMeta>> {
        let mut items = Vec::new();
        let mut stream = self.list(prefix);
        while let Some(item) = stream.next().await {
            items.push(item?);
        }
        items.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(items)
    }
}

impl<T: Store + ?Sized> StoreExt for T {}

/// Checks a [`Store::get_range`] request against the object's size, for
/// stores that must check it themselves: a reversed range or one ending past
/// `size` is an [`Error::Store`] naming the key.
pub fn check_range(
    store: &dyn fmt::Display,
    key: &Key,
    range: &Range<u64>,
    size: u64,
) -> Result<()> {
    if range.start > range.end || range.end > size {
        return Err(Error::store(
            store,
            format!(
                "range {}..{} of {key} is outside the object ({size} bytes)",
                range.start, range.end
            ),
        ));
    }
    Ok(())
}

/// Deletes keys one by one: the building block for stores whose backend has
/// no bulk delete.
pub async fn delete_each<S: Store + ?Sized>(store: &S, keys: &[Key]) -> Result<()> {
    for key in keys {
        store.delete(key).await?;
    }
    Ok(())
}
