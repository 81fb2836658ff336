//! `backupctl` end to end: the real binary, a real PostgreSQL (throwaway
//! cluster or `BACKUP_TEST_PG_URL`) and the filesystem store.

use std::path::Path;
use std::process::Command;

use backup_postgres::TestServer;
use serde_json::Value;

mod support;
use support::*;

fn artifact_path(store: &Path, manifest: &Value) -> std::path::PathBuf {
    store.join(manifest["artifact"].as_str().unwrap())
}

#[tokio::test]
async fn backup_list_verify_restore_delete() {
    let server = TestServer::shared();
    let db = server.create_database("cli_src").await.unwrap();
    server.pgbench_init(&db, 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("backups");
    let store_s = store.to_str().unwrap();
    let url = server.url(&db);

    let m: Value = serde_json::from_str(&ok(&[
        "backup",
        "--pg",
        &url,
        "--store",
        store_s,
        "--tenant",
        "acme",
        "--compression",
        "gzip",
        "--json",
    ]))
    .unwrap();
    let id = m["id"].as_str().unwrap().to_string();
    assert_eq!(m["tenant"], "acme");
    assert_eq!(m["compression"]["algorithm"], "gzip");
    assert_eq!(m["kind"], "manual");
    let manifest_text = serde_json::to_string(&m).unwrap();
    let password = server
        .connection(&db)
        .password()
        .unwrap()
        .expose()
        .to_string();
    assert!(
        !manifest_text.contains(&password),
        "password in the manifest"
    );
    assert!(artifact_path(&store, &m).is_file());

    let listed: Value = serde_json::from_str(&ok(&["list", "--store", store_s, "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    let table = ok(&["list", "--store", store_s]);
    assert!(table.contains(&id) && table.contains("acme"), "{table}");

    let verified = ok(&["verify", &id, "--store", store_s]);
    assert!(
        verified.contains(m["stored"]["sha256"].as_str().unwrap()),
        "{verified}"
    );

    let target = format!("{db}_restored");
    ok(&[
        "restore",
        &id,
        "--store",
        store_s,
        "--pg",
        &server.url(&target),
        "--create",
    ]);
    assert_eq!(
        server.fingerprint(&db).await.unwrap(),
        server.fingerprint(&target).await.unwrap()
    );

    // Flip one byte of the artifact: verify and restore refuse it, and the
    // target database is left as it was.
    let path = artifact_path(&store, &m);
    let mut bytes = std::fs::read(&path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let err = fails(&["verify", &id, "--store", store_s]);
    assert!(err.contains("integrity check failed"), "{err}");
    let before = server.fingerprint(&target).await.unwrap();
    let err = fails(&[
        "restore",
        &id,
        "--store",
        store_s,
        "--pg",
        &server.url(&target),
        "--clean",
    ]);
    assert!(err.contains("integrity check failed"), "{err}");
    assert_eq!(server.fingerprint(&target).await.unwrap(), before);

    // Truncated artifact.
    std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
    let err = fails(&["verify", &id, "--store", store_s]);
    assert!(err.contains("integrity check failed"), "{err}");

    ok(&["delete", &id, "--store", store_s]);
    let listed: Value = serde_json::from_str(&ok(&["list", "--store", store_s, "--json"])).unwrap();
    assert!(listed.as_array().unwrap().is_empty());
    assert!(!path.exists(), "artifact left after delete");

    server.drop_database(&db).await.unwrap();
    server.drop_database(&target).await.unwrap();
}

#[tokio::test]
async fn bad_input_gets_one_clear_line() {
    let server = TestServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let store_s = dir.path().to_str().unwrap();

    let err = fails(&["verify", "../../etc/passwd", "--store", store_s]);
    assert!(err.contains("invalid key"), "{err}");
    let err = fails(&["delete", "20250101T000000Z-deadbeef", "--store", store_s]);
    assert!(err.contains("not found"), "{err}");

    let missing = server.url("no_such_database_xyz");
    let err = fails(&["backup", "--pg", &missing, "--store", store_s]);
    assert!(err.contains("does not exist"), "{err}");

    let conn = server.connection("postgres");
    let wrong = format!(
        "postgres://{}:not-the-password@{}:{}/postgres",
        conn.user(),
        conn.host(),
        conn.port()
    );
    let err = fails(&["backup", "--pg", &wrong, "--store", store_s]);
    assert!(err.contains("authentication failed"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");

    let err = fails(&["backup", "--pg", "mysql://x@y/z", "--store", store_s]);
    assert!(err.contains("postgres://"), "{err}");
    let listed: Value = serde_json::from_str(&ok(&["list", "--store", store_s, "--json"])).unwrap();
    assert!(
        listed.as_array().unwrap().is_empty(),
        "failed backups must not be listed"
    );
}

#[tokio::test]
async fn password_from_pgpassword_env() {
    let server = TestServer::shared();
    let db = server.create_database("cli_env").await.unwrap();
    server
        .psql(&db, "CREATE TABLE t AS SELECT 1 AS x")
        .await
        .unwrap();
    let conn = server.connection(&db);
    let url = format!(
        "postgres://{}@{}:{}/{db}",
        conn.user(),
        conn.host(),
        conn.port()
    );
    let dir = tempfile::tempdir().unwrap();
    let out = backupctl_command()
        .args([
            "backup",
            "--pg",
            &url,
            "--store",
            dir.path().to_str().unwrap(),
            "--json",
        ])
        .env("PGPASSWORD", conn.password().unwrap().expose())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.drop_database(&db).await.unwrap();
}

#[tokio::test]
async fn prune_stats_and_health() {
    let server = TestServer::shared();
    let db = server.create_database("cli_prune").await.unwrap();
    server
        .psql(
            &db,
            "CREATE TABLE t AS SELECT generate_series(1, 1000) AS x",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store_s = dir.path().to_str().unwrap();
    let url = server.url(&db);
    for kind in ["scheduled", "scheduled", "scheduled", "manual"] {
        ok(&[
            "backup",
            "--pg",
            &url,
            "--store",
            store_s,
            "--source-id",
            "shop",
            "--kind",
            kind,
        ]);
    }
    let err = fails(&["prune", "--store", store_s]);
    assert!(err.contains("needs a policy"), "{err}");

    let plan: Value = serde_json::from_str(&ok(&[
        "prune",
        "--store",
        store_s,
        "--keep-last",
        "1",
        "--dry-run",
        "--json",
    ]))
    .unwrap();
    assert_eq!(plan["dry_run"], true);
    assert_eq!(
        plan["sources"]["default/shop"]["delete"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let listed: Value = serde_json::from_str(&ok(&["list", "--store", store_s, "--json"])).unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        4,
        "dry run deleted nothing"
    );

    ok(&["prune", "--store", store_s, "--keep-last", "1"]);
    let listed: Value = serde_json::from_str(&ok(&["list", "--store", store_s, "--json"])).unwrap();
    let kinds: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(
        kinds.contains(&"manual"),
        "manual backups survive: {kinds:?}"
    );

    let stats: Value = serde_json::from_str(&ok(&["stats", "--store", store_s, "--json"])).unwrap();
    assert_eq!(stats["total"]["count"], 2);
    assert_eq!(stats["sources"]["default/shop"]["count"], 2);
    assert!(stats["total"]["total_bytes"].as_u64().unwrap() > 0);

    let health: Value =
        serde_json::from_str(&ok(&["health", "--store", store_s, "--json"])).unwrap();
    assert_eq!(health[0]["status"], "healthy");
    let out = backupctl(&["health", "--store", store_s, "--stale-after", "0s"]);
    assert!(
        !out.status.success(),
        "a stale source must fail the health check"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("stale"));

    // A failed attempt makes the source failing.
    let missing = server.url("no_such_db_for_health");
    fails(&[
        "backup",
        "--pg",
        &missing,
        "--store",
        store_s,
        "--source-id",
        "shop",
    ]);
    let out = backupctl(&["health", "--store", store_s, "--json"]);
    assert!(!out.status.success());
    let health: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(health[0]["status"], "failing");
    assert!(
        health[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("does not exist")
    );
    server.drop_database(&db).await.unwrap();
}

#[tokio::test]
async fn encrypted_backups_with_age_keys() {
    let server = TestServer::shared();
    let db = server.create_database("cli_enc").await.unwrap();
    server.pgbench_init(&db, 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("backups");
    let store_s = store.to_str().unwrap();
    let (_, recipient, secret) = backup_core::crypto::AgeIdentities::generate();
    let key_file = dir.path().join("key.txt");
    std::fs::write(
        &key_file,
        format!("# public key: {recipient}\n{}\n", secret.expose()),
    )
    .unwrap();
    let key_s = key_file.to_str().unwrap();

    let m: Value = serde_json::from_str(&ok(&[
        "backup",
        "--pg",
        &server.url(&db),
        "--store",
        store_s,
        "--encrypt-to",
        &recipient,
        "--json",
    ]))
    .unwrap();
    let id = m["id"].as_str().unwrap();
    assert_eq!(m["encryption"]["recipients"][0], recipient.as_str());
    assert!(m["artifact"].as_str().unwrap().ends_with(".dump.zst.age"));
    assert!(!serde_json::to_string(&m).unwrap().contains(secret.expose()));

    let err = fails(&["verify", id, "--store", store_s]);
    assert!(err.contains("no identity"), "{err}");
    ok(&["verify", id, "--store", store_s, "--identity", key_s]);
    let (_, _, other) = backup_core::crypto::AgeIdentities::generate();
    let wrong = dir.path().join("wrong.txt");
    std::fs::write(&wrong, other.expose()).unwrap();
    let err = fails(&[
        "verify",
        id,
        "--store",
        store_s,
        "--identity",
        wrong.to_str().unwrap(),
    ]);
    assert!(err.contains("wrong key"), "{err}");

    let target = format!("{db}_dec");
    ok(&[
        "restore",
        id,
        "--store",
        store_s,
        "--pg",
        &server.url(&target),
        "--create",
        "--identity",
        key_s,
    ]);
    assert_eq!(
        server.fingerprint(&db).await.unwrap(),
        server.fingerprint(&target).await.unwrap()
    );

    // Without this library: the age format decrypted by the age crate
    // alone, then the standard zstd tool, then pg_restore.
    let artifact = std::fs::read(artifact_path(&store, &m)).unwrap();
    let identity: age::x25519::Identity = secret.expose().parse().unwrap();
    let decryptor = age::Decryptor::new(&artifact[..]).unwrap();
    let mut reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .unwrap();
    let compressed = dir.path().join("plain.dump.zst");
    let mut out = std::fs::File::create(&compressed).unwrap();
    std::io::copy(&mut reader, &mut out).unwrap();
    let dump = dir.path().join("plain.dump");
    let status = Command::new("zstd")
        .args(["-q", "-d", "-o"])
        .arg(&dump)
        .arg(&compressed)
        .status()
        .expect("the zstd tool");
    assert!(status.success());
    let manual = format!("{db}_manual");
    server
        .psql("postgres", &format!("CREATE DATABASE {manual}"))
        .await
        .unwrap();
    let conn = server.connection(&manual);
    let pwfile = dir.path().join("pgpass");
    std::fs::write(
        &pwfile,
        format!("*:*:*:*:{}\n", conn.password().unwrap().expose()),
    )
    .unwrap();
    std::fs::set_permissions(&pwfile, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let pg_restore = [
        "/usr/lib/postgresql/15/bin/pg_restore",
        "/usr/bin/pg_restore",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .unwrap();
    let out = Command::new(pg_restore)
        .arg("--dbname")
        .arg(format!("dbname={manual}"))
        .arg("--no-password")
        .arg(&dump)
        .env("PGHOST", conn.host())
        .env("PGPORT", conn.port().to_string())
        .env("PGUSER", conn.user())
        .env("PGPASSFILE", &pwfile)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        server.fingerprint(&db).await.unwrap(),
        server.fingerprint(&manual).await.unwrap()
    );
    for d in [&db, &target, &manual] {
        server.drop_database(d).await.unwrap();
    }
}

/// Issue #10: durations beyond what can be represented are refused, naming
/// the value (`307445734561825861` minutes wrapped to 44 seconds), and
/// `check` and `sweep` see the temporary files of killed uploads.
#[test]
fn out_of_range_durations_are_refused_and_sweep_sees_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("backups");
    let store_s = store.to_str().unwrap();
    let month = store.join("default/db/2025/01");
    std::fs::create_dir_all(&month).unwrap();
    let aged = |name: &str, bytes: usize, secs: u64| {
        let path = month.join(name);
        std::fs::write(&path, vec![0u8; bytes]).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(secs))
            .unwrap();
        path
    };
    // A failed backup's artifact, ten minutes old; a killed upload's
    // temporary file, two hours old.
    let orphan = aged(
        "manual-pgdump-db-20250101T000000Z-0000abcd.dump.zst",
        100,
        600,
    );
    let temp = aged(
        ".manual-pgdump-db-20250101T000000Z-0000abce.dump.zst.tmp-00000000000000aa",
        4096,
        7200,
    );

    let err = fails(&[
        "sweep",
        "--store",
        store_s,
        "--grace-minutes",
        "307445734561825861",
    ]);
    assert!(err.contains("307445734561825861"), "{err}");
    assert!(orphan.exists() && temp.exists(), "nothing removed");
    for (flag, value) in [
        ("--max-age", "307445734561825861m"),
        ("--gc-grace", "99999999999999999999d"),
    ] {
        let out = backupctl(&["prune", "--store", store_s, "--keep-last", "1", flag, value]);
        assert!(!out.status.success(), "{flag} {value} accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(value), "{stderr}");
    }

    let check: Value = serde_json::from_str(&ok(&["check", "--store", store_s, "--json"])).unwrap();
    assert_eq!(
        check["orphaned_artifacts"].as_array().unwrap().len(),
        1,
        "{check}"
    );
    assert_eq!(
        check["temporary_objects"].as_array().unwrap().len(),
        1,
        "{check}"
    );
    let text = ok(&["check", "--store", store_s]);
    assert!(
        text.contains("temporary file: default/db/2025/01/.manual-pgdump"),
        "{text}"
    );

    let swept: Value = serde_json::from_str(&ok(&[
        "sweep",
        "--store",
        store_s,
        "--grace-minutes",
        "60",
        "--json",
    ]))
    .unwrap();
    assert_eq!(
        swept["temporary_removed"].as_array().unwrap().len(),
        1,
        "{swept}"
    );
    assert_eq!(swept["too_recent"].as_array().unwrap().len(), 1, "{swept}");
    assert!(!temp.exists() && orphan.exists());
    let text = ok(&["sweep", "--store", store_s, "--grace-minutes", "5"]);
    assert!(
        text.contains("removed orphaned artifact default/db/2025/01/"),
        "{text}"
    );
    assert!(!orphan.exists());
}
