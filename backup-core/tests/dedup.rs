//! Incremental (deduplicated) backups: round trips, what a second backup
//! stores, damage found before commit, garbage collection and check.

use std::sync::Arc;
use std::time::Duration;

use backup_core::prelude::*;
use backup_core::store::StoreExt;
use backup_core::testing::{
    RecordingTarget, ScriptedSource, assert_no_backup_listed, listed_keys, pattern,
};
use backup_core::{
    catalog::RUN_RECORD_NAME, crypto::AgeIdentities, crypto::AgeRecipients, dedup::DedupOptions,
    key::Key, manifest::Manifest, memory::InMemoryStore, retention::KeepLast,
    retention::PlanOptions, source::DumpOptions, source::DumpStream, source::SourceInfo,
    source::Versions, store::ObjectMeta, store::PutOptions,
};
use bytes::Bytes;

fn engine(store: &Arc<InMemoryStore>) -> Engine {
    Engine::new(store.clone() as Arc<dyn Store>)
        // Small chunks and packs so a few MiB give many of both.
        .with_dedup(
            DedupOptions::default()
                .chunk_sizes(4 * 1024, 16 * 1024, 64 * 1024)
                .pack_size(256 * 1024),
        )
}

fn incremental(source_id: &str) -> BackupRequest {
    BackupRequest::new(source_id).backup_type(BackupType::Incremental)
}

/// A source with compressible content (text-like rows), so compression
/// matters, and a way to change a few rows.
#[derive(Debug, Clone)]
struct Rows {
    rows: Vec<String>,
}

impl Rows {
    fn new(n: usize) -> Self {
        let noise = pattern(n * 8, 11);
        Rows {
            rows: (0..n)
                .map(|i| {
                    format!(
                        "{i}\t{}\taccount {}\t{:02x}{:02x}{:02x}\n",
                        i % 97,
                        i * 7,
                        noise[i * 8],
                        noise[i * 8 + 1],
                        noise[i * 8 + 2]
                    )
                })
                .collect(),
        }
    }

    fn content(&self) -> Vec<u8> {
        self.rows.concat().into_bytes()
    }
}

#[async_trait::async_trait]
impl DumpSource for Rows {
    fn info(&self) -> SourceInfo {
        ScriptedSource::ok(0).info()
    }
    async fn dump(&self, _: &DumpOptions) -> Result<DumpStream> {
        let data = Bytes::from(self.content());
        let pieces: Vec<Result<Bytes>> = (0..data.len())
            .step_by(100_000)
            .map(|i| Ok(data.slice(i..(i + 100_000).min(data.len()))))
            .collect();
        Ok(DumpStream::new(
            Box::pin(futures::stream::iter(pieces)),
            Versions::default(),
        ))
    }
}

async fn restored(engine: &Engine, id: &str) -> Vec<u8> {
    let target = RecordingTarget::default();
    engine
        .restore(id, &target, &RestoreOptions::default())
        .await
        .unwrap();
    target.recording().committed.expect("committed")
}

#[tokio::test]
async fn round_trips_with_every_compression_and_with_encryption() {
    let (identities, recipient, _) = AgeIdentities::generate();
    let source = ScriptedSource::ok(3 * 1024 * 1024 + 7);
    for (compression, encrypted) in [
        ("none", false),
        ("zstd", false),
        ("gzip", false),
        ("zstd", true),
    ] {
        let store = Arc::new(InMemoryStore::new());
        let mut engine =
            engine(&store).with_compressor(Arc::new(compression.parse::<Compression>().unwrap()));
        if encrypted {
            engine = engine
                .with_encryption(AgeRecipients::parse([recipient.as_str()]).unwrap())
                .with_identities(identities.clone());
        }
        let m = engine.backup(&source, &incremental("s")).await.unwrap();
        assert_eq!(m.backup_type, BackupType::Incremental);
        assert!(m.artifact.ends_with(".bin.chunks"), "{}", m.artifact);
        let d = m.dedup.as_ref().unwrap();
        assert_eq!(d.logical_size, source.len as u64);
        assert_eq!(m.raw.size, source.len as u64);
        assert_eq!(d.new_chunks, d.chunks, "first backup stores every chunk");
        assert!(d.chunks > 50, "{d:?}");
        assert!(d.packs >= 2, "{d:?}");
        assert_eq!(m.encryption.is_some(), encrypted);
        let listed = engine.catalog().list(&Filter::all()).await.unwrap();
        assert_eq!(listed.len(), 1, "one backup listed, no chunk objects");
        engine.verify(&m.id).await.unwrap();
        engine.verify_stored(&m.id).await.unwrap();
        assert!(
            restored(&engine, &m.id).await == source.content(),
            "{compression} encrypted={encrypted}"
        );
        // The manifest round-trips through JSON with its dedup section.
        let key = m.manifest_key().unwrap();
        let back = Manifest::from_json(&key, &store.get_bytes(&key).await.unwrap()).unwrap();
        assert_eq!(back, m);
    }
}

