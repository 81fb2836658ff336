//! Create-only puts on stores that cannot make them exclusive (issue #11):
//! manifests are still written, scheduler leases fail closed instead of
//! running a trigger twice, and the dedup GC takes its marker by token and
//! stops as soon as another GC takes it over.
//!
//! The stores here wrap `InMemoryStore` and answer create-only puts the way
//! a real store does on such a backend: `Unsupported` (what `S3Store` says
//! once its probe found a server that ignores `If-None-Match`, and
//! `FsStore` on a filesystem without hard links), or by overwriting (a
//! store that believes a server that ignores the header). The S3 suite
//! repeats the important cases against a real S3 server behind a proxy
//! that strips the header.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use backup_core::prelude::*;
use backup_core::store::StoreExt;
use backup_core::testing::{ScriptedSource, assert_full_and_incremental_commit, listed_keys};
use backup_core::{
    clock::ManualClock, clock::SystemClock, dedup::DedupOptions, key::Key, manifest::Manifest,
    memory::InMemoryStore, scheduler::Job, scheduler::JobOutcome, scheduler::Shutdown,
    scheduler::Trigger, store::Created, store::GetResult, store::ObjectMeta, store::PutMode,
    store::PutOptions, store::Upload,
};
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use futures::stream::BoxStream;
use tokio_util::sync::CancellationToken;

/// How [`TestStore`] answers create-only puts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Creates {
    /// Exclusive, as the in-memory store makes them.
    Exclusive,
    /// `Error::Unsupported`.
    Unsupported,
    /// Silently overwrite, as a server that ignores `If-None-Match`.
    Overwrite,
}

/// A failure injected into the next create-only put.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// A retryable store error; nothing written.
    Retryable,
    /// A permanent store error; nothing written.
    Permanent,
    /// Written, but the answer is lost: a retryable error is returned.
    WrittenButLost,
}

#[derive(Debug)]
struct TestStore {
    inner: InMemoryStore,
    creates: Creates,
    faults: Mutex<VecDeque<Fault>>,
    /// Before the n-th `get` of this key (counting from 1) is served, the
    /// object is replaced with another holder's token: another process
    /// writing at that moment.
    hijack: Mutex<Option<(Key, usize)>>,
    deletes: AtomicUsize,
}

impl TestStore {
    fn new(creates: Creates) -> Arc<TestStore> {
        Arc::new(TestStore {
            inner: InMemoryStore::new(),
            creates,
            faults: Mutex::new(VecDeque::new()),
            hijack: Mutex::new(None),
            deletes: AtomicUsize::new(0),
        })
    }

    fn fail_next_creates(&self, faults: &[Fault]) {
        self.faults.lock().unwrap().extend(faults);
    }

    fn hijack_on_get(&self, key: &str, nth: usize) {
        *self.hijack.lock().unwrap() = Some((Key::new(key).unwrap(), nth));
    }
}

impl std::fmt::Display for TestStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "test-store({:?})", self.creates)
    }
}

fn store_error(retryable: bool) -> Error {
    Error::Store {
        store: "test-store".into(),
        retryable,
        source: "injected failure".into(),
    }
}

#[async_trait]
impl Store for TestStore {
    async fn put(&self, key: &Key, data: Bytes, opts: PutOptions) -> Result<ObjectMeta> {
        if opts.mode != PutMode::Create {
            return self.inner.put(key, data, opts).await;
        }
        let fault = self.faults.lock().unwrap().pop_front();
        match fault {
            Some(Fault::Retryable) => return Err(store_error(true)),
            Some(Fault::Permanent) => return Err(store_error(false)),
            Some(Fault::WrittenButLost) => {
                self.inner.put(key, data, opts).await?;
                return Err(store_error(true));
            }
            None => {}
        }
        match self.creates {
            Creates::Exclusive => self.inner.put(key, data, opts).await,
            Creates::Unsupported => Err(Error::Unsupported {
                store: self.to_string(),
                operation: "create-only puts (test store)",
            }),
            Creates::Overwrite => self.inner.put(key, data, PutOptions::default()).await,
        }
    }
    async fn put_stream(&self, key: &Key) -> Result<Box<dyn Upload>> {
        self.inner.put_stream(key).await
    }
    async fn get(&self, key: &Key) -> Result<GetResult> {
        let hijack = {
            let mut hijack = self.hijack.lock().unwrap();
            match hijack.as_mut() {
                Some((k, n)) if k == key => {
                    *n -= 1;
                    if *n == 0 {
                        hijack.take();
                        true
                    } else {
                        false
                    }
                }
                _ => false,
            }
        };
        if hijack {
            let body = serde_json::json!({"by": "gc", "at": Utc::now(), "token": "someone-else"});
            self.inner
                .put(key, Bytes::from(body.to_string()), PutOptions::default())
                .await?;
        }
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
        self.deletes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(key).await
    }
    async fn delete_many(&self, keys: &[Key]) -> Result<()> {
        self.deletes.fetch_add(keys.len(), Ordering::SeqCst);
        self.inner.delete_many(keys).await
    }
}

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

