//! Create-only puts against a real S3 server (issue #11): `s3s-fs`
//! directly, which honours `If-None-Match: *`, and through a proxy that
//! strips the conditional headers, which reproduces a server that ignores
//! them (Garage, as reported). The store finds out which it is, refuses
//! create-only puts where they would overwrite, and what relies on them
//! says so: backups still commit, scheduler replicas never run a trigger
//! twice, and the GC never deletes what a concurrent backup uses.
//!
//! With `BACKUP_TEST_S3_ENDPOINT` set, the server is external: the proxy
//! cases still hold (the proxy strips the headers whatever the server
//! does); the "honoured" cases are skipped unless the server honours them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backup_core::prelude::*;
use backup_core::testing::{
    Capabilities, ScriptedSource, assert_full_and_incremental_commit, listed_keys,
    store_conformance,
};
use backup_core::{
    clock::ManualClock, clock::SystemClock, dedup::DedupOptions, key::Key, manifest::BackupKind,
    scheduler::Shutdown, store::PutOptions, store::StoreExt,
};
use backup_store_s3::{S3Store, S3TestServer};
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use object_store::{ObjectStore, ObjectStoreExt};

mod support;
use support::{Proxy, conformance_store};

fn server() -> S3TestServer {
    S3TestServer::from_env_or_start().unwrap_or_else(|e| panic!("no S3 server for the tests: {e}"))
}

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

async fn listed(store: &dyn Store) -> Vec<String> {
    listed_keys(store, None).await
}

#[tokio::test]
async fn the_proxy_reproduces_a_server_that_ignores_if_none_match() {
    let server = server();
    let proxy = Proxy::stripping(&server).await;
    // A client that trusts the header, as `S3Store` did before the probe.
    let raw = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(proxy.endpoint())
        .with_bucket_name(server.bucket())
        .with_access_key_id(server.access_key_id())
        .with_secret_access_key(server.secret_access_key().expose())
        .with_allow_http(true)
        .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
        .build()
        .unwrap();
    let path = object_store::path::Path::from(format!("raw-{:08x}/lease", rand::random::<u32>()));
    let create = || object_store::PutOptions {
        mode: object_store::PutMode::Create,
        ..Default::default()
    };
    raw.put_opts(&path, Bytes::from_static(b"first").into(), create())
        .await
        .unwrap();
    raw.put_opts(&path, Bytes::from_static(b"second").into(), create())
        .await
        .expect("the stripped conditional PUT overwrites");
    let got = raw.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], b"second");
    assert_eq!(proxy.stripped(), 2);
    raw.delete(&path).await.unwrap();
}

#[tokio::test]
async fn the_probe_finds_conditional_puts_on_s3s_fs_and_costs_three_requests() {
    let server = server();
    let proxy = Proxy::passing(&server).await;
    let store = proxy.store_builder(&server).build().unwrap();
    let started = Instant::now();
    let honoured = store.supports_conditional_put().await.unwrap();
    let took = started.elapsed();
    if !server.is_local() && !honoured {
        eprintln!("skipped: the external S3 server does not honour If-None-Match");
        return;
    }
    assert!(honoured);
    assert_eq!(proxy.forwarded(), 3, "PUT, PUT (refused), DELETE");
    // Cached: no more requests, and create-only puts work.
    assert!(store.supports_conditional_put().await.unwrap());
    assert_eq!(proxy.forwarded(), 3);
    let k = key("_locks/job/20250610T010000Z.json");
    store
        .put(&k, Bytes::from_static(b"1"), PutOptions::create())
        .await
        .unwrap();
    let again = store
        .put(&k, Bytes::from_static(b"2"), PutOptions::create())
        .await;
    assert!(
        matches!(again, Err(Error::AlreadyExists { .. })),
        "{again:?}"
    );
    assert_eq!(proxy.forwarded(), 5);
    assert_eq!(
        listed(&store).await,
        [k.to_string()],
        "the probe object is gone"
    );
    store.delete(&k).await.unwrap();

    // The figure: the probe against the server directly, fresh stores.
    let rounds = 20;
    let mut total = Duration::ZERO;
    for _ in 0..rounds {
        let store = server.store_builder().build().unwrap();
        let started = Instant::now();
        assert!(store.supports_conditional_put().await.unwrap());
        total += started.elapsed();
    }
    let each = total / rounds;
    eprintln!(
        "conditional-PUT probe: 3 requests; first one through the proxy {:.1} ms, directly {:.1} ms on average over {rounds} stores",
        took.as_secs_f64() * 1e3,
        each.as_secs_f64() * 1e3
    );
}

