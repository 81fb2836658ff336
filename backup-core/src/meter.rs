//! [`Meter`]: byte counters a host reads to show progress (a terminal bar,
//! a job page), fed by two wrappers that leave the engine untouched:
//! [`MeteredStore`] counts the bytes read from and written to a store,
//! [`MeteredSource`] the dump bytes read from a database.
//!
//! The hot path is one relaxed atomic add per chunk; readers poll the
//! counters at their own pace (a bar redraws on its own tick), so nothing
//! is sent per chunk and nothing waits for a slow reader.
//!
//! ```
//! # use std::sync::Arc;
//! # use backup_core::{Engine, memory::InMemoryStore};
//! use backup_core::meter::{Meter, MeteredStore};
//! let meter = Arc::new(Meter::default());
//! let store = MeteredStore::new(Arc::new(InMemoryStore::new()), Arc::clone(&meter));
//! let engine = Engine::new(Arc::new(store));
//! // ... run a backup, a restore or a check with `engine`, and poll
//! assert_eq!(meter.store_written(), 0);
//! ```

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::error::Result;
use crate::key::Key;
use crate::source::{DumpOptions, DumpSource, DumpStream, SourceInfo};
use crate::store::{
    ByteStream, GetResult, ObjectMeta, PutOptions, Store, TemporaryObject, TemporarySweep, Upload,
};

/// Bytes moved so far, counted by [`MeteredStore`] and [`MeteredSource`].
/// Counters only grow (saturating at `u64::MAX`); share one through an
/// `Arc` between the wrappers and whoever displays it.
#[derive(Debug, Default)]
pub struct Meter {
    source_read: AtomicU64,
    store_read: AtomicU64,
    store_written: AtomicU64,
}

impl Meter {
    /// Dump bytes read from the database (uncompressed, as the source
    /// produced them).
    pub fn source_read(&self) -> u64 {
        self.source_read.load(Ordering::Relaxed)
    }

    /// Bytes read from the store: object bodies and ranges (manifests,
    /// artifacts, pack indexes, chunks).
    pub fn store_read(&self) -> u64 {
        self.store_read.load(Ordering::Relaxed)
    }

    /// Bytes written to the store, counted as they are handed to it (an
    /// upload later aborted still counts).
    pub fn store_written(&self) -> u64 {
        self.store_written.load(Ordering::Relaxed)
    }

    fn add(counter: &AtomicU64, n: usize) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        // fetch_update never fails with a closure that always returns Some.
        let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_add(n))
        });
    }
}

/// Counts what flows through `stream` into `counter` of `meter`.
fn counted(stream: ByteStream, meter: Arc<Meter>, counter: fn(&Meter) -> &AtomicU64) -> ByteStream {
    stream
        .inspect(move |item| {
            if let Ok(bytes) = item {
                Meter::add(counter(&meter), bytes.len());
            }
        })
        .boxed()
}

/// A store that counts the bytes read from and written to the store it
/// wraps in a [`Meter`]; everything else goes straight through (listing,
/// deletes and the temporary-file sweep included).
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    meter: Arc<Meter>,
}

impl MeteredStore {
    /// Wraps `inner`, counting into `meter`.
    pub fn new(inner: Arc<dyn Store>, meter: Arc<Meter>) -> Self {
        MeteredStore { inner, meter }
    }
}

impl fmt::Debug for MeteredStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MeteredStore").field(&self.inner).finish()
    }
}

impl fmt::Display for MeteredStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait]
impl Store for MeteredStore {
    async fn put(&self, key: &Key, data: Bytes, opts: PutOptions) -> Result<ObjectMeta> {
        Meter::add(&self.meter.store_written, data.len());
        self.inner.put(key, data, opts).await
    }
    async fn put_stream(&self, key: &Key) -> Result<Box<dyn Upload>> {
        Ok(Box::new(MeteredUpload {
            inner: self.inner.put_stream(key).await?,
            meter: Arc::clone(&self.meter),
        }))
    }
    async fn get(&self, key: &Key) -> Result<GetResult> {
        let GetResult { meta, stream } = self.inner.get(key).await?;
        let stream = counted(stream, Arc::clone(&self.meter), |m| &m.store_read);
        Ok(GetResult { meta, stream })
    }
    async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Bytes> {
        let bytes = self.inner.get_range(key, range).await?;
        Meter::add(&self.meter.store_read, bytes.len());
        Ok(bytes)
    }
    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.inner.head(key).await
    }
    fn list(&self, prefix: Option<&Key>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn delete(&self, key: &Key) -> Result<()> {
        self.inner.delete(key).await
    }
    async fn delete_many(&self, keys: &[Key]) -> Result<()> {
        self.inner.delete_many(keys).await
    }
    async fn sweep_temporary(&self, opts: &TemporarySweep) -> Result<Vec<TemporaryObject>> {
        self.inner.sweep_temporary(opts).await
    }
}

