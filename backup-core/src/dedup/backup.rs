//! A deduplicating backup: dump → FastCDC chunks → SHA-256 ids → new chunks
//! compressed, encrypted and appended to packs; the chunk list streams to
//! its own object.
//!
//! Hashing and encoding run on the blocking pool, `concurrency` chunks at
//! once, in order; one sequential stage appends to the pack and the chunk
//! list. Memory: about `concurrency` × `max` chunk bytes plus one write
//! buffer per open object.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;

use super::chunker::Chunker;
use super::codec::ChunkCodec;
use super::format::{ChunkId, PackHeader, chunk_list_header, put_list_entry};
use super::lock::Inflight;
use super::options::DedupOptions;
use super::packs::{ChunkMap, PackListing, PackWriter};
use crate::error::{Error, Result};
use crate::key::Key;
use crate::manifest::{DedupInfo, Digests};
use crate::pipeline::{Hasher, PROGRESS_EVERY, PipelineOptions, Progress};
use crate::store::{ByteStream, Store, Upload};

/// Bytes of chunk list buffered before they are written.
const LIST_BUFFER: usize = 64 * 1024;

/// Everything a deduplicating backup needs besides its source.
pub(crate) struct DedupBackup<'a> {
    pub(crate) store: &'a dyn Store,
    pub(crate) tenant: &'a str,
    pub(crate) backup_id: &'a str,
    pub(crate) options: &'a DedupOptions,
    pub(crate) pipeline: &'a PipelineOptions,
    pub(crate) codec: Arc<ChunkCodec>,
    pub(crate) cancel: Option<&'a CancellationToken>,
    pub(crate) progress: Option<Progress>,
}

/// What a successful deduplicating backup produced.
pub(crate) struct DedupOutcome<'a> {
    /// Digests of the chunk list (the artifact).
    pub(crate) stored: Digests,
    /// Digests of the whole dump.
    pub(crate) raw: Digests,
    pub(crate) info: DedupInfo,
    /// Held until the manifest is written.
    pub(crate) marker: Inflight<'a>,
}

/// The objects being written, so a failure can abort them.
struct Open<'a> {
    list: Option<Box<dyn Upload>>,
    packs: PackWriter<'a>,
}

struct Counts {
    chunks: u64,
    new_chunks: u64,
    new_raw: u64,
    list: Digests,
    raw: Digests,
}

impl<'a> DedupBackup<'a> {
    /// Takes the in-flight marker (waiting for a running GC), loads the
    /// tenant's chunk ids and opens the chunk list at `list_key`: all
    /// before the dump starts, so a wait or a store problem does not hold
    /// a database snapshot open.
    pub(crate) async fn start(self, list_key: &Key) -> Result<Started<'a>> {
        let marker = Inflight::begin(self.store, self.tenant, self.backup_id, self.options).await?;
        let prepared = async {
            let group = self.codec.group();
            let map = ChunkMap::load(
                self.store,
                self.tenant,
                &group,
                self.options.concurrency.saturating_mul(2),
            )
            .await?;
            let list = self.store.put_stream(list_key).await?;
            Ok::<_, Error>((map, list, group))
        }
        .await;
        match prepared {
            Ok((map, list, group)) => {
                let template = PackHeader {
                    pack: String::new(),
                    size: 0,
                    compression: self.codec.algorithm().to_string(),
                    level: self.codec.level(),
                    recipients: group,
                    created_at: chrono::Utc::now(),
                    written_by: self.backup_id.to_string(),
                };
                let packs =
                    PackWriter::new(self.store, self.tenant, template, self.options.pack_size);
                Ok(Started {
                    open: Open {
                        list: Some(list),
                        packs,
                    },
                    map: Arc::new(map),
                    marker,
                    backup: self,
                })
            }
            Err(e) => {
                marker.end().await;
                Err(e)
            }
        }
    }
}

/// A deduplicating backup ready to read its dump.
pub(crate) struct Started<'a> {
    backup: DedupBackup<'a>,
    open: Open<'a>,
    map: Arc<ChunkMap>,
    marker: Inflight<'a>,
}

impl<'a> Started<'a> {
    /// Gives up before the dump started.
    pub(crate) async fn abandon(mut self) {
        self.abort().await;
        self.marker.end().await;
    }

    async fn abort(&mut self) {
        self.open.packs.abort().await;
        if let Some(list) = self.open.list.take() {
            let _ = list.abort().await;
        }
    }

    /// Streams `source` into packs and the chunk list. On failure the open
    /// uploads are aborted and the marker removed; completed packs stay
    /// for garbage collection.
    pub(crate) async fn run(mut self, source: ByteStream) -> Result<DedupOutcome<'a>> {
        let backup = &self.backup;
        let caller_cancel = async {
            match backup.cancel {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            biased;
            _ = backup.pipeline.cancel.cancelled() => Err(Error::Cancelled),
            _ = caller_cancel => Err(Error::Cancelled),
            r = backup.drive(&mut self.open, &self.map, source, &mut self.marker) => r,
        };
        match result {
            Ok(counts) => {
                let info = DedupInfo {
                    chunker: backup.options.sizes().describe(),
                    chunks: counts.chunks,
                    new_chunks: counts.new_chunks,
                    new_raw_bytes: counts.new_raw,
                    stored_bytes: self.open.packs.bytes,
                    packs: self.open.packs.written.len() as u64,
                    logical_size: counts.raw.size,
                };
                Ok(DedupOutcome {
                    stored: counts.list,
                    raw: counts.raw,
                    info,
                    marker: self.marker,
                })
            }
            Err(e) => {
                self.abort().await;
                self.marker.end().await;
                Err(e)
            }
        }
    }
}

