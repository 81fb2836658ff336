//! [`TestServer`] (feature `throwaway`): the MariaDB/MySQL server a test
//! suite, demo or bench runs against, with helpers to create, compare and
//! drop databases.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use backup_core::child::cleared_std_command;
use backup_core::testing::server::{ServerProcess, free_port, log_tail, temp_dir};
use backup_core::{Error, Result, Secret};
use sha2::{Digest, Sha256};

use crate::client::{MysqlTools, Side, quote_ident, quote_literal, run_sql, run_sql_raw};
use crate::conn::MysqlConnection;

/// The variable naming an existing server for the tests
/// (`mysql://user:password@host:port/any`; the user needs all privileges,
/// with grant option): when set, no throwaway server is started.
pub const TEST_URL_VAR: &str = "BACKUP_TEST_MYSQL_URL";

/// The account a throwaway server's tests log in as.
const TEST_USER: &str = "backup_test";

/// How long a throwaway server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A server to run tests against: the one [`TEST_URL_VAR`] names, or a
/// throwaway MariaDB — `mariadb-install-db` into a private temporary
/// directory, `mariadbd` on a free loopback port with its socket in that
/// directory, as the `mysql` user when this process is root, with a
/// password account for the tests (grant tables on). It is stopped and
/// its directory removed when the value is dropped, and by a watcher
/// process when the test process dies without dropping it (a `static`,
/// an abort, a `kill -9`).
#[derive(Debug)]
pub struct TestServer {
    admin: MysqlConnection,
    tools: MysqlTools,
    throwaway: Option<Throwaway>,
}

