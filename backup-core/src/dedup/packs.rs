//! Where chunks live: key layout, the map of chunk ids to pack locations
//! built from the pack indexes, and the writer that fills new packs.

use std::collections::{BTreeMap, HashMap};

use bytes::{Bytes, BytesMut};
use chrono::Utc;
use futures::StreamExt;

use super::format::{ChunkId, IndexEntry, PACK_HEADER_LEN, PackHeader, PackIndex, pack_header};
use crate::error::{Error, Result};
use crate::key::Key;
use crate::store::{ObjectMeta, PutOptions, Store, StoreExt, Upload};

/// `{tenant}/_chunks/packs`.
pub(crate) fn packs_prefix(tenant: &str) -> Result<Key> {
    Key::new(format!("{tenant}/_chunks/packs"))
}

fn pack_base(tenant: &str, id: &str) -> String {
    format!("{tenant}/_chunks/packs/{}/{id}", &id[..2])
}

/// `{tenant}/_chunks/packs/{xx}/{id}.pack`.
pub(crate) fn pack_key(tenant: &str, id: &str) -> Result<Key> {
    Key::new(format!("{}.pack", pack_base(tenant, id)))
}

/// `{tenant}/_chunks/packs/{xx}/{id}.idx`.
pub(crate) fn index_key(tenant: &str, id: &str) -> Result<Key> {
    Key::new(format!("{}.idx", pack_base(tenant, id)))
}

/// A fresh random pack id: 32 hex digits (ascending ones in tests that ask,
/// see [`ascending_pack_ids`]).
pub(crate) fn new_pack_id() -> String {
    #[cfg(feature = "testing")]
    if let Some(id) = next_pack_id() {
        return id;
    }
    format!("{:032x}", rand::random::<u128>())
}

/// When non-zero, the next ascending pack id (see [`ascending_pack_ids`]).
#[cfg(feature = "testing")]
static NEXT_PACK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Makes every pack written from now on (in this process) get an id that
/// sorts after those of all packs written before, or, with `false`, random
/// ids again. Garbage collection keeps the first copy of a chunk in pack id
/// order, so tests of what a GC leaves use this to get the same order (the
/// worst one for copies: newest last) on every run.
#[cfg(feature = "testing")]
pub fn ascending_pack_ids(on: bool) {
    NEXT_PACK.store(u64::from(on), std::sync::atomic::Ordering::SeqCst);
}

/// The next ascending pack id, if [`ascending_pack_ids`] is on.
#[cfg(feature = "testing")]
fn next_pack_id() -> Option<String> {
    use std::sync::atomic::Ordering;
    let n = NEXT_PACK
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n != 0).then(|| n + 1)
        })
        .ok()?;
    Some(format!("{n:016x}{:016x}", rand::random::<u64>()))
}

/// The packs and indexes of a tenant, by pack id.
#[derive(Debug, Default)]
pub(crate) struct PackListing {
    pub(crate) packs: BTreeMap<String, ObjectMeta>,
    pub(crate) indexes: BTreeMap<String, ObjectMeta>,
    /// Objects under `packs/` that are neither (reported by `check`).
    pub(crate) strays: Vec<ObjectMeta>,
}

impl PackListing {
    pub(crate) async fn load(store: &dyn Store, tenant: &str) -> Result<PackListing> {
        let mut listing = PackListing::default();
        let mut stream = store.list(Some(&packs_prefix(tenant)?));
        while let Some(meta) = stream.next().await {
            let meta = meta?;
            let name = meta.key.file_name();
            match name.rsplit_once('.') {
                Some((id, "pack")) if is_pack_id(id) => {
                    listing.packs.insert(id.to_string(), meta);
                }
                Some((id, "idx")) if is_pack_id(id) => {
                    listing.indexes.insert(id.to_string(), meta);
                }
                _ => listing.strays.push(meta),
            }
        }
        Ok(listing)
    }
}

