//! `backupctl backup --physical` and `backupctl restore --datadir` with the
//! real binary against throwaway PostgreSQL 15 and 18 clusters: the base
//! backup is listed with its physical facts, a non-empty or non-base-backup
//! restore is refused with a clear error, and the restored data directory
//! starts and holds the data as of the backup. `drill --physical-dir`
//! restores a base backup (and an incremental's chain) into a scratch
//! directory, starts it and reads every table, and leaves nothing.
//!
//! PostgreSQL 18 needs `BACKUP_TEST_PG18_BIN` (.ci/test.sh sets it).

mod support;

use std::path::{Path, PathBuf};

use backup_postgres::TestServer;
use support::{backupctl, fails, json, ok};

/// `drill ID --store STORE --physical-dir ROOT` as the server's admin
/// role, with the tools of `bin`.
fn drill_args(server: &TestServer, id: &str, store: &str, root: &Path, bin: &str) -> Vec<String> {
    let admin = server.connection("postgres");
    [
        "drill",
        id,
        "--store",
        store,
        "--physical-dir",
        root.to_str().unwrap(),
        "--physical-user",
        admin.user(),
        "--pg-bin",
        bin,
    ]
    .map(String::from)
    .to_vec()
}

/// `backupctl drill ID --physical-dir` into a fresh directory the server's
/// user can enter: the record, which must have passed, and the directory
/// left empty.
fn physical_drill(server: &TestServer, id: &str, store: &str, bin: &str) -> serde_json::Value {
    let root = backup_core::testing::server::temp_dir("clidrill-", 0o755).unwrap();
    let args = drill_args(server, id, store, &root, bin);
    let record = json(
        &[
            args.iter().map(String::as_str).collect::<Vec<_>>(),
            vec!["--json"],
        ]
        .concat(),
    );
    assert_eq!(record["status"], "passed", "{record}");
    let left: Vec<_> = std::fs::read_dir(&root).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
    std::fs::remove_dir(&root).unwrap();
    record
}

