//! A garbage collection killed at any point: once the grace has passed,
//! one full gc leaves nothing for a following gc to do, and every listed
//! backup still verifies and restores.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use backup_core::prelude::*;
use backup_core::store::StoreExt;
use backup_core::testing::{RecordingTarget, ScriptedSource, ascending_pack_ids, pattern};
use backup_core::{
    dedup::DedupOptions, dedup::GcReport, key::Key, memory::InMemoryStore, source::DumpOptions,
    source::DumpStream, source::SourceInfo, source::Versions, store::GetResult, store::ObjectMeta,
    store::PutOptions, store::Upload,
};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

/// A store that "dies" once `budget` changes (puts, completed uploads,
/// deletes) have been made: every later operation fails, as if the process
/// had been killed. A negative budget never dies (and counts the changes).
#[derive(Debug)]
struct Killable {
    inner: Arc<dyn Store>,
    budget: Arc<AtomicI64>,
    changes: Arc<AtomicI64>,
}

impl Killable {
    fn new(inner: Arc<dyn Store>, budget: i64) -> Self {
        Killable {
            inner,
            budget: Arc::new(AtomicI64::new(budget)),
            changes: Arc::new(AtomicI64::new(0)),
        }
    }
}

fn killed(what: &str) -> Error {
    Error::Store {
        store: "killable".into(),
        retryable: false,
        source: format!("killed before {what}").into(),
    }
}

/// Whether the store is dead (no change left in the budget).
fn dead(budget: &AtomicI64) -> bool {
    budget.load(Ordering::SeqCst) == 0
}

/// Takes one change from the budget; `false` if none is left.
fn spend(budget: &AtomicI64, changes: &AtomicI64) -> bool {
    if dead(budget) {
        return false;
    }
    budget.fetch_sub(1, Ordering::SeqCst);
    changes.fetch_add(1, Ordering::SeqCst);
    true
}

impl fmt::Display for Killable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "killable({})", self.inner)
    }
}

