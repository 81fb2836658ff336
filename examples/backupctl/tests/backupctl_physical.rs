//! `backupctl backup --physical` and `backupctl restore --datadir` with the
//! real binary against throwaway PostgreSQL 15 and 18 clusters: the base
//! backup is listed with its physical facts, a non-empty or non-base-backup
//! restore is refused with a clear error, and the restored data directory
//! starts and holds the data as of the backup.
//!
//! PostgreSQL 18 needs `BACKUP_TEST_PG18_BIN` (.ci/test.sh sets it).

mod support;

use std::path::Path;

use backup_postgres::TestServer;
use support::{backupctl, fails, json, ok};

async fn physical_round_trip(server: &TestServer) {
    let bin = server.server_bin().await.unwrap();
    let bin = bin.to_str().unwrap().to_string();
    let db = server
        .create_database_with(
            "cliphys",
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 3000) g;",
        )
        .await
        .unwrap();
    let digest_sql = "SELECT count(*) || ' ' || md5(string_agg(v, ',' ORDER BY id)) FROM t";
    let expected = server.psql(&db, digest_sql).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("backups");
    let store = store.to_str().unwrap();
    let url = server.url(&db);

    // --physical is for --pg only: a usage error (status 2).
    let usage = |args: &[&str]| {
        let out = backupctl(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = usage(&[
        "backup",
        "--mongo",
        "mongodb://x/y",
        "--physical",
        "--store",
        store,
    ]);
    assert!(err.contains("cannot be used with '--physical'"), "{err}");

    let m = json(&[
        "backup",
        "--pg",
        &url,
        "--physical",
        "--store",
        store,
        "--pg-bin",
        &bin,
        "--json",
    ]);
    assert_eq!(m["format"], "basebackup", "{m}");
    let id = m["id"].as_str().unwrap().to_string();
    let details = &m["details"];
    let start = details["postgres.start_lsn"].as_str().unwrap().to_string();
    let stop = details["postgres.stop_lsn"].as_str().unwrap().to_string();
    assert!(details["postgres.timeline"].as_str().is_some(), "{m}");
    // A logical backup of the same database, to be refused by --datadir.
    let logical = json(&[
        "backup", "--pg", &url, "--store", store, "--pg-bin", &bin, "--json",
    ]);
    let logical_id = logical["id"].as_str().unwrap();

    // The listing shows the base backup's facts, and only for it.
    let listing = ok(&["list", "--store", store]);
    let line = listing
        .lines()
        .find(|l| l.starts_with(&format!("{id}: base backup")))
        .unwrap_or_else(|| panic!("a facts line for {id}: {listing}"));
    assert!(
        line.contains(&format!("start LSN {start}")) && line.contains(&format!("stop LSN {stop}")),
        "{line}"
    );
    assert!(line.contains("timeline 1"), "{line}");
    assert!(
        !listing.contains(&format!("{logical_id}: base backup")),
        "{listing}"
    );
    let listed = json(&["list", "--store", store, "--json"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["details"]["postgres.stop_lsn"] == stop.as_str()),
        "{listed}"
    );

    let shown = ok(&["show", &id, "--store", store]);
    assert!(shown.contains(&format!("stop LSN:  {stop}")), "{shown}");
    assert!(shown.contains("format:    basebackup"), "{shown}");
    let shown = json(&["show", &id, "--store", store, "--json"]);
    assert_eq!(shown["details"], m["details"]);

    // Changes after the backup are not in it.
    server
        .psql(&db, "INSERT INTO t VALUES (999999, 'after')")
        .await
        .unwrap();

    // Refused: a non-empty directory (nothing touched), a logical backup.
    let busy = dir.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("keep"), "mine").unwrap();
    let err = fails(&[
        "restore",
        &id,
        "--store",
        store,
        "--datadir",
        busy.to_str().unwrap(),
    ]);
    assert!(err.contains("is not empty"), "{err}");
    assert_eq!(std::fs::read_to_string(busy.join("keep")).unwrap(), "mine");
    let data = dir.path().join("restored");
    let data_s = data.to_str().unwrap();
    let err = fails(&["restore", logical_id, "--store", store, "--datadir", data_s]);
    assert!(err.contains("not a base backup"), "{err}");
    assert!(!data.exists());
    let err = usage(&[
        "restore",
        "--latest",
        &id,
        "--store",
        store,
        "--datadir",
        data_s,
    ]);
    assert!(err.contains("--latest"), "{err}");
    let err = usage(&[
        "restore",
        &id,
        "--store",
        store,
        "--datadir",
        data_s,
        "--pg",
        &url,
    ]);
    assert!(err.contains("cannot be used with"), "{err}");

    // --latest is the logical one here; the base backup by id.
    let out = ok(&[
        "restore",
        &id,
        "--store",
        store,
        "--datadir",
        data_s,
        "--pg-bin",
        &bin,
    ]);
    assert!(
        out.contains(&format!("base backup {id} restored into {data_s}")),
        "{out}"
    );
    assert!(out.contains("pg_ctl -D"), "{out}");
    assert!(out.contains(&format!("stop LSN {stop}")), "{out}");
    assert!(data.join("backup_label").is_file() || data.join("PG_VERSION").is_file());

    let got = backup_postgres::query_data_dir(Path::new(&bin), &data, &db, digest_sql).unwrap();
    assert_eq!(
        got,
        expected.trim(),
        "the restored cluster holds the data as of the backup"
    );
    server.drop_database(&db).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn physical_backup_and_datadir_restore_on_postgres_15() {
    physical_round_trip(TestServer::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn physical_backup_and_datadir_restore_on_postgres_18() {
    physical_round_trip(TestServer::shared_pg18()).await;
}
