//! Restore drills of SQLite backups ([`SqliteDrill`]) with an in-memory
//! store: the snapshot records every table's rows and SHA-256, a drill of
//! a good backup restores it into a private scratch directory, finds the
//! same and removes the directory; a byte flipped in the artifact fails
//! the drill with the reason and leaves no scratch; what a killed drill
//! left (its lock released) is removed by the next drill, a live one is
//! spared.

use std::sync::Arc;

use backup_core::drill::{DrillStatus, NOT_COMPARED};
use backup_core::memory::InMemoryStore;
use backup_core::prelude::*;
use backup_core::source::DumpOptions;
use backup_core::testing::{assert_drill_passed, tamper_artifact};
use backup_sqlite::{DRILL_PREFIX, FINGERPRINT_METHOD, SqliteDrill, SqliteSource};

fn scratch_dirs(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(DRILL_PREFIX))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_drills_pass_on_a_good_backup_fail_on_a_flipped_byte_and_leave_no_scratch() {
    let data = tempfile::tempdir().unwrap();
    let db_path = data.path().join("app.db");
    let db = rusqlite::Connection::open(&db_path).unwrap();
    db.execute_batch(
        "PRAGMA journal_mode = WAL; \
         CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, raw BLOB); \
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300) \
         INSERT INTO items SELECT x, 'item ' || x, x / 3.0, randomblob(16) FROM c; \
         CREATE TABLE \"odd \"\"name\"\"\" (k TEXT PRIMARY KEY, v) WITHOUT ROWID; \
         INSERT INTO \"odd \"\"name\"\"\" VALUES ('a', NULL), ('b', 2);",
    )
    .unwrap();
    let engine = Engine::new(Arc::new(InMemoryStore::new()));
    let source = SqliteSource::new(&db_path);
    let drills = tempfile::tempdir().unwrap();
    let drill = SqliteDrill::new(drills.path());
    let req = BackupRequest::new("app");

    // The fingerprint is the snapshot's table checksums.
    let good = engine.backup(&source, &req).await.unwrap();
    let fp = good.fingerprint.as_ref().expect("a fingerprint");
    assert_eq!(fp.method, FINGERPRINT_METHOD);
    let recorded = backup_sqlite::table_checksums(&db_path).unwrap();
    let got: Vec<_> = fp
        .tables
        .iter()
        .map(|t| (t.name.clone(), t.rows, t.checksum.clone()))
        .collect();
    let want: Vec<_> = recorded
        .into_iter()
        .map(|(name, sum)| (name, sum.rows, sum.sha256))
        .collect();
    assert_eq!(got, want);
    assert!(got.iter().any(|(n, rows, _)| n == "items" && *rows == 300));

    // The source changes afterwards: the drill compares with the backup,
    // not with the live file.
    db.execute_batch("DELETE FROM items WHERE id > 100")
        .unwrap();
    let mut events = engine.events().subscribe();
    let record = engine.drill_latest("default", "app", &drill).await.unwrap();
    assert_drill_passed(&record, good.id.as_str(), fp.tables.len());
    assert_eq!(scratch_dirs(drills.path()), Vec::<String>::new());
    assert!(matches!(
        events.recv().await.unwrap(),
        Event::DrillSucceeded { .. }
    ));

    // Without a fingerprint: restored, not compared.
    let plain = engine
        .backup(
            &source,
            &req.clone()
                .dump_options(DumpOptions::default().skip_fingerprint(true)),
        )
        .await
        .unwrap();
    assert!(plain.fingerprint.is_none());
    let record = engine.drill(plain.id.as_str(), &drill).await.unwrap();
    assert_eq!(record.status, DrillStatus::Passed);
    assert_eq!(record.note.as_deref(), Some(NOT_COMPARED));

    // A byte flipped in the artifact: failed, with the reason, no scratch.
    let bad = engine.backup(&source, &req).await.unwrap();
    tamper_artifact(engine.store().as_ref(), &bad, |b| {
        let middle = b.len() / 2;
        b[middle] ^= 0x01;
    })
    .await;
    let mut events = engine.events().subscribe();
    let record = engine.drill(bad.id.as_str(), &drill).await.unwrap();
    assert_eq!(record.status, DrillStatus::Failed, "{record:?}");
    assert!(record.error.is_some());
    assert_eq!(scratch_dirs(drills.path()), Vec::<String>::new());
    assert!(matches!(
        events.recv().await.unwrap(),
        Event::DrillFailed { .. }
    ));
}

#[tokio::test]
async fn a_killed_drills_scratch_is_removed_and_a_live_one_is_spared() {
    let drills = tempfile::tempdir().unwrap();
    // Dead: its lock file is there and nobody holds it.
    let dead = drills.path().join(format!("{DRILL_PREFIX}dead01"));
    std::fs::create_dir(&dead).unwrap();
    std::fs::write(dead.join("lock"), b"4242").unwrap();
    std::fs::write(dead.join("scratch.db"), b"half a restore").unwrap();
    // Being created: an empty lock file, not yet locked by its creator.
    let creating = drills.path().join(format!("{DRILL_PREFIX}new001"));
    std::fs::create_dir(&creating).unwrap();
    std::fs::write(creating.join("lock"), b"").unwrap();
    // Live: this process holds its lock.
    let live = drills.path().join(format!("{DRILL_PREFIX}live01"));
    std::fs::create_dir(&live).unwrap();
    let mut held = std::fs::File::create(live.join("lock")).unwrap();
    held.try_lock().unwrap();
    std::io::Write::write_all(&mut held, b"4243").unwrap();
    // Not ours: a look-alike without a lock file, and a plain file.
    let other = drills.path().join(format!("{DRILL_PREFIX}other"));
    std::fs::create_dir(&other).unwrap();
    std::fs::write(drills.path().join("keep.db"), b"x").unwrap();

    let drill = SqliteDrill::new(drills.path());
    let found: Vec<_> = drill
        .leftovers()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(found, [format!("{DRILL_PREFIX}dead01")]);
    let report = drill.remove_leftovers().await.unwrap();
    assert_eq!(report.removed.len(), 1);
    assert!(!dead.exists());
    assert!(live.exists() && other.exists());
    assert!(drills.path().join("keep.db").exists());
    drop(held);
    // Released: the next sweep takes it.
    drill.remove_leftovers().await.unwrap();
    assert!(!live.exists());
    assert!(other.exists());
    assert!(creating.exists(), "one being created is left alone");
}