/// Before the probe, `S3Store` sent `If-None-Match: *` and trusted the 200:
/// on this server the second create-only put overwrote the first.
#[tokio::test]
async fn create_only_puts_are_refused_on_a_server_that_ignores_if_none_match() {
    let server = server();
    let proxy = Proxy::stripping(&server).await;
    let store = proxy.store_builder(&server).build().unwrap();
    let k = key("_locks/job/20250610T010000Z.json");
    let err = store
        .put(&k, Bytes::from_static(b"1"), PutOptions::create())
        .await
        .unwrap_err();
    let message = err.to_string();
    eprintln!("create-only put: {message}");
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert!(message.contains("ignores If-None-Match"), "{message}");
    assert!(
        message.contains("leases"),
        "names the consequence: {message}"
    );
    assert!(!message.contains('\n'));
    assert_eq!(proxy.stripped(), 2, "the probe's two conditional PUTs");
    // Refused without a request, and never sent as an overwrite.
    let sent = proxy.forwarded();
    let err = store
        .put(&k, Bytes::from_static(b"2"), PutOptions::create())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert_eq!(proxy.forwarded(), sent);
    assert!(!store.exists(&k).await.unwrap());
    assert!(!store.supports_conditional_put().await.unwrap());

    let err = store.check_create_only(&key("_locks")).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    // Everything else works, and nothing is left behind.
    store_conformance(&store, Capabilities::default().put_if_absent(false)).await;
    assert!(listed(&store).await.is_empty());
}

#[tokio::test]
async fn turned_off_conditional_puts_are_refused_without_a_probe() {
    let server = server();
    let proxy = Proxy::passing(&server).await;
    let store = proxy
        .store_builder(&server)
        .conditional_put(false)
        .build()
        .unwrap();
    let err = store
        .put(&key("x"), Bytes::from_static(b"1"), PutOptions::create())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("turned off"), "{err}");
    assert!(!store.supports_conditional_put().await.unwrap());
    assert_eq!(proxy.forwarded(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_commit_on_a_server_that_ignores_if_none_match() {
    let server = server();
    let proxy = Proxy::stripping(&server).await;
    let store = proxy.store_builder(&server).build().unwrap();
    let engine = Engine::new(Arc::new(store.clone()));
    assert_full_and_incremental_commit(&engine).await;
}

// ---------------------------------------------------------------------------
// Scheduler replicas sharing a bucket

fn hour(h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 10, h, 0, 0).unwrap()
}

struct Replica {
    scheduler: Scheduler,
    events: tokio::sync::broadcast::Receiver<Event>,
}

/// A scheduler with leases in `store` and an hourly backup job writing to
/// `store`.
fn replica(clock: &ManualClock, store: Arc<dyn Store>) -> Replica {
    let bus = EventBus::default();
    let events = bus.subscribe();
    let engine = Engine::new(Arc::clone(&store)).with_events(bus.clone());
    let scheduler = Scheduler::start(
        SchedulerConfig::default().leases(store),
        Arc::new(clock.clone()),
        bus,
    );
    let job = Arc::new(BackupJob {
        engine,
        source: Arc::new(ScriptedSource::ok(100_000)),
        request: BackupRequest::new("orders"),
        retention: vec![],
        keep_newest_verified: true,
    });
    scheduler
        .upsert(JobSpec::new("nightly", "0 * * * *".parse().unwrap(), job).last_run(Some(hour(0))))
        .unwrap();
    Replica { scheduler, events }
}

/// What became of the trigger at `at` in this replica: `Ok(())` for a
/// committed backup, `Err(reason)` for a skip.
async fn outcome(replica: &mut Replica, at: DateTime<Utc>) -> std::result::Result<(), String> {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(60), replica.events.recv())
            .await
            .expect("an outcome for the trigger")
            .unwrap();
        match event {
            Event::Succeeded { .. } => return Ok(()),
            Event::Failed { error, .. } => panic!("backup failed: {error}"),
            Event::Skipped {
                scheduled_for,
                reason,
                ..
            } if scheduled_for == at => return Err(reason),
            _ => {}
        }
    }
}