#[tokio::test]
async fn encrypted_chunks_need_the_identity_and_are_not_shared_with_plaintext() {
    let (identities, recipient, _) = AgeIdentities::generate();
    let store = Arc::new(InMemoryStore::new());
    let source = ScriptedSource::ok(1024 * 1024);
    let plain = engine(&store)
        .backup(&source, &incremental("s"))
        .await
        .unwrap();
    let encrypting =
        engine(&store).with_encryption(AgeRecipients::parse([recipient.as_str()]).unwrap());
    let enc = encrypting.backup(&source, &incremental("s")).await.unwrap();
    let d = enc.dedup.as_ref().unwrap();
    assert_eq!(
        d.new_chunks, d.chunks,
        "plaintext chunks are not reused by an encrypted backup"
    );
    // Without the identity: refused before anything is written.
    let target = RecordingTarget::default();
    let err = encrypting
        .restore(&enc.id, &target, &RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decryption { .. }), "{err}");
    assert_eq!(target.recording().committed, None);
    let (wrong, _, _) = AgeIdentities::generate();
    let err = engine(&store)
        .with_identities(wrong)
        .restore(&enc.id, &target, &RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decryption { .. }), "{err}");
    assert_eq!(target.recording().committed, None);
    let ok = engine(&store).with_identities(identities);
    assert!(restored(&ok, &enc.id).await == source.content());
    assert!(restored(&ok, &plain.id).await == source.content());
    // A passphrase would run scrypt per chunk: refused.
    let err = engine(&store)
        .with_encryption(AgeRecipients::passphrase(&Secret::new("pw".to_string())))
        .backup(&source, &incremental("s"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
}

#[tokio::test]
async fn a_second_backup_of_slightly_changed_data_stores_little() {
    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store);
    let mut rows = Rows::new(100_000);
    let first = engine.backup(&rows, &incremental("rows")).await.unwrap();
    // Change 0.5% of the rows in one place, and a few scattered ones.
    for i in 10_000..10_500 {
        rows.rows[i] = format!("{i}\tchanged\n");
    }
    rows.rows[70_000].push_str("x\n");
    let second = engine.backup(&rows, &incremental("rows")).await.unwrap();
    let (a, b) = (
        first.dedup.as_ref().unwrap(),
        second.dedup.as_ref().unwrap(),
    );
    assert!(a.logical_size > 2_000_000, "{a:?}");
    assert!(
        b.new_chunks * 10 < b.chunks,
        "second backup stored {} of {} chunks",
        b.new_chunks,
        b.chunks
    );
    assert!(
        second.bytes_stored() * 10 < first.bytes_stored(),
        "second stored {} bytes, first {}",
        second.bytes_stored(),
        first.bytes_stored()
    );
    assert!(restored(&engine, &second.id).await == rows.content());
    assert!(restored(&engine, &first.id).await != rows.content());
    // An identical dump stores no chunk at all.
    let third = engine.backup(&rows, &incremental("rows")).await.unwrap();
    assert_eq!(third.dedup.as_ref().unwrap().new_chunks, 0);
    assert_eq!(third.dedup.as_ref().unwrap().stored_bytes, 0);
    // Stats count what each backup added.
    let stats = engine.catalog().stats(&Filter::all()).await.unwrap();
    assert_eq!(
        stats.total.total_bytes,
        first.bytes_stored() + second.bytes_stored() + third.bytes_stored()
    );
}

/// The smallest dump, one byte, is one chunk (empty dumps are refused:
/// `tests/integrity.rs`).
#[tokio::test]
async fn one_byte_dumps_round_trip() {
    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store);
    let source = ScriptedSource::ok(1);
    let m = engine.backup(&source, &incremental("e")).await.unwrap();
    assert_eq!(m.dedup.as_ref().unwrap().chunks, 1);
    engine.verify(&m.id).await.unwrap();
    assert_eq!(restored(&engine, &m.id).await, source.content());
}

