//! The WAL archive on its own (no server): names, idempotent pushes,
//! conflicts, verified fetches, ranges, pruning, and that every catalog
//! and maintenance operation leaves WAL alone. `wal_archiving.rs` (in
//! backupctl) runs it under real servers' `archive_command`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use backup_core::compression::Compression;
use backup_core::crypto::{AgeIdentities, AgeRecipients};
use backup_core::manifest::BackupType;
use backup_core::memory::InMemoryStore;
use backup_core::retention::{KeepLast, PlanOptions, RetentionPolicy};
use backup_core::store::{PutOptions, Store, StoreExt};
use backup_core::testing::{Faults, FaultyStore, Operation, ScriptedSource};
use backup_core::{BackupRequest, Engine, Error, Filter};
use backup_postgres::{PushOutcome, WalArchive, WalFileName};
use bytes::Bytes;

const SEG: u64 = 16 << 20;

/// A WAL-sized file of pseudo-random bytes named `name` in `dir`.
fn wal_file(dir: &Path, name: &str, seed: u8, len: usize) -> PathBuf {
    let mut x = u64::from(seed) + 1;
    let data: Vec<u8> = (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 3 == 0 { 0 } else { x as u8 }
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

fn archive(store: &Arc<InMemoryStore>, compression: Compression) -> WalArchive {
    let engine = Engine::new(store.clone() as Arc<dyn Store>).with_compression(compression);
    WalArchive::new(Arc::new(engine), "acme", "cluster1").unwrap()
}

#[tokio::test]
async fn push_fetch_idempotence_conflict_and_refused_names() {
    let store = Arc::new(InMemoryStore::new());
    let wal = archive(&store, Compression::zstd(1));
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let name = "000000010000000000000003";
    let path = wal_file(src.path(), name, 1, SEG as usize);

    let PushOutcome::Archived(first) = wal.push(&path).await.unwrap() else {
        panic!("first push did not archive")
    };
    assert_eq!(first.size(), SEG);
    // Same content again: success, nothing written.
    let before = store.list_all(None).await.unwrap();
    match wal.push(&path).await.unwrap() {
        PushOutcome::AlreadyArchived(r) => assert_eq!(r, first),
        other => panic!("re-push: {other:?}"),
    }
    assert_eq!(store.list_all(None).await.unwrap(), before);
    // Other content under the same name: a conflict, the archive unchanged.
    let other_dir = tempfile::tempdir().unwrap();
    let other = wal_file(other_dir.path(), name, 2, SEG as usize);
    let outcome = wal.push(&other).await.unwrap();
    let PushOutcome::Conflict(c) = &outcome else {
        panic!("conflicting push: {outcome:?}")
    };
    assert_eq!(c.archived_sha256, first.sha256());
    let err = outcome.into_result().unwrap_err();
    assert!(err.to_string().contains(name), "{err}");
    assert_eq!(store.list_all(None).await.unwrap(), before);

    // Fetch: the same bytes, nothing else left in the directory.
    let dest = out.path().join("RECOVERYXLOG");
    let r = wal.fetch(name, &dest).await.unwrap();
    assert_eq!(r, first);
    assert!(std::fs::read(&dest).unwrap() == std::fs::read(&path).unwrap());
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 1);

    // Missing: NotFound naming the file, no file written.
    let absent = out.path().join("absent");
    let err = wal
        .fetch("000000010000000000000009", &absent)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert!(
        err.to_string().contains("000000010000000000000009"),
        "{err}"
    );
    assert!(!absent.exists());

    // Refused names.
    for bad in [
        "000000010000000000000004.partial",
        "xlogtemp.123",
        "00000001000000000000000a",
    ] {
        let p = wal_file(src.path(), bad, 3, 100);
        let err = wal.push(&p).await.unwrap_err();
        assert!(err.to_string().contains(bad), "{err}");
    }
    let err = wal
        .push(&src.path().join("000000010000000000000004.partial"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(".partial"), "{err}");

    // History and backup history files.
    let hist = src.path().join("00000002.history");
    std::fs::write(&hist, "1\t0/3000000\tno recovery target specified\n").unwrap();
    assert!(matches!(
        wal.push(&hist).await.unwrap(),
        PushOutcome::Archived(_)
    ));
    let bk = wal_file(
        src.path(),
        "000000010000000000000003.00000028.backup",
        4,
        300,
    );
    assert!(matches!(
        wal.push(&bk).await.unwrap(),
        PushOutcome::Archived(_)
    ));
    assert_eq!(wal.timelines().await.unwrap(), [1, 2]);
    assert_eq!(
        wal.list(1).await.unwrap(),
        [name, "000000010000000000000003.00000028.backup"]
    );
    assert_eq!(wal.list(2).await.unwrap(), ["00000002.history"]);
}

#[tokio::test]
async fn a_flipped_byte_fails_the_fetch_and_leaves_no_file() {
    let store = Arc::new(InMemoryStore::new());
    let (identities, recipient, _) = AgeIdentities::generate();
    let engine = Engine::new(store.clone() as Arc<dyn Store>)
        .with_encryption(AgeRecipients::parse([recipient.as_str()]).unwrap())
        .with_identities(identities);
    let wal = WalArchive::new(Arc::new(engine), "acme", "c").unwrap();
    let src = tempfile::tempdir().unwrap();
    let name = "0000000100000000000000A0";
    let record = wal
        .push(&wal_file(src.path(), name, 9, SEG as usize))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert!(record.sealed.encryption.is_some());
    let data_key = wal
        .prefix()
        .join(&format!("00000001/{name}/{}.data", record.data))
        .unwrap();
    let mut bytes = store.get_bytes(&data_key).await.unwrap().to_vec();
    let at = bytes.len() - 1000;
    bytes[at] ^= 0x40;
    store
        .put(&data_key, Bytes::from(bytes), PutOptions::default())
        .await
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("RECOVERYXLOG");
    let err = wal.fetch(name, &dest).await.unwrap_err();
    assert!(err.to_string().contains(name), "{err}");
    assert!(!dest.exists(), "a corrupt segment was written");
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "a temporary file was left"
    );
}

/// Only the first push of an archive instance looks for leftovers (what
/// a restarted archiver or the next `archive_command` pushes first is the
/// file that was cut off): later pushes list nothing. A new instance
/// still finds and removes a leftover of the file it pushes first.
#[tokio::test]
async fn only_the_first_push_of_an_instance_lists_its_file() {
    let store = Arc::new(InMemoryStore::new());
    // Every listing fails and is counted; a failed look is only a warning.
    let counting = Arc::new(FaultyStore::new(
        store.clone() as Arc<dyn Store>,
        Faults::none(7).fail_before(Operation::List, 1.0),
    ));
    let engine = Engine::new(counting.clone() as Arc<dyn Store>);
    let wal = WalArchive::new(Arc::new(engine), "acme", "cluster1").unwrap();
    let src = tempfile::tempdir().unwrap();
    for (i, name) in [
        "000000010000000000000020",
        "000000010000000000000021",
        "000000010000000000000022",
    ]
    .into_iter()
    .enumerate()
    {
        let path = wal_file(src.path(), name, i as u8, 1 << 16);
        wal.push(&path).await.unwrap().into_result().unwrap();
        assert_eq!(counting.injected(), 1, "listings after pushing {name}");
    }
    // A restart: the new instance's first push removes the leftover.
    let name = "000000010000000000000023";
    let wal = archive(&store, Compression::none());
    let leftover = wal
        .prefix()
        .join(&format!("00000001/{name}/0123456789abcdef.data"))
        .unwrap();
    store
        .put(
            &leftover,
            Bytes::from_static(b"half"),
            PutOptions::default(),
        )
        .await
        .unwrap();
    let path = wal_file(src.path(), name, 9, 1 << 16);
    wal.push(&path).await.unwrap().into_result().unwrap();
    assert!(!store.exists(&leftover).await.unwrap(), "leftover kept");
}

#[tokio::test]
async fn an_interrupted_push_is_completed_and_its_data_removed() {
    let store = Arc::new(InMemoryStore::new());
    let wal = archive(&store, Compression::none());
    let src = tempfile::tempdir().unwrap();
    let name = "000000010000000000000010";
    // A push killed after its data object, before its record.
    let leftover = wal
        .prefix()
        .join(&format!("00000001/{name}/0123456789abcdef.data"))
        .unwrap();
    store
        .put(
            &leftover,
            Bytes::from_static(b"half"),
            PutOptions::default(),
        )
        .await
        .unwrap();
    assert!(wal.record(name).await.unwrap().is_none());
    assert_eq!(wal.list(1).await.unwrap(), Vec::<String>::new());
    let path = wal_file(src.path(), name, 5, 1 << 20);
    let r = wal.push(&path).await.unwrap().into_result().unwrap();
    assert!(!store.exists(&leftover).await.unwrap(), "leftover kept");
    let out = tempfile::tempdir().unwrap();
    wal.fetch(name, &out.path().join("x")).await.unwrap();
    assert_eq!(r.size(), 1 << 20);
}

#[tokio::test]
async fn missing_between_and_prune_before() {
    let store = Arc::new(InMemoryStore::new());
    let wal = archive(&store, Compression::zstd(1));
    let src = tempfile::tempdir().unwrap();
    // Segments 0/FE, 0/FF, 1/00, 1/02 of timeline 1 (16 MiB: 256 per log).
    for (i, n) in [
        "0000000100000000000000FE",
        "0000000100000000000000FF",
        "000000010000000100000000",
        "000000010000000100000002",
        "000000020000000100000002",
    ]
    .iter()
    .enumerate()
    {
        wal.push(&wal_file(src.path(), n, i as u8, 4096))
            .await
            .unwrap()
            .into_result()
            .unwrap();
    }
    let bk = "0000000100000000000000FF.00000028.backup";
    wal.push(&wal_file(src.path(), bk, 7, 200))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let hist = src.path().join("00000001.history");
    std::fs::write(&hist, "x").unwrap();
    wal.push(&hist).await.unwrap().into_result().unwrap();
    assert_eq!(
        wal.missing_between("0000000100000000000000FE", "000000010000000100000003", SEG)
            .await
            .unwrap(),
        ["000000010000000100000001", "000000010000000100000003"]
    );
    assert!(
        wal.missing_between("0000000100000000000000FE", "0000000100000001000000FF", SEG)
            .await
            .unwrap()
            .len()
            == 256 - 2
    );
    // Wrong segment size, reversed or cross-timeline ranges: refused.
    assert!(
        wal.missing_between(
            "0000000100000000000000FE",
            "000000010000000100000000",
            3 << 20
        )
        .await
        .is_err()
    );
    assert!(
        wal.missing_between("000000010000000100000000", "0000000100000000000000FE", SEG)
            .await
            .is_err()
    );
    assert!(
        wal.missing_between("000000010000000100000000", "000000020000000100000002", SEG)
            .await
            .is_err()
    );

    let dry = wal
        .prune_before(1, "000000010000000100000000", true)
        .await
        .unwrap();
    assert_eq!(
        dry.removed,
        ["0000000100000000000000FE", "0000000100000000000000FF", bk]
    );
    assert_eq!(wal.list(1).await.unwrap().len(), 6, "a dry run deleted");
    let done = wal
        .prune_before(1, "000000010000000100000000", false)
        .await
        .unwrap();
    assert_eq!(done.removed, dry.removed);
    assert_eq!(
        wal.list(1).await.unwrap(),
        [
            "00000001.history",
            "000000010000000100000000",
            "000000010000000100000002"
        ]
    );
    // Nothing of the pruned files is left, and timeline 2 is untouched.
    for name in &dry.removed {
        let dir = wal.prefix().join(&format!("00000001/{name}")).unwrap();
        assert!(
            store.list_all(Some(&dir)).await.unwrap().is_empty(),
            "{name}"
        );
    }
    assert_eq!(wal.list(2).await.unwrap(), ["000000020000000100000002"]);
    assert!(
        wal.prune_before(1, "000000020000000100000002", false)
            .await
            .is_err()
    );
}

#[test]
fn file_names_are_the_ones_postgres_archives() {
    assert!(WalFileName::parse("000000010000000000000001").is_ok());
    assert!(WalFileName::parse("000000010000000000000001.partial").is_err());
}

/// Everything that lists or cleans a store — catalog listing and lookup,
/// stats, run records, sweep (grace 0, far in the future), gc, check and
/// prune — on a store holding WAL (including an interrupted push) and
/// backups (full and incremental): no WAL key is taken for a backup, an
/// orphan, garbage or a chunk, and none is deleted.
#[tokio::test]
async fn catalog_and_maintenance_leave_wal_alone() {
    let store = Arc::new(InMemoryStore::new());
    let engine = Arc::new(
        Engine::new(store.clone() as Arc<dyn Store>).with_compression(Compression::zstd(1)),
    );
    let wal = WalArchive::new(Arc::clone(&engine), "acme", "db1").unwrap();
    let src = tempfile::tempdir().unwrap();
    for (i, n) in ["000000010000000000000001", "000000010000000000000002"]
        .iter()
        .enumerate()
    {
        wal.push(&wal_file(src.path(), n, i as u8, 1 << 20))
            .await
            .unwrap()
            .into_result()
            .unwrap();
    }
    let hist = src.path().join("00000002.history");
    std::fs::write(&hist, "1\t0/2000000\tbefore 2026\n").unwrap();
    wal.push(&hist).await.unwrap().into_result().unwrap();
    // An interrupted push's data (no record), with a backup-id-like name
    // around it to tempt the artifact matcher.
    store
        .put(
            &wal.prefix()
                .join("00000001/000000010000000000000003/0123456789abcdef.data")
                .unwrap(),
            Bytes::from_static(b"partial"),
            PutOptions::default(),
        )
        .await
        .unwrap();
    for (source, backup_type) in [
        ("db1", BackupType::Full),
        ("db1", BackupType::Incremental),
        ("db2", BackupType::Full),
    ] {
        engine
            .backup(
                &ScriptedSource::ok(300_000),
                &BackupRequest::new(source)
                    .tenant("acme")
                    .backup_type(backup_type),
            )
            .await
            .unwrap();
    }
    let wal_keys = || async {
        store
            .list_all(Some(wal.prefix()))
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key.to_string())
            .collect::<Vec<_>>()
    };
    let before = wal_keys().await;
    assert_eq!(before.len(), 2 * 3 + 1);

    let listed = engine.catalog().list(&Filter::all()).await.unwrap();
    assert_eq!(listed.len(), 3);
    engine.catalog().get(listed[0].id.as_str()).await.unwrap();
    let stats = engine.catalog().stats(&Filter::all()).await.unwrap();
    assert_eq!(stats.total.count, 3, "{stats:?}");
    assert_eq!(stats.sources.len(), 2, "{stats:?}");
    let records = engine.catalog().run_records(&Filter::all()).await.unwrap();
    assert_eq!(records.len(), 2, "{records:?}");

    let check = engine.check(None).await.unwrap();
    assert!(check.is_ok(), "{check:?}");
    assert!(!check.has_garbage(), "WAL taken for garbage: {check:?}");
    assert_eq!(check.backups, 3);
    assert_eq!(check.tenants, ["acme"]);
    let check = engine.check(Some("acme")).await.unwrap();
    assert!(check.is_ok() && !check.has_garbage(), "{check:?}");

    let far = chrono::Utc::now() + chrono::Duration::days(30);
    let sweep = engine.sweep(Duration::ZERO, far).await.unwrap();
    assert!(!sweep.removed_anything(), "{sweep:?}");
    assert!(
        sweep.too_recent.is_empty() && sweep.in_progress.is_empty(),
        "{sweep:?}"
    );

    let gc = engine.gc("acme", Duration::ZERO, false).await.unwrap();
    assert!(gc.deleted_packs.is_empty(), "{gc:?}");

    let keep = KeepLast(1);
    let policies: [&dyn RetentionPolicy; 1] = [&keep];
    let pruned = engine
        .prune(
            &Filter::all(),
            &policies,
            PlanOptions::default()
                .include_manual(true)
                .collect_garbage(Duration::ZERO),
            false,
        )
        .await
        .unwrap();
    let deleted: usize = pruned.sources.values().map(|p| p.delete.len()).sum();
    assert_eq!(deleted, 1, "{pruned:?}");
    let after = engine.sweep(Duration::ZERO, far).await.unwrap();
    assert!(after.too_recent.is_empty(), "{after:?}");

    assert_eq!(
        wal_keys().await,
        before,
        "maintenance touched the WAL archive"
    );
    assert_eq!(wal.timelines().await.unwrap(), [1, 2]);
    assert_eq!(wal.list(1).await.unwrap().len(), 2);
    let out = tempfile::tempdir().unwrap();
    wal.fetch("000000010000000000000002", &out.path().join("seg"))
        .await
        .unwrap();
}