#[derive(Debug)]
struct Throwaway {
    process: ServerProcess,
    dir: PathBuf,
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        self.process.terminate(Duration::from_secs(10));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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
                .unwrap_or_else(|e| panic!("no MySQL/MariaDB server for the tests: {e}"))
        })
    }

    /// The server named by [`TEST_URL_VAR`], or a new throwaway MariaDB
    /// owned by the returned value. Blocking.
    pub fn from_env_or_throwaway() -> Result<TestServer> {
        match std::env::var(TEST_URL_VAR) {
            Ok(url) => Ok(TestServer {
                admin: MysqlConnection::from_url(&url)
                    .map_err(|e| Error::Config(format!("{TEST_URL_VAR}: {e}")))?,
                tools: MysqlTools::auto(),
                throwaway: None,
            }),
            Err(_) => TestServer::throwaway(),
        }
    }

    /// A new throwaway MariaDB. Blocking (a few seconds).
    pub fn throwaway() -> Result<TestServer> {
        let root = nix::unistd::geteuid().is_root();
        let dir = temp_dir("backup-mysql-test-", if root { 0o755 } else { 0o700 })?;
        match start(&dir, root) {
            Ok((process, admin)) => Ok(TestServer {
                admin,
                tools: MysqlTools::auto(),
                throwaway: Some(Throwaway { process, dir }),
            }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    /// The throwaway server's process id, if this value owns one.
    pub fn pid(&self) -> Option<u32> {
        self.throwaway.as_ref().map(|t| t.process.id())
    }

    /// Connection to `database` with the test account.
    pub fn connection(&self, database: &str) -> MysqlConnection {
        self.admin.with_database(database)
    }

    /// The tools the tests run.
    pub fn tools(&self) -> MysqlTools {
        self.tools.clone()
    }

    /// The test account's password (tests look for it where it must not be).
    pub fn password(&self) -> Option<&Secret> {
        self.admin.password()
    }

    /// A `mysql://` URL for `database`, password included (tests only).
    pub fn url(&self, database: &str) -> String {
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let password = self
            .admin
            .password()
            .map(|p| format!(":{}", enc(p.expose())))
            .unwrap_or_default();
        format!(
            "mysql://{}{password}@{}:{}/{}",
            enc(self.admin.user()),
            self.admin.host(),
            self.admin.port(),
            enc(database)
        )
    }

    /// Runs `sql` (statements separated by `;`) in `database` (none: no
    /// default database); the rows of its answers, `NULL` as `None`.
    pub async fn sql(&self, database: Option<&str>, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        run_sql(&self.tools, &self.admin, database, sql, Side::Restore).await
    }

    /// Creates a database with a unique name starting with `prefix`.
    pub async fn create_database(&self, prefix: &str) -> Result<String> {
        let name = format!("{prefix}_{:08x}", rand::random::<u32>());
        self.sql(
            None,
            &format!(
                "CREATE DATABASE {} CHARACTER SET utf8mb4",
                quote_ident(&name)
            ),
        )
        .await?;
        Ok(name)
    }

    /// Drops `database` if it exists.
    pub async fn drop_database(&self, database: &str) -> Result<()> {
        self.sql(
            None,
            &format!("DROP DATABASE IF EXISTS {}", quote_ident(database)),
        )
        .await
        .map(|_| ())
    }

    /// Whether `database` exists.
    pub async fn exists(&self, database: &str) -> Result<bool> {
        crate::catalog::database_exists(&self.tools, &self.admin, database, Side::Restore).await
    }

    /// The databases whose names start with `prefix`.
    pub async fn databases_like(&self, prefix: &str) -> Result<Vec<String>> {
        let rows = self
            .sql(None, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .filter(|n| n.starts_with(prefix))
            .collect())
    }

    /// A checksum of every base table of `database`, by table name: the
    /// SHA-256 of its rows in the order of all its columns, so equal
    /// checksums mean equal rows (generated columns included).
    pub async fn table_checksums(&self, database: &str) -> Result<Vec<(String, String)>> {
        let tables = self
            .sql(
                None,
                &format!(
                    "SELECT TABLE_NAME, (SELECT COUNT(*) FROM information_schema.COLUMNS c WHERE c.TABLE_SCHEMA = t.TABLE_SCHEMA AND c.TABLE_NAME = t.TABLE_NAME) FROM information_schema.TABLES t WHERE TABLE_SCHEMA = {} AND TABLE_TYPE <> 'VIEW' ORDER BY TABLE_NAME",
                    quote_literal(database)
                ),
            )
            .await?;
        let mut sums = Vec::new();
        for row in tables {
            let (Some(Some(name)), Some(Some(columns))) = (row.first(), row.get(1)) else {
                continue;
            };
            let columns: usize = columns.parse().unwrap_or(1).max(1);
            let order: Vec<String> = (1..=columns).map(|i| i.to_string()).collect();
            // Raw bytes: BLOB columns are not UTF-8.
            let rows = run_sql_raw(
                &self.tools,
                &self.admin,
                Some(database),
                &format!(
                    "SELECT * FROM {} ORDER BY {}",
                    quote_ident(name),
                    order.join(", ")
                ),
                Side::Restore,
            )
            .await?;
            let count = rows.iter().filter(|&&b| b == b'\n').count();
            sums.push((
                name.clone(),
                format!("{count} rows {}", hex::encode(Sha256::digest(&rows))),
            ));
        }
        Ok(sums)
    }

    /// The views, triggers, routines and events of `database`, as
    /// `KIND name` lines in a stable order.
    pub async fn objects(&self, database: &str) -> Result<Vec<String>> {
        let lit = quote_literal(database);
        let rows = self
            .sql(
                None,
                &format!(
                    "SELECT CONCAT('VIEW ', TABLE_NAME) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {lit}
                     UNION ALL SELECT CONCAT('TRIGGER ', TRIGGER_NAME, ' ON ', EVENT_OBJECT_TABLE) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {lit}
                     UNION ALL SELECT CONCAT(ROUTINE_TYPE, ' ', ROUTINE_NAME) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {lit}
                     UNION ALL SELECT CONCAT('EVENT ', EVENT_NAME) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {lit}"
                ),
            )
            .await?;
        let mut names: Vec<String> = rows
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .collect();
        names.sort();
        Ok(names)
    }
}

/// A server binary: in `PATH`, else in `/usr/sbin` (not in a non-root
/// user's `PATH` on Debian).
fn server_binary(name: &str) -> Result<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    from_path.ok_or_else(|| Error::ToolNotFound {
        tool: name.into(),
        hint: "install mariadb-server (Debian: apt-get install mariadb-server), or set BACKUP_TEST_MYSQL_URL".into(),
    })
}

/// Initialises and starts a server in `dir`; returns it and the test
/// account's connection.
fn start(dir: &Path, root: bool) -> Result<(ServerProcess, MysqlConnection)> {
    let install = server_binary("mariadb-install-db")?;
    let mariadbd = server_binary("mariadbd")?;
    let data = dir.join("data");
    let socket = dir.join("mysqld.sock");
    let os_user = if root {
        let mysql = nix::unistd::User::from_name("mysql")
            .ok()
            .flatten()
            .ok_or_else(|| {
                Error::Config(
                    "running as root, but there is no `mysql` user to run mariadbd as".into(),
                )
            })?;
        nix::unistd::chown(dir, Some(mysql.uid), Some(mysql.gid))
            .map_err(|e| Error::io(format!("chown {}", dir.display()), e.into()))?;
        "root".to_string()
    } else {
        nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .ok_or_else(|| Error::Config("this process's user has no name".into()))?
    };
    let mut cmd = cleared_std_command(&install);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .args(["--auth-root-authentication-method=socket", "--skip-test-db"])
        .arg(format!("--auth-root-socket-user={os_user}"));
    if root {
        cmd.arg("--user=mysql");
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io(format!("running {}", install.display()), e))?;
    if !out.status.success() {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let tail: Vec<&str> = text.lines().rev().take(8).collect();
        return Err(Error::Config(format!(
            "mariadb-install-db failed ({}): {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        )));
    }

    let log = dir.join("mariadbd.log");
    let mut last = None;
    for _ in 0..3 {
        let port = free_port()?;
        let mut cmd = cleared_std_command(&mariadbd);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--port={port}"))
            .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
            .arg(format!("--tmpdir={}", dir.display()))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=32M",
                "--innodb-log-file-size=16M",
                "--innodb-flush-log-at-trx-commit=2",
                "--innodb-doublewrite=0",
                "--performance-schema=OFF",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_general_ci",
            ]);
        if root {
            cmd.arg("--user=mysql");
        }
        match ServerProcess::spawn(cmd, port, &log, Some(dir), START_TIMEOUT) {
            Ok(process) => {
                let admin = create_account(&socket, &os_user, port, &log)?;
                return Ok((process, admin));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::Config("mariadbd did not start".into())))
}

/// Creates the tests' password account through the socket (as the OS
/// user the installation lets in without a password).
fn create_account(socket: &Path, os_user: &str, port: u16, log: &Path) -> Result<MysqlConnection> {
    let password = format!("t3st'\"\\#;{:016x}", rand::random::<u64>());
    let sql = format!(
        "CREATE USER {user}@'%' IDENTIFIED BY {pw};\nGRANT ALL PRIVILEGES ON *.* TO {user}@'%' WITH GRANT OPTION;\n",
        user = quote_literal(TEST_USER),
        pw = quote_literal(&password)
    );
    let mut child = cleared_std_command(server_binary("mariadb")?)
        .arg("--no-defaults")
        .arg(format!("--socket={}", socket.display()))
        .arg(format!("--user={os_user}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("starting the mariadb client", e))?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin
            .write_all(sql.as_bytes())
            .map_err(|e| Error::io("writing to the mariadb client", e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io("waiting for the mariadb client", e))?;
    if !out.status.success() {
        return Err(Error::Config(format!(
            "creating the test account failed: {} (server log: {})",
            String::from_utf8_lossy(&out.stderr).trim(),
            log_tail(log, 4)
        )));
    }
    Ok(MysqlConnection::new("127.0.0.1", port, TEST_USER, "mysql")
        .with_password(Secret::new(password)))
}
