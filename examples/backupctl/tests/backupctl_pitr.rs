//! Point-in-time restore with the real binaries, on PostgreSQL 15 and 18:
//! `backupctl wal-archive` streams a throwaway cluster's WAL into the
//! store while `backupctl backup --physical` takes a base backup; after a
//! restore point and more writes, `pitr-window` shows the archive reaching
//! the last switched segment, and `backupctl restore --datadir` with
//! `--target-name` and `--target-latest` gives back exactly the data of
//! those points. A byte flipped in an archived segment makes the restore
//! fail, naming the segment, and leaves the data directory marked
//! unusable, as any failure once the base backup is in place does; a
//! timeline the archive cannot give is refused before anything is
//! restored. `wal-archive` stops cleanly on SIGTERM.
//! Retention keeping only a newer base backup deletes the WAL before it
//! (a dry run shows which files and the window before and after).
//!
//! PostgreSQL 18 needs `BACKUP_TEST_PG18_BIN` (.ci/test.sh sets it).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use backup_postgres::{TestServer, query_data_dir};
use support::{backupctl, backupctl_command, datadir_restore, failed, fails, json, ok};

/// Kills the archiver if the test ends early.
struct Archiver(Child);

impl Drop for Archiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const DIGEST: &str = "SELECT count(*) || ' ' || md5(string_agg(v, ',' ORDER BY id)) FROM t";

