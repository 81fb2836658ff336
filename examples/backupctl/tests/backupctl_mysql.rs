//! `backupctl --mysql` end to end: the real binary, the filesystem store
//! and a real throwaway MariaDB (or the server `BACKUP_TEST_MYSQL_URL`
//! names); the password through `MYSQL_PWD`, never argv. Includes a
//! restore drill.

use backup_mysql::TestServer;

mod support;
use support::cli::Cli;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backupctl_mysql_backup_list_verify_restore_into_a_new_database() {
    let server = TestServer::shared();
    let src = server.create_database("ctl_mysql").await.unwrap();
    server
        .sql(
            Some(&src),
            "CREATE TABLE notes (id INT PRIMARY KEY, body VARCHAR(100) CHARACTER SET utf8mb4, b BLOB);
             INSERT INTO notes VALUES (1, 'first 🦀', X'00FF'), (2, 'second', NULL);
             CREATE VIEW shown AS SELECT body FROM notes;",
        )
        .await
        .unwrap();
    let conn = server.connection(&src);
    // The URL without the password: it comes from MYSQL_PWD.
    let url = format!(
        "mysql://{}@{}:{}/{src}",
        conn.user(),
        conn.host(),
        conn.port()
    );
    let cli = Cli::new().env("MYSQL_PWD", server.password().unwrap().expose());
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("backups");
    let store = store.to_str().unwrap();

    let m = cli.json(&["backup", "--mysql", &url, "--store", store, "--json"]);
    assert_eq!(m["engine"], "mysql");
    assert_eq!(m["format"], "mysqldump");
    assert!(
        m["details"]["mysql.flags"]
            .as_str()
            .unwrap()
            .contains("--single-transaction")
    );
    let id = m["id"].as_str().unwrap();
    let listed = cli.ok(&["list", "--store", store]);
    assert!(listed.contains(id), "{listed}");
    cli.ok(&["verify", id, "--store", store]);

    let dst = format!("{src}_restored");
    let report = cli.json(&[
        "restore",
        id,
        "--store",
        store,
        "--mysql",
        &url,
        "--target-db",
        &dst,
        "--create",
        "--json",
    ]);
    assert_eq!(report["database"], dst.as_str());
    assert_eq!(
        server.table_checksums(&dst).await.unwrap(),
        server.table_checksums(&src).await.unwrap()
    );
    assert_eq!(
        server.objects(&dst).await.unwrap(),
        vec!["VIEW shown".to_string()]
    );

    // A restore drill on the same server: scratch database restored,
    // rows counted from the dump script compared, scratch dropped.
    let drill_server = format!("mysql://{}@{}:{}/", conn.user(), conn.host(), conn.port());
    let record = cli.json(&[
        "drill",
        id,
        "--store",
        store,
        "--mysql",
        &drill_server,
        "--json",
    ]);
    assert_eq!(record["status"], "passed", "{record}");
    assert_eq!(record["tables"][0]["name"], "notes");
    assert_eq!(record["tables"][0]["restored_rows"], 2);
    assert!(
        server
            .databases_like(backup_mysql::DRILL_PREFIX)
            .await
            .unwrap()
            .is_empty()
    );

    // The rest of the pipeline is the engine's, whatever the database:
    // a deduplicated (`--type incremental`) and age-encrypted backup
    // verifies only with the identity and restores equal.
    let (_, recipient, secret) = backup_core::crypto::AgeIdentities::generate();
    let key_file = dir.path().join("key.txt");
    std::fs::write(&key_file, format!("{}\n", secret.expose())).unwrap();
    let key = key_file.to_str().unwrap();
    let m = cli.json(&[
        "backup",
        "--mysql",
        &url,
        "--store",
        store,
        "--type",
        "incremental",
        "--encrypt-to",
        &recipient,
        "--json",
    ]);
    assert_eq!(m["encryption"]["recipients"][0], recipient.as_str());
    let sealed = m["id"].as_str().unwrap();
    let out = cli.run(&["verify", sealed, "--store", store]);
    assert!(!out.status.success(), "verified without the identity");
    cli.ok(&["verify", sealed, "--store", store, "--identity", key]);
    let again = format!("{src}_sealed");
    cli.json(&[
        "restore",
        sealed,
        "--store",
        store,
        "--identity",
        key,
        "--mysql",
        &url,
        "--target-db",
        &again,
        "--create",
        "--json",
    ]);
    assert_eq!(
        server.table_checksums(&again).await.unwrap(),
        server.table_checksums(&src).await.unwrap()
    );
    server.drop_database(&again).await.unwrap();

    // Without a password anywhere the server refuses, and says so.
    let out = Cli::new().run(&["backup", "--mysql", &url, "--store", store]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("authentication failed"), "{err}");

    server.drop_database(&src).await.unwrap();
    server.drop_database(&dst).await.unwrap();
}
