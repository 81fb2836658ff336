//! `backupctl` end to end: the real binary, a real PostgreSQL (throwaway
//! cluster or `BACKUP_TEST_PG_URL`) and the filesystem store.
//!
//! The tests of PostgreSQL behaviour (backup, verify, restore, the
//! encrypted round trip down to the server's own `pg_restore`) run on
//! both majors of the test matrix, as `<test>::postgres_15` and
//! `<test>::postgres_18` (`--pg-bin` naming the 18 tools, see
//! `support::pg_bin`). The others exercise backupctl's own logic past the
//! PostgreSQL call (argument and connection-error handling, libpq's
//! environment, prune/stats/health over the store, store detection) the
//! same way whatever the server's version, and run on 15 only.

use std::path::Path;
use std::process::Command;

use backup_core::testing::assert_success;
use backup_postgres::TestServer;
use serde_json::Value;

mod support;
use support::cli::Cli;
use support::*;

fn artifact_path(store: &Path, manifest: &Value) -> std::path::PathBuf {
    store.join(manifest["artifact"].as_str().unwrap())
}

backup_postgres::each_major! {
    async fn backup_list_verify_restore_delete(server) {
        let bin = pg_bin(server);
        let db = server.create_database("cli_src").await.unwrap();
        server.pgbench_init(&db, 1).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("backups");
        let store_s = store.to_str().unwrap();
        let url = server.url(&db);

        let m: Value = serde_json::from_str(&ok(&with_pg_bin(
            &[
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
            ],
            &bin,
        )))
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

        let listed: Value =
            serde_json::from_str(&ok(&["list", "--store", store_s, "--json"])).unwrap();
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
        let target_url = server.url(&target);
        let restore =
            |extra: &[&'static str]| into_database(&id, store_s, &target_url, &bin, extra);
        ok(&restore(&["--create"]));
        server.assert_same_data(&db, &target).await;

        // Again into the now non-empty target without --clean: one line that
        // names the conflict and says what to do, not pg_restore's cut-off
        // DDL; the target unchanged.
        let before = server.fingerprint(&target).await.unwrap();
        let err = fails(&restore(&[]));
        assert!(
            err.contains(&format!("already exists in database \"{target}\""))
                && err.contains("--clean")
                && !err.contains("CREATE"),
            "{err}"
        );
        assert_eq!(server.fingerprint(&target).await.unwrap(), before);

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
        let err = fails(&restore(&["--clean"]));
        assert!(err.contains("integrity check failed"), "{err}");
        assert_eq!(server.fingerprint(&target).await.unwrap(), before);

        // Truncated artifact.
        std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
        let err = fails(&["verify", &id, "--store", store_s]);
        assert!(err.contains("integrity check failed"), "{err}");

        ok(&["delete", &id, "--store", store_s]);
        let listed: Value =
            serde_json::from_str(&ok(&["list", "--store", store_s, "--json"])).unwrap();
        assert!(listed.as_array().unwrap().is_empty());
        assert!(!path.exists(), "artifact left after delete");

        server.drop_database(&db).await.unwrap();
        server.drop_database(&target).await.unwrap();
    }
}

#[tokio::test]
async fn bad_input_gets_one_clear_line() {
    let server = TestServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let store_s = dir.path().to_str().unwrap();

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
    // The failed backups created (and marked) the store: ids are checked.
    let err = fails(&["verify", "../../etc/passwd", "--store", store_s]);
    assert!(err.contains("invalid key"), "{err}");
    let err = fails(&["delete", "20250101T000000Z-deadbeef", "--store", store_s]);
    assert!(err.contains("not found"), "{err}");
    let listed: Value = serde_json::from_str(&ok(&["list", "--store", store_s, "--json"])).unwrap();
    assert!(
        listed.as_array().unwrap().is_empty(),
        "failed backups must not be listed"
    );
}

#[tokio::test]
async fn password_from_pgpassword_env() {
    let server = TestServer::shared();
    let db = server
        .create_database_with("cli_env", "CREATE TABLE t AS SELECT 1 AS x")
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
    assert_success(&out);
    server.drop_database(&db).await.unwrap();
}

#[tokio::test]
async fn prune_stats_and_health() {
    let server = TestServer::shared();
    let db = server
        .create_database_with(
            "cli_prune",
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

    let out = ok(&["prune", "--store", store_s, "--keep-last", "1"]);
    assert!(
        !out.contains("kept only because"),
        "the manual backup is also the newest: {out}"
    );
    let listed: Value = serde_json::from_str(&ok(&["list", "--store", store_s, "--json"])).unwrap();
    // `latest` and unique id prefixes wherever an id goes; an ambiguous
    // prefix names the candidates.
    let newest = listed[0]["id"].as_str().unwrap().to_string();
    let out = ok(&["verify", "latest", "--store", store_s]);
    assert!(out.contains(&newest), "{out}");
    let out = ok(&["verify", &newest[..newest.len() - 3], "--store", store_s]);
    assert!(out.contains(&newest), "{out}");
    let err = fails(&["verify", &newest[..4], "--store", store_s]);
    assert!(err.contains("ambiguous") && err.contains(&newest), "{err}");
    let err = fails(&["verify", "1999", "--store", store_s]);
    assert!(err.contains("no backup id starts with it"), "{err}");
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
    // `last_success` is health's name for the newest backup; `last` stays
    // beside it for a release.
    assert!(stats["total"]["last_success"].is_string(), "{stats}");
    assert_eq!(stats["total"]["last"], stats["total"]["last_success"]);
    assert_eq!(listed[0]["created_by"], "backupctl");
    assert_eq!(stats["sources"]["default/shop"]["count"], 2);
    assert!(stats["total"]["total_bytes"].as_u64().unwrap() > 0);

    let health: Value =
        serde_json::from_str(&ok(&["health", "--store", store_s, "--json"])).unwrap();
    assert_eq!(health[0]["status"], "healthy");
    // The threshold in the syntax --stale-after takes, and in hours (older).
    assert_eq!(health[0]["stale_after"], "1d", "{health}");
    assert_eq!(health[0]["stale_after_hours"], 24.0, "{health}");
    assert_eq!(
        health[0]["last_success"],
        stats["sources"]["default/shop"]["last_success"]
    );
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

    // Once a newer scheduled backup exists, the manual one is kept only for
    // being manual, and prune says so and what to do.
    ok(&[
        "backup",
        "--pg",
        &url,
        "--store",
        store_s,
        "--source-id",
        "shop",
        "--kind",
        "scheduled",
    ]);
    let out = ok(&["prune", "--store", store_s, "--keep-last", "1"]);
    assert!(
        out.contains("note: 1 backup(s) kept only because they are manual")
            && out.contains("--kind scheduled"),
        "prune says why a manual backup stays: {out}"
    );
    server.drop_database(&db).await.unwrap();
}

backup_postgres::each_major! {
    async fn encrypted_backups_with_age_keys(server) {
        let bin = pg_bin(server);
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

        let m: Value = serde_json::from_str(&ok(&with_pg_bin(
            &[
                "backup",
                "--pg",
                &server.url(&db),
                "--store",
                store_s,
                "--encrypt-to",
                &recipient,
                "--json",
            ],
            &bin,
        )))
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
        ok(&with_pg_bin(
            &[
                "restore",
                id,
                "--store",
                store_s,
                "--pg",
                &server.url(&target),
                "--create",
                "--identity",
                key_s,
            ],
            &bin,
        ));
        server.assert_same_data(&db, &target).await;

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
        std::fs::set_permissions(&pwfile, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        // The server's own major version's pg_restore (a dump of pg_dump
        // 18 is not for pg_restore 15).
        let pg_restore = server.server_bin().await.unwrap().join("pg_restore");
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
        assert_success(&out);
        server.assert_same_data(&db, &manual).await;
        for d in [&db, &target, &manual] {
            server.drop_database(d).await.unwrap();
        }
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

    // `--grace-minutes` is the older spelling of `--grace`: still taken, with
    // a one-line warning.
    let args = [
        "sweep",
        "--store",
        store_s,
        "--grace-minutes",
        "60",
        "--json",
    ];
    let out = backupctl(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        stderr.contains(
            "warning: --grace-minutes is the older spelling of --grace (e.g. --grace 60m)"
        ),
        "{stderr}"
    );
    let swept: Value = serde_json::from_str(&succeeded(&args, out)).unwrap();
    assert_eq!(
        swept["temporary_removed"].as_array().unwrap().len(),
        1,
        "{swept}"
    );
    assert_eq!(swept["too_recent"].as_array().unwrap().len(), 1, "{swept}");
    assert!(!temp.exists() && orphan.exists());
    let out = backupctl(&[
        "sweep",
        "--store",
        store_s,
        "--grace",
        "99999999999999999999d",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("99999999999999999999d"));
    let err = String::from_utf8_lossy(
        &backupctl(&[
            "sweep",
            "--store",
            store_s,
            "--grace",
            "5m",
            "--grace-minutes",
            "5",
        ])
        .stderr,
    )
    .to_string();
    assert!(err.contains("cannot be used with"), "{err}");
    let text = ok(&["sweep", "--store", store_s, "--grace", "5m"]);
    assert!(
        text.contains("removed orphaned artifact default/db/2025/01/"),
        "{text}"
    );
    assert!(!orphan.exists());
}

/// A `pg_dump` for comparisons: on `PATH`, else the newest Debian one.
fn system_pg_dump() -> Option<std::path::PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("pg_dump"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let mut found: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| Some(e.ok()?.path().join("bin/pg_dump")))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        found.pop()
    })
}

fn write_private(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Issue #13: `backupctl` connects as `pg_dump` does with the same URL and
/// environment: `PGPORT` fills in a URL without a port, `~/.pgpass` and
/// `PGPASSFILE` supply the password, a service file names the server; a
/// rejected password names where it came from, never the in-memory file
/// the tools read it from; a passfile others can read is ignored with
/// libpq's warning.
#[tokio::test]
async fn connects_like_pg_dump_with_the_same_environment() {
    let server = TestServer::shared();
    let db = server
        .create_database_with("cli_libpq", "CREATE TABLE t AS SELECT 1 AS x")
        .await
        .unwrap();
    let conn = server.connection(&db);
    let (user, host, port) = (conn.user(), conn.host(), conn.port().to_string());
    let password = conn.password().unwrap().expose().to_string();
    let home = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let store_s = store.path().to_str().unwrap();
    write_private(
        &home.path().join(".pgpass"),
        &format!("# the test cluster\n{host}:{port}:*:{user}:{password}\n"),
        0o600,
    );
    // No port in the URL: PGPORT gives it, ~/.pgpass the password.
    let url = format!("postgres://{user}@{host}/{db}");
    let cli = Cli::new().env("HOME", home.path()).env("PGPORT", &port);
    let args = ["backup", "--pg", url.as_str(), "--store", store_s, "--json"];
    let manifest = cli.json(&args);
    assert_eq!(manifest["database"], db.as_str(), "{manifest}");
    if let Some(pg_dump) = system_pg_dump() {
        let out = Command::new(pg_dump)
            .env_clear()
            .env("HOME", home.path())
            .env("PGPORT", &port)
            .args(["--schema-only", "-d", &url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_dump with the same URL and environment: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // A service file (PGSERVICEFILE) names the whole server; PGPASSFILE
    // (0600) the password.
    let services = home.path().join("services.conf");
    write_private(
        &services,
        &format!("[clinic]\nhost={host}\nport={port}\nuser={user}\ndbname={db}\n"),
        0o600,
    );
    let passfile = home.path().join("passfile");
    write_private(&passfile, &format!("*:*:*:*:{password}\n"), 0o600);
    let cli = Cli::new()
        .env("PGSERVICEFILE", &services)
        .env("PGPASSFILE", &passfile);
    cli.json(&[
        "backup",
        "--pg",
        "postgres://?service=clinic",
        "--store",
        store_s,
        "--json",
    ]);
    let cli = cli.env("PGSERVICE", "clinic");
    cli.json(&[
        "backup",
        "--pg",
        "postgres://",
        "--store",
        store_s,
        "--json",
    ]);

    // A wrong password: the error says where it came from, never the
    // in-memory file, never the password.
    write_private(&passfile, "*:*:*:*:not-the-password\n", 0o600);
    let out = cli.run(&["backup", "--pg", "postgres://", "--store", store_s]);
    let err = failed(&["backup"], out);
    assert!(err.contains("authentication failed"), "{err}");
    assert!(
        err.contains(&format!("password file {}", passfile.display())),
        "{err}"
    );
    assert!(
        !err.contains("/dev/fd") && !err.contains("not-the-password"),
        "{err}"
    );

    // A passfile others can read is ignored, with libpq's warning.
    write_private(&passfile, &format!("*:*:*:*:{password}\n"), 0o644);
    let out = cli.run(&["backup", "--pg", "postgres://", "--store", store_s]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("group or world access"), "{err}");
    assert!(err.contains("no password"), "{err}");

    // A variable that cannot be forwarded is refused, not ignored.
    let out = Cli::new()
        .env("PGHOSTADDR", "10.1.2.3")
        .run(&["backup", "--pg", &url, "--store", store_s]);
    let err = failed(&["backup"], out);
    assert!(err.contains("PGHOSTADDR"), "{err}");
    server.drop_database(&db).await.unwrap();
}

/// Issue #13: a mistyped `--store` is an error for every command but
/// `backup`, and nothing is created: a missing directory, a file, and an
/// empty directory that no backup ever wrote to. `backup` creates and
/// marks the store; a store written before the marker existed is still
/// recognised by its objects.
#[tokio::test]
async fn a_mistyped_store_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nostore");
    let missing_s = missing.to_str().unwrap();
    let id = "20250101T000000Z-deadbeef";
    let read_only: Vec<Vec<&str>> = vec![
        vec!["health"],
        vec!["list"],
        vec!["stats"],
        vec!["check"],
        vec!["sweep"],
        vec!["gc", "--dry-run"],
        vec!["prune", "--keep-last", "1", "--dry-run"],
        vec!["verify", id],
        vec!["delete", id],
        vec!["restore", id, "--pg", "postgres://u@127.0.0.1:1/x"],
    ];
    for cmd in &read_only {
        let mut args = cmd.clone();
        args.extend(["--store", missing_s]);
        let err = fails(&args);
        assert!(
            err.contains("does not exist") && err.contains("nostore"),
            "{cmd:?}: {err}"
        );
        assert!(!missing.exists(), "{cmd:?} created the store");
    }
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let err = fails(&["list", "--store", file.to_str().unwrap()]);
    assert!(err.contains("not a directory"), "{err}");

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let empty_s = empty.to_str().unwrap();
    for cmd in &read_only {
        let mut args = cmd.clone();
        args.extend(["--store", empty_s]);
        let err = fails(&args);
        assert!(err.contains("holds no backups"), "{cmd:?}: {err}");
    }
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);

    // `backup` creates and marks the store, even when the dump then fails.
    let fresh = dir.path().join("fresh");
    let fresh_s = fresh.to_str().unwrap();
    fails(&[
        "backup",
        "--pg",
        "postgres://u@127.0.0.1:1/x",
        "--store",
        fresh_s,
    ]);
    assert!(fresh.join("_store.json").is_file());
    let listed = json(&["list", "--store", fresh_s, "--json"]);
    assert_eq!(listed, serde_json::json!([]));

    // `init` creates and marks a store once; later runs say so.
    let inited = dir.path().join("inited");
    let inited_s = inited.to_str().unwrap();
    let first = json(&["init", "--store", inited_s, "--json"]);
    assert_eq!(first["created"], true, "{first}");
    let again = json(&["init", "--store", inited_s, "--json"]);
    assert_eq!(again["created"], false, "{again}");
    assert_eq!(
        json(&["list", "--store", inited_s, "--json"]),
        serde_json::json!([])
    );

    // verify --json prints a JSON result on failure too (and exits 1 with
    // the error line on stderr).
    let out = backupctl(&["verify", id, "--store", inited_s, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["verified"], false, "{result}");
    assert!(
        result["error"].as_str().unwrap().contains("not found"),
        "{result}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));

    // A store from before the marker: recognised by its objects.
    std::fs::remove_file(fresh.join("_store.json")).unwrap();
    std::fs::create_dir_all(fresh.join("default/app")).unwrap();
    std::fs::write(fresh.join("default/app/last-run.json"), "{}").unwrap();
    ok(&["stats", "--store", fresh_s]);
}

/// Issue #13: every subcommand, flag and argument has help text; a
/// command line that cannot be parsed exits 2 (documented); logs carry no
/// colour codes when stderr is not a terminal.
#[test]
fn help_everywhere_exit_2_for_usage_no_colour_in_pipes() {
    let top = ok(&["--help"]);
    let commands: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| {
            let (name, help) = l.trim().split_once(' ').unwrap_or((l.trim(), ""));
            assert!(!help.trim().is_empty(), "subcommand without help: {l}");
            name.to_string()
        })
        .filter(|n| n != "help")
        .collect();
    assert!(commands.len() >= 12, "{top}");
    for command in &commands {
        let help = ok(&[command, "--help"]);
        let mut in_section = false;
        for line in help.lines() {
            if line.ends_with(':') && !line.starts_with(' ') {
                in_section = matches!(line, "Arguments:" | "Options:");
                continue;
            }
            if in_section && line.starts_with("  ") {
                let entry = line.trim_start();
                let described = entry
                    .split_once("  ")
                    .is_some_and(|(_, text)| !text.trim().is_empty());
                assert!(described, "backupctl {command}: no help for {entry:?}");
            }
        }
    }
    for bad in [
        &["list"][..],
        &["nosuch"][..],
        &["list", "--store", "x", "--bogus"][..],
    ] {
        let out = backupctl(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    // A failing backup logs a warning before its error line.
    let out = backupctl_command()
        .args([
            "backup",
            "--pg",
            "postgres://u@127.0.0.1:1/x",
            "--store",
            dir.path().to_str().unwrap(),
        ])
        .env("BACKUP_LOG", "debug")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("WARN"));
    assert!(
        !out.stderr.contains(&0x1b),
        "ANSI escapes in piped logs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
