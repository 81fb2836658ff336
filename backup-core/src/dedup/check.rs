//! `check`: reads a whole tenant (or store) and reports what is missing,
//! corrupt or orphaned, changing nothing.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::codec::{ChunkDecoder, group_of};
use super::format::{ChunkId, ChunkListReader, PackIndex};
use super::gc::read_whole;
use super::packs::{PackListing, load_indexes, pack_key};
use crate::catalog::{Catalog, is_reserved};
use crate::crypto::AgeIdentities;
use crate::error::{Error, Result};
use crate::key::{Key, validate_id};
use crate::manifest::{BackupType, Layout, Manifest};
use crate::pipeline::{StoredHasher, compare};
use crate::store::Store;

/// A referenced chunk the store does not have (in no index, or its pack is
/// gone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingChunk {
    /// Tenant.
    pub tenant: String,
    /// Chunk id (hex SHA-256 of its plaintext).
    pub chunk: String,
}

/// A chunk whose stored bytes do not decode to its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorruptChunk {
    /// Tenant.
    pub tenant: String,
    /// Chunk id.
    pub chunk: String,
    /// The pack holding it.
    pub pack: String,
    /// What is wrong.
    pub detail: String,
}

/// An object that is damaged or unreadable: a manifest, a chunk list, a
/// pack index, a pack, or a full backup's artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The object's key.
    pub key: String,
    /// What is wrong.
    pub detail: String,
}

/// What [`Engine::check`](crate::Engine::check) found. Missing, corrupt
/// and dangling entries are damage ([`CheckReport::is_ok`] is false);
/// orphans, stale markers, temporary objects and unreferenced chunks are
/// garbage for `sweep` and `gc` ([`CheckReport::has_garbage`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CheckReport {
    /// Tenants checked.
    pub tenants: Vec<String>,
    /// Backups checked (full and incremental).
    pub backups: usize,
    /// Chunks read and verified against their ids.
    pub chunks_checked: u64,
    /// Stored bytes read (packs and full artifacts).
    pub bytes_checked: u64,
    /// Referenced chunks the store lacks.
    pub missing_chunks: Vec<MissingChunk>,
    /// Chunks whose bytes do not match their id.
    pub corrupt_chunks: Vec<CorruptChunk>,
    /// Damaged or unreadable objects.
    pub corrupt_objects: Vec<Problem>,
    /// Backups that cannot be restored because of the above.
    pub damaged_backups: Vec<String>,
    /// Pack indexes whose pack is missing.
    pub dangling_indexes: Vec<String>,
    /// Packs without an index (a crashed backup or GC; `gc` removes them).
    pub orphaned_packs: Vec<String>,
    /// Indexed chunks no backup references (`gc` removes them).
    pub unreferenced_chunks: u64,
    /// Their stored bytes.
    pub unreferenced_bytes: u64,
    /// Artifacts without a manifest whose backup no longer runs (`sweep`
    /// removes them).
    pub orphaned_artifacts: Vec<String>,
    /// Artifacts without a manifest yet whose backup is still running (it
    /// holds a fresh in-progress marker): not garbage.
    #[serde(default)]
    pub in_progress: Vec<String>,
    /// In-progress markers (`_inflight/…`, `_chunks/inflight/…`) of
    /// backups that stopped without removing them (`sweep` removes them).
    #[serde(default)]
    pub stale_markers: Vec<String>,
    /// The store's temporary objects: uploads in progress, or killed with
    /// their process (`sweep` removes those older than an hour).
    #[serde(default)]
    pub temporary_objects: Vec<crate::store::TemporaryObject>,
    /// Encrypted chunks that could only be checked for presence (no
    /// identity was supplied).
    pub unverified_chunks: u64,
    /// Backups whose parent (a link of the chain they restore with) is
    /// missing or damaged: `<id>: parent <parent id> is missing|damaged`.
    /// They are in `damaged_backups` too.
    #[serde(default)]
    pub broken_chains: Vec<String>,
}

