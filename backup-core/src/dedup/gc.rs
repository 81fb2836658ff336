//! Garbage collection of a tenant's chunk store (see the protocol in the
//! module docs of `dedup`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chrono::Utc;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::codec::group_of;
use super::format::{ChunkId, ChunkListReader, IndexEntry, PackHeader, check_pack_header};
use super::lock::GcLock;
use super::options::DedupOptions;
use super::packs::{PackListing, PackWriter, index_key, load_indexes, pack_key};
use crate::catalog::{Catalog, Filter};
use crate::error::{Error, Result};
use crate::key::{Key, validate_id};
use crate::manifest::{BackupType, Manifest};
use crate::pipeline::compare;
use crate::store::Store;

/// What [`Engine::gc`](crate::Engine::gc) did (or, for a dry run, would do)
/// in one tenant's chunk store. Pack entries are pack ids.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GcReport {
    /// The tenant.
    pub tenant: String,
    /// Whether nothing was changed on purpose.
    pub dry_run: bool,
    /// Why the GC backed off without deleting anything (a backup in
    /// flight, another GC running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Incremental backups whose chunk lists were read.
    pub backups: usize,
    /// Distinct chunks they reference.
    pub referenced_chunks: u64,
    /// Packs with an index that were examined.
    pub packs: usize,
    /// Packs deleted because none of their chunks is referenced.
    pub deleted_packs: Vec<String>,
    /// Mostly-garbage packs whose live chunks were copied into new packs
    /// before they were deleted.
    pub repacked_packs: Vec<String>,
    /// The packs those copies went to.
    pub new_packs: Vec<String>,
    /// Packs without an index (left by a crash) that were deleted.
    pub orphaned_packs: Vec<String>,
    /// Packs left alone because they are younger than the grace period.
    pub young_packs: Vec<String>,
    /// Indexes whose pack is missing (left alone; `check` reports them).
    pub dangling_indexes: Vec<String>,
    /// Indexes that could not be read (their packs are left alone).
    pub unreadable_indexes: Vec<String>,
    /// Chunks removed from the store.
    pub removed_chunks: u64,
    /// Bytes freed: deleted packs and indexes less the new packs.
    pub freed_bytes: u64,
    /// Referenced chunks found in no index (damage: run `check`).
    pub missing_chunks: u64,
    /// Expired in-flight markers (crashed backups) that were removed.
    pub expired_markers: Vec<String>,
}

/// What makes chunks of two packs interchangeable: compression, level and
/// recipients.
type Codec = (String, Option<i32>, Vec<String>);

/// The fate of one pack.
enum Fate {
    Delete,
    Repack(Vec<IndexEntry>),
}

struct Doomed {
    id: String,
    header: PackHeader,
    entries: usize,
    bytes: u64,
    fate: Fate,
}

pub(crate) async fn collect(
    store: &dyn Store,
    catalog: &Catalog,
    tenant: &str,
    grace: Duration,
    dry_run: bool,
    opts: &DedupOptions,
) -> Result<GcReport> {
    validate_id(tenant)?;
    let mut report = GcReport {
        tenant: tenant.to_string(),
        dry_run,
        ..GcReport::default()
    };
    let mut lock = None;
    if !dry_run {
        match GcLock::acquire(store, tenant, opts, &mut report.expired_markers).await? {
            Ok(l) => lock = Some(l),
            Err(reason) => {
                tracing::info!(%tenant, %reason, "garbage collection backed off");
                report.skipped = Some(reason);
                return Ok(report);
            }
        }
    }
    let result = run(
        store,
        catalog,
        tenant,
        grace,
        opts,
        lock.as_mut(),
        &mut report,
    )
    .await;
    if let Some(lock) = lock {
        lock.release().await;
    }
    result.map(|()| report)
}

/// Reads every incremental backup's chunk list: the referenced chunk ids
/// per dedup group. A damaged list stops the GC (it cannot know what the
/// backup needs).
pub(crate) async fn references(
    store: &dyn Store,
    manifests: &[std::sync::Arc<Manifest>],
) -> Result<HashMap<Vec<String>, HashSet<ChunkId>>> {
    let mut referenced: HashMap<Vec<String>, HashSet<ChunkId>> = HashMap::new();
    for m in manifests {
        if m.backup_type != BackupType::Incremental {
            continue;
        }
        let group = group_of(m.encryption.as_ref().map(|e| e.recipients.as_slice()));
        let ids = referenced.entry(group).or_default();
        let key = m.artifact_key()?;
        let mut list = ChunkListReader::new(store.get(&key).await?.stream, key.as_str());
        while let Some((id, _)) = list.next_entry().await? {
            ids.insert(id);
        }
        if let Some(diff) = compare(&m.stored, &list.finish()) {
            return Err(Error::Integrity {
                what: key.to_string(),
                detail: format!("chunk list: {diff}"),
            });
        }
    }
    Ok(referenced)
}

