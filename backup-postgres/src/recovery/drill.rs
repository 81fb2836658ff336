//! [`PhysicalDrill`]: restore drills of physical base backups
//! ([`Engine::drill`](backup_core::Engine::drill)).
//!
//! A base backup records no content fingerprint (it is fuzzy until its
//! WAL is replayed, so nothing at dump time describes exactly what it
//! restores to). Its drill proves what can be proven without one: the
//! backup (with its chain of incremental parents) is restored with
//! [`ChainRestore`] into a private scratch directory (every digest
//! checked, `pg_combinebackup` for a chain, `pg_verifybackup` on the
//! result), a server of the backup's major version is started on it and
//! replays the backup's own WAL until it is consistent and open, and
//! every table of every database is read in full (a count and a hash of
//! every row, as a logical fingerprint is taken). The drill's record
//! says what was read.
//!
//! The scratch server is private: Unix socket only, in the 0700 scratch
//! directory; `pg_hba` replaced by `local all all trust` for it alone
//! (the restored cluster's own rules name hosts and passwords the drill
//! does not have); `archive_mode = off` (a restored copy must never push
//! WAL into the original's archive) and `max_logical_replication_workers
//! = 0` (a restored subscription must never consume the publisher's
//! slot); `shared_buffers = 128MB` and `huge_pages = off` (the drill host
//! need not have the original's memory). Other settings are the
//! restored cluster's own, `shared_preload_libraries` included (some
//! extensions cannot read their data without it), so background workers
//! of preloaded extensions (a `pg_cron`) run while the drill does. It
//! connects as [`PhysicalDrill::user`] (default `postgres`),
//! which must be able to read every table (a superuser, or a role with
//! `pg_read_all_data`).
//!
//! Scratch directories are `.backup-pg-drill-XXXXXX` under the drill
//! directory, held by a lock while their drill runs ([`ScratchDir`]);
//! the next drill removes those of killed drills. They need room for the
//! whole cluster (twice, for a chain while it is combined).

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use backup_core::drill::{DrillTarget, Scratch, ScratchDir, log_leftover_sweep};
use backup_core::fingerprint::Fingerprint;
use backup_core::source::{Leftover, LeftoverReport};
use backup_core::{BackupRef, Engine, Error, RestoreOptions, RestoreTarget, Result};

use super::server::{Launch, Server, chown_tree, server_user};
use crate::chain::ChainRestore;
use crate::conn::PgConnection;
use crate::datadir::DataDirTarget;
use crate::tools::{PgTools, psql};

const ENGINE: &str = "postgres";

/// The start of every physical drill's scratch directory name.
pub const PHYSICAL_DRILL_PREFIX: &str = ".backup-pg-drill-";

/// The longest Unix socket path PostgreSQL takes (`sun_path` is 108 bytes
/// with its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Restore drills of physical base backups into scratch data directories
/// under one directory (see the module docs).
#[derive(Debug, Clone)]
pub struct PhysicalDrill {
    dir: PathBuf,
    tools: PgTools,
    user: String,
    timeout: Duration,
}

impl PhysicalDrill {
    /// Drills in scratch directories under `dir` (which must exist).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PhysicalDrill {
            dir: dir.into(),
            tools: PgTools::auto(),
            user: "postgres".into(),
            timeout: Duration::from_secs(3600),
        }
    }

    /// Chooses where the tools come from (`pg_combinebackup`,
    /// `pg_verifybackup`, `psql`, and the server binaries of the
    /// backup's major version).
    pub fn with_tools(mut self, tools: PgTools) -> Self {
        self.tools = tools;
        self
    }

    /// The role of the restored cluster the checks connect as.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    /// How long the restored server may take to become consistent
    /// (default one hour).
    pub fn recovery_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Scratch directories whose drill is gone (nobody holds their lock).
    pub async fn leftovers(&self) -> Result<Vec<Leftover>> {
        ScratchDir::dead(&self.dir, PHYSICAL_DRILL_PREFIX).await
    }

    /// Removes the scratch directories of drills that are gone (a dead
    /// drill is known exactly by its released lock: no age applies). A
    /// drill killed with its process leaves its server running (it runs
    /// in a process group of its own): that server is stopped first.
    pub async fn remove_leftovers(&self) -> Result<LeftoverReport> {
        for dead in ScratchDir::dead(&self.dir, PHYSICAL_DRILL_PREFIX).await? {
            let data = self.dir.join(&dead.name).join("data");
            tokio::task::spawn_blocking(move || stop_orphan(&data))
                .await
                .map_err(|e| Error::task("stopping a killed drill's server", e))?;
        }
        ScratchDir::remove_dead(&self.dir, PHYSICAL_DRILL_PREFIX).await
    }
}

