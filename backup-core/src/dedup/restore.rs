//! Reading a deduplicated backup back: the chunk list in order, each chunk
//! fetched from its pack with a range read (runs of chunks stored next to
//! each other in one read), decrypted, decompressed and checked against its
//! id, then handed to the common restore end (`pipeline::deliver`), which
//! holds the tail back until the whole dump's digest matches.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::codec::ChunkDecoder;
use super::format::{ChunkId, ChunkListReader};
use super::packs::{ChunkMap, pack_key};
use crate::crypto::AgeIdentities;
use crate::error::{Error, Result};
use crate::key::Key;
use crate::manifest::{Digests, Manifest};
use crate::pipeline::compare;
use crate::store::Store;

/// Largest single range read: a run of neighbouring chunks is fetched at
/// once while both its stored and its decoded size stay under this (dumps
/// can compress 80 times: the decoded size is the one that bounds memory).
const MAX_READ: u64 = 4 * 1024 * 1024;

/// Missing chunks named in an error message before "and N more".
const NAMED: usize = 3;

/// Reads the chunk list once before anything is restored: checks its
/// digests against the manifest, that every chunk is in the map and that
/// the lengths add up to the dump size. Returns the number of chunks.
pub(crate) async fn precheck(
    store: &dyn Store,
    manifest: &Manifest,
    map: &ChunkMap,
) -> Result<u64> {
    let key = manifest.artifact_key()?;
    let mut list = ChunkListReader::new(store.get(&key).await?.stream, key.as_str());
    let (mut count, mut raw, mut missing) = (0u64, 0u64, Vec::<ChunkId>::new());
    while let Some((id, len)) = list.next_entry().await? {
        count += 1;
        raw += u64::from(len);
        if !map.contains(&id) && !missing.contains(&id) {
            missing.push(id);
        }
    }
    if let Some(diff) = compare(&manifest.stored, &list.finish()) {
        return Err(Error::Integrity {
            what: key.to_string(),
            detail: format!("chunk list: {diff}"),
        });
    }
    if !missing.is_empty() {
        let mut names: Vec<String> = missing.iter().take(NAMED).map(ChunkId::hex).collect();
        if missing.len() > NAMED {
            names.push(format!("and {} more", missing.len() - NAMED));
        }
        let unreadable = match map.unreadable.first() {
            Some((pack, e)) => format!(
                "; {} pack index(es) could not be read, e.g. {pack}: {e}",
                map.unreadable.len()
            ),
            None => String::new(),
        };
        return Err(Error::Integrity {
            what: format!("backup {}", manifest.id),
            detail: format!(
                "{} chunk(s) missing from the store: {}{unreadable}",
                missing.len(),
                names.join(", ")
            ),
        });
    }
    if raw != manifest.raw.size {
        return Err(Error::Integrity {
            what: key.to_string(),
            detail: format!(
                "chunks add up to {raw} bytes, the manifest records {}",
                manifest.raw.size
            ),
        });
    }
    Ok(count)
}

/// A run of chunks stored back to back in one pack.
struct Read {
    pack: u32,
    start: u64,
    end: u64,
    raw: u64,
    chunks: Vec<(ChunkId, u64, u32, u32)>, // id, offset, stored, raw
}