#[async_trait]
impl Store for Killable {
    async fn put(&self, key: &Key, data: Bytes, opts: PutOptions) -> Result<ObjectMeta> {
        if !spend(&self.budget, &self.changes) {
            return Err(killed(key.as_str()));
        }
        self.inner.put(key, data, opts).await
    }
    async fn put_stream(&self, key: &Key) -> Result<Box<dyn Upload>> {
        if dead(&self.budget) {
            return Err(killed(key.as_str()));
        }
        Ok(Box::new(KillableUpload {
            inner: self.inner.put_stream(key).await?,
            budget: Arc::clone(&self.budget),
            changes: Arc::clone(&self.changes),
        }))
    }
    async fn get(&self, key: &Key) -> Result<GetResult> {
        if dead(&self.budget) {
            return Err(killed(key.as_str()));
        }
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Bytes> {
        if dead(&self.budget) {
            return Err(killed(key.as_str()));
        }
        self.inner.get_range(key, range).await
    }
    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        if dead(&self.budget) {
            return Err(killed(key.as_str()));
        }
        self.inner.head(key).await
    }
    fn list(&self, prefix: Option<&Key>) -> BoxStream<'static, Result<ObjectMeta>> {
        if dead(&self.budget) {
            return futures::stream::iter([Err(killed("listing"))]).boxed();
        }
        self.inner.list(prefix)
    }
    async fn delete(&self, key: &Key) -> Result<()> {
        if !spend(&self.budget, &self.changes) {
            return Err(killed(key.as_str()));
        }
        self.inner.delete(key).await
    }
    async fn delete_many(&self, keys: &[Key]) -> Result<()> {
        for key in keys {
            self.delete(key).await?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct KillableUpload {
    inner: Box<dyn Upload>,
    budget: Arc<AtomicI64>,
    changes: Arc<AtomicI64>,
}

#[async_trait]
impl Upload for KillableUpload {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        if dead(&self.budget) {
            return Err(killed("a write"));
        }
        self.inner.write(data).await
    }
    async fn complete(self: Box<Self>) -> Result<ObjectMeta> {
        if !spend(&self.budget, &self.changes) {
            return Err(killed("completing an upload"));
        }
        self.inner.complete().await
    }
    async fn abort(self: Box<Self>) -> Result<()> {
        if dead(&self.budget) {
            // A killed process aborts nothing.
            return Err(killed("aborting an upload"));
        }
        self.inner.abort().await
    }
}

fn options() -> DedupOptions {
    DedupOptions::default()
        .chunk_sizes(2 * 1024, 8 * 1024, 32 * 1024)
        .pack_size(48 * 1024)
        .gc_lock_settle(Duration::from_millis(1))
}

fn engine(store: Arc<dyn Store>) -> Engine {
    Engine::new(store).with_dedup(options())
}

/// Text-like rows; each version rewrites about half of the blocks of the
/// one before, so a version's new chunks are partly kept by the next.
#[derive(Debug, Clone)]
struct Rows(Vec<u8>);

impl Rows {
    fn new(n: usize, version: usize) -> Self {
        let noise = pattern(n * 4, 7);
        let mut out = String::new();
        for i in 0..n {
            let block = i / 200;
            // The last version up to `version` that rewrote this block.
            let v = (1..=version)
                .rev()
                .find(|v| (block * 31 + v * 17 + block * v * 7) % 5 < 2)
                .unwrap_or(0);
            out.push_str(&format!(
                "{i}\t{v}\taccount {}\t{:02x}{:02x}{:02x}\n",
                i * 7,
                noise[i * 4],
                noise[i * 4 + 1],
                noise[i * 4 + 2 + v % 2]
            ));
        }
        Rows(out.into_bytes())
    }
}

#[async_trait]
impl DumpSource for Rows {
    fn info(&self) -> SourceInfo {
        ScriptedSource::ok(0).info()
    }
    async fn dump(&self, _: &DumpOptions) -> Result<DumpStream> {
        let data = Bytes::from(self.0.clone());
        let pieces: Vec<Result<Bytes>> = (0..data.len())
            .step_by(50_000)
            .map(|i| Ok(data.slice(i..(i + 50_000).min(data.len()))))
            .collect();
        Ok(DumpStream::new(
            Box::pin(futures::stream::iter(pieces)),
            Versions::default(),
        ))
    }
}

/// A chunk store with several incremental backups, some deleted, so a gc
/// has packs to delete and packs to repack. Returns the kept backups.
async fn base(store: &Arc<InMemoryStore>) -> Vec<(String, Vec<u8>)> {
    let engine = engine(store.clone() as Arc<dyn Store>);
    let request = BackupRequest::new("rows").backup_type(BackupType::Incremental);
    let mut kept = Vec::new();
    for version in 0..5 {
        let rows = Rows::new(12_000, version);
        let m = engine.backup(&rows, &request).await.unwrap();
        if version % 2 == 0 {
            engine.catalog().delete(&m.id).await.unwrap();
        } else {
            kept.push((m.id, rows.0));
        }
    }
    kept
}

/// A copy of every object of `from`.
async fn copy(from: &InMemoryStore) -> Arc<InMemoryStore> {
    let to = Arc::new(InMemoryStore::new());
    for meta in from.list_all(None).await.unwrap() {
        let data = from.get_bytes(&meta.key).await.unwrap();
        to.put(&meta.key, data, PutOptions::default())
            .await
            .unwrap();
    }
    to
}

fn nothing_to_do(report: &GcReport) -> bool {
    report.deleted_packs.is_empty()
        && report.repacked_packs.is_empty()
        && report.orphaned_packs.is_empty()
        && report.removed_chunks == 0
        && report.missing_chunks == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gc_after_a_gc_killed_anywhere_leaves_nothing_to_do() {
    let mut failures = Vec::new();
    // The GC keeps the first copy of a chunk in pack id order. Ascending
    // ids (new packs sort last) give the same order on every run, the one
    // that once left a duplicate behind; random ids (as in production) give
    // a different order each round.
    for (ascending, rounds) in [(true, 1), (false, 3)] {
        ascending_pack_ids(ascending);
        let original = Arc::new(InMemoryStore::new());
        let kept = base(&original).await;

        // How many changes an uninterrupted gc makes, and that it has both
        // deletions and repacks to do.
        let counted = Arc::new(Killable::new(copy(&original).await as Arc<dyn Store>, -1));
        let full = engine(counted.clone() as Arc<dyn Store>)
            .gc("default", Duration::ZERO, false)
            .await
            .unwrap();
        assert!(
            !full.deleted_packs.is_empty() && !full.repacked_packs.is_empty(),
            "{full:?}"
        );
        let changes = counted.changes.load(Ordering::SeqCst);

        for round in 0..rounds {
            for kill_at in 0..=changes {
                let store = copy(&original).await;
                let dying = Arc::new(Killable::new(store.clone() as Arc<dyn Store>, kill_at));
                let _ = engine(dying as Arc<dyn Store>)
                    .gc("default", Duration::ZERO, false)
                    .await;
                // The killed gc's marker is left; it would expire.
                let _ = store
                    .delete(&Key::new("default/_chunks/gc-running").unwrap())
                    .await;

                let plain = engine(store.clone() as Arc<dyn Store>);
                let settle = plain.gc("default", Duration::ZERO, false).await.unwrap();
                assert_eq!(settle.skipped, None);
                let plan = plain.gc("default", Duration::ZERO, true).await.unwrap();
                if !nothing_to_do(&plan) {
                    failures.push(format!(
                        "ascending ids {ascending}, round {round}, killed after {kill_at} \
                         of {changes} changes: settle {settle:?}\nthen planned {plan:?}"
                    ));
                }
                for (id, content) in &kept {
                    plain.verify(id).await.unwrap();
                    let target = RecordingTarget::default();
                    plain
                        .restore(id, &target, &RestoreOptions::default())
                        .await
                        .unwrap();
                    assert!(
                        target.recording().committed.expect("committed") == *content,
                        "backup {id} restored differently after a kill at {kill_at}"
                    );
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