impl CheckReport {
    /// Whether every backup is complete and intact.
    pub fn is_ok(&self) -> bool {
        self.missing_chunks.is_empty()
            && self.corrupt_chunks.is_empty()
            && self.corrupt_objects.is_empty()
            && self.dangling_indexes.is_empty()
            && self.damaged_backups.is_empty()
    }

    /// Whether anything is left for `sweep` or `gc` to remove (temporary
    /// objects count even while young: they may be uploads in progress).
    pub fn has_garbage(&self) -> bool {
        !self.orphaned_packs.is_empty()
            || self.unreferenced_chunks > 0
            || !self.orphaned_artifacts.is_empty()
            || !self.stale_markers.is_empty()
            || !self.temporary_objects.is_empty()
    }
}

/// Packs read at once.
const PACKS_AT_ONCE: usize = 2;

pub(crate) async fn check(
    store: &Arc<dyn Store>,
    catalog: &Catalog,
    tenant: Option<&str>,
    identities: &AgeIdentities,
) -> Result<CheckReport> {
    let tenants: Vec<String> = match tenant {
        Some(t) => {
            validate_id(t)?;
            vec![t.to_string()]
        }
        None => {
            let mut names = BTreeSet::new();
            let mut listing = store.list(None);
            while let Some(meta) = listing.next().await {
                let meta = meta?;
                let first = meta.key.segments().next().unwrap_or_default();
                if !first.starts_with('_') && meta.key.segments().count() > 1 {
                    names.insert(first.to_string());
                }
            }
            names.into_iter().collect()
        }
    };
    let mut report = CheckReport::default();
    for t in &tenants {
        check_tenant(store, catalog, t, identities, &mut report).await?;
    }
    report.tenants = tenants;
    Ok(report)
}