fn is_pack_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads and decodes pack indexes, several at once. Unreadable indexes are
/// returned as errors beside the good ones.
pub(crate) async fn load_indexes(
    store: &dyn Store,
    tenant: &str,
    ids: impl Iterator<Item = String>,
    concurrency: usize,
) -> Vec<(String, Result<PackIndex>)> {
    let mut out = Vec::new();
    let mut ids = ids.peekable();
    while ids.peek().is_some() {
        let batch: Vec<String> = ids.by_ref().take(concurrency.max(1)).collect();
        let loaded =
            futures::future::join_all(batch.iter().map(|id| load_index(store, tenant, id))).await;
        out.extend(batch.into_iter().zip(loaded));
    }
    out
}

/// Reads and decodes the index of pack `id`.
pub(crate) async fn load_index(store: &dyn Store, tenant: &str, id: &str) -> Result<PackIndex> {
    let key = index_key(tenant, id)?;
    let bytes = store.get_bytes(&key).await?;
    let index = PackIndex::decode(key.as_str(), &bytes)?;
    if index.header.pack != id {
        return Err(Error::Integrity {
            what: key.to_string(),
            detail: format!("describes pack {}", index.header.pack),
        });
    }
    Ok(index)
}

/// A chunk's place: pack number in [`ChunkMap::packs`], offset and lengths.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Location {
    pub(crate) pack: u32,
    pub(crate) offset: u64,
    pub(crate) stored_len: u32,
    pub(crate) raw_len: u32,
}

/// One pack known to a [`ChunkMap`].
#[derive(Debug)]
pub(crate) struct PackRef {
    pub(crate) id: String,
    pub(crate) header: PackHeader,
}

/// Chunk id → location, over the packs of one tenant and dedup group.
#[derive(Debug, Default)]
pub(crate) struct ChunkMap {
    pub(crate) packs: Vec<PackRef>,
    pub(crate) chunks: HashMap<ChunkId, Location>,
    /// Indexes that could not be read: `(pack id, error)`.
    pub(crate) unreadable: Vec<(String, String)>,
}

impl ChunkMap {
    /// Loads every index of `tenant` whose chunks belong to `group` (the
    /// sorted recipients; empty for plaintext) and whose pack exists.
    pub(crate) async fn load(
        store: &dyn Store,
        tenant: &str,
        group: &[String],
        concurrency: usize,
    ) -> Result<ChunkMap> {
        let listing = PackListing::load(store, tenant).await?;
        let mut map = ChunkMap::default();
        // An index whose pack is gone names chunks nobody can read: leave
        // them out, so a backup stores them again and a restore reports
        // them missing before it starts.
        let ids = listing
            .indexes
            .into_keys()
            .filter(|id| listing.packs.contains_key(id));
        let loaded = load_indexes(store, tenant, ids, concurrency).await;
        for (id, index) in loaded {
            match index {
                Ok(index) if index.header.recipients == group => map.add(id, index),
                Ok(_) => {}
                Err(Error::NotFound { .. }) => {} // removed by a GC meanwhile
                Err(e) => {
                    tracing::warn!(pack = %id, error = %e, "skipping unreadable pack index");
                    map.unreadable.push((id, e.to_string()));
                }
            }
        }
        Ok(map)
    }

    fn add(&mut self, id: String, index: PackIndex) {
        let pack = self.packs.len() as u32;
        for e in &index.entries {
            self.chunks.entry(e.id).or_insert(Location {
                pack,
                offset: e.offset,
                stored_len: e.stored_len,
                raw_len: e.raw_len,
            });
        }
        self.packs.push(PackRef {
            id,
            header: index.header,
        });
    }

    pub(crate) fn get(&self, id: &ChunkId) -> Option<&Location> {
        self.chunks.get(id)
    }

    pub(crate) fn contains(&self, id: &ChunkId) -> bool {
        self.chunks.contains_key(id)
    }
}

/// Buffered bytes handed to a pack upload at once.
const WRITE_BUFFER: usize = 1024 * 1024;

/// Most chunks in one pack, so an index stays a small object (3 MiB).
const MAX_PACK_ENTRIES: usize = 65_536;

