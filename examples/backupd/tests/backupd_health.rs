//! backupd health that tells the truth and can be cleared: the real daemon
//! binary over real HTTP, a real PostgreSQL, the fs store; restarted over
//! the same store where a restart is the point.
//!
//! The restart test backs up a real database and runs on both majors of
//! the test matrix (`<test>::postgres_15`, `<test>::postgres_18` with the
//! entries' `pg_bin`); forgetting a run record needs only a database that
//! does not exist, the same refusal on any version, and runs on 15 only.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use backup_core::catalog::RunRecord;
use backup_core::manifest::BackupKind;
use backup_core::{Engine, Filter};
use backup_postgres::TestServer;
use backup_store_fs::FsStore;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

mod support;
use support::*;

/// The `sources` of `/api/v1/status` as `(tenant/id, status)`.
async fn sources(api: &Api, token: &str) -> Vec<(String, String)> {
    let (status, v) = api.get("/api/v1/status", token).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["data"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                format!(
                    "{}/{}",
                    s["tenant"].as_str().unwrap(),
                    s["source_id"].as_str().unwrap()
                ),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn status_of(all: &[(String, String)], source: &str) -> Option<String> {
    all.iter()
        .find(|(s, _)| s == source)
        .map(|(_, st)| st.clone())
}

/// Starts a backup of `db_id` and waits for its job; returns the job.
async fn attempt(api: &Api, db_id: &str, token: &str) -> Value {
    post_backup(api, token, json!({"database_id": db_id})).await
}

async fn forget(api: &Api, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    api.call(Method::DELETE, path, token, None).await
}

#[tokio::test]
async fn forgetting_a_run_record_through_the_api_and_by_removing_the_database() {
    let d = Daemon::start("", 2);
    let api = Api::new(&d);
    // A mistyped database: its backups fail and it turns failing.
    register(
        &api,
        ADMIN,
        database_body("typo", "no_such_db_salez", None, false),
    )
    .await;
    let job = attempt(&api, "typo", ADMIN).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(
        status_of(&sources(&api, READER).await, "default/typo").as_deref(),
        Some("failing")
    );

    let path = "/api/v1/sources/default/typo/run-record";
    // Who may forget: authenticated admins, within their tenant.
    assert_eq!(forget(&api, path, None).await.0, StatusCode::UNAUTHORIZED);
    let (status, v) = forget(&api, path, Some(READER)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (status, v) = forget(&api, path, Some(TENANT_A)).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another tenant's source: {v}"
    );
    assert_eq!(v["success"], false);
    let (status, v) = forget(
        &api,
        "/api/v1/sources/default/a%20b/run-record",
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let r = api
        .raw(
            Method::DELETE,
            path,
            Some(ADMIN),
            Some(RawBody::json(&json!({"x": 1}))),
        )
        .await;
    assert!(
        r.status.is_client_error(),
        "a body is refused: {:?}",
        r.status
    );
    assert_eq!(
        status_of(&sources(&api, READER).await, "default/typo").as_deref(),
        Some("failing")
    );

    let (status, v) = forget(&api, path, Some(ADMIN)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["success"], true);
    assert_eq!(v["data"]["forgotten"]["source_id"], "typo");
    assert_eq!(v["data"]["forgotten"]["succeeded"], false);
    // Still registered, never backed up, no schedule: stale, not failing.
    assert_eq!(
        status_of(&sources(&api, READER).await, "default/typo").as_deref(),
        Some("stale")
    );
    let (status, v) = forget(&api, path, Some(ADMIN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing left to forget: {v}");
    assert_eq!(v["error"]["code"], "not_found");

    // A tenant-bound admin forgets within its tenant.
    register(
        &api,
        TENANT_A,
        database_body("a_typo", "no_such_db_a_salez", Some("a"), false),
    )
    .await;
    assert_eq!(attempt(&api, "a_typo", TENANT_A).await["status"], "failed");
    let (status, v) = forget(&api, "/api/v1/sources/a/a_typo/run-record", Some(TENANT_A)).await;
    assert_eq!(status, StatusCode::OK, "{v}");

    // Removing a database forgets its record: nothing lingers.
    let (status, v) = api
        .call(Method::DELETE, "/api/v1/databases/typo", Some(ADMIN), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    register(
        &api,
        ADMIN,
        database_body("gone", "no_such_db_salez", None, false),
    )
    .await;
    assert_eq!(attempt(&api, "gone", ADMIN).await["status"], "failed");
    assert_eq!(
        status_of(&sources(&api, READER).await, "default/gone").as_deref(),
        Some("failing")
    );
    let (status, v) = api
        .call(Method::DELETE, "/api/v1/databases/gone", Some(ADMIN), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let left = sources(&api, READER).await;
    assert_eq!(status_of(&left, "default/gone"), None, "{left:?}");
    assert!(!d.store().join("default/gone/last-run.json").exists());

    // The route is documented.
    let (_, doc) = api.get("/openapi.json", READER).await;
    let op = &doc["paths"]["/api/v1/sources/{tenant}/{id}/run-record"]["delete"];
    assert!(
        op["summary"].as_str().unwrap().contains("never deleted"),
        "{op}"
    );
    assert!(op["responses"]["403"].is_object(), "{op}");
}

/// A metric's value in a Prometheus text exposition.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

async fn scrape(api: &Api) -> String {
    api.metrics(READER).await
}

fn stop(mut d: Daemon) -> Daemon {
    let pid = d.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = d.child.wait().unwrap();
    assert!(exit.success(), "exit {exit:?}: {}", d.logs());
    d
}

fn options(server: &'static TestServer, storage: &Path, databases: &str) -> Options {
    let mut entries = String::new();
    for (id, db, schedule) in databases.split(';').filter(|s| !s.is_empty()).map(|e| {
        let mut p = e.split(',');
        (p.next().unwrap(), p.next().unwrap(), p.next().unwrap())
    }) {
        let entry = pg_entry(server, id, db, &format!("schedule: \"{schedule}\""));
        entries.push_str(&format!("  - {entry}\n"));
    }
    Options {
        storage: format!("{{type: fs, path: {}}}", storage.display()),
        extra_config: format!("databases:\n{entries}"),
        pg: Some(server),
        ..Options::default()
    }
}

backup_postgres::each_major! {
    async fn a_restart_keeps_the_metrics_forgets_removed_databases_and_new_ones_are_pending(server) {
        let db = server.create_database("health_restart").await.unwrap();
        server.pgbench_init(&db, 1).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("backups");

        let d = Daemon::start_with(options(server, &storage, &format!("kept,{db},disabled")));
        let api = Api::new(&d);
        let id = backup_now(&api, "kept", ADMIN).await;
        let before = scrape(&api).await;
        let bytes_series = r#"backup_bytes{source="kept",tenant="default"}"#;
        let last_series =
            r#"backup_last_success_timestamp_seconds{source="kept",tenant="default"}"#;
        assert!(metric(&before, bytes_series).is_some(), "{before}");
        let _ = stop(d);

        // What a shutdown left behind for a database since removed from the
        // configuration (a scheduled attempt), and what backupctl recorded
        // for a source of its own (a manual one), in the same store.
        let store = Arc::new(FsStore::new(&storage).unwrap());
        let record = |source: &str, scheduled: bool| RunRecord {
            tenant: "default".into(),
            source_id: source.into(),
            kind: if scheduled {
                BackupKind::Scheduled
            } else {
                BackupKind::Manual
            },
            started_at: chrono::Utc::now(),
            finished_at: chrono::Utc::now(),
            succeeded: false,
            backup_id: None,
            error: Some("cancelled".into()),
            scheduled_for: scheduled.then(chrono::Utc::now),
        };
        record("removed", true).save(store.as_ref()).await.unwrap();
        record("from_cli", false)
            .save(store.as_ref())
            .await
            .unwrap();

        // Restarted: `kept` again, and `nightly`, first due on January 1st.
        let d = Daemon::start_with(options(
            server,
            &storage,
            &format!("kept,{db},disabled;nightly,{db},0 3 1 1 *"),
        ));
        let api = Api::new(&d);
        let after = scrape(&api).await;
        let engine = Engine::new(store.clone());
        let m = engine.catalog().get(id.as_str()).await.unwrap();
        assert_eq!(
            metric(&after, bytes_series),
            Some(m.bytes_stored() as f64),
            "{after}"
        );
        let last = metric(&after, last_series).unwrap_or_else(|| panic!("{after}"));
        assert_eq!(
            last,
            m.finished_at.timestamp_millis() as f64 / 1000.0,
            "{after}"
        );

        let all = sources(&api, READER).await;
        assert_eq!(
            status_of(&all, "default/kept").as_deref(),
            Some("healthy"),
            "{all:?}"
        );
        assert_eq!(status_of(&all, "default/removed"), None, "{all:?}");
        assert_eq!(
            status_of(&all, "default/from_cli").as_deref(),
            Some("failing"),
            "{all:?}"
        );
        assert_eq!(
            status_of(&all, "default/nightly").as_deref(),
            Some("pending"),
            "{all:?}"
        );
        assert!(
            RunRecord::load(store.as_ref(), "default", "removed")
                .await
                .unwrap()
                .is_none()
        );
        // The backups of every source stay.
        assert_eq!(
            engine.catalog().list(&Filter::all()).await.unwrap().len(),
            1
        );
        let _ = stop(d);
        server.drop_database(&db).await.unwrap();
    }
}
