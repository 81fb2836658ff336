//! `backupctl --mongo` end to end: the real binary, the filesystem store
//! and a MongoDB-compatible stand-in server (SecantusDB, started by the
//! test; not MongoDB itself), or the server named by `MONGODB_URI`.

use std::process::Output;

use backup_core::testing::assert_success;
use backup_mongo::TestServer;
use serde_json::Value;

mod support;
use support::*;

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
    let fingerprinted: Vec<&str> = m["fingerprint"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(fingerprinted, ["empty", "items"], "{m}");

    // A restore drill on the same server: every collection compared, the
    // scratch database dropped.
    let root = server.uri_for("admin");
    let record: Value = serde_json::from_str(&ok(&[
        "drill",
        id,
        "--store",
        store,
        "--mongo",
        root.expose(),
        "--json",
    ]))
    .unwrap();
    assert_eq!(record["status"], "passed", "{record}");
    assert_eq!(record["tables"][1]["restored_rows"], 5_000, "{record}");
    let client = server.client().await.unwrap();
    let names = client.list_database_names().await.unwrap();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with(backup_mongo::DRILL_PREFIX)),
        "{names:?}"
    );

    let copy = format!("{db}_copy");
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

/// `backupctl` with the given environment (on top of a cleared one).
fn backupctl_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = backupctl_command();
    cmd.args(args).env_remove("MONGODB_PASSWORD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run backupctl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_backupctl_mongo_password_from_env_or_file_never_from_argv() {
    use backup_mongo::ThrowawaySecantus;
    use std::os::unix::fs::PermissionsExt;
    // An own stand-in with authentication on (the shared one accepts any
    // credentials).
    let own = ThrowawaySecantus::start_with_user("backup", "R1ght/Pa?55", "root", "admin")
        .await
        .unwrap();
    let port = own.port();
    let admin = mongodb::Client::with_uri_str(format!(
        "mongodb://backup:R1ght%2FPa%3F55@127.0.0.1:{port}/?directConnection=true&authSource=admin"
    ))
    .await
    .unwrap();
    admin
        .database("shop")
        .collection::<bson::Document>("orders")
        .insert_one(bson::doc! { "n": 1 })
        .await
        .unwrap();
    drop(admin);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("backups");
    let store = store.to_str().unwrap();
    let uri =
        format!("mongodb://backup@127.0.0.1:{port}/shop?directConnection=true&authSource=admin");
    let backup = |env: &[(&str, &str)], extra: &[&str]| {
        let mut args = vec!["backup", "--mongo", &uri, "--store", store];
        args.extend_from_slice(extra);
        backupctl_env(&args, env)
    };

    // MONGODB_PASSWORD, like PGPASSWORD for --pg.
    let out = backup(&[("MONGODB_PASSWORD", "R1ght/Pa?55")], &[]);
    assert_success(&out);
    // No password: the server refuses.
    let out = backup(&[], &[]);
    assert!(!out.status.success());
    // --password-file, private to its owner.
    let file = dir.path().join("pw");
    std::fs::write(&file, "R1ght/Pa?55\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = backup(&[], &["--password-file", file.to_str().unwrap()]);
    assert_success(&out);
    // A file others can read is refused, naming the fix.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = backup(&[], &["--password-file", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("chmod"),
        "{stderr}"
    );
    // A wrong password: refused, and never shown.
    let out = backup(&[("MONGODB_PASSWORD", "Wr0ng/Pa?55")], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && !stderr.contains("Wr0ng"),
        "{stderr}"
    );
    // An unencoded '/' or '?' in a password in the URI: refused without
    // echoing it.
    let out = backupctl_env(
        &[
            "backup",
            "--mongo",
            &format!("mongodb://backup:R1ght/Pa?55@127.0.0.1:{port}/shop"),
            "--store",
            store,
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("Pa?55") && stderr.contains("percent-encode"),
        "{stderr}"
    );
    drop(own);
}

#[test]
fn backupctl_refuses_mongo_system_databases_as_restore_targets() {
    for name in ["admin", "LOCAL", "config"] {
        let out = backupctl(&[
            "restore",
            "20250101T000000Z-00000000",
            "--store",
            "/nonexistent/store",
            "--mongo",
            "mongodb://127.0.0.1:1/",
            "--target-db",
            name,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}");
        assert!(stderr.contains("system database"), "{name}: {stderr}");
    }
}
