//! Regression tests for the integrity findings of issue #10: sweep racing a
//! commit, deletes racing reads, empty dumps, out-of-range durations and
//! restart storms.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use backup_core::prelude::*;
use backup_core::store::StoreExt;
use backup_core::testing::{
    RecordingTarget, ScriptedSource, assert_no_backup_listed, assert_nothing_left,
};
use backup_core::{
    clock::ManualClock, duration::parse_duration, key::Key, manifest::MANIFEST_SUFFIX,
    memory::InMemoryStore, pipeline::PipelineOptions, scheduler::Shutdown, source::DumpOptions,
    source::DumpStream, source::SourceInfo, source::Versions, store::GetResult, store::ObjectMeta,
    store::PutOptions, store::Upload,
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::{Notify, Semaphore};

/// Which call a [`GateStore`] holds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Put,
    Get,
}

/// A store that stops the first `op` on a key ending in `suffix` until the
/// test lets it go: the test can then run something "in between"
/// deterministically.
#[derive(Debug)]
struct GateStore {
    inner: InMemoryStore,
    op: Op,
    suffix: &'static str,
    armed: AtomicBool,
    reached: Notify,
    release: Semaphore,
}

impl GateStore {
    fn new(op: Op, suffix: &'static str) -> Arc<Self> {
        Arc::new(GateStore {
            inner: InMemoryStore::new(),
            op,
            suffix,
            armed: AtomicBool::new(true),
            reached: Notify::new(),
            release: Semaphore::new(0),
        })
    }

    async fn gate(&self, op: Op, key: &Key) {
        if op == self.op
            && key.as_str().ends_with(self.suffix)
            && self.armed.swap(false, Ordering::SeqCst)
        {
            self.reached.notify_one();
            self.release.acquire().await.unwrap().forget();
        }
    }

    fn open(&self) {
        self.release.add_permits(1);
    }
}

impl std::fmt::Display for GateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("gate")
    }
}

#[async_trait]
impl Store for GateStore {
    async fn put(&self, key: &Key, data: Bytes, opts: PutOptions) -> Result<ObjectMeta> {
        self.gate(Op::Put, key).await;
        self.inner.put(key, data, opts).await
    }
    async fn put_stream(&self, key: &Key) -> Result<Box<dyn Upload>> {
        self.inner.put_stream(key).await
    }
    async fn get(&self, key: &Key) -> Result<GetResult> {
        self.gate(Op::Get, key).await;
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
}

fn engine(store: &Arc<GateStore>) -> Engine {
    Engine::new(Arc::clone(store) as Arc<dyn Store>)
}

/// Finding 1: a sweep with no grace between the artifact's upload and the
/// manifest's write deleted the artifact of a backup that then committed:
/// listed, with no data.
#[tokio::test]
async fn sweep_between_upload_and_manifest_never_breaks_a_commit() {
    for backup_type in [BackupType::Full, BackupType::Incremental] {
        let store = GateStore::new(Op::Put, MANIFEST_SUFFIX);
        let engine = engine(&store);
        let running = {
            let engine = engine.clone();
            tokio::spawn(async move {
                engine
                    .backup(
                        &ScriptedSource::ok(300_000),
                        &BackupRequest::new("db").backup_type(backup_type),
                    )
                    .await
            })
        };
        store.reached.notified().await;
        // The artifact is complete, the manifest not written yet.
        let report = engine
            .catalog()
            .sweep(Duration::ZERO, Utc::now())
            .await
            .unwrap();
        assert!(report.removed.is_empty(), "{backup_type:?}: {report:?}");
        store.open();
        let manifest = running.await.unwrap().unwrap();
        let listed = engine.catalog().list(&Filter::all()).await.unwrap();
        assert_eq!(listed.len(), 1);
        engine.verify(&manifest.id).await.unwrap();
    }
}

/// A backup whose marker went stale (no refresh for longer than the fixed
/// minimum age) can lose its artifact to a sweep; it must then fail instead
/// of committing a manifest without data.
#[tokio::test]
async fn a_backup_whose_artifact_vanished_does_not_commit() {
    let store = GateStore::new(Op::Put, MANIFEST_SUFFIX);
    let engine = engine(&store);
    let running = {
        let engine = engine.clone();
        tokio::spawn(async move {
            engine
                .backup(&ScriptedSource::ok(300_000), &BackupRequest::new("db"))
                .await
        })
    };
    store.reached.notified().await;
    // Two days later, as far as the sweep can tell.
    let later = Utc::now() + chrono::Duration::days(2);
    let report = engine.catalog().sweep(Duration::ZERO, later).await.unwrap();
    assert_eq!(report.removed.len(), 1, "{report:?}");
    store.open();
    let err = running.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("vanished"), "{err}");
    assert_no_backup_listed(&engine).await;
}