async fn check_tenant(
    store: &Arc<dyn Store>,
    catalog: &Catalog,
    tenant: &str,
    identities: &AgeIdentities,
    report: &mut CheckReport,
) -> Result<()> {
    let prefix = Key::new(tenant)?;
    // Manifests, full artifacts and chunk lists.
    let mut manifests: Vec<Arc<Manifest>> = Vec::new();
    let mut listing = store.list(Some(&prefix));
    let mut keys = Vec::new();
    while let Some(meta) = listing.next().await {
        let meta = meta?;
        if !is_reserved(&meta.key) && Layout::from_manifest_key(meta.key.as_str()).is_some() {
            keys.push(meta.key);
        }
    }
    for key in keys {
        match catalog.load_key(&key).await {
            Ok(m) => manifests.push(m),
            Err(e) => report.corrupt_objects.push(Problem {
                key: key.to_string(),
                detail: e.to_string(),
            }),
        }
    }
    report.backups += manifests.len();
    // Referenced chunk ids per group, with the backups using them.
    let mut referenced: HashMap<Vec<String>, HashMap<ChunkId, Vec<u32>>> = HashMap::new();
    for (n, m) in manifests.iter().enumerate() {
        let artifact = m.artifact_key()?;
        if m.backup_type != BackupType::Incremental {
            match verify_artifact(store.as_ref(), m, &artifact).await {
                Ok(size) => report.bytes_checked += size,
                Err(detail) => {
                    report.corrupt_objects.push(Problem {
                        key: artifact.to_string(),
                        detail,
                    });
                    report.damaged_backups.push(m.id.clone());
                }
            }
            continue;
        }
        let group = group_of(m.encryption.as_ref().map(|e| e.recipients.as_slice()));
        let refs = referenced.entry(group).or_default();
        let read = async {
            let mut list =
                ChunkListReader::new(store.get(&artifact).await?.stream, artifact.as_str());
            let mut ids = Vec::new();
            while let Some((id, _)) = list.next_entry().await? {
                ids.push(id);
            }
            match compare(&m.stored, &list.finish()) {
                Some(diff) => Err(Error::Integrity {
                    what: artifact.to_string(),
                    detail: format!("chunk list: {diff}"),
                }),
                None => Ok(ids),
            }
        };
        match read.await {
            Ok(ids) => {
                for id in ids {
                    let users = refs.entry(id).or_default();
                    if users.last() != Some(&(n as u32)) {
                        users.push(n as u32);
                    }
                }
            }
            Err(e) => {
                report.corrupt_objects.push(Problem {
                    key: artifact.to_string(),
                    detail: e.to_string(),
                });
                report.damaged_backups.push(m.id.clone());
            }
        }
    }

    // Packs and their indexes.
    let packs = PackListing::load(store.as_ref(), tenant).await?;
    for stray in &packs.strays {
        report.corrupt_objects.push(Problem {
            key: stray.key.to_string(),
            detail: "not a pack or pack index".into(),
        });
    }
    for id in packs
        .packs
        .keys()
        .filter(|id| !packs.indexes.contains_key(*id))
    {
        report
            .orphaned_packs
            .push(pack_key(tenant, id)?.to_string());
    }
    let mut indexes: Vec<(String, PackIndex)> = Vec::new();
    for (id, index) in load_indexes(store.as_ref(), tenant, packs.indexes.keys().cloned(), 8).await
    {
        match index {
            Ok(index) if packs.packs.contains_key(&id) => indexes.push((id, index)),
            Ok(_) => report
                .dangling_indexes
                .push(super::packs::index_key(tenant, &id)?.to_string()),
            Err(e) => report.corrupt_objects.push(Problem {
                key: super::packs::index_key(tenant, &id)?.to_string(),
                detail: e.to_string(),
            }),
        }
    }

    // Read every pack and verify every chunk.
    let mut present: HashMap<Vec<String>, HashSet<ChunkId>> = HashMap::new();
    let mut corrupt: Vec<(Vec<String>, ChunkId)> = Vec::new();
    let results = futures::stream::iter(indexes)
        .map(|(id, index)| {
            read_pack(
                Arc::clone(store),
                tenant.to_string(),
                id,
                index,
                identities.clone(),
            )
        })
        .buffered(PACKS_AT_ONCE)
        .collect::<Vec<_>>()
        .await;
    for r in results {
        let group = r.group;
        let refs = referenced.get(&group);
        let have = present.entry(group.clone()).or_default();
        if let Some(problem) = r.problem {
            report.corrupt_objects.push(problem);
        }
        report.bytes_checked += r.bytes;
        report.unverified_chunks += r.unverified;
        for (entry, verdict) in r.entries {
            let used = refs.is_some_and(|r| r.contains_key(&entry.id));
            if !used {
                report.unreferenced_chunks += 1;
                report.unreferenced_bytes += u64::from(entry.stored_len);
            }
            match verdict {
                Ok(verified) => {
                    report.chunks_checked += u64::from(verified);
                    have.insert(entry.id);
                }
                Err(detail) => {
                    if used {
                        corrupt.push((group.clone(), entry.id));
                    }
                    report.corrupt_chunks.push(CorruptChunk {
                        tenant: tenant.to_string(),
                        chunk: entry.id.hex(),
                        pack: r.pack.clone(),
                        detail,
                    });
                }
            }
        }
    }
    // A backup is damaged when a chunk it needs has no intact copy.
    let mut damaged: BTreeSet<u32> = BTreeSet::new();
    for (group, refs) in &referenced {
        let have = present.get(group);
        for (id, users) in refs {
            if have.is_some_and(|h| h.contains(id)) {
                continue;
            }
            damaged.extend(users.iter().copied());
            if !corrupt.iter().any(|(g, c)| g == group && c == id) {
                report.missing_chunks.push(MissingChunk {
                    tenant: tenant.to_string(),
                    chunk: id.hex(),
                });
            }
        }
    }
    report.damaged_backups.extend(
        damaged
            .into_iter()
            .map(|n| manifests[n as usize].id.clone()),
    );
    broken_chains(&manifests, report);
    report.orphaned_artifacts.extend(
        catalog
            .orphans(Some(&prefix))
            .await?
            .into_iter()
            .map(|o| o.key.to_string()),
    );
    Ok(())
}