/// Streams the plaintext of every chunk of `manifest` into `tx`, in order,
/// `concurrency` reads at once (memory: about `concurrency` × 2 ×
/// [`MAX_READ`]). Returns the digests of the chunk list read.
pub(crate) async fn pump_chunks(
    store: Arc<dyn Store>,
    manifest: Arc<Manifest>,
    map: Arc<ChunkMap>,
    identities: Option<AgeIdentities>,
    tx: mpsc::Sender<Bytes>,
    concurrency: usize,
) -> Result<Digests> {
    let key = manifest.artifact_key()?;
    let list = ChunkListReader::new(store.get(&key).await?.stream, key.as_str());
    let decoders: Arc<Vec<Result<ChunkDecoder, String>>> = Arc::new(
        map.packs
            .iter()
            .map(|p| {
                ChunkDecoder::for_pack(&p.header, identities.as_ref()).map_err(|e| e.to_string())
            })
            .collect(),
    );
    let pack_keys: Arc<Vec<Key>> = Arc::new(
        map.packs
            .iter()
            .map(|p| pack_key(&manifest.tenant, &p.id))
            .collect::<Result<_>>()?,
    );
    // Group the list into runs; the reader is handed back at the end.
    let (list_tx, mut list_rx) = tokio::sync::oneshot::channel();
    let reads = futures::stream::unfold(
        (Some(list), None::<Read>, Some(list_tx), Arc::clone(&map)),
        |(list, pending, done, map)| async move {
            let mut list = list?;
            let mut current = pending;
            loop {
                let entry = match list.next_entry().await {
                    Ok(entry) => entry,
                    Err(e) => return Some((Err(e), (None, None, None, map))),
                };
                let Some((id, raw_len)) = entry else {
                    if let Some(done) = done {
                        let _ = done.send(list);
                    }
                    return current.map(|r| (Ok(r), (None, None, None, map)));
                };
                let Some(loc) = map.get(&id).copied() else {
                    let e = Error::Integrity {
                        what: format!("chunk {id}"),
                        detail: "missing from the store".into(),
                    };
                    return Some((Err(e), (None, None, None, map)));
                };
                if loc.raw_len != raw_len {
                    let e = Error::Integrity {
                        what: format!("chunk {id}"),
                        detail: format!(
                            "the chunk list says {raw_len} bytes, the pack index {}",
                            loc.raw_len
                        ),
                    };
                    return Some((Err(e), (None, None, None, map)));
                }
                let end = loc.offset + u64::from(loc.stored_len);
                match &mut current {
                    Some(r)
                        if r.pack == loc.pack
                            && r.end == loc.offset
                            && end - r.start <= MAX_READ
                            && r.raw + u64::from(raw_len) <= MAX_READ =>
                    {
                        r.end = end;
                        r.raw += u64::from(raw_len);
                        r.chunks.push((id, loc.offset, loc.stored_len, raw_len));
                    }
                    _ => {
                        let next = Read {
                            pack: loc.pack,
                            start: loc.offset,
                            end,
                            raw: u64::from(raw_len),
                            chunks: vec![(id, loc.offset, loc.stored_len, raw_len)],
                        };
                        if let Some(full) = current.replace(next) {
                            return Some((Ok(full), (Some(list), current, done, map)));
                        }
                    }
                }
            }
        },
    );
    let fetched = reads
        .map(|read: Result<Read>| {
            let store = Arc::clone(&store);
            let decoders = Arc::clone(&decoders);
            let pack_keys = Arc::clone(&pack_keys);
            async move {
                let read = read?;
                let key = &pack_keys[read.pack as usize];
                let bytes = store.get_range(key, read.start..read.end).await?;
                tokio::task::spawn_blocking(move || {
                    let decoder =
                        decoders[read.pack as usize]
                            .as_ref()
                            .map_err(|e| Error::Decryption {
                                what: format!("pack {}", read.pack),
                                detail: e.clone(),
                            })?;
                    read.chunks
                        .iter()
                        .map(|(id, offset, stored, raw)| {
                            let at = (offset - read.start) as usize;
                            decoder.decode(&bytes[at..at + *stored as usize], id, *raw)
                        })
                        .collect::<Result<Vec<Bytes>>>()
                })
                .await
                .map_err(|e| Error::task("a chunk decoding task", e))?
            }
        })
        .buffered(concurrency.max(1));
    futures::pin_mut!(fetched);
    while let Some(chunks) = fetched.next().await {
        for chunk in chunks? {
            if tx.send(chunk).await.is_err() {
                // The consumer stopped; its own error is the one to report.
                return Err(Error::Cancelled);
            }
        }
    }
    let list = list_rx.try_recv().map_err(|_| Error::Restore {
        engine: "pipeline",
        detail: "the chunk list was not read to its end".into(),
    })?;
    Ok(list.finish())
}