/// Fills packs of about `target` bytes with encoded chunks; each completed
/// pack is followed by its index, so an index never names a pack that is
/// not complete.
pub(crate) struct PackWriter<'a> {
    store: &'a dyn Store,
    tenant: String,
    template: PackHeader,
    target: u64,
    open: Option<OpenPack>,
    /// Ids of the packs completed so far.
    pub(crate) written: Vec<String>,
    /// Bytes of those packs and their indexes.
    pub(crate) bytes: u64,
}

struct OpenPack {
    id: String,
    upload: Box<dyn Upload>,
    buf: BytesMut,
    size: u64,
    entries: Vec<IndexEntry>,
}

impl<'a> PackWriter<'a> {
    /// `template` gives the codec fields of every pack header.
    pub(crate) fn new(
        store: &'a dyn Store,
        tenant: &str,
        template: PackHeader,
        target: u64,
    ) -> Self {
        PackWriter {
            store,
            tenant: tenant.to_string(),
            template,
            target: target.max(PACK_HEADER_LEN + 1),
            open: None,
            written: Vec::new(),
            bytes: 0,
        }
    }

    /// Appends one encoded chunk, starting a pack if none is open and
    /// completing it once it reaches the target size.
    pub(crate) async fn append(&mut self, id: ChunkId, blob: &[u8], raw_len: u32) -> Result<()> {
        if self.open.is_none() {
            let pack = new_pack_id();
            let upload = self
                .store
                .put_stream(&pack_key(&self.tenant, &pack)?)
                .await?;
            let mut buf = BytesMut::with_capacity(WRITE_BUFFER);
            buf.extend_from_slice(&pack_header());
            self.open = Some(OpenPack {
                id: pack,
                upload,
                buf,
                size: PACK_HEADER_LEN,
                entries: Vec::new(),
            });
        }
        let open = self.open.as_mut().expect("opened above");
        let stored_len = u32::try_from(blob.len()).map_err(|_| Error::TooLarge {
            what: "an encoded chunk".into(),
            size: blob.len() as u64,
            limit: u32::MAX.into(),
        })?;
        open.entries.push(IndexEntry {
            id,
            offset: open.size,
            stored_len,
            raw_len,
        });
        open.buf.extend_from_slice(blob);
        open.size += u64::from(stored_len);
        if open.buf.len() >= WRITE_BUFFER {
            let data = open.buf.split().freeze();
            open.upload.write(data).await?;
        }
        if open.size >= self.target || open.entries.len() >= MAX_PACK_ENTRIES {
            self.finish_pack().await?;
        }
        Ok(())
    }

    /// Completes the open pack, if any, and writes its index.
    pub(crate) async fn finish_pack(&mut self) -> Result<()> {
        let Some(mut open) = self.open.take() else {
            return Ok(());
        };
        let key = pack_key(&self.tenant, &open.id)?;
        if !open.buf.is_empty() {
            let data = open.buf.split().freeze();
            if let Err(e) = open.upload.write(data).await {
                let _ = open.upload.abort().await;
                return Err(e);
            }
        }
        let meta = open.upload.complete().await?;
        if meta.size != open.size {
            let _ = self.store.delete(&key).await;
            return Err(Error::Integrity {
                what: key.to_string(),
                detail: format!(
                    "store reports {} bytes after writing {}",
                    meta.size, open.size
                ),
            });
        }
        let index = PackIndex {
            header: PackHeader {
                pack: open.id.clone(),
                size: open.size,
                created_at: Utc::now(),
                ..self.template.clone()
            },
            entries: open.entries,
        };
        let body: Bytes = index.encode();
        let index_len = body.len() as u64;
        self.store
            .put(
                &index_key(&self.tenant, &open.id)?,
                body,
                PutOptions::default(),
            )
            .await?;
        self.bytes += open.size + index_len;
        self.written.push(open.id);
        Ok(())
    }

    /// Discards the open pack (completed packs stay: other backups may
    /// already use their chunks; garbage collection removes them).
    pub(crate) async fn abort(&mut self) {
        if let Some(open) = self.open.take()
            && let Err(e) = open.upload.abort().await
        {
            tracing::warn!(pack = %open.id, error = %e, "aborting a pack upload failed");
        }
    }
}