/// Waits until the replica has finished every run (the run lock is held
/// a little past the `Succeeded` event, while retention runs).
async fn idle(replica: &Replica) {
    for _ in 0..2000 {
        if replica.scheduler.running() == 0 && replica.scheduler.jobs().iter().all(|j| !j.running) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the replica never became idle");
}

async fn scheduled_backups(store: &Arc<dyn Store>) -> usize {
    Engine::new(Arc::clone(store))
        .catalog()
        .list(&Filter::all())
        .await
        .unwrap()
        .iter()
        .filter(|m| m.kind == BackupKind::Scheduled)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_replicas_on_a_server_that_ignores_if_none_match_never_run_a_trigger_twice() {
    let server = server();
    let proxy = Proxy::stripping(&server).await;
    let store: Arc<dyn Store> = Arc::new(proxy.store_builder(&server).build().unwrap());

    // Up front: a scheduler with leases refuses to start.
    let err = Scheduler::try_start(
        SchedulerConfig::default().leases(Arc::clone(&store)),
        Arc::new(SystemClock),
        EventBus::default(),
    )
    .await
    .unwrap_err();
    eprintln!("try_start: {err}");
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("ignores If-None-Match"), "{err}");

    // Started anyway, every trigger is skipped in both replicas.
    let clock = ManualClock::new(hour(0));
    let mut a = replica(&clock, Arc::clone(&store));
    let mut b = replica(&clock, Arc::clone(&store));
    for h in 1..=3 {
        clock.set(hour(h));
        for r in [&mut a, &mut b] {
            let reason = outcome(r, hour(h)).await.unwrap_err();
            assert!(reason.contains("could not take the lease"), "{reason}");
            assert!(reason.contains("ignores If-None-Match"), "{reason}");
            idle(r).await;
        }
    }
    for r in [&a, &b] {
        r.scheduler
            .shutdown(Shutdown::Drain(Duration::from_secs(30)))
            .await;
    }
    assert_eq!(scheduled_backups(&store).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_replicas_on_a_server_that_honours_if_none_match_run_each_trigger_once() {
    let server = server();
    let direct = server.store_builder().build().unwrap();
    if !direct.supports_conditional_put().await.unwrap() {
        eprintln!("skipped: the external S3 server does not honour If-None-Match");
        return;
    }
    // `s3s-fs` does not decide racing conditional PUTs atomically (see
    // `SerializedCreates`); the replicas share one wrapper so their lease
    // puts are serialized as a real server decides them.
    let store = conformance_store(&server, direct);
    Scheduler::try_start(
        SchedulerConfig::default().leases(Arc::clone(&store)),
        Arc::new(SystemClock),
        EventBus::default(),
    )
    .await
    .unwrap()
    .shutdown(Shutdown::Cancel)
    .await;
    let clock = ManualClock::new(hour(0));
    let mut a = replica(&clock, Arc::clone(&store));
    let mut b = replica(&clock, Arc::clone(&store));
    for h in 1..=3 {
        clock.set(hour(h));
        let (ra, rb) = (
            outcome(&mut a, hour(h)).await,
            outcome(&mut b, hour(h)).await,
        );
        assert!(ra.is_ok() != rb.is_ok(), "hour {h}: {ra:?} {rb:?}");
        let reason = ra.err().or(rb.err()).unwrap();
        assert!(
            reason.contains("another process holds the lease"),
            "{reason}"
        );
        idle(&a).await;
        idle(&b).await;
    }
    for r in [&a, &b] {
        r.scheduler
            .shutdown(Shutdown::Drain(Duration::from_secs(30)))
            .await;
    }
    assert_eq!(scheduled_backups(&store).await, 3);
}

// ---------------------------------------------------------------------------
// Dedup GC next to backups

/// Returns once something exists under `default/_chunks/{what}`.
async fn until_marker(store: &S3Store, what: &str) {
    let under = key(&format!("default/_chunks/{what}"));
    while store.list_all(Some(&under)).await.unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Rounds alternate between two contents; before each round every backup
/// but the newest is deleted, so the chunks the round's backup wants are
/// in packs that only deleted backups reference: garbage the GCs running
/// at the same time want to delete. Whatever the interleaving, every
/// backup that commits must be complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_on_a_server_that_ignores_if_none_match_never_deletes_what_a_backup_uses() {
    let server = server();
    let proxy = Proxy::stripping(&server).await;
    let store = proxy.store_builder(&server).build().unwrap();
    let engine = Engine::new(Arc::new(store.clone())).with_dedup(
        DedupOptions::default()
            .chunk_sizes(4 * 1024, 16 * 1024, 64 * 1024)
            .pack_size(64 * 1024)
            .gc_wait(Duration::from_secs(60), Duration::from_millis(20))
            .gc_lock_settle(Duration::from_millis(100)),
    );
    let request = BackupRequest::new("db").backup_type(BackupType::Incremental);
    let source = |round: u64| ScriptedSource {
        seed: round % 2,
        ..ScriptedSource::ok(300_000)
    };
    let (mut ran, mut backed_off, mut stopped, mut reused) = (0, 0, 0, 0);
    let mut newest = engine.backup(&source(0), &request).await.unwrap();
    for round in 1..=9u64 {
        for m in engine.catalog().list(&Filter::all()).await.unwrap() {
            if m.id != newest.id {
                engine.catalog().delete(&m.id).await.unwrap();
            }
        }
        let this = source(round);
        let backup = engine.backup(&this, &request);
        let gc = || engine.gc("default", Duration::ZERO, false);
        // Who starts first: both GCs and the backup at once; a GC that
        // holds its marker before the backup starts; a backup that is in
        // flight before the GCs start.
        let (backup, gcs) = match round % 3 {
            0 => {
                let (b, g1, g2) = tokio::join!(backup, gc(), gc());
                (b, vec![g1, g2])
            }
            1 => {
                let first = gc();
                tokio::pin!(first);
                let early = tokio::select! {
                    done = &mut first => Some(done),
                    () = until_marker(&store, "gc-running") => None,
                };
                let (b, g) = match early {
                    Some(done) => (backup.await, done),
                    None => tokio::join!(backup, first),
                };
                (b, vec![g])
            }
            _ => {
                tokio::pin!(backup);
                let early = tokio::select! {
                    done = &mut backup => Some(done),
                    () = until_marker(&store, "inflight") => None,
                };
                match early {
                    Some(done) => (done, vec![gc().await]),
                    None => {
                        let (b, g1, g2) = tokio::join!(backup, gc(), gc());
                        (b, vec![g1, g2])
                    }
                }
            }
        };
        let m = backup.unwrap_or_else(|e| panic!("round {round}: backup failed: {e}"));
        let d = m.dedup.as_ref().unwrap();
        if d.new_chunks < d.chunks {
            reused += 1;
        }
        for gc in gcs {
            match gc {
                Ok(r) if r.skipped.is_some() => backed_off += 1,
                Ok(_) => ran += 1,
                Err(Error::Busy { .. }) => stopped += 1,
                Err(e) => panic!("round {round}: GC failed: {e}"),
            }
        }
        newest = m;
    }
    eprintln!(
        "GCs: {ran} ran, {backed_off} backed off, {stopped} stopped before a deletion; {reused} of 9 backups reused chunks"
    );
    for m in engine.catalog().list(&Filter::all()).await.unwrap() {
        engine.verify(&m.id).await.unwrap();
    }
    let check = engine.check(None).await.unwrap();
    assert!(check.is_ok(), "{check:?}");
    // How the GCs and backups interleaved is up to the runtime; a final GC,
    // alone, removes the other content's packs, and the newest still
    // restores.
    for m in engine.catalog().list(&Filter::all()).await.unwrap() {
        if m.id != newest.id {
            engine.catalog().delete(&m.id).await.unwrap();
        }
    }
    let last = engine.gc("default", Duration::ZERO, false).await.unwrap();
    assert_eq!(last.skipped, None, "{last:?}");
    assert!(!last.deleted_packs.is_empty(), "{last:?}");
    engine.verify(&newest.id).await.unwrap();
    assert!(
        !store
            .exists(&key("default/_chunks/gc-running"))
            .await
            .unwrap()
    );
}
