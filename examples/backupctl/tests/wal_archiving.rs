//! `backupctl wal-push %p` as the `archive_command` of real PostgreSQL 15
//! and 18 servers (throwaway clusters, `BACKUP_TEST_PG18_BIN` for 18), and
//! `backupctl wal-fetch %f %p` reading every archived segment back; the
//! same two commands against an S3-compatible server (s3s-fs).
//!
//! When the tests run as root the server runs as `postgres`: the store is
//! handed to `postgres`, and the binary is copied to a directory it can
//! reach when any directory above the build's is closed to it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use backup_core::Engine;
use backup_examples::{S3Settings, StoreLocation, open_existing_store};
use backup_postgres::{TestServer, WalArchive};
use backup_store_s3::S3TestServer;

mod support;
use support::{backupctl_command, failed, ok, succeeded};

const SOURCE: &str = "walsrc";

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The backupctl binary as the server can run it: the build's own when
/// every directory above it is open to others, else a copy in a fresh
/// 0755 directory (kept alive by the returned guard).
fn reachable_binary() -> (PathBuf, Option<tempfile::TempDir>) {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_backupctl"));
    let open = bin
        .ancestors()
        .skip(1)
        .all(|dir| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
    if open || !is_root() {
        return (bin, None);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.path().join("backupctl");
    std::fs::copy(&bin, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    (copy, Some(dir))
}

/// A new fs store the server's user can write: `<tmp>/store`, marked by
/// `backupctl init`, owned by `postgres` when root.
fn server_store() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = dir.path().join("store");
    ok(&["init", "--store", store.to_str().unwrap()]);
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&store)
            .status()
            .unwrap();
        assert!(status.success());
    }
    (dir, store)
}

