//! The MongoDB adapter end to end, through `backup_core::Engine` and an
//! in-memory store, against a **MongoDB-compatible stand-in** (SecantusDB,
//! started by the tests) — not MongoDB itself — or against the real
//! server named by `MONGODB_URI`. Where the stand-in deviates from
//! MongoDB, the affected check is skipped with the reason printed.

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use backup_core::prelude::*;
use backup_core::store::StoreExt;
use backup_core::testing::read_all;
use backup_core::{
    manifest::Manifest, memory::InMemoryStore, source::DumpOptions, source::DumpStream,
    source::SourceInfo, store::PutOptions,
};
use backup_mongo::*;
use bytes::Bytes;
use futures::StreamExt;
use support::*;

/// Documents in the large collection of the end-to-end test: about 18 MB
/// of BSON, so the dump reads more than one 16 MiB cursor batch and the
/// restore writes many batches. (The stand-in handles a few hundred
/// documents per millisecond at best; 100k made this one test take five
/// minutes of CI for nothing more.)
const BIG: i64 = 45_000;

/// The server's most bytes in one cursor batch.
const MAX_BATCH_BYTES: u64 = 16 * 1024 * 1024;

fn engine(store: &Arc<InMemoryStore>) -> Engine {
    Engine::new(store.clone() as Arc<dyn Store>).with_compressor(Arc::new(Compression::zstd(3)))
}

fn only(names: &[&str]) -> DumpOptions {
    DumpOptions::default().only(names.iter().map(|s| s.to_string()).collect())
}

fn request(source_id: &str, dump: DumpOptions) -> BackupRequest {
    let mut req = BackupRequest::new(source_id).created_by("test");
    req.dump = dump;
    req
}

/// Databases left behind by a staged restore.
async fn staging_leftovers(client: &mongodb::Client, target: &str) -> Vec<String> {
    database_names(client)
        .await
        .into_iter()
        .filter(|n| n.starts_with(&format!("{target}__restore_")))
        .collect()
}

/// The raw (decompressed) archive of a backup.
/// The plain archive of backup `m`, read back (and verified) through the
/// engine.
async fn raw_archive(store: &Arc<InMemoryStore>, m: &Manifest) -> Vec<u8> {
    let (_, stream) = engine(store).open_dump(&m.id).await.unwrap();
    read_all(stream).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_end_to_end_backup_restore_equal_mixed_documents_over_several_batches() {
    let client = client().await;
    let source_db = TestServer::unique_name("e2e_src");
    make_source(&client, &source_db, BIG).await;
    let before = fingerprint(&client, &source_db).await;
    assert_eq!(before["mixed"].count, BIG as u64);
    assert_eq!(
        before["mixed"].indexes.len(),
        3,
        "{:?}",
        before["mixed"].indexes
    );
    assert_eq!(before["empty"].count, 0);
    assert_eq!(before["log"].options.get_bool("capped"), Ok(true));
    assert_eq!(before["recent"].kind, "view");

    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store);
    let source = MongoSource::new(server().connection(&source_db));
    let manifest = engine
        .backup(&source, &request("shop", DumpOptions::default()))
        .await
        .unwrap();
    assert_eq!(
        (manifest.engine.as_str(), manifest.format.as_str()),
        ("mongodb", "archive")
    );
    assert!(
        manifest.artifact.ends_with(".archive.zst"),
        "{}",
        manifest.artifact
    );
    let tool = manifest.versions.tool.as_deref().unwrap();
    assert!(tool.contains("mongodb driver 3."), "{tool}");
    assert!(
        manifest.raw.size > MAX_BATCH_BYTES,
        "the dump must span more than one cursor batch: {} bytes",
        manifest.raw.size
    );
    assert!(manifest.versions.server.is_some());
    engine.verify(&manifest.id).await.unwrap();

    // The artifact is a mongodump archive: list it without restoring.
    let archive = raw_archive(&store, &manifest).await;
    let listing = list_reader(&archive[..]).unwrap();
    let count = |c: &str| listing.get(&source_db, c).unwrap().documents;
    assert_eq!(
        (
            count("mixed"),
            count("empty"),
            count("log"),
            count("recent")
        ),
        (BIG as u64, 0, 200, 0)
    );
    assert_eq!(
        listing.get(&source_db, "recent").unwrap().collection_type,
        CollectionType::View
    );

    // Staged restore into another database.
    let target_db = format!("{source_db}_copy");
    let target = MongoTarget::new(server().connection("admin"));
    let report = engine
        .restore(
            &manifest.id,
            &target,
            &RestoreOptions::into_database(&target_db),
        )
        .await
        .unwrap();
    assert_eq!(report.database, target_db);
    assert!(staging_leftovers(&client, &target_db).await.is_empty());
    let after = fingerprint(&client, &target_db).await;
    if rename_keeps_options(&client).await {
        assert_eq!(after, before);
    } else {
        eprintln!(
            "SKIPPED (stand-in deviation): collection options after a staged restore not compared: this server's renameCollection drops collection options, MongoDB's keeps them; documents, indexes and views compared; options are checked by the direct restore below"
        );
        assert_eq!(without_options(&after), without_options(&before));
    }

    // Direct restore: options recreated as listCollections reported them.
    let direct_db = format!("{source_db}_direct");
    let direct =
        MongoTarget::new(server().connection("admin")).with_strategy(RestoreStrategy::Direct);
    engine
        .restore(
            &manifest.id,
            &direct,
            &RestoreOptions::into_database(&direct_db),
        )
        .await
        .unwrap();
    assert_eq!(fingerprint(&client, &direct_db).await, before);

    for db in [&source_db, &target_db, &direct_db] {
        drop_db(&client, db).await;
    }
}