#[tokio::test]
async fn failing_source_leaves_no_backup_and_no_marker() {
    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store);
    let err = engine
        .backup(
            &ScriptedSource::fail_after(2 * 1024 * 1024, "boom"),
            &incremental("f"),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("boom"), "{err}");
    assert_no_backup_listed(&engine).await;
    let keys = listed_keys(&*store, None).await;
    assert!(
        keys.iter()
            .all(|k| k.contains("/_chunks/packs/") || k.ends_with(RUN_RECORD_NAME)),
        "only completed packs may remain: {keys:?}"
    );
    // Those packs are garbage for the next GC.
    let report = engine.gc("default", Duration::ZERO, false).await.unwrap();
    assert!(report.skipped.is_none(), "{report:?}");
    let keys = store
        .list_all(Some(&Key::new("default/_chunks").unwrap()))
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

fn pack_keys(objects: &[ObjectMeta]) -> Vec<Key> {
    objects
        .iter()
        .filter(|m| m.key.as_str().ends_with(".pack"))
        .map(|m| m.key.clone())
        .collect()
}

#[tokio::test]
async fn corrupt_chunks_and_missing_packs_are_refused_before_commit() {
    for damage in ["flip", "missing pack", "missing index", "chunk list"] {
        let store = Arc::new(InMemoryStore::new());
        let engine = engine(&store).with_compressor(Arc::new(Compression::none()));
        let source = ScriptedSource::ok(2 * 1024 * 1024);
        let m = engine.backup(&source, &incremental("c")).await.unwrap();
        let objects = store.list_all(None).await.unwrap();
        let packs = pack_keys(&objects);
        // Damage the last pack: the end of the dump, after most of it has
        // been handed to the target.
        let pack = packs
            .iter()
            .max_by_key(|k| objects.iter().find(|o| &o.key == *k).unwrap().last_modified)
            .unwrap()
            .clone();
        match damage {
            "flip" => {
                let mut bytes = store.get_bytes(&pack).await.unwrap().to_vec();
                let n = bytes.len();
                bytes[n - 100] ^= 0x01;
                store
                    .put(&pack, Bytes::from(bytes), PutOptions::default())
                    .await
                    .unwrap();
            }
            "missing pack" => store.delete(&pack).await.unwrap(),
            "missing index" => {
                let idx = Key::new(pack.as_str().replace(".pack", ".idx")).unwrap();
                store.delete(&idx).await.unwrap();
            }
            _ => {
                let key = m.artifact_key().unwrap();
                let mut bytes = store.get_bytes(&key).await.unwrap().to_vec();
                bytes[20] ^= 0x80;
                store
                    .put(&key, Bytes::from(bytes), PutOptions::default())
                    .await
                    .unwrap();
            }
        }
        let target = RecordingTarget::default();
        let err = engine
            .restore(&m.id, &target, &RestoreOptions::default())
            .await
            .unwrap_err();
        let rec = target.recording();
        assert_eq!(rec.committed, None, "{damage}: committed despite {err}");
        if damage == "flip" {
            assert!(rec.aborted, "{damage}: session not aborted");
        } else {
            // Found before the target was touched.
            assert!(rec.received.is_empty(), "{damage}: target received data");
        }
        assert!(
            matches!(err, Error::Integrity { .. } | Error::NotFound { .. }),
            "{damage}: {err}"
        );
        assert!(
            engine.verify(&m.id).await.is_err(),
            "{damage}: verify passed"
        );
        let report = engine.check(None).await.unwrap();
        assert!(!report.is_ok(), "{damage}: check found nothing: {report:?}");
        match damage {
            "flip" => assert_eq!(report.corrupt_chunks.len(), 1, "{report:?}"),
            "missing pack" => {
                assert!(!report.missing_chunks.is_empty(), "{report:?}");
                assert_eq!(report.dangling_indexes.len(), 1, "{report:?}");
            }
            "missing index" => {
                assert!(!report.missing_chunks.is_empty(), "{report:?}");
                assert_eq!(report.orphaned_packs.len(), 1, "{report:?}");
            }
            _ => assert_eq!(report.corrupt_objects.len(), 1, "{report:?}"),
        }
        if damage.starts_with("missing") {
            // The next backup stores the lost chunks again, which heals
            // the damaged backup too (chunks are found by id).
            let again = engine.backup(&source, &incremental("c")).await.unwrap();
            let d = again.dedup.as_ref().unwrap();
            assert!(d.new_chunks > 0, "{damage}: {d:?}");
            assert!(restored(&engine, &m.id).await == source.content());
        }
    }
}

