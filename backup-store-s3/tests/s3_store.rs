//! `S3Store` against a real S3-compatible server: an `s3s-fs` started by
//! each test on a loopback port, or the server named by
//! `BACKUP_TEST_S3_ENDPOINT` (see `S3TestServer`). The shared conformance
//! suite, multipart uploads, and the failures an operator meets: wrong
//! credentials, a missing bucket, a server that dies mid-upload.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use backup_core::testing::{
    Capabilities, ScriptedSource, assert_no_backup_listed, assert_nothing_left, listed_keys,
    objects_besides_run_records, pattern, store_conformance,
};
use backup_core::{
    BackupRequest, Compression, DumpSource, Engine, Error, Secret, Store, key::Key,
    source::DumpOptions, source::DumpStream, source::SourceInfo, source::Versions,
    store::PutOptions, store::StoreExt,
};
use backup_store_s3::{MIN_PART_SIZE, S3Store, S3TestServer};
use bytes::Bytes;
use futures::StreamExt;

mod support;
use support::conformance_store;

fn server() -> S3TestServer {
    S3TestServer::from_env_or_start().unwrap_or_else(|e| panic!("no S3 server for the tests: {e}"))
}

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

/// Files `s3s-fs` keeps for multipart uploads in progress (upload records
/// and parts), at the top of its data directory.
fn multipart_files(server: &S3TestServer) -> Vec<String> {
    let Some(dir) = server.data_dir() else {
        return Vec::new();
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".upload"))
        .collect();
    names.sort();
    names
}

async fn eventually_no_multipart_files(server: &S3TestServer) {
    for _ in 0..100 {
        if multipart_files(server).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "multipart upload left behind: {:?}",
        multipart_files(server)
    );
}

#[tokio::test]
async fn passes_the_conformance_suite() {
    let server = server();
    let store = server.store_builder().build().unwrap();
    // The default part size (16 MiB) is larger than the suite's objects:
    // every streamed object goes in one PUT.
    store_conformance(
        &conformance_store(&server, store.clone()),
        Capabilities::default(),
    )
    .await;
    assert!(store.list_all(None).await.unwrap().is_empty());
    assert!(multipart_files(&server).is_empty());
}

#[tokio::test]
async fn passes_the_conformance_suite_with_multipart_uploads() {
    let server = server();
    let store = conformance_store(
        &server,
        server
            .store_builder()
            .part_size(MIN_PART_SIZE)
            .max_part_size(MIN_PART_SIZE)
            .upload_concurrency(2)
            .build()
            .unwrap(),
    );
    // 12 MiB + 17 bytes: three parts, the last one short.
    store_conformance(
        &store,
        Capabilities::default().large_object(12 * 1024 * 1024 + 17),
    )
    .await;
    eventually_no_multipart_files(&server).await;
}

#[tokio::test]
async fn store_shows_where_it_is_but_not_the_secret() {
    let server = server();
    let store = server.store_builder().prefix("team/prod").build().unwrap();
    assert_eq!(
        store.to_string(),
        format!("s3://{}/team/prod", server.bucket())
    );
    assert_eq!(store.bucket(), server.bucket());
    assert_eq!(store.prefix(), Some("team/prod"));
    assert_eq!(store.endpoint(), server.endpoint());
    let shown = format!("{store:?}");
    assert!(shown.contains(server.endpoint()), "{shown}");
    assert!(
        !shown.contains(server.secret_access_key().expose()),
        "{shown}"
    );
    // The default plan holds a terabyte in at most 5 × 128 MiB of buffers.
    assert!(store.max_object_size() >= 1_000_000_000_000);
    assert_eq!(store.upload_memory_limit(), 5 * 128 * 1024 * 1024);
}