async fn run(
    store: &dyn Store,
    catalog: &Catalog,
    tenant: &str,
    grace: Duration,
    opts: &DedupOptions,
    lock: Option<&mut GcLock<'_>>,
    report: &mut GcReport,
) -> Result<()> {
    let manifests = catalog.list_strict(&Filter::tenant(tenant)).await?;
    let referenced = references(store, &manifests).await?;
    report.backups = manifests
        .iter()
        .filter(|m| m.backup_type == BackupType::Incremental)
        .count();
    report.referenced_chunks = referenced.values().map(|s| s.len() as u64).sum();

    let listing = PackListing::load(store, tenant).await?;
    let now = Utc::now();
    let grace = crate::duration::to_chrono(grace, "gc grace")?;
    let young = |meta: &crate::store::ObjectMeta| now - meta.last_modified < grace;
    let loaded = load_indexes(
        store,
        tenant,
        listing.indexes.keys().cloned(),
        opts.concurrency.saturating_mul(2),
    )
    .await;
    // The first copy of a referenced chunk (in pack id order) is the one
    // kept; further copies (two backups that stored it at once, or a GC
    // killed between writing its new packs and deleting the old ones) are
    // garbage.
    let mut claimed: HashMap<Vec<String>, HashSet<ChunkId>> = HashMap::new();
    // Every chunk of the packs this pass leaves in place (young ones and
    // those below the repack threshold), per dedup group.
    let mut held: HashMap<Vec<String>, HashSet<ChunkId>> = HashMap::new();
    let mut doomed = Vec::new();
    for (id, index) in loaded {
        let index = match index {
            Ok(index) => index,
            Err(Error::NotFound { .. }) => continue,
            Err(e) => {
                tracing::warn!(pack = %id, error = %e, "unreadable pack index: leaving its pack alone");
                report.unreadable_indexes.push(id);
                continue;
            }
        };
        let Some(pack) = listing.packs.get(&id) else {
            report.dangling_indexes.push(id);
            continue;
        };
        report.packs += 1;
        let refs = referenced.get(&index.header.recipients);
        let claims = claimed.entry(index.header.recipients.clone()).or_default();
        let live: Vec<IndexEntry> = index
            .entries
            .iter()
            .filter(|e| refs.is_some_and(|r| r.contains(&e.id)) && claims.insert(e.id))
            .copied()
            .collect();
        let kept = |held: &mut HashMap<Vec<String>, HashSet<ChunkId>>| {
            held.entry(index.header.recipients.clone())
                .or_default()
                .extend(index.entries.iter().map(|e| e.id));
        };
        if young(pack) || listing.indexes.get(&id).is_some_and(young) {
            kept(&mut held);
            report.young_packs.push(id);
            continue;
        }
        let total: u64 = index.entries.iter().map(|e| u64::from(e.stored_len)).sum();
        let live_bytes: u64 = live.iter().map(|e| u64::from(e.stored_len)).sum();
        let fate = if live.is_empty() {
            Fate::Delete
        } else if (total - live_bytes) as f64 > opts.repack_threshold * total as f64 {
            Fate::Repack(live)
        } else {
            kept(&mut held);
            continue;
        };
        let bytes = pack.size + listing.indexes.get(&id).map_or(0, |m| m.size);
        doomed.push(Doomed {
            id,
            entries: index.entries.len(),
            header: index.header,
            bytes,
            fate,
        });
    }
    // A chunk a repacked pack claimed but that a pack left in place also
    // holds is not copied: that copy is kept instead. Otherwise the copy
    // would be a new duplicate, and the next GC (whichever of the two sorts
    // first claiming the chunk) would find garbage again. A repacked pack
    // left with nothing to copy is deleted. So one pass converges: what it
    // keeps claims at least as much next time, and its new packs hold no
    // chunk of another kept pack.
    for d in &mut doomed {
        let Fate::Repack(live) = &mut d.fate else {
            continue;
        };
        if let Some(held) = held.get(&d.header.recipients) {
            live.retain(|e| !held.contains(&e.id));
        }
        if live.is_empty() {
            d.fate = Fate::Delete;
        }
    }
    report.missing_chunks = referenced
        .iter()
        .map(|(group, ids)| {
            let claims = claimed.get(group);
            ids.iter()
                .filter(|id| claims.is_none_or(|c| !c.contains(id)))
                .count() as u64
        })
        .sum();
    let orphans: Vec<(String, u64)> = listing
        .packs
        .iter()
        .filter(|(id, _)| !listing.indexes.contains_key(*id))
        .filter_map(|(id, meta)| {
            if young(meta) {
                report.young_packs.push(id.clone());
                None
            } else {
                Some((id.clone(), meta.size))
            }
        })
        .collect();

    let Some(lock) = lock else {
        // Dry run: report the plan.
        for d in &doomed {
            match &d.fate {
                Fate::Delete => {
                    report.deleted_packs.push(d.id.clone());
                    report.removed_chunks += d.entries as u64;
                    report.freed_bytes += d.bytes;
                }
                Fate::Repack(live) => {
                    report.repacked_packs.push(d.id.clone());
                    report.removed_chunks += (d.entries - live.len()) as u64;
                }
            }
        }
        report.orphaned_packs = orphans.into_iter().map(|(id, _)| id).collect();
        return Ok(());
    };

    // Repack first (copies exist before any original goes), grouped by
    // codec so each new pack has one header.
    let mut groups: BTreeMap<Codec, Vec<&Doomed>> = BTreeMap::new();
    for d in &doomed {
        if matches!(d.fate, Fate::Repack(_)) {
            let h = &d.header;
            groups
                .entry((h.compression.clone(), h.level, h.recipients.clone()))
                .or_default()
                .push(d);
        }
    }
    for ((compression, level, recipients), packs) in groups {
        let template = PackHeader {
            pack: String::new(),
            size: 0,
            compression,
            level,
            recipients,
            created_at: now,
            written_by: "gc".into(),
        };
        let mut writer = PackWriter::new(store, tenant, template, opts.pack_size);
        let copied = repack(store, tenant, &packs, &mut writer).await;
        if let Err(e) = copied {
            writer.abort().await;
            return Err(e);
        }
        writer.finish_pack().await?;
        let new_bytes = writer.bytes;
        report.new_packs.extend(writer.written.iter().cloned());
        let mut old_bytes = 0;
        for d in packs {
            lock.before_delete(&mut report.expired_markers).await?;
            delete_pack(store, tenant, &d.id, true).await?;
            let Fate::Repack(live) = &d.fate else {
                unreachable!("grouped repacks only")
            };
            report.removed_chunks += (d.entries - live.len()) as u64;
            report.repacked_packs.push(d.id.clone());
            old_bytes += d.bytes;
        }
        report.freed_bytes += old_bytes.saturating_sub(new_bytes);
    }
    for d in doomed.iter().filter(|d| matches!(d.fate, Fate::Delete)) {
        lock.before_delete(&mut report.expired_markers).await?;
        delete_pack(store, tenant, &d.id, true).await?;
        tracing::info!(%tenant, pack = %d.id, "deleted unreferenced pack");
        report.deleted_packs.push(d.id.clone());
        report.removed_chunks += d.entries as u64;
        report.freed_bytes += d.bytes;
    }
    for (id, size) in orphans {
        lock.before_delete(&mut report.expired_markers).await?;
        delete_pack(store, tenant, &id, false).await?;
        report.orphaned_packs.push(id);
        report.freed_bytes += size;
    }
    Ok(())
}