async fn chunk_store_keys(store: &InMemoryStore, ext: &str) -> Vec<String> {
    store
        .list_all(Some(&Key::new("default/_chunks").unwrap()))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key.to_string())
        .filter(|k| k.ends_with(ext))
        .collect()
}

/// Two backups sharing half their data: the first's other half is garbage
/// once it is deleted.
async fn two_backups(engine: &Engine) -> (Manifest, Manifest, Rows) {
    let first_rows = Rows::new(100_000);
    let first = engine
        .backup(&first_rows, &incremental("rows"))
        .await
        .unwrap();
    let mut rows = first_rows.clone();
    let other = Rows::new(160_000);
    for i in 50_000..100_000 {
        rows.rows[i] = other.rows[i + 60_000].replace('\t', " ");
    }
    let second = engine.backup(&rows, &incremental("rows")).await.unwrap();
    let d = second.dedup.as_ref().unwrap();
    assert!(
        d.new_chunks * 3 > d.chunks && d.new_chunks < d.chunks,
        "{d:?}"
    );
    (first, second, rows)
}

#[tokio::test]
async fn gc_after_deleting_the_first_backup_keeps_the_second_and_removes_orphans() {
    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store);
    let (first, second, rows) = two_backups(&engine).await;
    let before = engine.check(None).await.unwrap();
    assert!(before.is_ok(), "{before:?}");
    assert_eq!(before.unreferenced_chunks, 0);

    // Nothing is garbage while both backups exist.
    let idle = engine.gc("default", Duration::ZERO, false).await.unwrap();
    assert!(
        idle.deleted_packs.is_empty() && idle.repacked_packs.is_empty(),
        "{idle:?}"
    );

    engine.catalog().delete(&first.id).await.unwrap();
    let orphaned = engine.check(None).await.unwrap();
    assert!(orphaned.is_ok(), "{orphaned:?}");
    assert!(orphaned.unreferenced_chunks > 0, "{orphaned:?}");

    // A dry run reports and changes nothing.
    let packs = chunk_store_keys(&store, ".pack").await;
    let plan = engine.gc("default", Duration::ZERO, true).await.unwrap();
    assert!(!plan.deleted_packs.is_empty(), "{plan:?}");
    assert_eq!(chunk_store_keys(&store, ".pack").await, packs);

    let gc = engine.gc("default", Duration::ZERO, false).await.unwrap();
    assert_eq!(gc.skipped, None);
    assert_eq!(gc.backups, 1);
    assert!(!gc.deleted_packs.is_empty(), "{gc:?}");
    assert!(gc.freed_bytes > 0 && gc.removed_chunks > 0, "{gc:?}");
    assert_eq!(gc.missing_chunks, 0);
    assert!(restored(&engine, &second.id).await == rows.content());

    // Packs that are partly garbage below the threshold keep it; with a
    // threshold of 0 every orphaned chunk goes.
    let strict = engine
        .clone()
        .with_dedup(engine.dedup_options().clone().repack_threshold(0.0));
    let gc = strict.gc("default", Duration::ZERO, false).await.unwrap();
    let after = engine.check(None).await.unwrap();
    assert!(after.is_ok(), "{after:?}");
    assert_eq!(after.unreferenced_chunks, 0, "{gc:?} {after:?}");
    assert_eq!(after.orphaned_packs, Vec::<String>::new());
    // Only what the second backup needs remains.
    assert!(after.chunks_checked <= second.dedup.as_ref().unwrap().chunks);
    engine.verify(&second.id).await.unwrap();
    assert!(restored(&engine, &second.id).await == rows.content());
    // No marker is left behind.
    assert!(chunk_store_keys(&store, "gc-running").await.is_empty());
}

#[tokio::test]
async fn repacking_keeps_encrypted_chunks_readable_without_a_key_in_the_gc() {
    let (identities, recipient, _) = AgeIdentities::generate();
    let store = Arc::new(InMemoryStore::new());
    let writer = engine(&store)
        .with_encryption(AgeRecipients::parse([recipient.as_str()]).unwrap())
        .with_dedup(
            DedupOptions::default()
                .chunk_sizes(4 * 1024, 16 * 1024, 64 * 1024)
                .pack_size(256 * 1024)
                .repack_threshold(0.0),
        );
    let (first, second, rows) = two_backups(&writer).await;
    writer.catalog().delete(&first.id).await.unwrap();
    let gc = writer.gc("default", Duration::ZERO, false).await.unwrap();
    assert!(
        !gc.repacked_packs.is_empty() || !gc.deleted_packs.is_empty(),
        "{gc:?}"
    );
    let reader = engine(&store).with_identities(identities);
    let after = reader.check(None).await.unwrap();
    assert!(after.is_ok(), "{after:?}");
    assert_eq!((after.unreferenced_chunks, after.unverified_chunks), (0, 0));
    assert!(restored(&reader, &second.id).await == rows.content());
    // Without the key, check sees the chunks but cannot verify them.
    let blind = engine(&store).check(None).await.unwrap();
    assert!(blind.is_ok() && blind.unverified_chunks > 0, "{blind:?}");
}