/// A drill killed (SIGKILL) while its scratch server runs leaves that
/// server running (its own process group) and its directory: the next
/// drill stops the server, removes the directory, and passes.
fn killed_drill_is_cleaned_up_by_the_next(server: &TestServer, id: &str, store: &str, bin: &str) {
    let root = backup_core::testing::server::temp_dir("clikill-", 0o755).unwrap();
    let args = drill_args(server, id, store, &root, bin);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let running_server = || -> Option<(PathBuf, i32)> {
        for entry in std::fs::read_dir(&root).ok()?.flatten() {
            let data = entry.path().join("data");
            let text = std::fs::read_to_string(data.join("postmaster.pid")).unwrap_or_default();
            if text.lines().nth(7).map(str::trim) == Some("ready") {
                return Some((entry.path(), text.lines().next()?.trim().parse().ok()?));
            }
        }
        None
    };
    let mut orphan = None;
    for _ in 0..5 {
        let mut child = support::backupctl_command()
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..3000 {
            if let Some(found) = running_server() {
                child.kill().unwrap();
                orphan = Some(found);
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.wait();
        if orphan.is_some() {
            break;
        }
    }
    let (scratch, pid) = orphan.expect("a drill caught while its server ran");
    let alive = |pid: i32| Path::new(&format!("/proc/{pid}")).exists();
    assert!(alive(pid), "the killed drill's server outlives it");
    let record = json(&[args.as_slice(), &["--json"]].concat());
    assert_eq!(record["status"], "passed", "{record}");
    assert!(!scratch.exists(), "the killed drill's directory is removed");
    for _ in 0..100 {
        if !alive(pid) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!alive(pid), "the killed drill's server was stopped");
    std::fs::remove_dir(&root).unwrap();
}

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

    // A drill restores it again into a scratch directory, starts it and
    // reads every table.
    let record = physical_drill(server, &id, store, &bin);
    let note = record["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("restored a chain of 1 base backup(s)")
            && note.contains("consistent and open"),
        "{record}"
    );
    killed_drill_is_cleaned_up_by_the_next(server, &id, store, &bin);
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

/// `backup --physical --parent latest` on PostgreSQL 18 (`summarize_wal =
/// on`): an incremental base backup recording its parent, much smaller
/// than the full one; deleting the parent is refused while it is needed;
/// `restore --datadir` of the incremental combines the chain and the
/// result holds the data as of the incremental; `verify` and `check`
/// follow the chain and `prune --dry-run` shows it. On PostgreSQL 15 the
/// same command is refused before anything is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_base_backup_and_chain_restore_on_postgres_18() {
    let bin = match TestServer::bin_of_major(18).await {
        Ok(bin) => bin,
        Err(e) => return eprintln!("skipped: {e}"),
    };
    let server = {
        let bin = bin.clone();
        tokio::task::spawn_blocking(move || {
            TestServer::throwaway_with(bin, &[("summarize_wal", "on"), ("wal_level", "replica")])
        })
        .await
        .unwrap()
        .unwrap()
    };
    let bin_s = bin.to_str().unwrap().to_string();
    let db = server
        .create_database_with(
            "cliinc",
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 200000) g;",
        )
        .await
        .unwrap();
    let digest_sql = "SELECT count(*) || ' ' || md5(string_agg(v, ',' ORDER BY id)) FROM t";
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("backups");
    let store = store.to_str().unwrap();
    let url = server.url(&db);
    let backup = |extra: &[&str]| {
        let mut args = vec![
            "backup",
            "--pg",
            &url,
            "--physical",
            "--store",
            store,
            "--pg-bin",
            &bin_s,
            "--json",
        ];
        args.extend_from_slice(extra);
        json(&args)
    };
    let full = backup(&[]);
    let full_id = full["id"].as_str().unwrap().to_string();
    server
        .psql(&db, "UPDATE t SET v = 'changed' WHERE id <= 1000")
        .await
        .unwrap();
    let inc = backup(&["--parent", "latest"]);
    let inc_id = inc["id"].as_str().unwrap().to_string();
    assert_eq!(inc["parent"], full_id.as_str(), "{inc}");
    assert_eq!(inc["details"]["postgres.incremental"], "true", "{inc}");
    let (full_raw, inc_raw) = (
        full["raw"]["size"].as_u64().unwrap(),
        inc["raw"]["size"].as_u64().unwrap(),
    );
    eprintln!("full base backup {full_raw} raw bytes, incremental {inc_raw}");
    assert!(inc_raw < full_raw, "{inc_raw} < {full_raw}");
    let expected = server.psql(&db, digest_sql).await.unwrap();
    // Later changes are not in the incremental.
    server
        .psql(&db, "INSERT INTO t VALUES (-1, 'after')")
        .await
        .unwrap();

    // A parent that is no base backup, or unknown: refused.
    let err = fails(&[
        "backup",
        "--pg",
        &url,
        "--physical",
        "--store",
        store,
        "--pg-bin",
        &bin_s,
        "--parent",
        "20200101T000000Z-00000000",
    ]);
    assert!(
        err.contains("no base backup") || err.contains("not found"),
        "{err}"
    );
    // The full backup is needed by the incremental: not deletable.
    let err = fails(&["delete", &full_id, "--store", store]);
    assert!(err.contains(&inc_id), "{err}");

    let data = dir.path().join("restored");
    let data_s = data.to_str().unwrap();
    let out = ok(&[
        "restore",
        &inc_id,
        "--store",
        store,
        "--datadir",
        data_s,
        "--pg-bin",
        &bin_s,
    ]);
    assert!(
        out.contains(&format!("combined the chain {full_id} <- {inc_id}")),
        "{out}"
    );
    let got = backup_postgres::query_data_dir(&bin, &data, &db, digest_sql).unwrap();
    assert_eq!(
        got,
        expected.trim(),
        "the chain restores the incremental's data"
    );
    // A drill of the incremental restores its chain.
    let record = physical_drill(&server, &inc_id, store, &bin_s);
    let note = record["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("restored a chain of 2 base backup(s)") && note.contains("read every table"),
        "{record}"
    );

    // verify follows the chain; the prune plan shows which kept backup
    // keeps which parent; a damaged parent is named by verify and check.
    let verified = json(&["verify", &inc_id, "--store", store, "--json"]);
    assert_eq!(
        verified["parents"],
        serde_json::json!([full_id]),
        "{verified}"
    );
    let plan = ok(&[
        "prune",
        "--store",
        store,
        "--keep-last",
        "1",
        "--include-manual",
        "--dry-run",
    ]);
    assert!(
        plan.contains(&format!("keep   {full_id}  (parent of {inc_id})")),
        "{plan}"
    );
    let artifact = Path::new(store).join(full["artifact"].as_str().unwrap());
    let mut bytes = std::fs::read(&artifact).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xFF;
    std::fs::write(&artifact, &bytes).unwrap();
    let err = fails(&["verify", &inc_id, "--store", store]);
    assert!(
        err.contains(&format!("parent {full_id} of {inc_id}")),
        "{err}"
    );
    let out = backupctl(&["check", "--store", store]);
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains(&format!(
            "broken chain: {inc_id}: parent {full_id} is damaged"
        )),
        "{report}"
    );

    // PostgreSQL 15: refused before anything is stored.
    let old = TestServer::shared();
    let old_bin = old.server_bin().await.unwrap();
    let old_db = old.create_database("cliinc15").await.unwrap();
    let old_store = dir.path().join("old");
    let old_store = old_store.to_str().unwrap();
    let old_url = old.url(&old_db);
    let args = [
        "backup",
        "--pg",
        &old_url,
        "--physical",
        "--store",
        old_store,
        "--pg-bin",
        old_bin.to_str().unwrap(),
        "--source-id",
        "c15",
    ];
    ok(&args);
    let mut with_parent = args.to_vec();
    with_parent.extend(["--parent", "latest"]);
    let err = fails(&with_parent);
    assert!(err.contains("17"), "{err}");
    old.drop_database(&old_db).await.unwrap();
}