async fn pitr_round_trip(bin: PathBuf) {
    let server = {
        let bin = bin.clone();
        tokio::task::spawn_blocking(move || TestServer::throwaway_in(bin))
            .await
            .unwrap()
            .unwrap()
    };
    let cluster = server.cluster().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = root.join("backups");
    let store = store.to_str().unwrap();
    let password_file = root.join("password");
    std::fs::write(&password_file, cluster.password().expose()).unwrap();
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let password_file = password_file.to_str().unwrap();
    let bin_s = bin.to_str().unwrap();
    let db = server
        .create_database_with(
            "clipitr",
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g;",
        )
        .await
        .unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{}/{db}", cluster.port());
    let pg = [
        "--pg",
        &url,
        "--password-file",
        password_file,
        "--pg-bin",
        bin_s,
    ];
    ok(&["init", "--store", store]);

    let spool = root.join("spool");
    let log = root.join("wal-archive.log");
    let mut archiver = Archiver(
        backupctl_command()
            .args(["wal-archive"])
            .args(pg)
            .args([
                "--store", store, "--source", "cluster", "--slot", "pitr_cli", "--spool",
            ])
            .arg(&spool)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );

    let mut backup = vec![
        "backup",
        "--physical",
        "--store",
        store,
        "--source-id",
        "cluster",
        "--json",
    ];
    backup.extend(pg);
    let manifest = json(&backup);
    let id = manifest["id"].as_str().unwrap().to_string();

    server
        .psql(
            &db,
            "INSERT INTO t SELECT g, 'before rp ' || g FROM generate_series(1001, 2000) g",
        )
        .await
        .unwrap();
    let at_rp = server.psql(&db, DIGEST).await.unwrap();
    server
        .psql("postgres", "SELECT pg_create_restore_point('rp')")
        .await
        .unwrap();
    server
        .psql(
            &db,
            "INSERT INTO t SELECT g, 'after rp ' || g FROM generate_series(2001, 3000) g",
        )
        .await
        .unwrap();
    let at_end = server.psql(&db, DIGEST).await.unwrap();
    assert_ne!(at_rp, at_end);
    let last = server
        .psql("postgres", "SELECT pg_walfile_name(pg_switch_wal())")
        .await
        .unwrap()
        .trim()
        .to_string();

    // The window reaches the switched segment once it is archived.
    let mut window = serde_json::Value::Null;
    for _ in 0..600 {
        window = json(&[
            "pitr-window",
            "--store",
            store,
            "--source",
            "cluster",
            "--json",
        ]);
        if window["ranges"][0]["to_segment"]
            .as_str()
            .is_some_and(|s| s >= last.as_str())
        {
            break;
        }
        if let Ok(Some(status)) = archiver.0.try_wait() {
            panic!(
                "wal-archive exited ({status}): {}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let range = &window["ranges"][0];
    assert_eq!(range["backup_id"], id.as_str(), "{window}");
    assert!(
        range["to_segment"]
            .as_str()
            .is_some_and(|s| s >= last.as_str()),
        "{last} archived: {window} {}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(range["gap_at"].is_null(), "{window}");
    let text = ok(&["pitr-window", "--store", store, "--source", "cluster"]);
    assert!(text.contains(&id) && text.contains(&last), "{text}");

    // Without the server binaries of the backup's major version, the
    // recovery is refused before anything is restored, naming it.
    let major = server.major().await.unwrap();
    let no_server = root.join("no-server");
    std::fs::create_dir(&no_server).unwrap();
    let data = root.join("restored-no-server");
    let err = fails(&datadir_restore(
        &id,
        store,
        &data,
        no_server.to_str(),
        &["--target-latest"],
    ));
    assert!(
        err.contains(&format!("PostgreSQL {major} server")) && err.contains("--pg-bin"),
        "{err}"
    );
    assert!(!data.exists(), "nothing was restored");

    // Restore to the restore point, and to the end of the archive (on
    // the newest timeline by default, and on the backup's own with
    // `--timeline current`: the same one here, timeline 1).
    for (label, flag, want) in [
        ("rp", vec!["--target-name", "rp"], &at_rp),
        ("latest", vec!["--target-latest"], &at_end),
        (
            "current",
            vec!["--target-latest", "--timeline", "current"],
            &at_end,
        ),
    ] {
        let data = root.join(format!("restored-{label}"));
        let said = ok(&datadir_restore(&id, store, &data, Some(bin_s), &flag));
        assert!(
            said.contains("recovered") && said.contains("on timeline 1"),
            "{said}"
        );
        let got = query_data_dir(&bin, &data, &db, DIGEST).unwrap();
        assert_eq!(&got, want, "restored to {label}");
    }

    // A timeline the archive has no history file for: refused, naming it
    // (the flag reaches the recovery).
    let data = root.join("restored-timeline-2");
    let err = fails(&datadir_restore(
        &id,
        store,
        &data,
        Some(bin_s),
        &["--target-latest", "--timeline", "2"],
    ));
    assert!(
        err.contains("recovery target timeline 2") && err.contains("00000002.history"),
        "{err}"
    );
    assert!(
        !data.exists(),
        "refused before the base backup is restored: nothing written"
    );

    // A failure once the base backup is in place (no pg_controldata
    // among the server binaries, found only when recovery reads the
    // restored directory): the directory is left marked unusable.
    let partial_bin = root.join("bin-without-pg_controldata");
    std::fs::create_dir(&partial_bin).unwrap();
    for entry in std::fs::read_dir(&bin).unwrap().flatten() {
        if entry.file_name() != "pg_controldata" {
            std::os::unix::fs::symlink(entry.path(), partial_bin.join(entry.file_name())).unwrap();
        }
    }
    let data = root.join("restored-no-controldata");
    let err = fails(&[
        "restore",
        &id,
        "--store",
        store,
        "--datadir",
        data.to_str().unwrap(),
        "--pg-bin",
        partial_bin.to_str().unwrap(),
        "--target-latest",
    ]);
    assert!(
        err.contains("pg_controldata") && err.contains("marked unusable"),
        "{err}"
    );
    assert_marked_unusable(&data);

    // wal-archive stops cleanly on SIGTERM.
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &archiver.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = archiver.0.wait().unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );

    // A byte flipped in an archived segment after the backup's first:
    // the restore fails and names it.
    let first = manifest["details"]["postgres.wal_first_segment"]
        .as_str()
        .unwrap()
        .to_string();
    let tli_dir = Path::new(store).join("default/_wal/cluster/00000001");
    let damaged = std::fs::read_dir(&tli_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.as_str() > first.as_str())
        .min()
        .expect("a segment archived after the backup's first");
    let data_file = std::fs::read_dir(tli_dir.join(&damaged))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&data_file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&data_file, bytes).unwrap();
    let data = root.join("restored-damaged");
    let err = fails(&datadir_restore(
        &id,
        store,
        &data,
        Some(bin_s),
        &["--target-latest"],
    ));
    assert!(err.contains(&damaged), "the error names {damaged}: {err}");
    assert_marked_unusable(&data);

    // A second base backup, then retention keeping only it: the WAL
    // before its first segment goes, the window starts at its end.
    let second = json(&backup);
    let second_first = second["details"]["postgres.wal_first_segment"]
        .as_str()
        .unwrap()
        .to_string();
    let prune = [
        "prune",
        "--store",
        store,
        "--source-id",
        "cluster",
        "--keep-last",
        "1",
        "--include-manual",
        "--json",
    ];
    let mut dry = prune.to_vec();
    dry.push("--dry-run");
    let plan = json(&dry);
    let wal = &plan["wal"][0];
    let removed: Vec<&str> = wal["report"]["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(removed.contains(&damaged.as_str()), "{plan}");
    assert!(removed.iter().all(|n| *n < second_first.as_str()), "{plan}");
    assert_ne!(wal["from_before"], wal["from_after"], "{plan}");
    assert!(
        tli_dir.join(format!("{damaged}.json")).is_file(),
        "a dry run deletes nothing"
    );
    json(&prune);
    assert!(!tli_dir.join(format!("{damaged}.json")).exists());
    let window = json(&[
        "pitr-window",
        "--store",
        store,
        "--source",
        "cluster",
        "--json",
    ]);
    let ranges = window["ranges"].as_array().unwrap();
    assert_eq!(ranges.len(), 1, "{window}");
    assert_eq!(ranges[0]["backup_id"], second["id"], "{window}");

    server
        .psql("postgres", "SELECT pg_drop_replication_slot('pitr_cli')")
        .await
        .unwrap();
}

/// A data directory a failed restore left: no server starts on it.
fn assert_marked_unusable(dir: &Path) {
    assert!(dir.join("RESTORE_FAILED").is_file(), "{}", dir.display());
    assert!(!dir.join("global/pg_control").exists());
    assert!(dir.join("global/pg_control.restore-failed").is_file());
}

/// `--timeline` is checked before anything is read or written: a value
/// that is none of `latest`, `current` or a timeline number is a usage
/// error naming the accepted forms, and the flag without a `--target-*`
/// (no WAL replay to follow a timeline) is refused.
#[test]
fn timeline_values_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let data = dir.path().join("data");
    let restore = |extra: &[&str]| {
        backupctl(&datadir_restore(
            "latest",
            store.to_str().unwrap(),
            &data,
            None,
            extra,
        ))
    };
    for bad in ["bogus", "0", "+2", "0x2", "Latest", "4294967296", ""] {
        let out = restore(&["--target-latest", "--timeline", bad]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--timeline {bad:?}: {err}");
        assert!(
            err.contains("--timeline")
                && err.contains("none of latest, current or a timeline number"),
            "--timeline {bad:?}: {err}"
        );
    }
    let args = ["--timeline", "current"];
    let err = failed(&args, restore(&args));
    assert!(
        err.contains("--timeline") && err.contains("--target-latest"),
        "{err}"
    );
    assert!(!store.exists() && !data.exists(), "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_in_time_restore_with_backupctl_on_postgres_15() {
    pitr_round_trip(TestServer::bin_of_major(15).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_in_time_restore_with_backupctl_on_postgres_18() {
    let bin = TestServer::bin_of_major(18).await;
    pitr_round_trip(bin.unwrap_or_else(|e| panic!("{e}"))).await;
}