#[tokio::test]
async fn gc_backs_off_while_a_backup_is_in_flight_and_spares_young_packs() {
    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store);
    let (first, second, _) = two_backups(&engine).await;
    engine.catalog().delete(&first.id).await.unwrap();
    let packs = chunk_store_keys(&store, ".pack").await;

    let marker = Key::new("default/_chunks/inflight/20990101T000000Z-0badf00d").unwrap();
    store
        .put(&marker, Bytes::from_static(b"{}"), PutOptions::default())
        .await
        .unwrap();
    let gc = engine.gc("default", Duration::ZERO, false).await.unwrap();
    let reason = gc.skipped.expect("backed off");
    assert!(reason.contains("20990101T000000Z-0badf00d"), "{reason}");
    assert_eq!(chunk_store_keys(&store, ".pack").await, packs);
    assert!(chunk_store_keys(&store, "gc-running").await.is_empty());
    store.delete(&marker).await.unwrap();

    // Packs younger than the grace period are never deleted.
    let gc = engine
        .gc("default", Duration::from_secs(3600), false)
        .await
        .unwrap();
    assert!(
        gc.deleted_packs.is_empty() && gc.repacked_packs.is_empty(),
        "{gc:?}"
    );
    assert_eq!(gc.young_packs.len(), packs.len(), "{gc:?}");
    assert_eq!(chunk_store_keys(&store, ".pack").await, packs);

    let gc = engine.gc("default", Duration::ZERO, false).await.unwrap();
    assert!(!gc.deleted_packs.is_empty(), "{gc:?}");
    engine.verify(&second.id).await.unwrap();
}

#[tokio::test]
async fn a_backup_waits_for_a_running_gc_or_fails_clearly() {
    let store = Arc::new(InMemoryStore::new());
    let gc_marker = Key::new("default/_chunks/gc-running").unwrap();
    store
        .put(&gc_marker, Bytes::from_static(b"{}"), PutOptions::default())
        .await
        .unwrap();
    let impatient = engine(&store).with_dedup(
        DedupOptions::default().gc_wait(Duration::from_millis(300), Duration::from_millis(50)),
    );
    let source = ScriptedSource::ok(200_000);
    let err = impatient
        .backup(&source, &incremental("w"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Busy { .. }), "{err}");
    assert!(err.to_string().contains("gc-running"), "{err}");
    assert!(err.is_retryable());
    assert!(
        chunk_store_keys(&store, "")
            .await
            .iter()
            .all(|k| !k.contains("inflight"))
    );

    // A patient backup proceeds once the GC is done.
    let patient = engine(&store).with_dedup(
        DedupOptions::default().gc_wait(Duration::from_secs(10), Duration::from_millis(50)),
    );
    let remover = {
        let store = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            store.delete(&gc_marker).await.unwrap();
        })
    };
    let m = patient.backup(&source, &incremental("w")).await.unwrap();
    remover.await.unwrap();
    assert!(restored(&patient, &m.id).await == source.content());
    assert!(
        chunk_store_keys(&store, "")
            .await
            .iter()
            .all(|k| !k.contains("inflight"))
    );
}

#[tokio::test]
async fn prune_collects_garbage_only_when_asked() {
    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store);
    let (_, second, rows) = two_backups(&engine).await;
    let keep = KeepLast(1);
    let opts = PlanOptions::default().include_manual(true);
    let report = engine
        .prune(&Filter::all(), &[&keep], opts, false)
        .await
        .unwrap();
    assert!(report.gc.is_empty());
    assert!(engine.check(None).await.unwrap().unreferenced_chunks > 0);
    let report = engine
        .prune(
            &Filter::all(),
            &[&keep],
            opts.collect_garbage(Duration::ZERO),
            false,
        )
        .await
        .unwrap();
    let gc = &report.gc["default"];
    assert!(!gc.deleted_packs.is_empty(), "{gc:?}");
    assert!(restored(&engine, &second.id).await == rows.content());
}
