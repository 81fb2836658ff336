//! Shared by the point-in-time restore tests (`pitr*.rs`): a throwaway
//! cluster archiving with `archive_command = cp` into a directory, and
//! restores of a base backup recovered from an archive, read back over
//! the recovered server's socket.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use backup_core::manifest::Manifest;
use backup_core::testing::server::Watcher;
use backup_core::{Engine, RestoreOptions};
use backup_postgres::{
    DataDirTarget, DirWalSource, PointInTimeRestore, RESTORE_FAILED_FILE, RecoveryReport,
    RecoveryTarget, RecoveryTimeline, StartOptions, TestServer, WalArchive, WalFileName, WalSource,
};

pub type Fingerprint = Vec<(String, u64, String)>;

pub fn is_root() -> bool {
    let out = std::process::Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

pub fn chown_postgres(path: &Path) {
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
pub struct Cluster {
    pub server: TestServer,
    pub bin: PathBuf,
    pub sock: PathBuf,
    pub port: String,
}

impl Cluster {
    /// Runs `pgbench -n -c 2 <args>` against `db` over the Unix socket
    /// (trusted locally: no password anywhere).
    pub fn pgbench(&self, db: &str, args: &[&str]) -> tokio::process::Child {
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

    pub async fn bench(&self, db: &str, transactions: u32) {
        let status = self
            .pgbench(db, &["-t", &transactions.to_string()])
            .wait()
            .await
            .unwrap();
        assert!(status.success());
    }

    pub async fn now(&self) -> RecoveryTarget {
        let text = self
            .server
            .psql("postgres", "SELECT clock_timestamp()")
            .await
            .unwrap();
        RecoveryTarget::time(text.trim()).unwrap()
    }

    /// `pg_switch_wal()`, returning the name of the segment it closed.
    pub async fn switch(&self) -> String {
        self.server
            .psql("postgres", "SELECT pg_walfile_name(pg_switch_wal())")
            .await
            .unwrap()
            .trim()
            .to_string()
    }

    pub async fn wait_archived(&self, segment: &str) {
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
pub fn psql(bin: &Path, report: &RecoveryReport, db: &str, sql: &str) -> Result<String, String> {
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
pub fn fingerprint(
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
pub const AMCHECK: &str = "CREATE EXTENSION IF NOT EXISTS amcheck; \
    SELECT c.relname, bt_index_check(c.oid, true) FROM pg_index i \
    JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam \
    WHERE a.amname = 'btree' AND c.relpersistence <> 't' AND i.indisvalid";

/// Restores of one base backup into directories under `root`.
pub struct Restorer<'a> {
    pub engine: &'a Engine,
    pub manifest: &'a Manifest,
    pub cluster: &'a Cluster,
    pub root: &'a Path,
}

/// How a restore recovers: from where, to what, along which timeline.
#[derive(Debug, Clone)]
pub struct Recover {
    pub source: Arc<dyn WalSource>,
    pub target: RecoveryTarget,
    pub timeline: RecoveryTimeline,
    pub keep_archiving: bool,
}

impl Recover {
    /// From the directory `archive`, the default timeline, archiving off.
    pub fn from_dir(archive: &Path, target: RecoveryTarget) -> Recover {
        Recover {
            source: Arc::new(DirWalSource::new(archive)),
            target,
            timeline: RecoveryTimeline::default(),
            keep_archiving: false,
        }
    }

    pub fn timeline(mut self, timeline: RecoveryTimeline) -> Recover {
        self.timeline = timeline;
        self
    }
}

impl Restorer<'_> {
    /// Restores the base backup into a new directory and recovers it to
    /// `target` from `archive`, leaving the server running on success.
    pub async fn restore(
        &self,
        label: &str,
        archive: &Path,
        target: RecoveryTarget,
    ) -> (PathBuf, backup_core::Result<RecoveryReport>) {
        self.restore_with(label, Recover::from_dir(archive, target))
            .await
    }

    /// Restores the base backup into `root/label` and recovers it as
    /// `how` says, leaving the server running on success.
    pub async fn restore_with(
        &self,
        label: &str,
        how: Recover,
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
        let result = self.recover_with(&dir, how).await;
        eprintln!(
            "restore {label}: base backup {base:?}, WAL staging and replay {:?}",
            started.elapsed() - base
        );
        (dir, result)
    }

    /// Recovers a restored base backup in `dir` to `target` from
    /// `archive`, leaving the server running on success.
    pub async fn recover(
        &self,
        dir: &Path,
        archive: &Path,
        target: RecoveryTarget,
    ) -> backup_core::Result<RecoveryReport> {
        self.recover_with(dir, Recover::from_dir(archive, target))
            .await
    }

    /// Recovers a restored base backup in `dir` as `how` says, leaving
    /// the server running on success.
    pub async fn recover_with(
        &self,
        dir: &Path,
        how: Recover,
    ) -> backup_core::Result<RecoveryReport> {
        let mut options = StartOptions::on_port(backup_core::testing::server::free_port().unwrap());
        options.leave_running = true;
        let result = PointInTimeRestore::new(dir, how.source, how.target, &self.cluster.bin)
            .timeline(how.timeline)
            .keep_archiving(how.keep_archiving)
            .start_server(options)
            .run()
            .await;
        eprintln!(
            "  {}",
            match &result {
                Ok(r) => format!(
                    "{} segments {:?} (timeline {} to {}), end {:?}, stopped {:?}",
                    r.staged_segments,
                    r.segments,
                    r.timeline,
                    r.target_timeline,
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
    pub async fn content_at(
        &self,
        label: &str,
        archive: &Path,
        target: RecoveryTarget,
        db: &str,
        tables: &Fingerprint,
    ) -> (Fingerprint, Result<String, String>, RecoveryReport) {
        self.content_with(label, Recover::from_dir(archive, target), db, tables)
            .await
    }

    /// Restores as `how` says and returns the content of `db` and the
    /// amcheck outcome, the server stopped.
    pub async fn content_with(
        &self,
        label: &str,
        how: Recover,
        db: &str,
        tables: &Fingerprint,
    ) -> (Fingerprint, Result<String, String>, RecoveryReport) {
        let (_, result) = self.restore_with(label, how).await;
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
pub fn next_segment(name: &str, by: u32) -> String {
    let low = u32::from_str_radix(&name[16..], 16).unwrap() + by;
    format!("{}{low:08X}", &name[..16])
}

pub fn assert_marked_unusable(dir: &Path) {
    assert!(dir.join(RESTORE_FAILED_FILE).is_file());
    assert!(!dir.join("global/pg_control").exists());
    assert!(dir.join("global/pg_control.restore-failed").is_file());
}

pub fn assert_untouched(dir: &Path) {
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

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// A temporary directory for one test, removed (and servers on data
/// directories in it stopped) should the test process die.
pub fn test_root(prefix: &str) -> PathBuf {
    let root = backup_core::testing::server::temp_dir(prefix, 0o755).unwrap();
    Watcher::new()
        .stop(format!(
            "for f in '{}'/*/postmaster.pid; do [ -f \"$f\" ] && kill -QUIT \"$(head -n 1 \"$f\")\"; done",
            root.display()
        ))
        .remove(&root)
        .spawn();
    root
}

/// A throwaway cluster of `bin` archiving every segment with
/// `archive_command = cp` into `archive` (created, given to the server's
/// user).
pub async fn archiving_cluster(bin: PathBuf, archive: &Path) -> Cluster {
    std::fs::create_dir(archive).unwrap();
    chown_postgres(archive);
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
    Cluster {
        sock: throwaway.data_dir().parent().unwrap().join("sock"),
        port: throwaway.port().to_string(),
        bin,
        server,
    }
}

/// Pushes every WAL file of the directory `archive` into `wal` (as
/// `wal-push` would have; `.partial` files and others are not WAL files
/// the archive takes).
pub async fn push_dir(wal: &WalArchive, archive: &Path) {
    for entry in std::fs::read_dir(archive).unwrap().flatten() {
        let name = entry.file_name().into_string().unwrap();
        if WalFileName::parse(&name).is_ok() {
            wal.push(&entry.path())
                .await
                .unwrap()
                .into_result()
                .unwrap();
        }
    }
}