impl DedupBackup<'_> {
    async fn drive(
        &self,
        open: &mut Open<'_>,
        map: &Arc<ChunkMap>,
        source: ByteStream,
        marker: &mut Inflight<'_>,
    ) -> Result<Counts> {
        let chunker = Chunker::new(
            crate::pipeline::watchdog(source, self.pipeline.stall_timeout),
            self.options.sizes(),
        );
        let chunks = futures::stream::unfold(Some(chunker), next_chunk).boxed();
        // Hash (and encode chunks the tenant lacks) off the runtime, in order.
        let (known, codec) = (Arc::clone(map), Arc::clone(&self.codec));
        let prepared = chunks
            .map(move |chunk| prepare(chunk, Arc::clone(&known), Arc::clone(&codec)).boxed())
            .buffered(self.options.concurrency.max(1))
            .boxed();
        let mut prepared = prepared;

        let mut raw = Hasher::sha256_only();
        let mut list_hash = Hasher::default();
        let mut list_buf = BytesMut::with_capacity(LIST_BUFFER * 2);
        list_buf.extend_from_slice(&chunk_list_header());
        let mut written: HashSet<ChunkId> = HashSet::new();
        let (mut chunks, mut new_chunks, mut new_raw) = (0u64, 0u64, 0u64);
        let mut used_packs = HashSet::new();
        let mut next_report = PROGRESS_EVERY;
        let mut packs_done = 0;
        while let Some(item) = prepared.next().await {
            let (chunk, id, blob): Prepared = item?;
            raw.update(&chunk);
            if let Some(report) = &self.progress
                && raw.size() >= next_report
            {
                report(raw.size());
                next_report = raw.size() + PROGRESS_EVERY;
            }
            let raw_len = chunk.len() as u32;
            match blob {
                Some(blob) if !written.contains(&id) => {
                    open.packs.append(id, &blob, raw_len).await?;
                    written.insert(id);
                    new_chunks += 1;
                    new_raw += u64::from(raw_len);
                    if open.packs.written.len() != packs_done {
                        packs_done = open.packs.written.len();
                        marker.refresh_if_due().await;
                    }
                }
                Some(_) => {} // a repeat within this dump, already appended
                None => {
                    used_packs.insert(map.get(&id).expect("known chunks have a place").pack);
                }
            }
            put_list_entry(&mut list_buf, &id, raw_len);
            chunks += 1;
            if list_buf.len() >= LIST_BUFFER {
                let data = list_buf.split().freeze();
                list_hash.update(&data);
                open.list
                    .as_mut()
                    .expect("list upload open")
                    .write(data)
                    .await?;
            }
        }
        open.packs.finish_pack().await?;
        let data = list_buf.split().freeze();
        list_hash.update(&data);
        open.list
            .as_mut()
            .expect("list upload open")
            .write(data)
            .await?;
        self.check_used_packs_remain(map, &used_packs).await?;
        let list = open.list.take().expect("list upload open");
        let meta = list.complete().await?;
        let list = list_hash.finish();
        if meta.size != list.size {
            let _ = self.store.delete(&meta.key).await;
            return Err(Error::Integrity {
                what: meta.key.to_string(),
                detail: format!(
                    "store reports {} bytes after writing {}",
                    meta.size, list.size
                ),
            });
        }
        Ok(Counts {
            chunks,
            new_chunks,
            new_raw,
            list,
            raw: raw.finish(),
        })
    }

    /// A GC that ignored our marker (an expired one) could have removed a
    /// pack whose chunks this backup reuses: refuse to commit then.
    async fn check_used_packs_remain(&self, map: &ChunkMap, used: &HashSet<u32>) -> Result<()> {
        if used.is_empty() {
            return Ok(());
        }
        let now = PackListing::load(self.store, self.tenant).await?;
        for &pack in used {
            let id = &map.packs[pack as usize].id;
            if !now.indexes.contains_key(id) || !now.packs.contains_key(id) {
                return Err(Error::Busy {
                    what: format!("tenant {}", self.tenant),
                    detail: format!(
                        "pack {id}, whose chunks this backup reuses, was removed while it ran \
                         (a garbage collection ignored its in-flight marker?); retry the backup"
                    ),
                });
            }
        }
        Ok(())
    }
}

async fn next_chunk(state: Option<Chunker>) -> Option<(Result<Bytes>, Option<Chunker>)> {
    let mut chunker = state?;
    match chunker.next_chunk().await {
        Ok(Some(chunk)) => Some((Ok(chunk), Some(chunker))),
        Ok(None) => None,
        Err(e) => Some((Err(e), None)),
    }
}

/// A chunk, its id, and its encoded form if the tenant lacks it.
type Prepared = (Bytes, ChunkId, Option<Vec<u8>>);

async fn prepare(
    chunk: Result<Bytes>,
    known: Arc<ChunkMap>,
    codec: Arc<ChunkCodec>,
) -> Result<Prepared> {
    let chunk = chunk?;
    tokio::task::spawn_blocking(move || {
        let id = ChunkId::of(&chunk);
        let blob = match known.contains(&id) {
            true => None,
            false => Some(codec.encode(&chunk)?),
        };
        Ok((chunk, id, blob))
    })
    .await
    .map_err(|e| Error::task("a chunk encoding task", e))?
}