/// A small source for the other tests: same shapes, fewer documents.
async fn small_source(prefix: &str) -> (mongodb::Client, String) {
    let client = client().await;
    let db = TestServer::unique_name(prefix);
    make_source(&client, &db, 2_000).await;
    (client, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_selected_collections_dump_and_restore() {
    let (client, source_db) = small_source("sel_src").await;
    let before = fingerprint(&client, &source_db).await;
    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store);
    let source = MongoSource::new(server().connection(&source_db));

    // Dump only two collections.
    let partial = engine
        .backup(&source, &request("sel", only(&["mixed", "empty"])))
        .await
        .unwrap();
    let listing = list_reader(&raw_archive(&store, &partial).await[..]).unwrap();
    let names: Vec<&str> = listing
        .collections
        .iter()
        .map(|c| c.namespace.collection.as_str())
        .collect();
    assert_eq!(names, ["empty", "mixed"]);

    // A name that does not exist fails before anything is stored.
    let err = engine
        .backup(&source, &request("sel", only(&["mixed", "nope"])))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Config(_)) && err.to_string().contains("nope"),
        "{err}"
    );

    // Restore a subset of a full dump.
    let full = engine
        .backup(&source, &request("sel", DumpOptions::default()))
        .await
        .unwrap();
    let target_db = format!("{source_db}_sel");
    let target =
        MongoTarget::new(server().connection("admin")).with_strategy(RestoreStrategy::Direct);
    engine
        .restore(
            &full.id,
            &target,
            &RestoreOptions::into_database(&target_db).only(vec!["log".into(), "recent".into()]),
        )
        .await
        .unwrap();
    let after = fingerprint(&client, &target_db).await;
    assert_eq!(after.keys().collect::<Vec<_>>(), ["log", "recent"]);
    assert_eq!(after["log"], before["log"]);
    assert_eq!(after["recent"], before["recent"]);

    // Unknown names are refused and change nothing.
    let err = engine
        .restore(
            &full.id,
            &target,
            &RestoreOptions::into_database(&target_db).only(vec!["missing".into()]),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    assert_eq!(fingerprint(&client, &target_db).await, after);

    drop_db(&client, &source_db).await;
    drop_db(&client, &target_db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_drop_before_restore_replaces_and_plain_restore_refuses() {
    let (client, source_db) = small_source("clean_src").await;
    let before = fingerprint(&client, &source_db).await;
    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store);
    let m = engine
        .backup(
            &MongoSource::new(server().connection(&source_db)),
            &request("clean", DumpOptions::default()),
        )
        .await
        .unwrap();

    // The target has diverged: extra documents, a dropped index, an extra
    // collection that the restore must leave alone.
    let target_db = format!("{source_db}_t");
    let target = MongoTarget::new(server().connection(&target_db));
    engine
        .restore(&m.id, &target, &RestoreOptions::default())
        .await
        .unwrap();
    let t = client.database(&target_db);
    insert_mixed(&client, &target_db, "mixed", 1_000_000, 10).await;
    t.collection::<bson::Document>("mixed")
        .drop_index("group_when")
        .await
        .unwrap();
    t.collection::<bson::Document>("unrelated")
        .insert_one(bson::doc! { "keep": true })
        .await
        .unwrap();
    let diverged = fingerprint(&client, &target_db).await;

    // Without clean: refused before writing anything.
    let err = engine
        .restore(&m.id, &target, &RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exist"), "{err}");
    assert_eq!(fingerprint(&client, &target_db).await, diverged);
    assert!(staging_leftovers(&client, &target_db).await.is_empty());

    // With clean: the archive's collections are replaced, others kept.
    for strategy in [RestoreStrategy::Staging, RestoreStrategy::Direct] {
        let target = MongoTarget::new(server().connection(&target_db)).with_strategy(strategy);
        engine
            .restore(&m.id, &target, &RestoreOptions::default().clean(true))
            .await
            .unwrap();
        let mut after = fingerprint(&client, &target_db).await;
        assert!(after.remove("unrelated").is_some(), "{strategy:?}");
        if strategy == RestoreStrategy::Direct || rename_keeps_options(&client).await {
            assert_eq!(after, before, "{strategy:?}");
        } else {
            eprintln!(
                "SKIPPED (stand-in deviation): options not compared after a staged restore (renameCollection drops them on this server)"
            );
            assert_eq!(
                without_options(&after),
                without_options(&before),
                "{strategy:?}"
            );
        }
        assert!(staging_leftovers(&client, &target_db).await.is_empty());
    }

    drop_db(&client, &source_db).await;
    drop_db(&client, &target_db).await;
}

/// A source that damages its inner source's stream.
#[derive(Debug)]
struct Damaged<S> {
    inner: S,
    damage: Damage,
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Flip one bit of the byte at this offset.
    FlipAt(usize),
    /// End the stream (successfully) after this many bytes.
    TruncateAt(usize),
}

#[async_trait]
impl<S: DumpSource> DumpSource for Damaged<S> {
    fn info(&self) -> SourceInfo {
        self.inner.info()
    }

    async fn dump(&self, opts: &DumpOptions) -> Result<DumpStream> {
        let dump = self.inner.dump(opts).await?;
        let mut all = Vec::new();
        let mut stream = dump.stream;
        while let Some(chunk) = stream.next().await {
            all.extend_from_slice(&chunk?);
        }
        match self.damage {
            Damage::FlipAt(at) => all[at] ^= 0x10,
            Damage::TruncateAt(at) => all.truncate(at),
        }
        let chunks: Vec<Result<Bytes>> = all
            .chunks(64 * 1024)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Ok(DumpStream::new(
            futures::stream::iter(chunks).boxed(),
            dump.versions,
        ))
    }
}

/// Offset of a byte inside the documents of `collection`: the middle of
/// the 10th document's `s` string, so the BSON framing stays valid and
/// only the CRC can tell.
fn offset_inside_a_document(archive: &[u8], db: &str, collection: &str) -> usize {
    let mut reader = ArchiveReader::new();
    reader.feed(archive);
    let mut seen = 0;
    let mut inside = false;
    loop {
        let position = reader.position();
        match reader.next_event().unwrap() {
            Some(backup_mongo::ArchiveEvent::NamespaceStart { namespace, .. }) => {
                inside = namespace.db == db && namespace.collection == collection;
            }
            Some(backup_mongo::ArchiveEvent::Document(doc)) if inside => {
                seen += 1;
                if seen == 10 {
                    let needle = b"name-";
                    let at = doc.windows(needle.len()).position(|w| w == needle).unwrap();
                    return position as usize + at + needle.len() + 2;
                }
            }
            Some(_) => {}
            None => panic!("no 10th document in {collection}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_corrupt_or_truncated_archives_fail_naming_collections_and_leave_target_untouched()
{
    let (client, source_db) = small_source("corrupt_src").await;
    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store);
    let conn = server().connection(&source_db);
    let good = engine
        .backup(
            &MongoSource::new(conn.clone()),
            &request("good", DumpOptions::default()),
        )
        .await
        .unwrap();
    let archive = raw_archive(&store, &good).await;
    let flip = offset_inside_a_document(&archive, &source_db, "mixed");
    // Cut inside `mixed` (collections are dumped in name order: empty, log,
    // mixed, recent).
    let cut = flip + 100;

    // Staged: the target already holds a previous restore of the same
    // data, and the damaged restores use clean; they must change nothing.
    // Direct: the target starts empty, and the collections a failed
    // restore created are dropped again.
    let target_db = format!("{source_db}_t");
    for strategy in [RestoreStrategy::Staging, RestoreStrategy::Direct] {
        let target_conn = server().connection(&target_db);
        let target = MongoTarget::new(target_conn.clone()).with_strategy(strategy);
        drop_db(&client, &target_db).await;
        if strategy == RestoreStrategy::Staging {
            engine
                .restore(
                    &good.id,
                    &MongoTarget::new(target_conn),
                    &RestoreOptions::default(),
                )
                .await
                .unwrap();
        }
        let untouched = fingerprint(&client, &target_db).await;
        assert_eq!(untouched.is_empty(), strategy == RestoreStrategy::Direct);

        for (damage, expect) in [
            (Damage::FlipAt(flip), "CRC mismatch"),
            (Damage::TruncateAt(cut), "truncated"),
        ] {
            // The damage happens before the pipeline hashes the dump: the
            // manifest's digests match, only the archive's own checks can
            // tell.
            let bad = engine
                .backup(
                    &Damaged {
                        inner: MongoSource::new(conn.clone()),
                        damage,
                    },
                    &request("bad", DumpOptions::default()),
                )
                .await
                .unwrap();
            let clean = strategy == RestoreStrategy::Staging;
            let err = engine
                .restore(&bad.id, &target, &RestoreOptions::default().clean(clean))
                .await
                .unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(err, Error::Integrity { .. }),
                "{strategy:?} {damage:?}: {err:?}"
            );
            assert!(text.contains(expect), "{text}");
            assert!(
                text.contains(&format!("collections affected: {source_db}.mixed")),
                "{text}"
            );
            if let Damage::TruncateAt(_) = damage {
                assert!(text.contains(&format!("{source_db}.recent")), "{text}");
            }
            assert_eq!(
                fingerprint(&client, &target_db).await,
                untouched,
                "{strategy:?} {damage:?}"
            );
            assert!(staging_leftovers(&client, &target_db).await.is_empty());
        }
    }

    // A stored artifact damaged later: the pipeline's digest check fails at
    // the very end, after most of the data went to the staging database.
    let key = good.artifact_key().unwrap();
    let mut stored = store.get_bytes(&key).await.unwrap().to_vec();
    let at = stored.len() - 10;
    stored[at] ^= 0x01;
    store
        .put(&key, Bytes::from(stored), PutOptions::default())
        .await
        .unwrap();
    let before = fingerprint(&client, &target_db).await;
    let err = engine
        .restore(
            &good.id,
            &MongoTarget::new(server().connection(&target_db)),
            &RestoreOptions::default().clean(true),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err:?}");
    assert_eq!(fingerprint(&client, &target_db).await, before);
    assert!(staging_leftovers(&client, &target_db).await.is_empty());

    drop_db(&client, &source_db).await;
    drop_db(&client, &target_db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_dump_of_a_missing_database_or_unreachable_server_fails_up_front() {
    let missing = MongoSource::new(server().connection(&TestServer::unique_name("nothing_here")));
    let err = missing.dump(&DumpOptions::default()).await.unwrap_err();
    assert!(matches!(err, Error::DatabaseMissing { .. }), "{err:?}");

    // A closed port: a connection error, quickly, without the password.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let conn = MongoConnection::from_uri(&format!(
        "mongodb://backup:Sup3rS3cret%21@127.0.0.1:{port}/shop?directConnection=true"
    ))
    .unwrap()
    .with_server_selection_timeout(std::time::Duration::from_millis(500));
    let source = MongoSource::new(conn.clone());
    let err = source.dump(&DumpOptions::default()).await.unwrap_err();
    assert!(matches!(err, Error::Connection { .. }), "{err:?}");
    let target = MongoTarget::new(conn.with_credentials("other", Secret::new("An0ther-pw")));
    let err2 = match target.begin(&RestoreOptions::default()).await {
        Err(e) => e,
        Ok(_) => panic!("a restore session on a closed port"),
    };
    for text in [
        err.to_string(),
        format!("{err:?}"),
        err2.to_string(),
        format!("{err2:?}"),
        format!("{source:?}"),
        format!("{target:?}"),
    ] {
        for secret in ["Sup3rS3cret", "An0ther-pw"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_credentials_never_reach_manifests_errors_or_debug() {
    let (client, source_db) = small_source("cred_src").await;
    // The shared stand-in runs without --auth and then accepts any
    // credentials (mongod would refuse the unknown user: see
    // standin_wrong_password_...); either way the password must never
    // appear in the manifest, the store, an error or Debug.
    let conn = server()
        .connection(&source_db)
        .with_credentials("backup", Secret::new("Pa55-w0rd-XYZ"));
    let source = MongoSource::new(conn.clone());
    assert!(!format!("{source:?} {conn} {conn:?}").contains("Pa55-w0rd-XYZ"));
    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store);
    match engine
        .backup(&source, &request("cred", DumpOptions::default()))
        .await
    {
        Ok(m) => {
            assert!(!String::from_utf8_lossy(&m.to_json()).contains("Pa55-w0rd-XYZ"));
        }
        Err(e) => {
            // A server with authentication rejects the unknown user.
            assert!(matches!(e, Error::Authentication { .. }), "{e:?}");
            assert!(!format!("{e} {e:?}").contains("Pa55-w0rd-XYZ"), "{e:?}");
        }
    }
    for object in store.list_all(None).await.unwrap() {
        let bytes = store.get_bytes(&object.key).await.unwrap();
        assert!(
            !bytes.windows(13).any(|w| w == b"Pa55-w0rd-XYZ"),
            "{}",
            object.key
        );
    }
    drop_db(&client, &source_db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_dropping_the_dump_stream_stops_the_producer() {
    let (client, source_db) = small_source("drop_src").await;
    let source = MongoSource::new(server().connection(&source_db)).with_buffering(1024, 1);
    let mut dump = source.dump(&DumpOptions::default()).await.unwrap();
    let first = dump.stream.next().await.unwrap().unwrap();
    assert_eq!(&first[..4], &backup_mongo::archive::MAGIC);
    drop(dump);
    // The producer is gone: a new dump still works on the same server.
    let mut total = 0;
    let mut dump = source.dump(&DumpOptions::default()).await.unwrap();
    while let Some(chunk) = dump.stream.next().await {
        total += chunk.unwrap().len();
    }
    assert!(total > 100_000, "{total}");
    drop_db(&client, &source_db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_mode_mongodump_and_mongorestore_round_trip() {
    let tools = MongoTools::from_path();
    for tool in ["mongodump", "mongorestore"] {
        if let Err(e) = tools.locate(tool).await {
            eprintln!("SKIPPED tools_mode_mongodump_and_mongorestore_round_trip: {e}");
            return;
        }
    }
    let (client, source_db) = small_source("tools_src").await;
    let before = fingerprint(&client, &source_db).await;
    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store);
    let source =
        MongoSource::new(server().connection(&source_db)).with_method(Method::Tools(tools.clone()));
    let m = engine
        .backup(&source, &request("tools", DumpOptions::default()))
        .await
        .unwrap();
    assert!(m.versions.tool.as_deref().unwrap().contains("mongodump"));
    // Our reader understands mongodump's archive.
    let listing = list_reader(&raw_archive(&store, &m).await[..]).unwrap();
    assert_eq!(listing.get(&source_db, "mixed").unwrap().documents, 2_000);
    let target_db = format!("{source_db}_t");
    let target = MongoTarget::new(server().connection(&target_db))
        .with_method(Method::Tools(tools))
        .with_strategy(RestoreStrategy::Direct);
    engine
        .restore(&m.id, &target, &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(
        without_options(&fingerprint(&client, &target_db).await),
        without_options(&before)
    );
    drop_db(&client, &source_db).await;
    drop_db(&client, &target_db).await;
}

/// An archive laid out as mongodump writes it with several collections
/// in parallel: segments of two collections interleaved, then their EOF
/// blocks; built by hand from the format's spec.
fn interleaved_archive(db: &str) -> (Vec<u8>, Vec<bson::Document>, Vec<bson::Document>) {
    use backup_mongo::archive::{MAGIC, TERMINATOR, crc64};
    let to_vec = |d: &bson::Document| bson::to_vec(d).unwrap();
    let mut out = MAGIC.to_vec();
    out.extend(to_vec(&bson::doc! {
        "concurrent_collections": 4, "version": "0.1",
        "server_version": "7.0.14", "tool_version": "100.9.4",
    }));
    for name in ["a", "b"] {
        let meta = MetadataDocument {
            indexes: vec![
                bson::doc! { "v": 2, "key": { "_id": 1 }, "name": "_id_" },
                bson::doc! { "v": 2, "key": { "k": 1 }, "name": "k_1", "unique": true },
            ],
            ..MetadataDocument::new(name, CollectionType::Collection)
        };
        out.extend(to_vec(&bson::doc! {
            "db": db, "collection": name, "metadata": meta.to_extended_json(),
            "size": 0, "type": "collection",
        }));
    }
    out.extend(TERMINATOR);
    let docs = |name: &str| -> Vec<bson::Document> {
        (0..3000)
            .map(|k: i32| bson::doc! { "_id": format!("{name}{k}"), "k": k, "payload": "x".repeat(k as usize % 50) })
            .collect()
    };
    let (a, b) = (docs("a"), docs("b"));
    let mut bytes_of = std::collections::HashMap::<&str, Vec<u8>>::new();
    for (round, chunk) in (0..3usize).map(|r| (r, r * 1000..(r + 1) * 1000)) {
        for (name, all) in [("a", &a), ("b", &b)] {
            let _ = round;
            out.extend(to_vec(&bson::doc! {
                "db": db, "collection": name, "EOF": false, "CRC": 0_i64,
            }));
            for d in &all[chunk.clone()] {
                let raw = to_vec(d);
                bytes_of.entry(name).or_default().extend(&raw);
                out.extend(raw);
            }
            out.extend(TERMINATOR);
        }
    }
    for name in ["b", "a"] {
        let crc = crc64(&bytes_of[name]) as i64;
        out.extend(to_vec(&bson::doc! {
            "db": db, "collection": name, "EOF": true, "CRC": crc,
        }));
        out.extend(TERMINATOR);
    }
    (out, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_restores_interleaved_segments_as_mongodump_writes_them() {
    let client = client().await;
    let target_db = TestServer::unique_name("interleaved");
    let (archive, a, b) = interleaved_archive("from_elsewhere");
    assert_eq!(list_reader(&archive[..]).unwrap().total_documents(), 6000);
    let target = MongoTarget::new(server().connection(&target_db)).with_batching(64 * 1024, 500, 3);
    let mut session = target.begin(&RestoreOptions::default()).await.unwrap();
    for chunk in archive.chunks(7_777) {
        session.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    session.commit().await.unwrap();
    let print = fingerprint(&client, &target_db).await;
    assert_eq!((print["a"].count, print["b"].count), (3000, 3000));
    assert!(
        print["a"].indexes.contains_key("k_1"),
        "{:?}",
        print["a"].indexes
    );
    for (name, docs) in [("a", &a), ("b", &b)] {
        let mut got: Vec<bson::Document> = client
            .database(&target_db)
            .collection::<bson::Document>(name)
            .find(bson::doc! {})
            .await
            .unwrap()
            .map(|d| d.unwrap())
            .collect()
            .await;
        got.sort_by_key(|d| d.get_i32("k").unwrap());
        assert_eq!(&got, docs);
    }
    drop_db(&client, &target_db).await;
}

/// Dumps with `conn`; the error if it fails.
async fn dump_error(conn: MongoConnection) -> Option<Error> {
    MongoSource::new(conn)
        .dump(&DumpOptions::default())
        .await
        .err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_wrong_password_is_an_authentication_error_that_never_shows_it() {
    let check = |err: Option<Error>| {
        let err = err.expect("a wrong password must fail");
        assert!(matches!(err, Error::Authentication { .. }), "{err:?}");
        let text = format!("{err} {err:?}");
        assert!(!text.contains("Wr0ng-Pa55"), "{text}");
    };
    if !server().is_stand_in() {
        // A real server refuses an unknown user whether or not it enforces
        // authentication.
        let conn = server()
            .connection("admin")
            .with_credentials("no_such_user", Secret::new("Wr0ng-Pa55"));
        check(dump_error(conn).await);
        return;
    }
    // The shared stand-in runs without --auth and then accepts any
    // credentials (a deviation: mongod refuses an unknown user even so), so
    // this test starts its own server with authentication on.
    let own = ThrowawaySecantus::start_with_user("backup", "R1ght-Pa55", "root", "admin")
        .await
        .unwrap();
    let port = own.port();
    let uri = |password: &str| {
        format!(
            "mongodb://backup:{password}@127.0.0.1:{port}/shop?directConnection=true&authSource=admin"
        )
    };

    // The right password works (and never shows either).
    let good = MongoConnection::from_uri(&uri("R1ght-Pa55")).unwrap();
    let client = mongodb::Client::with_uri_str(uri("R1ght-Pa55"))
        .await
        .unwrap();
    client
        .database("shop")
        .collection::<bson::Document>("orders")
        .insert_one(bson::doc! { "n": 1 })
        .await
        .unwrap();
    let store = Arc::new(InMemoryStore::new());
    let m = engine(&store)
        .backup(
            &MongoSource::new(good.clone()),
            &request("auth", DumpOptions::default()),
        )
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&m.to_json()).contains("R1ght-Pa55"));
    assert!(!format!("{good:?} {good}").contains("R1ght-Pa55"));

    // A wrong one, in the URI or given explicitly: Authentication, redacted.
    check(dump_error(MongoConnection::from_uri(&uri("Wr0ng-Pa55")).unwrap()).await);
    check(dump_error(good.clone().with_password(Secret::new("Wr0ng-Pa55"))).await);
    let target = MongoTarget::new(MongoConnection::from_uri(&uri("Wr0ng-Pa55")).unwrap());
    check(target.begin(&RestoreOptions::default()).await.err());
    // No credentials at all: the server says so, as an authorisation error.
    let anonymous = MongoConnection::from_uri(&format!(
        "mongodb://127.0.0.1:{port}/shop?directConnection=true"
    ))
    .unwrap();
    assert!(dump_error(anonymous).await.is_some());
    tokio::task::spawn_blocking(move || drop(own))
        .await
        .unwrap();
}