/// Deleting a backup while it is being verified or restored gives a clear
/// `NotFound` naming the backup, never a half state.
#[tokio::test]
async fn delete_racing_a_read_is_a_clear_not_found() {
    for restore in [false, true] {
        let store = GateStore::new(Op::Get, ".bin.zst");
        let engine = engine(&store);
        let m = engine
            .backup(&ScriptedSource::ok(100_000), &BackupRequest::new("db"))
            .await
            .unwrap();
        let reading = {
            let (engine, id) = (engine.clone(), m.id.clone());
            tokio::spawn(async move {
                if restore {
                    let target = RecordingTarget::default();
                    engine
                        .restore(&id, &target, &RestoreOptions::default())
                        .await
                        .map(|_| ())
                } else {
                    engine.verify(&id).await.map(|_| ())
                }
            })
        };
        store.reached.notified().await;
        engine.catalog().delete(&m.id).await.unwrap();
        store.open();
        let err = reading.await.unwrap().unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        let shown = err.to_string();
        assert!(
            shown.contains(&m.id) && shown.contains("deleted"),
            "restore {restore}: {shown}"
        );
    }
}

/// Finding 5: a dump that ends cleanly with no bytes at all is not a
/// backup.
#[tokio::test]
async fn empty_dumps_are_refused() {
    for backup_type in [BackupType::Full, BackupType::Incremental] {
        let store = Arc::new(InMemoryStore::new());
        let engine = Engine::new(store.clone());
        let err = engine
            .backup(
                &ScriptedSource::ok(0),
                &BackupRequest::new("db").backup_type(backup_type),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("empty"), "{backup_type:?}: {err}");
        assert_nothing_left(&engine, &format!("{backup_type:?}")).await;
    }
}

/// Finding 3: `307445734561825861m` is 2^64 + 44 seconds; it wrapped to 44 s.
#[test]
fn durations_out_of_range_are_refused_by_value() {
    for text in [
        "307445734561825861m",
        "18446744073709551615s",
        "999999999999y",
    ] {
        let err = parse_duration(text).unwrap_err();
        assert!(err.to_string().contains(text), "{text}: {err}");
    }
    assert_eq!(
        parse_duration("1000y").unwrap().as_secs(),
        1000 * 365 * 86_400
    );
}

#[tokio::test]
async fn cleanups_refuse_graces_they_cannot_represent() {
    let engine = Engine::new(Arc::new(InMemoryStore::new()));
    let orphan =
        Key::new("default/db/2025/01/manual-bin-synthetic-20250101T000000Z-0000abcd.bin.zst")
            .unwrap();
    engine
        .store()
        .put(&orphan, Bytes::from_static(b"x"), PutOptions::default())
        .await
        .unwrap();
    let now = Utc::now() + chrono::Duration::minutes(10);
    let err = engine
        .catalog()
        .sweep(Duration::MAX, now)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("grace"), "{err}");
    assert!(
        engine.store().exists(&orphan).await.unwrap(),
        "nothing deleted"
    );
    let err = engine
        .gc("default", Duration::MAX, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("grace"), "{err}");
}

