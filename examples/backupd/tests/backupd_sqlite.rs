//! backupd with a SQLite database file (`engine: sqlite`, configuration
//! file only): a backup over the API, a restore into a new file beside the
//! entry's with equal content, and every restore name that is not a plain
//! new file name beside it refused without a file written anywhere; a
//! restore drill (`POST /api/v1/databases/{id}/drill`) that passes with
//! every table compared and leaves no scratch directory.

use backup_sqlite::table_checksums;
use reqwest::StatusCode;
use serde_json::json;

mod support;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_entry_backs_up_and_restores_only_into_new_files_beside_it() {
    let data = tempfile::tempdir().unwrap();
    let app = data.path().join("app.db");
    {
        let db = rusqlite::Connection::open(&app).unwrap();
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, raw BLOB);
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000)
             INSERT INTO notes SELECT x, 'note ' || x || ' \u{1F4DD}', randomblob(32) FROM c;",
        )
        .unwrap();
    }
    let d = Daemon::start_with(Options {
        extra_config: format!(
            "databases:\n  - {{id: app, engine: sqlite, path: {:?}, schedule: disabled}}\n",
            app.display().to_string()
        ),
        ..Options::default()
    });
    let api = Api::new(&d);

    let id = backup_now(&api, "app", ADMIN).await;
    let listed = d.listed_backups().await;
    let manifest = listed.iter().find(|m| m.id == id).unwrap();
    assert_eq!(manifest.engine, "sqlite");

    let (status, job) = restore(&api, &id, ADMIN, json!({"target_database": "copy.db"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["status"], "succeeded", "{job}");
    let copy = data.path().join("copy.db");
    assert_eq!(
        table_checksums(&copy).unwrap(),
        table_checksums(&app).unwrap()
    );

    let before: Vec<_> = std::fs::read_dir(data.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let outside = data.path().parent().unwrap().join("evil.db");
    for name in [
        "copy.db",
        "../evil.db",
        "/tmp/evil.db",
        ".hidden.db",
        "app.db-wal",
        "a\\b",
    ] {
        let (status, job) = restore(&api, &id, ADMIN, json!({"target_database": name})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {job}");
        assert_eq!(job["status"], "failed", "{name}: {job}");
    }
    let after: Vec<_> = std::fs::read_dir(data.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before.len(), after.len(), "{before:?} / {after:?}");
    assert!(!outside.exists() && !std::path::Path::new("/tmp/evil.db").exists());
    // The source's own file is restored over only with clean.
    let (_, job) = restore(&api, &id, ADMIN, json!({"target_database": "app.db"})).await;
    assert_eq!(job["status"], "failed", "{job}");

    // A restore drill: into a private scratch directory beside the file,
    // every table (and the schema) compared, nothing left behind.
    let job = api.drill("app", ADMIN).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"]["status"], "passed", "{job}");
    let tables = job["result"]["tables"].as_array().unwrap();
    let notes = tables.iter().find(|t| t["name"] == "notes").unwrap();
    assert_eq!(notes["expected_rows"], 2000, "{job}");
    assert_eq!(notes["restored_rows"], 2000, "{job}");
    assert!(tables.iter().all(|t| t["matches"] == true), "{job}");
    let (status, v) = api.get("/api/v1/drills?database=app", ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["drills"][0]["status"], "passed", "{v}");
    let left: Vec<_> = std::fs::read_dir(data.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(backup_sqlite::DRILL_PREFIX))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // Its settings change over the API; its file does not.
    let (status, v) = api
        .call(
            reqwest::Method::PATCH,
            "/api/v1/databases/app",
            Some(ADMIN),
            Some(json!({"keep_last": 3})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = api
        .call(
            reqwest::Method::PATCH,
            "/api/v1/databases/app",
            Some(ADMIN),
            Some(json!({"path": "/etc/shadow"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, v) = api.get("/api/v1/databases/app", ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["path"], app.display().to_string(), "{v}");
    backup_now(&api, "app", ADMIN).await;

    // A file of this machine is the operator's to name: never over the API.
    let (status, v) = api
        .post(
            "/api/v1/databases",
            ADMIN,
            json!({"id": "other", "engine": "sqlite", "path": "/etc/shadow", "schedule": "disabled"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("configuration file"), "{v}");
    let (status, v) = api
        .post(
            "/api/v1/databases",
            ADMIN,
            json!({"id": "other", "engine": "sqlite", "schedule": "disabled"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
}
