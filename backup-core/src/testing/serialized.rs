//! [`SerializedCreates`]: makes create-only puts atomic within one process,
//! for test servers whose conditional PUT is not.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::error::Result;
use crate::key::Key;
use crate::store::{
    GetResult, ObjectMeta, PutMode, PutOptions, Store, TemporaryObject, TemporarySweep, Upload,
};

/// Wraps a store and runs its create-only puts ([`PutMode::Create`]) one at
/// a time. Some S3 test servers (`s3s-fs`) check `If-None-Match: *` and then
/// write without a lock, so racing create-only puts can all succeed there;
/// in a single test process this wrapper restores the atomicity AWS, MinIO
/// and R2 provide. Everything else goes straight to the inner store.
pub struct SerializedCreates {
    inner: Arc<dyn Store>,
    creates: tokio::sync::Mutex<()>,
}

impl SerializedCreates {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        SerializedCreates {
            inner,
            creates: tokio::sync::Mutex::new(()),
        }
    }
}

impl fmt::Debug for SerializedCreates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SerializedCreates")
            .field(&self.inner)
            .finish()
    }
}

impl fmt::Display for SerializedCreates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait]
impl Store for SerializedCreates {
    async fn put(&self, key: &Key, data: Bytes, opts: PutOptions) -> Result<ObjectMeta> {
        let _serialized = match opts.mode {
            PutMode::Create => Some(self.creates.lock().await),
            _ => None,
        };
        self.inner.put(key, data, opts).await
    }
    async fn put_stream(&self, key: &Key) -> Result<Box<dyn Upload>> {
        self.inner.put_stream(key).await
    }
    async fn get(&self, key: &Key) -> Result<GetResult> {
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Bytes> {
        self.inner.get_range(key, range).await
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
