//! [`InMemoryStore`]: a [`Store`] in a map, for doc examples and unit tests.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use chrono::Utc;
use futures::stream::{self, BoxStream};

use crate::error::{Error, Result};
use crate::key::Key;
use crate::store::{
    GetResult, ObjectMeta, PutMode, PutOptions, Store, Upload, check_range, delete_each,
};

type Objects = Arc<Mutex<BTreeMap<Key, (Bytes, ObjectMeta)>>>;

/// A store that keeps objects in memory. It honours the whole [`Store`]
/// contract (it passes the conformance suite), but holds every object in
/// RAM: use it for examples and tests, not for real backups.
#[derive(Default, Clone)]
pub struct InMemoryStore {
    objects: Objects,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.objects.lock().map(|o| o.len()).unwrap_or(0);
        f.debug_struct("InMemoryStore")
            .field("objects", &count)
            .finish()
    }
}

impl fmt::Display for InMemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("memory")
    }
}

fn insert(objects: &Objects, key: &Key, data: Bytes, mode: PutMode) -> Result<ObjectMeta> {
    let mut map = objects.lock().expect("memory store lock poisoned");
    if mode == PutMode::Create && map.contains_key(key) {
        return Err(Error::AlreadyExists {
            key: key.to_string(),
        });
    }
    let meta = ObjectMeta {
        key: key.clone(),
        size: data.len() as u64,
        last_modified: Utc::now(),
    };
    map.insert(key.clone(), (data, meta.clone()));
    Ok(meta)
}

#[async_trait]
impl Store for InMemoryStore {
    async fn put(&self, key: &Key, data: Bytes, opts: PutOptions) -> Result<ObjectMeta> {
        insert(&self.objects, key, data, opts.mode)
    }

    async fn put_stream(&self, key: &Key) -> Result<Box<dyn Upload>> {
        Ok(Box::new(MemoryUpload {
            objects: Arc::clone(&self.objects),
            key: key.clone(),
            buf: BytesMut::new(),
        }))
    }

    async fn get(&self, key: &Key) -> Result<GetResult> {
        let map = self.objects.lock().expect("memory store lock poisoned");
        let (data, meta) = map.get(key).ok_or_else(|| Error::not_found(key))?;
        let chunks: Vec<Result<Bytes>> = data
            .chunks(64 * 1024)
            .map(|c| Ok(data.slice_ref(c)))
            .collect();
        Ok(GetResult {
            meta: meta.clone(),
            stream: Box::pin(stream::iter(chunks)),
        })
    }

    async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Bytes> {
        let map = self.objects.lock().expect("memory store lock poisoned");
        let (data, _) = map.get(key).ok_or_else(|| Error::not_found(key))?;
        check_range(self, key, &range, data.len() as u64)?;
        Ok(data.slice(range.start as usize..range.end as usize))
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        let map = self.objects.lock().expect("memory store lock poisoned");
        map.get(key)
            .map(|(_, meta)| meta.clone())
            .ok_or_else(|| Error::not_found(key))
    }

    fn list(&self, prefix: Option<&Key>) -> BoxStream<'static, Result<ObjectMeta>> {
        let map = self.objects.lock().expect("memory store lock poisoned");
        let items: Vec<Result<ObjectMeta>> = map
            .values()
            .filter(|(_, m)| prefix.is_none_or(|p| m.key.starts_with(p) && m.key != *p))
            .map(|(_, m)| Ok(m.clone()))
            .collect();
        Box::pin(stream::iter(items))
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.objects
            .lock()
            .expect("memory store lock poisoned")
            .remove(key);
        Ok(())
    }

    async fn delete_many(&self, keys: &[Key]) -> Result<()> {
        delete_each(self, keys).await
    }
}

struct MemoryUpload {
    objects: Objects,
    key: Key,
    buf: BytesMut,
}

impl fmt::Debug for MemoryUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryUpload")
            .field("key", &self.key)
            .field("buffered", &self.buf.len())
            .finish()
    }
}

#[async_trait]
impl Upload for MemoryUpload {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.buf.extend_from_slice(&data);
        Ok(())
    }

    async fn complete(self: Box<Self>) -> Result<ObjectMeta> {
        let this = *self;
        insert(
            &this.objects,
            &this.key,
            this.buf.freeze(),
            PutMode::Overwrite,
        )
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