async fn archive_of(store: &Path) -> WalArchive {
    let store = open_existing_store(
        StoreLocation::parse(store.to_str().unwrap()).unwrap(),
        &S3Settings::default(),
    )
    .await
    .unwrap();
    WalArchive::new(Arc::new(Engine::new(store)), "default", SOURCE).unwrap()
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

fn run(args: &[&str], cwd: Option<&Path>) -> Output {
    let mut cmd = backupctl_command();
    cmd.args(args);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    cmd.output().unwrap()
}

/// Waits until the server reports `segment` (or a later one) archived,
/// failing on the first archiving failure.
async fn wait_archived(server: &TestServer, segment: &str) {
    for _ in 0..600 {
        let row = server
            .psql(
                "postgres",
                "SELECT coalesce(last_archived_wal, '') || '|' || failed_count || '|' || \
                 coalesce(last_failed_wal, '') FROM pg_stat_archiver",
            )
            .await
            .unwrap();
        let parts: Vec<&str> = row.trim().split('|').collect();
        assert_eq!(parts[1], "0", "archive_command failed for {}", parts[2]);
        if !parts[0].is_empty() && parts[0].len() == 24 && parts[0] >= segment {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{segment} was not archived within a minute");
}

/// The whole `archive_command` scenario on the server binaries in `bin`.
async fn archive_and_fetch(bin: &Path) {
    let (backupctl, _bin_guard) = reachable_binary();
    let (_store_guard, store) = server_store();
    let store_s = store.to_str().unwrap();
    let archive_command = format!(
        "{} wal-push %p --store {store_s} --source {SOURCE}",
        backupctl.display()
    );
    let server = tokio::task::spawn_blocking({
        let bin = bin.to_path_buf();
        move || {
            TestServer::throwaway_with(
                bin,
                &[
                    ("archive_mode", "on"),
                    ("archive_command", &archive_command),
                    ("wal_level", "replica"),
                ],
            )
        }
    })
    .await
    .unwrap()
    .unwrap();
    let db = server
        .create_database_with(
            "walarch",
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g;",
        )
        .await
        .unwrap();
    let mut last = String::new();
    for round in 0..3 {
        server
            .psql(
                &db,
                &format!(
                    "INSERT INTO t SELECT g, md5(g::text) FROM generate_series({0}, {0} + 5000) g",
                    100_000 * (round + 1)
                ),
            )
            .await
            .unwrap();
        last = server
            .psql(&db, "SELECT pg_walfile_name(pg_switch_wal())")
            .await
            .unwrap()
            .trim()
            .to_string();
    }
    wait_archived(&server, &last).await;
    let segment_size: u64 = server
        .psql(
            "postgres",
            "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'",
        )
        .await
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let archive = archive_of(&store).await;
    assert_eq!(archive.timelines().await.unwrap(), [1]);
    let names = archive.list(1).await.unwrap();
    let segments: Vec<&String> = names.iter().filter(|n| n.len() == 24).collect();
    assert!(segments.len() >= 3, "{names:?}");
    assert!(names.contains(&last), "{last} not in {names:?}");
    let (first, newest) = (segments[0], segments[segments.len() - 1]);
    assert!(
        archive
            .missing_between(first, newest, segment_size)
            .await
            .unwrap()
            .is_empty(),
        "gaps between {first} and {newest}"
    );

    // Every archived file back, verified, through a relative %p as
    // PostgreSQL passes it (the data directory as the working directory).
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("pg_wal")).unwrap();
    for name in &names {
        let args = [
            "wal-fetch",
            name,
            "pg_wal/RECOVERYXLOG",
            "--store",
            store_s,
            "--source",
            SOURCE,
        ];
        succeeded(&args, run(&args, Some(work.path())));
        let fetched = work.path().join("pg_wal/RECOVERYXLOG");
        let record = archive.record(name).await.unwrap().unwrap();
        assert_eq!(sha256_of(&fetched), record.sha256(), "{name}");
        assert_eq!(std::fs::metadata(&fetched).unwrap().len(), record.size());
        if name.len() == 24 {
            assert_eq!(record.size(), segment_size);
        }
    }
    assert_eq!(
        std::fs::read_dir(work.path().join("pg_wal"))
            .unwrap()
            .count(),
        1
    );

    // Pushing an archived segment again: success, same content.
    let again = tempfile::tempdir().unwrap();
    let copy = again.path().join(last.as_str());
    std::fs::copy(work.path().join("pg_wal/RECOVERYXLOG"), &copy).unwrap();
    let names_before = archive.list(1).await.unwrap();
    let fetched_last = [
        "wal-fetch",
        &last,
        copy.to_str().unwrap(),
        "--store",
        store_s,
        "--source",
        SOURCE,
    ];
    succeeded(&fetched_last, run(&fetched_last, None));
    let push = [
        "wal-push",
        copy.to_str().unwrap(),
        "--store",
        store_s,
        "--source",
        SOURCE,
    ];
    let out = succeeded(&push, run(&push, None));
    assert!(out.contains("already archived"), "{out}");
    // Other content under that name: refused, named, not overwritten.
    let mut bytes = std::fs::read(&copy).unwrap();
    bytes[8192] ^= 0xFF;
    std::fs::write(&copy, &bytes).unwrap();
    let err = failed(&push, run(&push, None));
    assert!(
        err.contains(&last) && err.contains("other content"),
        "{err}"
    );
    assert_eq!(archive.list(1).await.unwrap(), names_before);
    // A .partial segment: refused.
    let partial = again.path().join(format!("{last}.partial"));
    std::fs::write(&partial, &bytes).unwrap();
    let push_partial = [
        "wal-push",
        partial.to_str().unwrap(),
        "--store",
        store_s,
        "--source",
        SOURCE,
    ];
    let err = failed(&push_partial, run(&push_partial, None));
    assert!(err.contains(".partial"), "{err}");

    // Not in the archive: status 1, "not in the archive", no file.
    let out_dir = tempfile::tempdir().unwrap();
    let dest = out_dir.path().join("RECOVERYXLOG");
    let missing = format!("{}FFFFFF00", &last[..16]);
    let absent = [
        "wal-fetch",
        &missing,
        dest.to_str().unwrap(),
        "--store",
        store_s,
        "--source",
        SOURCE,
    ];
    let out = run(&absent, None);
    assert_eq!(out.status.code(), Some(1));
    let err = failed(&absent, out);
    assert!(
        err.contains("not in the archive") && err.contains(&missing),
        "{err}"
    );
    assert!(!dest.exists());

    // A flipped byte in the stored data: status 126 (PostgreSQL stops
    // recovery), the segment named, nothing left at %p.
    let record = archive.record(&last).await.unwrap().unwrap();
    let data = store.join(format!(
        "default/_wal/{SOURCE}/00000001/{last}/{}.data",
        record.data
    ));
    let mut stored = std::fs::read(&data).unwrap();
    let at = stored.len() / 2;
    stored[at] ^= 0x01;
    std::fs::write(&data, &stored).unwrap();
    let corrupt = [
        "wal-fetch",
        &last,
        dest.to_str().unwrap(),
        "--store",
        store_s,
        "--source",
        SOURCE,
    ];
    let out = run(&corrupt, None);
    assert_eq!(out.status.code(), Some(126), "{out:?}");
    let err = failed(&corrupt, out);
    assert!(err.contains(&last), "{err}");
    assert!(!dest.exists(), "a corrupt segment was written");
    assert_eq!(
        std::fs::read_dir(out_dir.path()).unwrap().count(),
        0,
        "a temporary file was left"
    );

    // Backups beside the WAL; check, sweep, prune and gc leave it alone.
    let url = server.url(&db);
    for _ in 0..2 {
        ok(&[
            "backup",
            "--pg",
            &url,
            "--store",
            store_s,
            "--source-id",
            SOURCE,
            "--pg-bin",
            bin.to_str().unwrap(),
        ]);
    }
    let wal_files = || {
        let mut files = Vec::new();
        let mut dirs = vec![store.join("default/_wal")];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p)
                } else {
                    files.push(p)
                }
            }
        }
        files.sort();
        files
    };
    let before = wal_files();
    let checked = run(&["check", "--store", store_s, "--json"], None);
    let report: serde_json::Value = serde_json::from_slice(&checked.stdout).unwrap();
    assert_eq!(
        report["orphaned_artifacts"].as_array().unwrap().len(),
        0,
        "{report}"
    );
    assert_eq!(report["backups"], 2, "{report}");
    ok(&["sweep", "--store", store_s, "--grace", "0s"]);
    ok(&[
        "prune",
        "--store",
        store_s,
        "--keep-last",
        "1",
        "--include-manual",
        "--gc-grace",
        "0s",
    ]);
    ok(&["gc", "--store", store_s, "--grace", "0s"]);
    assert_eq!(wal_files(), before, "maintenance touched the WAL archive");
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&["list", "--store", store_s, "--json"])).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_command_on_postgres_15() {
    archive_and_fetch(&TestServer::bin_of_major(15).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_command_on_postgres_18() {
    let bin = TestServer::bin_of_major(18).await;
    archive_and_fetch(&bin.unwrap_or_else(|e| panic!("{e}"))).await;
}

#[tokio::test]
async fn wal_push_and_fetch_on_s3() {
    let s3 = S3TestServer::from_env_or_start()
        .unwrap_or_else(|e| panic!("no S3 server for the tests: {e}"));
    let secret = s3.secret_access_key().expose().to_string();
    let cli = |args: &[&str]| {
        let mut command = backupctl_command();
        for (name, _) in std::env::vars() {
            if name.starts_with("AWS_") {
                command.env_remove(name);
            }
        }
        command
            .args(args)
            .env("AWS_ACCESS_KEY_ID", s3.access_key_id())
            .env("AWS_SECRET_ACCESS_KEY", &secret)
            .env("AWS_ENDPOINT_URL", s3.endpoint())
            .output()
            .unwrap()
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let store = format!("s3://{}/wal-{nanos:08x}", s3.bucket());
    let init = ["init", "--store", &store];
    succeeded(&init, cli(&init));
    let dir = tempfile::tempdir().unwrap();
    let name = "000000010000000000000042";
    let seg = dir.path().join(name);
    let data: Vec<u8> = (0..16u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&seg, &data).unwrap();
    let push = [
        "wal-push",
        seg.to_str().unwrap(),
        "--store",
        &store,
        "--source",
        SOURCE,
    ];
    let out = succeeded(&push, cli(&push));
    assert!(out.contains(name) && out.contains("archived"), "{out}");
    let out = succeeded(&push, cli(&push));
    assert!(out.contains("already archived"), "{out}");
    let dest = dir.path().join("fetched");
    let fetch = [
        "wal-fetch",
        name,
        dest.to_str().unwrap(),
        "--store",
        &store,
        "--source",
        SOURCE,
    ];
    succeeded(&fetch, cli(&fetch));
    assert!(std::fs::read(&dest).unwrap() == data);
    let absent = [
        "wal-fetch",
        "000000010000000000000043",
        dest.to_str().unwrap(),
        "--store",
        &store,
        "--source",
        SOURCE,
    ];
    let out = cli(&absent);
    assert_eq!(out.status.code(), Some(1));
    assert!(failed(&absent, out).contains("not in the archive"));

    // Encrypted: pushed to a recipient, fetched only with the identity.
    let (_, recipient, secret) = backup_core::crypto::AgeIdentities::generate();
    let key_file = dir.path().join("key.txt");
    std::fs::write(&key_file, format!("{}\n", secret.expose())).unwrap();
    let enc_name = "000000010000000000000044";
    let enc_seg = dir.path().join(enc_name);
    std::fs::write(&enc_seg, &data[..1 << 20]).unwrap();
    let push = [
        "wal-push",
        enc_seg.to_str().unwrap(),
        "--store",
        &store,
        "--source",
        SOURCE,
        "--encrypt-to",
        &recipient,
    ];
    succeeded(&push, cli(&push));
    let enc_dest = dir.path().join("enc");
    let fetch = [
        "wal-fetch",
        enc_name,
        enc_dest.to_str().unwrap(),
        "--store",
        &store,
        "--source",
        SOURCE,
    ];
    let out = cli(&fetch);
    assert_eq!(out.status.code(), Some(126));
    assert!(failed(&fetch, out).contains("no identity"));
    assert!(!enc_dest.exists());
    let mut with_key = fetch.to_vec();
    with_key.extend(["--identity", key_file.to_str().unwrap()]);
    succeeded(&with_key, cli(&with_key));
    assert!(std::fs::read(&enc_dest).unwrap() == data[..1 << 20]);
}