async fn keys(store: &dyn Store, under: &str) -> Vec<String> {
    listed_keys(store, Some(&key(under))).await
}

// ---------------------------------------------------------------------------
// Store helpers and manifests

#[tokio::test]
async fn check_create_only_tells_exclusive_stores_from_the_others() {
    let exclusive = TestStore::new(Creates::Exclusive);
    exclusive.check_create_only(&key("_locks")).await.unwrap();

    let unsupported = TestStore::new(Creates::Unsupported);
    let err = unsupported
        .check_create_only(&key("_locks"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");

    // A store that overwrites is caught by the second put.
    let overwriting = TestStore::new(Creates::Overwrite);
    let err = overwriting
        .check_create_only(&key("_locks"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("overwrote"), "{err}");

    for store in [exclusive, unsupported, overwriting] {
        assert!(store.list_all(None).await.unwrap().is_empty(), "{store}");
    }
}

#[tokio::test]
async fn create_best_effort_falls_back_only_on_unsupported() {
    for creates in [Creates::Exclusive, Creates::Unsupported] {
        let store = TestStore::new(creates);
        let k = key("t/s/m.manifest.json");
        store
            .create_best_effort(&k, Bytes::from_static(b"first"))
            .await
            .unwrap();
        let again = store
            .create_best_effort(&k, Bytes::from_static(b"second"))
            .await;
        assert!(
            matches!(again, Err(Error::AlreadyExists { .. })),
            "{creates:?}: {again:?}"
        );
        assert_eq!(&store.get_bytes(&k).await.unwrap()[..], b"first");
    }
    // Other errors are not papered over.
    let store = TestStore::new(Creates::Exclusive);
    store.fail_next_creates(&[Fault::Permanent]);
    let err = store
        .create_best_effort(&key("m"), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Store { .. }), "{err:?}");
    assert!(!store.exists(&key("m")).await.unwrap());
}

/// Before the fix the manifest was written with `PutMode::Create`, so a
/// store without exclusive create-only puts could take no backup at all.
#[tokio::test]
async fn backups_commit_on_stores_without_create_only_puts() {
    let store = TestStore::new(Creates::Unsupported);
    let engine = Engine::new(store.clone() as Arc<dyn Store>);
    assert_full_and_incremental_commit(&engine).await;
}

// ---------------------------------------------------------------------------
// Scheduler leases

#[derive(Debug, Default)]
struct Counter {
    runs: Mutex<Vec<Option<DateTime<Utc>>>>,
}

impl Counter {
    fn count(&self) -> usize {
        self.runs.lock().unwrap().len()
    }
}

#[async_trait]
impl Job for Counter {
    async fn run(&self, trigger: &Trigger, _: CancellationToken) -> Result<JobOutcome> {
        self.runs.lock().unwrap().push(trigger.scheduled_for);
        Ok(JobOutcome::default())
    }
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn hour(h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 10, h, 0, 0).unwrap()
}

/// One scheduler over `store` with an hourly job; returns it, its job and
/// its events.
fn scheduler(
    clock: &ManualClock,
    store: Arc<dyn Store>,
) -> (
    Scheduler,
    Arc<Counter>,
    tokio::sync::broadcast::Receiver<Event>,
) {
    let events = EventBus::default();
    let rx = events.subscribe();
    let s = Scheduler::start(
        SchedulerConfig::default().leases(store),
        Arc::new(clock.clone()),
        events,
    );
    let job = Arc::new(Counter::default());
    s.upsert(
        JobSpec::new("nightly", "0 * * * *".parse().unwrap(), job.clone()).last_run(Some(hour(0))),
    )
    .unwrap();
    (s, job, rx)
}

/// Waits for the skip of the trigger at `at` and returns its reason.
async fn skipped(rx: &mut tokio::sync::broadcast::Receiver<Event>, at: DateTime<Utc>) -> String {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a Skipped event")
            .unwrap();
        if let Event::Skipped {
            scheduled_for,
            reason,
            ..
        } = event
            && scheduled_for == at
        {
            return reason;
        }
    }
}

/// Before the fix a failed lease check logged "running anyway" and ran the
/// trigger, which another replica might be running too.
#[tokio::test]
async fn a_lease_that_cannot_be_taken_skips_its_trigger() {
    let cases: Vec<(&str, Creates, Vec<Fault>, &str)> = vec![
        (
            "permanent error",
            Creates::Exclusive,
            vec![Fault::Permanent],
            "injected failure",
        ),
        (
            "retryable error that persists",
            Creates::Exclusive,
            vec![Fault::Retryable; 3],
            "injected failure",
        ),
        (
            "no create-only puts",
            Creates::Unsupported,
            vec![],
            "does not support",
        ),
    ];
    for (case, creates, faults, expected) in cases {
        let clock = ManualClock::new(hour(0));
        let store = TestStore::new(creates);
        store.fail_next_creates(&faults);
        let (s, job, mut rx) = scheduler(&clock, store.clone());
        clock.set(hour(1));
        let reason = skipped(&mut rx, hour(1)).await;
        assert!(
            reason.contains("could not take the lease"),
            "{case}: {reason}"
        );
        assert!(reason.contains(expected), "{case}: {reason}");
        s.shutdown(Shutdown::Drain(Duration::from_secs(5))).await;
        assert_eq!(job.count(), 0, "{case}: the trigger ran without its lease");
    }
}

#[tokio::test]
async fn a_lease_is_retried_and_a_lost_answer_is_recognised() {
    for (case, faults) in [
        ("one retryable error", vec![Fault::Retryable]),
        ("written, answer lost", vec![Fault::WrittenButLost]),
        (
            "two errors, the second after writing",
            vec![Fault::Retryable, Fault::WrittenButLost],
        ),
    ] {
        let clock = ManualClock::new(hour(0));
        let store = TestStore::new(Creates::Exclusive);
        store.fail_next_creates(&faults);
        let (s, job, _) = scheduler(&clock, store.clone());
        clock.set(hour(1));
        eventually(case, || job.count() == 1).await;
        s.shutdown(Shutdown::Drain(Duration::from_secs(5))).await;
        assert_eq!(job.count(), 1, "{case}");
        assert_eq!(
            keys(store.as_ref(), "_locks/nightly").await.len(),
            1,
            "{case}"
        );
    }
}

#[tokio::test]
async fn a_lease_held_by_another_process_is_not_taken_after_a_retry() {
    let clock = ManualClock::new(hour(0));
    let store = TestStore::new(Creates::Exclusive);
    // Another replica holds the lease; our first attempt fails retryably,
    // the second finds the lease: not ours (other token), so skipped.
    store
        .put(
            &key("_locks/nightly/20250610T010000Z.json"),
            Bytes::from_static(br#"{"token":"other-replica"}"#),
            PutOptions::create(),
        )
        .await
        .unwrap();
    store.fail_next_creates(&[Fault::Retryable]);
    let (s, job, mut rx) = scheduler(&clock, store.clone());
    clock.set(hour(1));
    let reason = skipped(&mut rx, hour(1)).await;
    assert!(
        reason.contains("another process holds the lease"),
        "{reason}"
    );
    s.shutdown(Shutdown::Drain(Duration::from_secs(5))).await;
    assert_eq!(job.count(), 0);
}

#[tokio::test]
async fn try_start_refuses_lease_stores_without_exclusive_create_only_puts() {
    for creates in [Creates::Unsupported, Creates::Overwrite] {
        let store = TestStore::new(creates);
        let err = Scheduler::try_start(
            SchedulerConfig::default().leases(store.clone()),
            Arc::new(SystemClock),
            EventBus::default(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, Error::Unsupported { .. }),
            "{creates:?}: {err:?}"
        );
        assert!(store.list_all(None).await.unwrap().is_empty());
    }
    let store = TestStore::new(Creates::Exclusive);
    let s = Scheduler::try_start(
        SchedulerConfig::default().leases(store.clone()),
        Arc::new(SystemClock),
        EventBus::default(),
    )
    .await
    .unwrap();
    s.shutdown(Shutdown::Cancel).await;
    assert!(store.list_all(None).await.unwrap().is_empty());
    // Without leases there is nothing to check.
    let s = Scheduler::try_start(
        SchedulerConfig::default(),
        Arc::new(SystemClock),
        EventBus::default(),
    )
    .await
    .unwrap();
    s.shutdown(Shutdown::Cancel).await;
}

/// Two replicas sharing a store that overwrites instead of refusing would
/// both "take" each lease; with `Unsupported` both skip every trigger.
#[tokio::test]
async fn two_replicas_on_a_store_without_create_only_puts_never_run_a_trigger_twice() {
    let clock = ManualClock::new(hour(0));
    let store = TestStore::new(Creates::Unsupported);
    let (a, ja, mut ra) = scheduler(&clock, store.clone());
    let (b, jb, mut rb) = scheduler(&clock, store.clone());
    for h in 1..=3 {
        clock.set(hour(h));
        skipped(&mut ra, hour(h)).await;
        skipped(&mut rb, hour(h)).await;
    }
    a.shutdown(Shutdown::Drain(Duration::from_secs(5))).await;
    b.shutdown(Shutdown::Drain(Duration::from_secs(5))).await;
    assert_eq!(ja.count() + jb.count(), 0);
}

// ---------------------------------------------------------------------------
// The dedup GC marker

const GC_MARKER: &str = "default/_chunks/gc-running";

fn dedup_engine(store: &Arc<TestStore>, settle: Duration) -> Engine {
    Engine::new(store.clone() as Arc<dyn Store>).with_dedup(
        DedupOptions::default()
            .chunk_sizes(4 * 1024, 16 * 1024, 64 * 1024)
            .pack_size(64 * 1024)
            .gc_lock_settle(settle),
    )
}

/// Two incremental backups of different data; the first is deleted, so
/// its packs are garbage. Returns the second.
async fn garbage(engine: &Engine) -> Manifest {
    let request = BackupRequest::new("db").backup_type(BackupType::Incremental);
    let first = engine
        .backup(&ScriptedSource::ok(400_000), &request)
        .await
        .unwrap();
    let source = ScriptedSource {
        seed: 8,
        ..ScriptedSource::ok(400_000)
    };
    let second = engine.backup(&source, &request).await.unwrap();
    engine.catalog().delete(&first.id).await.unwrap();
    second
}

async fn packs(store: &dyn Store) -> Vec<String> {
    keys(store, "default/_chunks/packs").await
}

#[tokio::test]
async fn gc_without_create_only_puts_takes_its_marker_by_token() {
    let store = TestStore::new(Creates::Unsupported);
    let engine = dedup_engine(&store, Duration::from_millis(50));
    let kept = garbage(&engine).await;
    let before = packs(store.as_ref()).await;
    let report = engine.gc("default", Duration::ZERO, false).await.unwrap();
    assert_eq!(report.skipped, None, "{report:?}");
    assert!(!report.deleted_packs.is_empty(), "{report:?}");
    assert!(packs(store.as_ref()).await.len() < before.len());
    assert!(!store.exists(&key(GC_MARKER)).await.unwrap(), "marker left");
    engine.verify(&kept.id).await.unwrap();
    assert!(engine.check(None).await.unwrap().is_ok());
}

/// Before the fix a store without create-only puts made the GC overwrite
/// the marker and go ahead: two GCs ran at once.
#[tokio::test]
async fn of_two_gcs_at_once_without_create_only_puts_one_backs_off() {
    let store = TestStore::new(Creates::Unsupported);
    let engine = dedup_engine(&store, Duration::from_millis(200));
    garbage(&engine).await;
    let (a, b) = tokio::join!(
        engine.gc("default", Duration::ZERO, false),
        engine.gc("default", Duration::ZERO, false)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let ran = [&a, &b].iter().filter(|r| r.skipped.is_none()).count();
    assert_eq!(ran, 1, "{a:?} {b:?}");
    let reason = a.skipped.or(b.skipped).unwrap();
    assert!(reason.contains("another garbage collection"), "{reason}");
    assert!(!store.exists(&key(GC_MARKER)).await.unwrap());
}

/// The race the settle delay is for: another GC writes the marker after
/// this one did. Only the last writer goes ahead.
#[tokio::test]
async fn a_gc_whose_marker_is_overwritten_while_it_settles_backs_off() {
    let store = TestStore::new(Creates::Unsupported);
    let engine = dedup_engine(&store, Duration::from_millis(50));
    garbage(&engine).await;
    let before = packs(store.as_ref()).await;
    let deletes = store.deletes.load(Ordering::SeqCst);
    // The first read of the marker is the read-back after the settle delay.
    store.hijack_on_get(GC_MARKER, 1);
    let report = engine.gc("default", Duration::ZERO, false).await.unwrap();
    let reason = report.skipped.expect("backed off");
    assert!(reason.contains("took the GC marker"), "{reason}");
    assert_eq!(packs(store.as_ref()).await, before);
    assert_eq!(
        store.deletes.load(Ordering::SeqCst),
        deletes,
        "nothing deleted"
    );
    // The other holder's marker stays.
    let marker = store.get_bytes(&key(GC_MARKER)).await.unwrap();
    assert!(String::from_utf8_lossy(&marker).contains("someone-else"));
}

/// Before the fix a GC never read its marker back: a GC that had taken
/// over (after this one's marker looked stale, or on a store without
/// create-only puts) could run next to it.
#[tokio::test]
async fn a_gc_stops_before_deleting_once_another_took_its_marker() {
    for creates in [Creates::Exclusive, Creates::Unsupported] {
        let store = TestStore::new(creates);
        let engine = dedup_engine(&store, Duration::from_millis(50));
        let kept = garbage(&engine).await;
        let before = packs(store.as_ref()).await;
        // Exclusive: the first read of the marker is the check before the
        // first deletion. Unsupported: the second (the first is the
        // read-back after settling).
        let nth = if creates == Creates::Exclusive { 1 } else { 2 };
        store.hijack_on_get(GC_MARKER, nth);
        let err = engine
            .gc("default", Duration::ZERO, false)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Busy { .. }), "{creates:?}: {err:?}");
        assert!(err.to_string().contains("took over"), "{err}");
        assert_eq!(packs(store.as_ref()).await, before, "{creates:?}");
        // The other holder's marker is left alone.
        let marker = store.get_bytes(&key(GC_MARKER)).await.unwrap();
        assert!(String::from_utf8_lossy(&marker).contains("someone-else"));
        engine.verify(&kept.id).await.unwrap();
    }
}

/// `create_settled` reads the key back after a failed write: an object
/// holding exactly the data is stored (a write whose answer was lost, or a
/// retry after its first attempt landed), other data is another writer's,
/// nothing is nothing; with and without create-only support.
#[tokio::test]
async fn create_settled_tells_what_a_failed_write_left() {
    for creates in [Creates::Exclusive, Creates::Unsupported] {
        let store = TestStore::new(creates);
        let body = Bytes::from_static(b"record");
        let settled = |k: &'static str| {
            let store = Arc::clone(&store);
            let body = body.clone();
            async move { store.create_settled(&key(k), body).await }
        };
        assert!(matches!(settled("a").await, Created::Stored), "{creates:?}");
        // The same bytes again: the first attempt of a retried request.
        assert!(matches!(settled("a").await, Created::Stored), "{creates:?}");
        store
            .put(
                &key("b"),
                Bytes::from_static(b"other"),
                PutOptions::default(),
            )
            .await
            .unwrap();
        assert!(matches!(settled("b").await, Created::Taken), "{creates:?}");
        assert_eq!(&store.get_bytes(&key("b")).await.unwrap()[..], b"other");
        if creates == Creates::Exclusive {
            store.fail_next_creates(&[Fault::WrittenButLost]);
            assert!(matches!(settled("c").await, Created::Stored));
            store.fail_next_creates(&[Fault::Permanent]);
            let outcome = settled("d").await;
            assert!(
                matches!(&outcome, Created::Absent(Error::Store { .. })),
                "{outcome:?}"
            );
            assert!(!store.exists(&key("d")).await.unwrap());
        }
    }
}