/// Copies the live chunks of `packs` into `writer`, verbatim (encrypted
/// chunks stay encrypted: no key is needed).
async fn repack(
    store: &dyn Store,
    tenant: &str,
    packs: &[&Doomed],
    writer: &mut PackWriter<'_>,
) -> Result<()> {
    for d in packs {
        let Fate::Repack(live) = &d.fate else {
            continue;
        };
        let key = pack_key(tenant, &d.id)?;
        let data = read_whole(store, &key, d.header.size).await?;
        for e in live {
            let blob = data
                .get(e.offset as usize..e.end() as usize)
                .ok_or_else(|| Error::Integrity {
                    what: key.to_string(),
                    detail: format!("chunk {} lies past the end of the pack", e.id),
                })?;
            writer.append(e.id, blob, e.raw_len).await?;
        }
    }
    Ok(())
}

/// Reads a pack into memory, checking its size and header.
pub(crate) async fn read_whole(store: &dyn Store, key: &Key, expected: u64) -> Result<Bytes> {
    let got = store.get(key).await?;
    if got.meta.size != expected {
        return Err(Error::Integrity {
            what: key.to_string(),
            detail: format!("{} bytes, its index records {expected}", got.meta.size),
        });
    }
    let mut buf = BytesMut::with_capacity(expected as usize);
    let mut stream = got.stream;
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk?);
        if buf.len() as u64 > expected {
            break;
        }
    }
    if buf.len() as u64 != expected {
        return Err(Error::Integrity {
            what: key.to_string(),
            detail: format!("read {} bytes, its index records {expected}", buf.len()),
        });
    }
    check_pack_header(key.as_str(), &buf)?;
    Ok(buf.freeze())
}

/// Deletes a pack's index first (so no reader resolves a chunk into it),
/// then the pack.
async fn delete_pack(store: &dyn Store, tenant: &str, id: &str, with_index: bool) -> Result<()> {
    if with_index {
        store.delete(&index_key(tenant, id)?).await?;
    }
    store.delete(&pack_key(tenant, id)?).await
}