/// Backups of one tenant whose parent is missing or damaged, down each
/// chain: they are damaged too.
fn broken_chains(manifests: &[Arc<Manifest>], report: &mut CheckReport) {
    let listed: HashSet<&str> = manifests.iter().map(|m| m.id.as_str()).collect();
    let mut damaged: HashSet<String> = report.damaged_backups.iter().cloned().collect();
    loop {
        let mut found = false;
        for m in manifests {
            let Some(parent) = &m.parent else { continue };
            let why = if !listed.contains(parent.as_str()) {
                "missing"
            } else if damaged.contains(parent) {
                "damaged"
            } else {
                continue;
            };
            if damaged.insert(m.id.clone()) {
                report
                    .broken_chains
                    .push(format!("{}: parent {parent} is {why}", m.id));
                report.damaged_backups.push(m.id.clone());
                found = true;
            }
        }
        if !found {
            return;
        }
    }
}

/// Stored digests of a full backup's artifact; `Err` describes damage.
async fn verify_artifact(
    store: &dyn Store,
    m: &Manifest,
    key: &Key,
) -> std::result::Result<u64, String> {
    let got = store.get(key).await.map_err(|e| e.to_string())?;
    let mut stream = got.stream;
    let mut hasher = StoredHasher::new();
    while let Some(chunk) = stream.next().await {
        hasher.update(&chunk.map_err(|e| e.to_string())?).await;
    }
    let digests = hasher.finish().await;
    match compare(&m.stored, &digests) {
        Some(diff) => Err(format!("stored bytes: {diff}")),
        None => Ok(digests.size),
    }
}

/// One pack's verdicts: per entry `Ok(verified)` (false: encrypted and no
/// key, present only) or `Err(detail)`.
struct PackResult {
    pack: String,
    group: Vec<String>,
    bytes: u64,
    unverified: u64,
    problem: Option<Problem>,
    entries: Vec<(super::format::IndexEntry, std::result::Result<bool, String>)>,
}

async fn read_pack(
    store: Arc<dyn Store>,
    tenant: String,
    id: String,
    index: PackIndex,
    identities: AgeIdentities,
) -> PackResult {
    let key = match pack_key(&tenant, &id) {
        Ok(key) => key,
        Err(e) => return failed(id, index, e.to_string()),
    };
    let data = match read_whole(store.as_ref(), &key, index.header.size).await {
        Ok(data) => data,
        Err(e) => {
            let mut r = failed(id, index, e.to_string());
            r.problem = Some(Problem {
                key: key.to_string(),
                detail: e.to_string(),
            });
            return r;
        }
    };
    let encrypted = !index.header.recipients.is_empty();
    let can_decrypt = !encrypted || !identities.is_empty();
    let decoder = ChunkDecoder::for_pack(&index.header, Some(&identities).filter(|_| can_decrypt));
    let bytes = data.len() as u64;
    let group = index.header.recipients.clone();
    let pack = id.clone();
    let entries = tokio::task::spawn_blocking(move || {
        index
            .entries
            .iter()
            .map(|e| {
                let verdict = match (&decoder, can_decrypt) {
                    (_, false) => Ok(false),
                    (Err(err), true) => Err(err.to_string()),
                    (Ok(decoder), true) => match data.get(e.offset as usize..e.end() as usize) {
                        None => Err("lies past the end of the pack".into()),
                        Some(blob) => decoder
                            .decode(blob, &e.id, e.raw_len)
                            .map(|_| true)
                            .map_err(|err| err.to_string()),
                    },
                };
                (*e, verdict)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let unverified = entries.iter().filter(|(_, v)| v == &Ok(false)).count() as u64;
    PackResult {
        pack,
        group,
        bytes,
        unverified,
        problem: None,
        entries,
    }
}

fn failed(id: String, index: PackIndex, detail: String) -> PackResult {
    PackResult {
        pack: id,
        group: index.header.recipients.clone(),
        bytes: 0,
        unverified: 0,
        problem: None,
        entries: index
            .entries
            .into_iter()
            .map(|e| (e, Err(format!("pack unreadable: {detail}"))))
            .collect(),
    }
}
