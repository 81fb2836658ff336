//! [`PostgresTarget`]: `pg_restore --single-transaction` fed on stdin.

use std::fmt;
use std::process::Stdio;

use async_trait::async_trait;
use backup_core::{Error, RestoreOptions, RestoreReport, RestoreSession, RestoreTarget, Result};
use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin};
use tokio::task::JoinHandle;

use crate::PgConnection;
use crate::tools::{
    PassFile, PgTools, Step, classify, dbname_conninfo, drain_stderr, pg_command, preflight, psql,
    quote_ident,
};

/// Restores pg_dump custom-format archives with `pg_restore
/// --single-transaction --exit-on-error`, reading the archive from stdin.
///
/// Nothing is committed until the pipeline has verified the whole artifact
/// and closed stdin; an aborted session kills `pg_restore` first, so the
/// server rolls the transaction back. A database created for the restore
/// ([`RestoreOptions::create`]) is dropped again if the restore fails.
///
/// Options map to pg_restore flags: [`RestoreOptions::clean`] →
/// `--clean --if-exists`, [`RestoreOptions::no_owner`] → `--no-owner`,
/// [`RestoreOptions::only`] → one `--table` per name. Note that a
/// selective (`--table`) restore restores the tables' data and definitions
/// but not their indexes, constraints or triggers (a pg_restore
/// limitation).
#[derive(Debug, Clone)]
pub struct PostgresTarget {
    conn: PgConnection,
    tools: PgTools,
}

impl PostgresTarget {
    /// A target on the server of `conn`, restoring into `conn.database()`
    /// unless the options name another database.
    pub fn new(conn: PgConnection) -> Self {
        PostgresTarget {
            conn,
            tools: PgTools::auto(),
        }
    }

    /// Chooses where the tools come from.
    pub fn with_tools(mut self, tools: PgTools) -> Self {
        self.tools = tools;
        self
    }

    /// Creates `database` through the maintenance database.
    async fn create_database(&self, database: &str) -> Result<()> {
        let sql = format!("CREATE DATABASE {}", quote_ident(database));
        match psql(&self.tools, &self.conn.with_database("postgres"), &sql).await {
            Err(Error::DatabaseMissing { .. }) => {
                psql(&self.tools, &self.conn.with_database("template1"), &sql).await?;
            }
            other => {
                other?;
            }
        }
        tracing::info!(%database, "created database for restore");
        Ok(())
    }
}

#[async_trait]
impl RestoreTarget for PostgresTarget {
    fn engine(&self) -> &str {
        "postgres"
    }

    fn accepts_format(&self, format: &str) -> bool {
        format == crate::FORMAT
    }

    async fn begin(&self, opts: &RestoreOptions) -> Result<Box<dyn RestoreSession>> {
        let database = opts
            .database
            .clone()
            .unwrap_or_else(|| self.conn.database().to_string());
        let conn = self.conn.with_database(&database);
        let mut created = false;
        let server = match preflight(&self.tools, &conn).await {
            Ok(_) if opts.must_be_new => {
                return Err(Error::AlreadyExists {
                    key: format!("postgres database {database:?}"),
                });
            }
            Ok(server) => server,
            Err(Error::DatabaseMissing { .. }) if opts.create => {
                self.create_database(&database).await?;
                created = true;
                preflight(&self.tools, &conn).await?
            }
            Err(e) => return Err(e),
        };
        let pg_restore = match self.tools.resolve("pg_restore", Some(server.major)).await {
            Ok(tool) => tool,
            Err(e) => {
                if created {
                    drop_database(&self.tools, &self.conn, &database).await;
                }
                return Err(e);
            }
        };
        let passfile = PassFile::create(&conn)?;
        let mut cmd = pg_command(&pg_restore.path, &conn, passfile.as_ref());
        cmd.args(["--single-transaction", "--exit-on-error", "--no-password"])
            .arg(format!("--dbname={}", dbname_conninfo(&database)));
        if opts.clean {
            cmd.args(["--clean", "--if-exists"]);
        }
        if opts.no_owner {
            cmd.arg("--no-owner");
        }
        for table in &opts.only {
            cmd.arg(format!("--table={table}"));
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("starting {}", pg_restore.path.display()), e))?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stderr = drain_stderr(child.stderr.take().expect("stderr is piped"));
        Ok(Box::new(PgRestoreSession {
            child,
            stdin: Some(stdin),
            stderr: Some(stderr),
            _passfile: passfile,
            conn,
            admin: self.conn.clone(),
            tools: self.tools.clone(),
            database,
            created,
        }))
    }
}

/// A running `pg_restore`.
struct PgRestoreSession {
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Option<JoinHandle<String>>,
    _passfile: Option<PassFile>,
    conn: PgConnection,
    admin: PgConnection,
    tools: PgTools,
    database: String,
    created: bool,
}

impl fmt::Debug for PgRestoreSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgRestoreSession")
            .field("pid", &self.child.id())
            .field("database", &self.database)
            .field("created", &self.created)
            .finish()
    }
}

impl PgRestoreSession {
    /// Waits for the child and turns a failure into an error with its stderr.
    async fn wait(&mut self) -> Result<String> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| Error::io("waiting for pg_restore", e))?;
        let stderr = match self.stderr.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => String::new(),
        };
        if status.success() {
            Ok(stderr)
        } else {
            Err(classify(
                Step::Restore,
                &stderr,
                &format!("pg_restore {status}; nothing was committed"),
                &self.conn,
            ))
        }
    }

    /// Undoes what the session itself created.
    async fn cleanup(&self) {
        if self.created {
            drop_database(&self.tools, &self.admin, &self.database).await;
        }
    }
}

#[async_trait]
impl RestoreSession for PgRestoreSession {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        let stdin = self.stdin.as_mut().ok_or(Error::Cancelled)?;
        if let Err(e) = stdin.write_all(&data).await {
            // pg_restore stopped reading: it failed; report why.
            self.stdin = None;
            return Err(match self.wait().await {
                Err(tool_error) => tool_error,
                Ok(_) => Error::Restore {
                    engine: "postgres",
                    detail: format!("pg_restore stopped reading its input: {e}"),
                },
            });
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<RestoreReport> {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.shutdown().await;
        }
        match self.wait().await {
            Ok(stderr) => Ok(RestoreReport {
                database: self.database.clone(),
                warnings: stderr
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| crate::tools::redact(l, &self.conn))
                    .collect(),
            }),
            Err(e) => {
                self.cleanup().await;
                Err(e)
            }
        }
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        // Kill before closing stdin: pg_restore must not see a clean end of
        // input, so its transaction is rolled back, never committed.
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.stdin = None;
        if let Some(task) = self.stderr.take() {
            task.abort();
        }
        self.cleanup().await;
        tracing::info!(database = %self.database, "restore aborted; nothing committed");
        Ok(())
    }
}

async fn drop_database(tools: &PgTools, admin: &PgConnection, database: &str) {
    let sql = format!("DROP DATABASE IF EXISTS {}", quote_ident(database));
    if let Err(e) = psql(tools, &admin.with_database("postgres"), &sql).await {
        tracing::warn!(%database, error = %e, "could not drop the database created for a failed restore");
    }
}