#[async_trait]
impl DrillTarget for PhysicalDrill {
    fn engine(&self) -> &str {
        ENGINE
    }

    async fn remove_leftovers(&self, _older_than: Duration) -> Result<LeftoverReport> {
        PhysicalDrill::remove_leftovers(self).await
    }

    async fn scratch(&self) -> Result<Box<dyn Scratch>> {
        log_leftover_sweep(ENGINE, PhysicalDrill::remove_leftovers(self).await);
        // Absolute: the server changes into its data directory, and the
        // socket directory must read as a path, not a host name.
        let dir = std::fs::canonicalize(&self.dir).map_err(|e| {
            Error::io(
                format!("opening the drill directory {}", self.dir.display()),
                e,
            )
        })?;
        let home = ScratchDir::create(&dir, PHYSICAL_DRILL_PREFIX).await?;
        let data = home.path().join("data");
        tracing::info!(scratch = %home.path().display(), "created physical drill scratch");
        Ok(Box::new(PhysicalScratch {
            target: DataDirTarget::new(&data).with_tools(self.tools.clone()),
            name: home.name().to_string(),
            data,
            home: Some(home),
            drill: self.clone(),
        }))
    }
}

/// One drill's scratch directory; dropping it removes the directory (a
/// server started on it is killed first, with the future that ran it).
#[derive(Debug)]
struct PhysicalScratch {
    target: DataDirTarget,
    name: String,
    data: PathBuf,
    home: Option<ScratchDir>,
    drill: PhysicalDrill,
}

impl PhysicalScratch {
    fn home(&self) -> Result<&Path> {
        self.home
            .as_ref()
            .map(ScratchDir::path)
            .ok_or_else(|| Error::Config("the drill scratch was already removed".into()))
    }

    /// Starts a server on the restored directory, waits until it is
    /// consistent and open, reads every table, stops it.
    async fn start_and_read(&self, server_version: &str) -> Result<String> {
        let home = self.home()?.to_path_buf();
        let bin = self.drill.tools.server_bin_dir(server_version).await?;
        let major = crate::tools::parse_major(server_version).unwrap_or(0);
        // Any port: it only names the socket file. Not 5432, which jobs
        // of a preloaded extension would reach on localhost.
        let port: u16 = 20_000 + rand::random::<u16>() % 40_000;
        let socket_path = home.join(format!(".s.PGSQL.{port}"));
        if socket_path.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(Error::Config(format!(
                "the drill directory's path is too long for the scratch server's Unix socket ({} is longer than {MAX_SOCKET_PATH} bytes): use a shorter drill directory",
                socket_path.display()
            )));
        }
        // A base backup of a standby carries `standby.signal`: started as
        // a standby, the scratch would connect to the primary. It recovers
        // from its own WAL only.
        for signal in ["standby.signal", "recovery.signal"] {
            match std::fs::remove_file(self.data.join(signal)) {
                Ok(()) => tracing::info!(%signal, "removed from the drill's restored cluster"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("removing {signal}"), e)),
            }
        }
        let hba = home.join("pg_hba.drill.conf");
        std::fs::write(&hba, "local all all trust\n")
            .map_err(|e| Error::io(format!("writing {}", hba.display()), e))?;
        // Private, no archiving, no subscriptions, and small: the drill
        // host need not have the original's memory (module docs).
        let mut settings = vec![
            format!("hba_file={}", hba.display()),
            "archive_mode=off".to_string(),
            "max_logical_replication_workers=0".to_string(),
            "primary_conninfo=".to_string(),
            "primary_slot_name=".to_string(),
            "shared_buffers=128MB".to_string(),
            "huge_pages=off".to_string(),
            // Certificate files of the original may not exist here.
            "ssl=off".to_string(),
            // pg_cron, when preloaded, starts no job (a placeholder
            // otherwise, which PostgreSQL accepts and ignores).
            "cron.launch_active_jobs=off".to_string(),
        ];
        if major >= 17 {
            // No login event trigger of the restored cluster runs as the
            // checks' role.
            settings.push("event_triggers=off".to_string());
        }
        // A cluster whose configuration lives elsewhere (Debian's
        // /etc/postgresql) has none in its data directory.
        append(&self.data.join("postgresql.conf"), "")?;
        let user = server_user()?;
        if let Some((uid, gid)) = user {
            chown_tree(home.clone(), uid, gid).await?;
        }
        let log = home.join("server.log");
        let mut server = Server::start(&Launch {
            bin_dir: &bin,
            data_dir: &self.data,
            port,
            socket_dir: &home,
            listen_addresses: "",
            log: &log,
            user,
            settings: &settings,
        })?;
        let read = async {
            server.wait_promoted(self.drill.timeout).await?;
            let socket = home
                .to_str()
                .ok_or_else(|| Error::Config(format!("{} is not valid UTF-8", home.display())))?;
            let conn = PgConnection::new(socket, port, &self.drill.user, "template1");
            // Qualified: a restored role or database setting may put a
            // schema of its own before pg_catalog. Databases an
            // interrupted DROP DATABASE left invalid refuse connections.
            let names = psql(
                &self.drill.tools,
                &conn,
                "SELECT coalesce(pg_catalog.json_agg(datname ORDER BY datname), '[]'::pg_catalog.json) \
                 FROM pg_catalog.pg_database WHERE datallowconn AND datconnlimit OPERATOR(pg_catalog.<>) -2",
            )
            .await?;
            let names: Vec<String> = serde_json::from_str(names.trim()).map_err(|e| Error::Restore {
                engine: ENGINE,
                detail: format!("unexpected list of databases from the restored cluster: {e}"),
            })?;
            let (mut databases, mut tables, mut rows) = (0u64, 0u64, 0u64);
            for name in &names {
                let counted =
                    crate::fingerprint::of_database_pinned(&self.drill.tools, &conn.with_database(name))
                        .await
                        .map_err(|e| Error::Restore {
                            engine: ENGINE,
                            detail: format!("reading every table of {name} on the restored cluster: {e}"),
                        })?;
                databases += 1;
                tables += counted.tables.len() as u64;
                rows = counted.tables.iter().fold(rows, |sum, t| sum.saturating_add(t.rows));
            }
            Ok::<_, Error>(format!(
                "started a PostgreSQL server on the restored cluster: consistent and open; read every table of {databases} databases ({tables} tables, {rows} rows)"
            ))
        }
        .await;
        let stopped = server.stop("fast").await;
        let note = read?;
        Ok(match stopped {
            Ok(()) => note,
            // Every check passed; the scratch is removed (its server
            // killed) all the same.
            Err(e) => format!("{note}; stopping the scratch server: {e}"),
        })
    }
}

