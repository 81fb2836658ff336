//! `backupctl --sqlite` end to end: the real binary, the filesystem store
//! and real SQLite files.

use rusqlite::Connection;
use serde_json::Value;

mod support;
use support::*;

fn rows(path: &std::path::Path) -> Vec<(i64, String)> {
    let db = Connection::open(path).unwrap();
    let mut stmt = db
        .prepare("SELECT id, body FROM notes ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[test]
fn backupctl_sqlite_backup_verify_restore_into_a_new_file_and_over_one_with_clean() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = wal;
         CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
         WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < 2000)
         INSERT INTO notes SELECT x, 'note ' || x || ' 🦀' FROM g;",
    )
    .unwrap();
    let store = dir.path().join("backups");
    let store = store.to_str().unwrap();
    let db_arg = db.to_str().unwrap();

    let m: Value = serde_json::from_str(&ok(&[
        "backup", "--sqlite", db_arg, "--store", store, "--json",
    ]))
    .unwrap();
    assert_eq!(m["engine"], "sqlite");
    assert_eq!(m["format"], "sqlite3");
    assert_eq!(m["source_id"], "app_db", "the file name, sanitized");
    assert_eq!(m["details"]["sqlite.rows.notes"], "2000");
    let id = m["id"].as_str().unwrap();
    ok(&["verify", id, "--store", store]);

    let copy = dir.path().join("copy.db");
    let copy_arg = copy.to_str().unwrap();
    let report: Value = serde_json::from_str(&ok(&[
        "restore", id, "--store", store, "--sqlite", copy_arg, "--json",
    ]))
    .unwrap();
    assert_eq!(report["database"], copy_arg);
    assert_eq!(rows(&copy), rows(&db));

    // The source changes; restoring the old backup over it needs --clean.
    conn.execute("DELETE FROM notes WHERE id > 10", []).unwrap();
    drop(conn);
    let refused = fails(&["restore", id, "--store", store, "--sqlite", db_arg]);
    assert!(refused.contains("already exists"), "{refused}");
    assert_eq!(rows(&db).len(), 10, "a refused restore changed the file");
    ok(&[
        "restore", id, "--store", store, "--sqlite", db_arg, "--clean",
    ]);
    assert_eq!(rows(&db), rows(&copy));

    // A restore drill into a scratch directory: every table compared with
    // the backup's fingerprint, the scratch removed; the record is kept.
    let drills = dir.path().join("drills");
    std::fs::create_dir(&drills).unwrap();
    let drills_arg = drills.to_str().unwrap();
    let record: Value = serde_json::from_str(&ok(&[
        "drill",
        id,
        "--store",
        store,
        "--sqlite-dir",
        drills_arg,
        "--json",
    ]))
    .unwrap();
    assert_eq!(record["status"], "passed", "{record}");
    let notes = record["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "notes")
        .cloned()
        .unwrap();
    assert_eq!(notes["restored_rows"], 2000, "{record}");
    assert_eq!(std::fs::read_dir(&drills).unwrap().count(), 0);
    let out = backupctl(&["drill", id, "--store", store]);
    assert!(!out.status.success(), "a drill without a target ran");
    assert!(String::from_utf8_lossy(&out.stderr).contains("required arguments"));

    // --sqlite with another engine's flag is a usage error.
    let args = [
        "backup",
        "--sqlite",
        db_arg,
        "--pg",
        "postgres:///x",
        "--store",
        store,
    ];
    let out = backupctl(&args);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}