/// An upload of a [`MeteredStore`]: counts each part as it is written.
struct MeteredUpload {
    inner: Box<dyn Upload>,
    meter: Arc<Meter>,
}

impl fmt::Debug for MeteredUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MeteredUpload").field(&self.inner).finish()
    }
}

#[async_trait]
impl Upload for MeteredUpload {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        Meter::add(&self.meter.store_written, data.len());
        self.inner.write(data).await
    }
    async fn complete(self: Box<Self>) -> Result<ObjectMeta> {
        self.inner.complete().await
    }
    async fn abort(self: Box<Self>) -> Result<()> {
        self.inner.abort().await
    }
}

/// A dump source that counts the bytes its dumps produce in a [`Meter`]
/// ([`Meter::source_read`]); versions, details and the declared parent
/// pass through unchanged.
pub struct MeteredSource {
    inner: Arc<dyn DumpSource>,
    meter: Arc<Meter>,
}

impl MeteredSource {
    /// Wraps `inner` (a `Box` or a shared `Arc`), counting into `meter`.
    pub fn new(inner: impl Into<Arc<dyn DumpSource>>, meter: Arc<Meter>) -> Self {
        MeteredSource {
            inner: inner.into(),
            meter,
        }
    }
}

impl fmt::Debug for MeteredSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MeteredSource").field(&self.inner).finish()
    }
}

#[async_trait]
impl DumpSource for MeteredSource {
    fn info(&self) -> SourceInfo {
        self.inner.info()
    }
    async fn dump(&self, opts: &DumpOptions) -> Result<DumpStream> {
        let mut dump = self.inner.dump(opts).await?;
        let stream = std::mem::replace(&mut dump.stream, futures::stream::empty().boxed());
        dump.stream = counted(stream, Arc::clone(&self.meter), |m| &m.source_read);
        Ok(dump)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::InMemoryStore;
    use crate::testing::{Capabilities, store_conformance};

    #[tokio::test]
    async fn a_metered_store_passes_the_conformance_suite_and_counts_both_ways() {
        let meter = Arc::new(Meter::default());
        let store = MeteredStore::new(Arc::new(InMemoryStore::new()), Arc::clone(&meter));
        store_conformance(&store, Capabilities::default()).await;
        assert!(meter.store_written() > 0);
        assert!(meter.store_read() > 0);
        assert_eq!(meter.source_read(), 0);

        let before = (meter.store_read(), meter.store_written());
        let key = Key::new("t/metered/object").expect("key");
        store
            .put(
                &key,
                Bytes::from_static(b"0123456789"),
                PutOptions::default(),
            )
            .await
            .expect("put");
        let mut upload = store.put_stream(&key).await.expect("upload");
        upload
            .write(Bytes::from_static(b"abcd"))
            .await
            .expect("write");
        upload.complete().await.expect("complete");
        let got = store.get(&key).await.expect("get");
        let body: Vec<Bytes> = got.stream.map(|b| b.expect("chunk")).collect().await;
        assert_eq!(body.concat(), b"abcd");
        store.get_range(&key, 1..3).await.expect("range");
        assert_eq!(meter.store_written() - before.1, 14);
        assert_eq!(meter.store_read() - before.0, 6);
    }

    #[test]
    fn counters_saturate_instead_of_wrapping() {
        let meter = Meter::default();
        meter.store_read.store(u64::MAX - 1, Ordering::Relaxed);
        Meter::add(&meter.store_read, 10);
        assert_eq!(meter.store_read(), u64::MAX);
    }
}