#[tokio::test]
async fn prefixes_keep_stores_apart() {
    let server = server();
    let a = server.store_builder().prefix("shared/a").build().unwrap();
    let b = server.store_builder().prefix("shared/ab").build().unwrap();
    let parent = server.store_builder().prefix("shared").build().unwrap();
    a.put(&key("x/1"), Bytes::from_static(b"a"), PutOptions::default())
        .await
        .unwrap();
    b.put(&key("x/1"), Bytes::from_static(b"b"), PutOptions::default())
        .await
        .unwrap();
    let in_a = listed_keys(&a, None).await;
    assert_eq!(in_a, ["x/1"], "a prefix lists by whole segments");
    assert_eq!(&a.get_bytes(&key("x/1")).await.unwrap()[..], b"a");
    let in_parent = listed_keys(&parent, None).await;
    assert_eq!(in_parent, ["a/x/1", "ab/x/1"]);
    parent
        .delete_many(&[key("a/x/1"), key("ab/x/1")])
        .await
        .unwrap();
    assert!(a.list_all(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn listings_page_and_bulk_deletes_batch_past_a_thousand_keys() {
    let server = server();
    let store = server.store_builder().build().unwrap();
    let keys: Vec<Key> = (0..1_005).map(|i| key(&format!("many/{i:05}"))).collect();
    futures::stream::iter(&keys)
        .map(|k| store.put(k, Bytes::from_static(b"."), PutOptions::default()))
        .buffer_unordered(16)
        .for_each(|r| {
            r.unwrap();
            futures::future::ready(())
        })
        .await;
    // ListObjectsV2 returns at most 1,000 keys a page.
    let listed = store.list_all(Some(&key("many"))).await.unwrap();
    assert_eq!(listed.len(), keys.len());
    // DeleteObjects takes at most 1,000 keys a request.
    store.delete_many(&keys).await.unwrap();
    assert!(store.list_all(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn multipart_uploads_round_trip_and_stream_back() {
    let server = server();
    let store = server
        .store_builder()
        .part_size(MIN_PART_SIZE)
        .upload_concurrency(3)
        .build()
        .unwrap();
    let data = pattern(31 * 1024 * 1024 + 5, 9);
    let k = key("big/blob.bin");
    let mut upload = store.put_stream(&k).await.unwrap();
    for chunk in data.chunks(700_001) {
        upload.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    if server.is_local() {
        let during = multipart_files(&server);
        assert!(
            during.iter().any(|f| f.contains(".part-")),
            "parts are uploaded while writing: {during:?}"
        );
    }
    assert!(!store.exists(&k).await.unwrap(), "invisible until complete");
    let meta = upload.complete().await.unwrap();
    assert_eq!(meta.size, data.len() as u64);
    assert_eq!(store.head(&k).await.unwrap().size, data.len() as u64);

    let got = store.get(&k).await.unwrap();
    let mut read = Vec::with_capacity(data.len());
    let mut chunks = 0;
    let mut stream = got.stream;
    while let Some(chunk) = stream.next().await {
        read.extend_from_slice(&chunk.unwrap());
        chunks += 1;
    }
    assert!(read == data, "read back differs");
    assert!(chunks > 1, "the body streams in chunks");
    eventually_no_multipart_files(&server).await;
    store.delete(&k).await.unwrap();
}

#[tokio::test]
async fn aborted_and_dropped_multipart_uploads_leave_no_parts() {
    let server = server();
    let store = server
        .store_builder()
        .part_size(MIN_PART_SIZE)
        .build()
        .unwrap();
    let chunk = Bytes::from(pattern(MIN_PART_SIZE + 1, 4));

    let mut upload = store.put_stream(&key("a/aborted")).await.unwrap();
    upload.write(chunk.clone()).await.unwrap();
    upload.write(chunk.clone()).await.unwrap();
    if server.is_local() {
        assert!(
            !multipart_files(&server).is_empty(),
            "a multipart upload is open"
        );
    }
    upload.abort().await.unwrap();
    assert!(
        multipart_files(&server).is_empty(),
        "abort removed the parts"
    );

    let mut upload = store.put_stream(&key("a/dropped")).await.unwrap();
    upload.write(chunk.clone()).await.unwrap();
    upload.write(chunk).await.unwrap();
    drop(upload);
    eventually_no_multipart_files(&server).await;
    assert!(store.list_all(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn create_only_puts_are_refused_when_disabled() {
    let server = server();
    let store = server
        .store_builder()
        .conditional_put(false)
        .build()
        .unwrap();
    store_conformance(&store, Capabilities::default().put_if_absent(false)).await;
}

/// A source that records whether the engine asked it for data.
#[derive(Debug, Default)]
struct WatchedSource {
    dumped: AtomicBool,
}

#[async_trait]
impl DumpSource for WatchedSource {
    fn info(&self) -> SourceInfo {
        ScriptedSource::ok(0).info()
    }
    async fn dump(&self, opts: &DumpOptions) -> backup_core::Result<DumpStream> {
        self.dumped.store(true, Ordering::SeqCst);
        ScriptedSource::ok(1 << 20).dump(opts).await
    }
}

#[tokio::test]
async fn wrong_credentials_fail_before_the_database_is_read() {
    let server = server();
    let cases = [
        (
            "wrong secret",
            server.access_key_id().to_string(),
            "not-the-secret-9f8e7d",
        ),
        (
            "unknown key",
            "nobody-1234".to_string(),
            "whatever-secret-1a2b3c",
        ),
    ];
    for (case, key_id, secret) in cases {
        let store = server
            .store_builder()
            .credentials(key_id, Secret::new(secret))
            .build()
            .unwrap();
        let source = WatchedSource::default();
        let engine = Engine::new(Arc::new(store.clone()));
        let err = engine
            .backup(&source, &BackupRequest::new("db"))
            .await
            .unwrap_err();
        let shown = format!("{err} | {err:?}");
        eprintln!("{case}: {err}");
        assert!(
            matches!(err, Error::AccessDenied { .. }),
            "{case}: expected AccessDenied, got {shown}"
        );
        assert!(
            err.to_string().contains("AWS_ACCESS_KEY_ID")
                || err.to_string().contains("AWS_SECRET_ACCESS_KEY"),
            "{case}: the message hints at the credentials: {err}"
        );
        assert!(!shown.contains(secret), "{case}: secret leaked: {shown}");
        assert!(
            !source.dumped.load(Ordering::SeqCst),
            "{case}: the source was read before the store was checked"
        );
        assert!(!err.is_retryable(), "{case}");
        // Every other operation says the same.
        let listed = store.list_all(None).await.unwrap_err();
        assert!(
            matches!(listed, Error::AccessDenied { .. }),
            "{case}: {listed:?}"
        );
        let put = store
            .put(&key("x"), Bytes::from_static(b"x"), PutOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(put, Error::AccessDenied { .. }), "{case}: {put:?}");
        assert!(matches!(
            store.check_access().await,
            Err(Error::AccessDenied { .. })
        ));
    }
}

#[tokio::test]
async fn a_missing_bucket_is_a_clear_error() {
    let server = server();
    let store = S3Store::builder("no-such-bucket-e7a1")
        .endpoint(server.endpoint())
        .credentials(server.access_key_id(), server.secret_access_key().clone())
        .max_retries(0)
        .build()
        .unwrap();
    let expected = "bucket \"no-such-bucket-e7a1\" does not exist";
    let listed = store.list_all(None).await.unwrap_err();
    assert!(listed.to_string().contains(expected), "{listed}");
    let checked = store.check_access().await.unwrap_err();
    assert!(checked.to_string().contains(expected), "{checked}");

    let source = WatchedSource::default();
    let err = Engine::new(Arc::new(store.clone()))
        .backup(&source, &BackupRequest::new("db"))
        .await
        .unwrap_err();
    let message = err.to_string();
    eprintln!("missing bucket: {message}");
    assert!(
        matches!(
            err,
            Error::Store {
                retryable: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(message.contains(expected), "{message}");
    assert!(
        message.contains(server.endpoint()),
        "names the endpoint: {message}"
    );
    assert!(!source.dumped.load(Ordering::SeqCst), "source read");
}

#[tokio::test]
async fn an_unreachable_server_is_a_retryable_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = S3Store::builder("bkt")
        .endpoint(format!("http://127.0.0.1:{port}"))
        .credentials("id", Secret::new("secret-value-123"))
        .max_retries(1)
        .retry_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let err = store.check_access().await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(!err.to_string().contains("secret-value-123"));
    assert!(err.to_string().contains("checking access"), "{err}");
}

/// A source of `chunks` MiB that counts what it produced, slow enough
/// (a short pause per MiB) for a test to act while it streams.
#[derive(Debug)]
struct CountingSource {
    chunks: usize,
    produced: Arc<AtomicUsize>,
}

#[async_trait]
impl DumpSource for CountingSource {
    fn info(&self) -> SourceInfo {
        ScriptedSource::ok(0).info()
    }
    async fn dump(&self, _: &DumpOptions) -> backup_core::Result<DumpStream> {
        let produced = Arc::clone(&self.produced);
        let stream = futures::stream::iter(0..self.chunks)
            .then(move |i| {
                let produced = Arc::clone(&produced);
                async move {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    produced.fetch_add(1, Ordering::SeqCst);
                    Ok(Bytes::from(pattern(1 << 20, i as u64)))
                }
            })
            .boxed();
        Ok(DumpStream::new(stream, Versions::default()))
    }
}

/// The server dies in the middle of a multipart upload: the backup fails
/// with a clear error and writes no manifest; once the server is back, the
/// catalog lists nothing and a sweep finds nothing to remove.
///
/// The parts already uploaded cannot be aborted while the server is down.
/// On s3s-fs they stay as `.upload_id-*` files at the top of its data
/// directory, outside every bucket, never listed (s3s-fs has no
/// ListMultipartUploads and no expiry). On AWS S3 they stay, invisible but
/// billed, until a lifecycle rule with `AbortIncompleteMultipartUpload`
/// removes them; the README shows one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_upload_leaves_no_backup() {
    let mut server = server();
    if !server.is_local() {
        eprintln!("skipped: needs a local s3s-fs it can kill (BACKUP_TEST_S3_ENDPOINT is set)");
        return;
    }
    let store = server
        .store_builder()
        .part_size(MIN_PART_SIZE)
        .max_retries(1)
        .retry_timeout(Duration::from_secs(3))
        .connect_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let engine =
        Engine::new(Arc::new(store.clone())).with_compressor(Arc::new(Compression::none()));
    let produced = Arc::new(AtomicUsize::new(0));
    let source = CountingSource {
        chunks: 400,
        produced: Arc::clone(&produced),
    };
    let backup = tokio::spawn({
        let engine = engine.clone();
        async move { engine.backup(&source, &BackupRequest::new("db")).await }
    });
    // Wait until parts are on the server, then kill it.
    let mut waited = 0;
    while !multipart_files(&server)
        .iter()
        .any(|f| f.contains(".part-"))
    {
        assert!(waited < 1000, "no part was ever uploaded");
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    server.kill();
    let err = tokio::time::timeout(Duration::from_secs(60), backup)
        .await
        .expect("the backup fails promptly once the server is gone")
        .unwrap()
        .unwrap_err();
    let message = err.to_string();
    eprintln!("server killed: {message}");
    assert!(matches!(err, Error::Store { .. }), "{err:?}");
    assert!(
        err.is_retryable(),
        "a dead server is worth retrying: {err:?}"
    );
    assert!(message.contains(&store.to_string()), "{message}");
    assert!(
        produced.load(Ordering::SeqCst) < 400,
        "the dump stopped early"
    );

    server.restart().unwrap();
    assert_no_backup_listed(&engine).await;
    // The backup's in-progress marker could not be removed while the
    // server was down: it is the only object left, and a sweep removes it
    // once it is stale.
    let (markers, left): (Vec<String>, Vec<String>) = objects_besides_run_records(&store)
        .await
        .into_iter()
        .partition(|k| k.contains("/_inflight/"));
    assert!(
        left.is_empty(),
        "neither manifest nor artifact exists: {left:?}"
    );
    assert!(markers.len() <= 1, "{markers:?}");
    let swept = engine
        .catalog()
        .sweep(Duration::ZERO, chrono::Utc::now())
        .await
        .unwrap();
    assert!(swept.removed.is_empty() && swept.too_recent.is_empty());
    assert!(swept.stale_markers.is_empty(), "{swept:?}");
    let later = chrono::Utc::now() + chrono::Duration::hours(2);
    let swept = engine.catalog().sweep(Duration::ZERO, later).await.unwrap();
    assert_eq!(swept.stale_markers, markers);
    assert!(objects_besides_run_records(&store).await.is_empty());
    assert_no_backup_listed(&engine).await;
    // What is left is the parts of the interrupted upload, outside the
    // bucket (see the doc comment).
    let leftovers = multipart_files(&server);
    assert!(
        leftovers.iter().all(|f| f.starts_with(".upload")),
        "{leftovers:?}"
    );
    eprintln!(
        "{} s3s-fs multipart files left by the interrupted upload (outside the bucket)",
        leftovers.len()
    );
}

#[tokio::test]
async fn a_failing_source_aborts_the_multipart_upload() {
    let server = server();
    let store = server
        .store_builder()
        .part_size(MIN_PART_SIZE)
        .build()
        .unwrap();
    let engine =
        Engine::new(Arc::new(store.clone())).with_compressor(Arc::new(Compression::none()));
    let err = engine
        .backup(
            &ScriptedSource::fail_after(17 * 1024 * 1024, "disk on fire"),
            &BackupRequest::new("db"),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("disk on fire"), "{err}");
    assert_nothing_left(&engine, "a failed upload").await;
    eventually_no_multipart_files(&server).await;
}

/// A process killed between the conditional-PUT probe's first PUT and its
/// DELETE (found by the crash harness, examples/backupctl/tests/crash.rs) leaves
/// `_probe/conditional-put-…` behind: a temporary object, reported by
/// `sweep_temporary` and removed once old enough, never while young.
#[tokio::test]
async fn a_probe_object_left_by_a_kill_is_a_temporary_object() {
    use backup_core::store::TemporarySweep;
    let server = server();
    let Some(data) = server.data_dir().map(std::path::Path::to_path_buf) else {
        eprintln!("skipped: needs a local s3s-fs to age the object");
        return;
    };
    let prefix = format!("probe-{:08x}", rand::random::<u32>());
    let store = server.store_builder().prefix(&prefix).build().unwrap();
    // What the killed probe left (the probe itself removes its object).
    assert!(store.supports_conditional_put().await.unwrap());
    let left = key("_probe/conditional-put-00112233445566ff");
    store
        .put(&left, Bytes::from_static(b"1"), PutOptions::create())
        .await
        .unwrap();
    let young = store
        .sweep_temporary(&TemporarySweep::older_than(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert_eq!(young.len(), 1, "{young:?}");
    assert_eq!(young[0].location, left.as_str());
    assert!(!young[0].removed);

    // Two hours later (s3s-fs reports its files' mtimes).
    let file = data.join(server.bucket()).join(&prefix).join(left.as_str());
    let f = std::fs::File::options().write(true).open(&file).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    let reported = store
        .sweep_temporary(&TemporarySweep::report_only())
        .await
        .unwrap();
    assert!(reported.len() == 1 && !reported[0].removed, "{reported:?}");
    let swept = store
        .sweep_temporary(&TemporarySweep::older_than(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert!(swept.len() == 1 && swept[0].removed, "{swept:?}");
    assert!(store.list_all(None).await.unwrap().is_empty());
}