/// Stops the server a killed drill left running on `data`, if any: the
/// process its `postmaster.pid` names, only when that process's working
/// directory is `data` (a recycled pid is someone else's). Immediate
/// shutdown, then a kill after ten seconds.
fn stop_orphan(data: &Path) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let Ok(text) = std::fs::read_to_string(data.join("postmaster.pid")) else {
        return;
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
    else {
        return;
    };
    let (Ok(cwd), Ok(data)) = (
        std::fs::read_link(format!("/proc/{pid}/cwd")),
        std::fs::canonicalize(data),
    ) else {
        return;
    };
    if pid <= 1 || cwd != data {
        return;
    }
    tracing::warn!(pid, data = %data.display(), "stopping the server of a killed restore drill");
    let pid = Pid::from_raw(pid);
    let _ = kill(pid, Signal::SIGQUIT);
    for _ in 0..100 {
        if kill(pid, None).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = kill(pid, Signal::SIGKILL);
    std::thread::sleep(Duration::from_millis(500));
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

#[async_trait]
impl Scratch for PhysicalScratch {
    fn name(&self) -> &str {
        &self.name
    }

    /// A full base backup alone; [`Scratch::restore`] restores chains.
    fn restore_target(&self) -> (&dyn RestoreTarget, RestoreOptions) {
        (&self.target, RestoreOptions::default())
    }

    async fn restore(&self, engine: &Engine, backup: BackupRef) -> Result<Option<String>> {
        let manifest = engine.catalog().get(backup).await?;
        let report = ChainRestore::new(&self.data)
            .with_tools(self.drill.tools.clone())
            .run(engine, manifest.backup_ref())
            .await?;
        let version = manifest
            .versions
            .server
            .clone()
            .ok_or_else(|| Error::Restore {
                engine: ENGINE,
                detail: format!("backup {} does not record its server version", manifest.id),
            })?;
        let read = self.start_and_read(&version).await?;
        Ok(Some(format!(
            "restored a chain of {} base backup(s), verified with pg_verifybackup; {read}",
            report.links.len()
        )))
    }

    async fn fingerprint(&self) -> Result<Fingerprint> {
        Err(Error::Restore {
            engine: ENGINE,
            detail: "a base backup records no content fingerprint to compare with".into(),
        })
    }

    async fn discard(mut self: Box<Self>) -> Result<()> {
        let Some(home) = self.home.take() else {
            return Ok(());
        };
        let shown = home.path().display().to_string();
        home.remove().await?;
        tracing::info!(scratch = %shown, "removed physical drill scratch");
        Ok(())
    }
}
