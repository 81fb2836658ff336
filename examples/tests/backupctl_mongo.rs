//! `backupctl --mongo` end to end: the real binary, the filesystem store
//! and a MongoDB-compatible stand-in server (SecantusDB, started by the
//! test; not MongoDB itself), or the server named by `MONGODB_URI`.

use std::process::{Command, Output};

use backup_mongo::TestServer;
use serde_json::Value;

fn backupctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_backupctl"))
        .args(args)
        .output()
        .expect("run backupctl")
}

fn ok(args: &[&str]) -> String {
    let out = backupctl(args);
    assert!(
        out.status.success(),
        "backupctl {:?} failed: {}",
        args.first(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_backupctl_mongo_backup_verify_restore_into_another_database() {
    let server = TestServer::shared();
    let db = TestServer::unique_name("cli_mongo");
    server.create_sample(&db, 5_000).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("backups");
    let store = store.to_str().unwrap();
    let uri = server.uri_for(&db);

    let m: Value = serde_json::from_str(&ok(&[
        "backup",
        "--mongo",
        uri.expose(),
        "--store",
        store,
        "--json",
    ]))
    .unwrap();
    assert_eq!(m["engine"], "mongodb");
    assert_eq!(m["format"], "archive");
    assert_eq!(m["source_id"], db.as_str());
    let id = m["id"].as_str().unwrap();
    ok(&["verify", id, "--store", store]);

    let copy = format!("{db}_copy");
    let root = server.uri_for("admin");
    let report: Value = serde_json::from_str(&ok(&[
        "restore",
        id,
        "--store",
        store,
        "--mongo",
        root.expose(),
        "--target-db",
        &copy,
        "--json",
    ]))
    .unwrap();
    assert_eq!(report["database"], copy.as_str());
    assert_eq!(
        server.summary(&copy).await.unwrap(),
        server.summary(&db).await.unwrap()
    );

    // Again without --clean: refused; with --clean and one collection: fine.
    let out = backupctl(&[
        "restore",
        id,
        "--store",
        store,
        "--mongo",
        root.expose(),
        "--target-db",
        &copy,
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already exist"), "{stderr}");
    ok(&[
        "restore",
        id,
        "--store",
        store,
        "--mongo",
        root.expose(),
        "--target-db",
        &copy,
        "--clean",
        "--table",
        "items",
    ]);

    // --pg and --mongo together are refused by the parser.
    let out = backupctl(&[
        "backup",
        "--mongo",
        uri.expose(),
        "--pg",
        "postgres://x@h/db",
        "--store",
        store,
    ]);
    assert!(!out.status.success());

    server.drop_database(&db).await.unwrap();
    server.drop_database(&copy).await.unwrap();
}