/// A job that counts its runs and remembers nothing else.
fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Finding 4: a host registering a job at every start without a last run
/// made a backup at every start. The store's run record says the trigger
/// already ran: one backup per missed trigger, however often it restarts.
#[tokio::test]
async fn restarts_catch_up_once_per_trigger() {
    let store = Arc::new(InMemoryStore::new());
    let events = EventBus::new(1024);
    let engine = Engine::new(store.clone()).with_events(events.clone());
    let clock = ManualClock::new(utc("2025-06-10T10:00:00Z"));
    let job = Arc::new(BackupJob {
        engine: engine.clone(),
        source: Arc::new(ScriptedSource::ok(10_000)),
        request: BackupRequest::new("sales"),
        retention: Vec::new(),
        keep_newest_verified: true,
    });
    let mut starts = 0;
    let mut start = |at: &str| {
        clock.set(utc(at));
        starts += 1;
        let scheduler = Scheduler::start(
            SchedulerConfig::default(),
            Arc::new(clock.clone()),
            events.clone(),
        );
        let mut rx = events.subscribe();
        scheduler
            .upsert(JobSpec::new(
                "sales",
                "0 2 * * *".parse().unwrap(),
                job.clone(),
            ))
            .unwrap();
        async move {
            // Each start either backs up or says why it does not.
            let outcome = tokio::time::timeout(Duration::from_secs(120), async {
                loop {
                    match rx.recv().await.unwrap() {
                        Event::Succeeded { .. } => return "backup",
                        Event::Failed { error, .. } => panic!("backup failed: {error}"),
                        Event::Skipped { .. } => return "skipped",
                        _ => {}
                    }
                }
            })
            .await
            .expect("the scheduler neither backed up nor skipped");
            scheduler
                .shutdown(Shutdown::Drain(Duration::from_secs(60)))
                .await;
            outcome
        }
    };
    let count = || async { engine.catalog().list(&Filter::all()).await.unwrap().len() };
    // The 02:00 trigger was missed: the first start catches it up.
    assert_eq!(start("2025-06-10T10:00:00Z").await, "backup");
    // Restarts within the minute find it done.
    assert_eq!(start("2025-06-10T10:00:20Z").await, "skipped");
    assert_eq!(start("2025-06-10T10:00:40Z").await, "skipped");
    assert_eq!(count().await, 1);
    // The next day's trigger missed too: one more, once.
    assert_eq!(start("2025-06-11T09:00:00Z").await, "backup");
    assert_eq!(start("2025-06-11T09:00:30Z").await, "skipped");
    assert_eq!(count().await, 2, "after {starts} starts");
}

/// A source that sends a little, then waits for the test before ending.
#[derive(Debug, Clone)]
struct HeldSource(Arc<Semaphore>);

#[async_trait]
impl DumpSource for HeldSource {
    fn info(&self) -> SourceInfo {
        ScriptedSource::ok(0).info()
    }
    async fn dump(&self, _: &DumpOptions) -> Result<DumpStream> {
        let gate = Arc::clone(&self.0);
        let stream = futures::stream::iter([Ok(Bytes::from_static(b"first"))]).chain(
            futures::stream::once(async move {
                gate.acquire().await.unwrap().forget();
                Ok(Bytes::from_static(b" and last"))
            }),
        );
        Ok(DumpStream::new(Box::pin(stream), Versions::default()))
    }
}

/// Counts writes of in-progress markers.
#[derive(Debug, Default)]
struct MarkerCount {
    inner: InMemoryStore,
    puts: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Display for MarkerCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("counting")
    }
}

#[async_trait]
impl Store for MarkerCount {
    async fn put(&self, key: &Key, data: Bytes, opts: PutOptions) -> Result<ObjectMeta> {
        if key.as_str().contains("/_inflight/") {
            self.puts.fetch_add(1, Ordering::SeqCst);
        }
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
}

/// A long backup rewrites its marker every five minutes (so it never goes
/// stale while the backup runs) and removes it once committed.
#[tokio::test(start_paused = true)]
async fn a_long_backup_keeps_its_marker_fresh() {
    let store = Arc::new(MarkerCount::default());
    let engine = Engine::new(store.clone() as Arc<dyn Store>)
        .with_options(PipelineOptions::default().stall_timeout(Duration::from_secs(86_400)));
    let gate = Arc::new(Semaphore::new(0));
    let running = {
        let (engine, source) = (engine.clone(), HeldSource(Arc::clone(&gate)));
        tokio::spawn(async move { engine.backup(&source, &BackupRequest::new("db")).await })
    };
    // Paused time runs ahead while everything waits: 16 minutes pass.
    tokio::time::sleep(Duration::from_secs(16 * 60)).await;
    let puts = store.puts.load(Ordering::SeqCst);
    assert!(
        puts >= 4,
        "marker written once and refreshed 3 times: {puts}"
    );
    let markers = store
        .list_all(Some(&Key::new("default/_inflight").unwrap()))
        .await
        .unwrap();
    assert_eq!(markers.len(), 1);
    gate.add_permits(1);
    let m = running.await.unwrap().unwrap();
    assert_eq!(m.raw.size, 14);
    let markers = store
        .list_all(Some(&Key::new("default/_inflight").unwrap()))
        .await
        .unwrap();
    assert!(markers.is_empty(), "{markers:?}");
}
