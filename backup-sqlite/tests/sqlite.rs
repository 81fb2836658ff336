//! Backups and restores of real SQLite files through the whole pipeline:
//! a snapshot taken while a writer commits (rollback journal and WAL), a
//! restore equal to its source table by table, a corrupt artifact refused
//! with the target untouched, and the preflight's errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use backup_core::memory::InMemoryStore;
use backup_core::testing::tamper_artifact;
use backup_core::{BackupRequest, DumpSource, Engine, Error, RestoreOptions};
use backup_sqlite::{SnapshotOptions, SqliteSource, SqliteTarget, table_checksums};
use rusqlite::{Connection, params};

const ACCOUNTS: i64 = 100;
const BALANCE: i64 = 1000;

/// A bank of [`ACCOUNTS`] accounts and a transfer log with payloads
/// (about 2.5 MB), in `mode` (`wal` or `delete`).
fn bank(path: &Path, mode: &str) -> Connection {
    let mut db = Connection::open(path).unwrap();
    db.pragma_update(None, "journal_mode", mode).unwrap();
    let tx = db.transaction().unwrap();
    tx.execute_batch(
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
         CREATE TABLE transfers (id INTEGER PRIMARY KEY, src INTEGER, dst INTEGER, amount INTEGER, memo BLOB);
         CREATE TABLE meta (k TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID;
         INSERT INTO meta VALUES ('transfers', 0);",
    )
    .unwrap();
    for id in 0..ACCOUNTS {
        tx.execute("INSERT INTO accounts VALUES (?1, ?2)", params![id, BALANCE])
            .unwrap();
    }
    for i in 0..3000i64 {
        transfer(&tx, i);
    }
    tx.commit().unwrap();
    db
}

/// One transfer: money moves, the log grows, the counter follows.
fn transfer(db: &Connection, i: i64) {
    let (src, dst, amount) = (i % ACCOUNTS, (i * 7 + 3) % ACCOUNTS, i % 13 + 1);
    db.execute(
        "UPDATE accounts SET balance = balance - ?2 WHERE id = ?1",
        params![src, amount],
    )
    .unwrap();
    db.execute(
        "UPDATE accounts SET balance = balance + ?2 WHERE id = ?1",
        params![dst, amount],
    )
    .unwrap();
    db.execute(
        "INSERT INTO transfers (src, dst, amount, memo) VALUES (?1, ?2, ?3, ?4)",
        params![src, dst, amount, vec![(i % 251) as u8; 700]],
    )
    .unwrap();
    db.execute("UPDATE meta SET v = v + 1 WHERE k = 'transfers'", [])
        .unwrap();
}

/// The invariants every committed state keeps: the money, and as many
/// log rows as the counter says.
fn assert_consistent(path: &Path) -> i64 {
    let db = Connection::open(path).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok", "integrity_check of {}", path.display());
    let (accounts, total): (i64, i64) = db
        .query_row("SELECT count(*), sum(balance) FROM accounts", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((accounts, total), (ACCOUNTS, ACCOUNTS * BALANCE));
    let logged: i64 = db
        .query_row("SELECT count(*) FROM transfers", [], |r| r.get(0))
        .unwrap();
    let counted: i64 = db
        .query_row("SELECT v FROM meta WHERE k = 'transfers'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(logged, counted, "log and counter of one commit");
    logged
}

fn engine() -> Engine {
    Engine::new(Arc::new(InMemoryStore::new()))
}

/// Names in `dir` other than `keep`.
fn strays(dir: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_under_concurrent_writes_is_one_commit_in_both_journal_modes() {
    for mode in ["delete", "wal"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bank.db");
        drop(bank(&path, mode));

        // A writer committing transfers until the backup is done.
        let stop = Arc::new(AtomicBool::new(false));
        let commits = Arc::new(AtomicU64::new(0));
        let writer = {
            let (path, stop, commits) = (path.clone(), Arc::clone(&stop), Arc::clone(&commits));
            std::thread::spawn(move || {
                let mut db = Connection::open(&path).unwrap();
                db.busy_timeout(Duration::from_secs(60)).unwrap();
                let mut i = 3000;
                while !stop.load(Ordering::Relaxed) {
                    let tx = db
                        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                        .unwrap();
                    transfer(&tx, i);
                    tx.commit().unwrap();
                    commits.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                    // Back-to-back commits starve every reader of a
                    // rollback-journal database, SQLite's own locking
                    // aside; an application breathes between them.
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        while commits.load(Ordering::Relaxed) < 10 {
            tokio::task::yield_now().await;
        }
        let options = SnapshotOptions::default().pages_per_step(64);
        let source = SqliteSource::new(&path)
            .with_spool_dir(dir.path())
            .with_options(options);
        let engine = engine();
        let before = commits.load(Ordering::Relaxed);
        let manifest = engine
            .backup(&source, &BackupRequest::new("bank"))
            .await
            .unwrap_or_else(|e| panic!("{mode}: backup under writes: {e}"));
        let during = commits.load(Ordering::Relaxed) - before;
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        assert!(
            during > 0,
            "{mode}: the writer committed nothing during the backup"
        );
        assert_eq!(
            (manifest.engine.as_str(), manifest.format.as_str()),
            ("sqlite", "sqlite3")
        );
        assert_eq!(manifest.details["sqlite.journal_mode"], mode);

        let restored = dir.path().join("restored.db");
        engine
            .restore(
                &manifest.id,
                &SqliteTarget::new(&restored),
                &RestoreOptions::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("{mode}: restore: {e}"));
        let logged = assert_consistent(&restored);
        assert_eq!(
            manifest.details["sqlite.rows.transfers"],
            logged.to_string(),
            "{mode}: row count in the manifest"
        );
        let total = assert_consistent(&path);
        assert!(
            logged >= 3000 && logged <= total,
            "{mode}: {logged} of {total}"
        );
        eprintln!(
            "{mode}: {during} commits during the backup, {} restarts, snapshot at transfer {logged} of {total}",
            manifest.details["sqlite.restarts"]
        );
        assert_eq!(
            strays(
                dir.path(),
                &["bank.db", "bank.db-wal", "bank.db-shm", "restored.db"]
            ),
            Vec::<String>::new()
        );
    }
}

/// Every storage class, a `WITHOUT ROWID` table, an index, a view and a
/// trigger; in WAL mode with the last commits still in the WAL only.
fn varied(path: &Path) -> Connection {
    let db = Connection::open(path).unwrap();
    db.pragma_update(None, "journal_mode", "wal").unwrap();
    db.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    db.execute_batch(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, score REAL, raw BLOB, gone TEXT);
         CREATE TABLE tags (name TEXT PRIMARY KEY, uses INTEGER) WITHOUT ROWID;
         CREATE INDEX notes_score ON notes (score);
         CREATE VIEW best AS SELECT id, body FROM notes WHERE score > 0.5;
         CREATE TRIGGER count_tag AFTER INSERT ON notes BEGIN
             INSERT INTO tags VALUES ('n' || (new.id % 7), 1)
             ON CONFLICT (name) DO UPDATE SET uses = uses + 1;
         END;",
    )
    .unwrap();
    for i in 0..3000i64 {
        db.execute(
            "INSERT INTO notes (body, score, raw, gone) VALUES (?1, ?2, ?3, NULL)",
            params![
                format!("note {i} ✓ 🦀 ünïcödé"),
                (i as f64) / 3000.0,
                vec![(i % 256) as u8; (i % 700) as usize]
            ],
        )
        .unwrap();
    }
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_equals_the_wal_source_and_refuses_an_existing_file_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    // Kept open: its commits are in app.db-wal, not yet in app.db.
    let writer = varied(&path);
    let wal = std::fs::metadata(dir.path().join("app.db-wal"))
        .unwrap()
        .len();
    assert!(wal > 0, "the source's last commits are in its WAL");
    let engine = engine();
    let source = SqliteSource::new(&path).with_spool_dir(dir.path());
    assert_eq!(source.info().database, "app.db");
    let manifest = engine
        .backup(&source, &BackupRequest::new("app"))
        .await
        .unwrap();
    let d = &manifest.details;
    assert_eq!(d["sqlite.journal_mode"], "wal");
    assert_eq!(d["sqlite.rows.notes"], "3000");
    assert_eq!(d["sqlite.rows.tags"], "7");
    assert_eq!(d["sqlite.tables"], "2");
    let pages: u64 = d["sqlite.page_count"].parse().unwrap();
    let page_size: u64 = d["sqlite.page_size"].parse().unwrap();
    assert_eq!(
        pages * page_size,
        manifest.raw.size,
        "the artifact is the file"
    );
    assert_eq!(d["sqlite.library"], rusqlite::version());
    assert!(
        manifest
            .versions
            .tool
            .as_deref()
            .unwrap()
            .contains(rusqlite::version())
    );

    let expected = table_checksums(&path).unwrap();
    let restored = dir.path().join("copy.db");
    let target = SqliteTarget::new(&restored);
    let report = engine
        .restore(&manifest.id, &target, &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(PathBuf::from(&report.database), restored);
    assert_eq!(table_checksums(&restored).unwrap(), expected);
    let mode = std::fs::metadata(&restored).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600,
        "a new file is private"
    );

    // The source changes; restoring over the copy needs the flag.
    writer
        .execute("DELETE FROM notes WHERE id % 2 = 0", [])
        .unwrap();
    drop(writer);
    let changed = engine
        .backup(&source, &BackupRequest::new("app"))
        .await
        .unwrap();
    let refused = engine
        .restore(&changed.id, &target, &RestoreOptions::default())
        .await;
    assert!(
        matches!(refused, Err(Error::AlreadyExists { .. })),
        "{refused:?}"
    );
    let refused = engine
        .restore(
            &changed.id,
            &target,
            &RestoreOptions::into_database(restored.display().to_string())
                .clean(true)
                .new_database_only(true),
        )
        .await;
    assert!(
        matches!(refused, Err(Error::AlreadyExists { .. })),
        "{refused:?}"
    );
    assert_eq!(
        table_checksums(&restored).unwrap(),
        expected,
        "refused: untouched"
    );
    std::fs::set_permissions(
        &restored,
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    engine
        .restore(
            &changed.id,
            &target.clone().overwrite(true),
            &RestoreOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        table_checksums(&restored).unwrap(),
        table_checksums(&path).unwrap()
    );
    let mode = std::fs::metadata(&restored).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o640,
        "overwriting keeps the mode"
    );
    assert_eq!(
        strays(
            dir.path(),
            &[
                "app.db",
                "app.db-wal",
                "app.db-shm",
                "copy.db",
                "copy.db-wal",
                "copy.db-shm"
            ]
        ),
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_artifact_is_refused_and_the_target_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (good, other) = (dir.path().join("good.db"), dir.path().join("other.db"));
    drop(bank(&good, "delete"));
    drop(varied(&other));
    let engine = engine();
    let manifest = engine
        .backup(&SqliteSource::new(&good), &BackupRequest::new("bank"))
        .await
        .unwrap();
    let before = table_checksums(&other).unwrap();
    let bytes = std::fs::read(&other).unwrap();
    // A flipped byte in the middle of the stored artifact.
    tamper_artifact(engine.store().as_ref(), &manifest, |b| {
        let mid = b.len() / 2;
        b[mid] ^= 0x55;
    })
    .await;
    for opts in [
        RestoreOptions::into_database(other.display().to_string()).clean(true),
        RestoreOptions::into_database(dir.path().join("new.db").display().to_string()),
    ] {
        let refused = engine
            .restore(&manifest.id, &SqliteTarget::new(&good), &opts)
            .await;
        assert!(
            matches!(refused, Err(Error::Integrity { .. })),
            "{refused:?}"
        );
    }
    assert_eq!(
        std::fs::read(&other).unwrap(),
        bytes,
        "the target's bytes changed"
    );
    assert_eq!(table_checksums(&other).unwrap(), before);
    assert_eq!(
        strays(
            dir.path(),
            &["good.db", "other.db", "other.db-shm", "other.db-wal"]
        ),
        Vec::<String>::new()
    );
}

/// What a restore killed with SIGKILL leaves (its temporary file and a
/// journal, unlocked: the dead process's `flock` went with it) is listed
/// and removed after the grace, while a running restore's file in the same
/// directory is never touched and that restore still commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_a_killed_restore_are_removed_and_a_running_one_is_spared() {
    use backup_core::source::RestoreTarget;

    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("app.db");
    drop(varied(&source));
    let expected = table_checksums(&source).unwrap();
    let bytes = std::fs::read(&source).unwrap();
    let target = SqliteTarget::new(dir.path().join("app.db"));

    let dead = dir.path().join(".app.db.restore-00c0ffee.tmp");
    std::fs::write(&dead, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(
        dir.path().join(".app.db.restore-00c0ffee.tmp-journal"),
        b"j",
    )
    .unwrap();
    let lookalike = dir.path().join(".app.db.restore-later.tmp");
    std::fs::write(&lookalike, b"not ours").unwrap();

    let live_path = dir.path().join("restored.db");
    let mut live = target
        .begin(&RestoreOptions::into_database(
            live_path.display().to_string(),
        ))
        .await
        .unwrap();
    live.write(bytes[..4096].to_vec().into()).await.unwrap();
    // The running restore writes beside its own target: list that directory.
    let beside = SqliteTarget::new(&live_path);

    let found = beside.leftovers().await.unwrap();
    let names: Vec<_> = found.iter().map(|l| l.name.clone()).collect();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(names.contains(&dead.display().to_string()), "{names:?}");
    let running = found
        .iter()
        .find(|l| l.name != dead.display().to_string())
        .unwrap();
    assert_eq!(
        running.idle, None,
        "a running restore's file counts as alive"
    );
    assert_eq!(
        running.target.as_deref(),
        Some(live_path.display().to_string().as_str())
    );

    let report = beside
        .remove_leftovers(Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(report.removed.is_empty(), "within the grace: {report:?}");
    assert!(dead.exists());
    let report = beside.remove_leftovers(Duration::ZERO).await.unwrap();
    assert_eq!(report.removed.len(), 1, "{report:?}");
    assert_eq!(report.removed[0].name, dead.display().to_string());
    assert_eq!(report.too_recent.len(), 1, "the running one: {report:?}");
    assert!(!dead.exists());
    assert!(lookalike.exists(), "not this library's name: left alone");

    live.write(bytes[4096..].to_vec().into()).await.unwrap();
    live.commit().await.unwrap();
    assert_eq!(table_checksums(&live_path).unwrap(), expected);
    let mut left = strays(dir.path(), &["app.db", "restored.db"]);
    left.retain(|n| !n.starts_with("app.db-") && !n.starts_with("restored.db-"));
    assert_eq!(left, vec![".app.db.restore-later.tmp".to_string()]);
}

#[tokio::test]
async fn preflight_names_what_is_wrong_with_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let dump = |p: PathBuf| async move {
        SqliteSource::new(p)
            .dump(&Default::default())
            .await
            .map(|_| ())
    };
    let missing = dump(dir.path().join("missing.db")).await;
    assert!(
        matches!(missing, Err(Error::DatabaseMissing { .. })),
        "{missing:?}"
    );
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "x".repeat(4096)).unwrap();
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, "").unwrap();
    for (what, path, says) in [
        ("a text file", text, "not a SQLite database"),
        ("an empty file", empty, "empty"),
        (
            "a directory",
            dir.path().to_path_buf(),
            "not a regular file",
        ),
    ] {
        match dump(path).await {
            Err(e @ Error::Dump { .. }) => assert!(e.to_string().contains(says), "{what}: {e}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    assert_eq!(
        strays(dir.path(), &["notes.txt", "empty.db"]),
        Vec::<String>::new()
    );
}
