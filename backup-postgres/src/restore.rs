//! [`PostgresTarget`]: `pg_restore --single-transaction` fed on stdin; a
//! database created for the restore is built under a staging name and
//! renamed at commit.

use std::fmt;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use backup_core::{
    Error, RestoreOptions, RestoreTarget, Result, source::Leftover, source::LeftoverReport,
    source::RestoreReport, source::RestoreSession,
};
use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin};
use tokio::task::JoinHandle;

use crate::conn::PgConnection;
use crate::staging;
use crate::tools::{
    PassFile, PgTools, Step, classify, dbname_conninfo, drain_stderr, pg_command, preflight,
};

/// Restores pg_dump custom-format archives with `pg_restore
/// --single-transaction --exit-on-error`, reading the archive from stdin.
///
/// Nothing is committed until the pipeline has verified the whole artifact
/// and closed stdin; an aborted session kills `pg_restore` first, so the
/// server rolls the transaction back.
///
/// # Creating the target: all or nothing
///
/// With [`RestoreOptions::create`] and a missing target, the restore goes
/// into a new staging database `<target>__restore_<8 hex>` (the target
/// name shortened to fit 63 bytes), created refusing connections and then
/// marked as ours with a database comment recording its target and
/// creation time (connections are allowed in the same transaction). Only once `pg_restore` has
/// succeeded (so every digest matched) is it renamed to the target (`ALTER
/// DATABASE ... RENAME`, with the marker removed in the same transaction).
/// A failed or aborted restore drops it; a killed process leaves it
/// behind, where it blocks nothing (the target name stays free, so a retry
/// under "new database only" works) and
/// [`RestoreTarget::remove_leftovers`] finds and drops it. The next
/// restore creating the same target drops that target's leftovers older
/// than [`DEFAULT_STAGING_GRACE`](crate::DEFAULT_STAGING_GRACE).
///
/// # Reserved databases
///
/// Restoring into `template0` or `template1` (every new database is copied
/// from them), or into `postgres` with [`RestoreOptions::clean`], is
/// refused unless [`PostgresTarget::allow_system_databases`] says
/// otherwise.
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
    allow_system: bool,
    staging_grace: Duration,
}

impl PostgresTarget {
    /// A target on the server of `conn`, restoring into `conn.database()`
    /// unless the options name another database.
    pub fn new(conn: PgConnection) -> Self {
        PostgresTarget {
            conn,
            tools: PgTools::auto(),
            allow_system: false,
            staging_grace: staging::DEFAULT_STAGING_GRACE,
        }
    }

    /// Chooses where the tools come from.
    pub fn with_tools(mut self, tools: PgTools) -> Self {
        self.tools = tools;
        self
    }

    /// Allows restoring into `template0`, `template1`, and into
    /// `postgres` with [`RestoreOptions::clean`] (refused by default).
    pub fn allow_system_databases(mut self, yes: bool) -> Self {
        self.allow_system = yes;
        self
    }

    /// How old a leftover staging database of the same target must be
    /// before a restore creating that target drops it (default
    /// [`DEFAULT_STAGING_GRACE`](crate::DEFAULT_STAGING_GRACE)).
    pub fn with_staging_grace(mut self, grace: Duration) -> Self {
        self.staging_grace = grace;
        self
    }

    /// Refuses the reserved databases (see the type docs).
    fn check_reserved(&self, database: &str, opts: &RestoreOptions) -> Result<()> {
        if self.allow_system {
            return Ok(());
        }
        let reserved = match database {
            "template0" | "template1" => true,
            "postgres" => opts.clean,
            _ => false,
        };
        if reserved {
            return Err(Error::Config(format!(
                "refusing to restore into the system database {database:?}{}; restore into another database, or allow it explicitly (PostgresTarget::allow_system_databases)",
                if opts.clean { " with clean" } else { "" }
            )));
        }
        Ok(())
    }

    /// Drops this target's leftover staging databases older than the
    /// grace period; notes what it did in the report's warnings.
    async fn clear_leftovers(&self, target: &str) -> Vec<String> {
        match staging::cleanup(&self.tools, &self.conn, self.staging_grace, Some(target)).await {
            Ok(report) => report.describe(),
            Err(e) => {
                tracing::warn!(%target, error = %e, "could not look for leftover staging databases");
                Vec::new()
            }
        }
    }
}

#[async_trait]
impl RestoreTarget for PostgresTarget {
    fn engine(&self) -> &str {
        "postgres"
    }

    fn accepts_format(&self, format: &str) -> bool {
        format == crate::dump::FORMAT
    }

    /// Staging databases of restores on this server (any target), with
    /// their target and age. Leftovers of killed restores show here until
    /// [`RestoreTarget::remove_leftovers`] drops them.
    async fn leftovers(&self) -> Result<Vec<Leftover>> {
        staging::find(&self.tools, &self.conn).await
    }

    /// Drops the staging databases on this server older than
    /// `older_than`; a hosting application calls it at start-up. One still
    /// in use (a restore running elsewhere) is never dropped: `DROP
    /// DATABASE` refuses while `pg_restore` is connected, and the grace
    /// period covers the moments around it. A staging database whose
    /// restore was killed before it could mark it (it refuses connections
    /// and has no comment) gets its creation time at the first cleanup and
    /// is dropped after the grace (at once with a zero grace). Databases
    /// that look like staging databases but lack our marker otherwise are
    /// reported, never dropped.
    async fn remove_leftovers(&self, older_than: Duration) -> Result<LeftoverReport> {
        staging::cleanup(&self.tools, &self.conn, older_than, None).await
    }

    async fn begin(&self, opts: &RestoreOptions) -> Result<Box<dyn RestoreSession>> {
        let database = opts
            .database
            .clone()
            .unwrap_or_else(|| self.conn.database().to_string());
        self.check_reserved(&database, opts)?;
        let conn = self.conn.with_database(&database);
        let mut staging = None;
        let mut warnings = Vec::new();
        let server = match preflight(&self.tools, &conn).await {
            Ok(_) if opts.must_be_new => {
                return Err(Error::AlreadyExists {
                    key: format!("postgres database {database:?}"),
                });
            }
            Ok(server) => server,
            Err(Error::DatabaseMissing { .. }) if opts.create => {
                warnings = self.clear_leftovers(&database).await;
                let name = staging::create(&self.tools, &self.conn, &database).await?;
                let staged = self.conn.with_database(&name);
                staging = Some(name);
                match preflight(&self.tools, &staged).await {
                    Ok(server) => server,
                    Err(e) => {
                        staging::drop_quietly(&self.tools, &self.conn, staging.as_deref()).await;
                        return Err(e);
                    }
                }
            }
            Err(e) => return Err(e),
        };
        let into = staging.clone().unwrap_or_else(|| database.clone());
        let conn = self.conn.with_database(&into);
        let spawned = async {
            let pg_restore = self.tools.resolve("pg_restore", Some(server.major)).await?;
            let passfile = PassFile::create(&conn)?;
            let mut cmd = pg_command(&pg_restore.path, &conn, &passfile)?;
            cmd.args(["--single-transaction", "--exit-on-error", "--no-password"])
                .arg(format!("--dbname={}", dbname_conninfo(&into)));
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
            cmd.spawn()
                .map_err(|e| Error::io(format!("starting {}", pg_restore.path.display()), e))
        };
        let mut child = match spawned.await {
            Ok(child) => child,
            Err(e) => {
                staging::drop_quietly(&self.tools, &self.conn, staging.as_deref()).await;
                return Err(e);
            }
        };
        let stdin = child.stdin.take().expect("stdin is piped");
        let stderr = drain_stderr(child.stderr.take().expect("stderr is piped"));
        Ok(Box::new(PgRestoreSession {
            child,
            stdin: Some(stdin),
            stderr: Some(stderr),
            conn,
            admin: self.conn.clone(),
            tools: self.tools.clone(),
            database,
            staging,
            warnings,
        }))
    }
}

/// A running `pg_restore`.
struct PgRestoreSession {
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Option<JoinHandle<String>>,
    conn: PgConnection,
    admin: PgConnection,
    tools: PgTools,
    /// The target database.
    database: String,
    /// The staging database pg_restore writes into, until it is renamed
    /// or dropped.
    staging: Option<String>,
    warnings: Vec<String>,
}

impl fmt::Debug for PgRestoreSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgRestoreSession")
            .field("pid", &self.child.id())
            .field("database", &self.database)
            .field("staging", &self.staging)
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
    async fn cleanup(&mut self) {
        let staging = self.staging.take();
        staging::drop_quietly(&self.tools, &self.admin, staging.as_deref()).await;
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
        let stderr = match self.wait().await {
            Ok(stderr) => stderr,
            Err(e) => {
                self.cleanup().await;
                return Err(e);
            }
        };
        if let Some(staging) = self.staging.clone() {
            if let Err(e) =
                staging::promote(&self.tools, &self.admin, &staging, &self.database).await
            {
                self.cleanup().await;
                return Err(e);
            }
            self.staging = None;
        }
        let mut warnings = std::mem::take(&mut self.warnings);
        warnings.extend(
            stderr
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| crate::tools::redact(l, &self.conn)),
        );
        Ok(RestoreReport {
            database: self.database.clone(),
            warnings,
        })
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

impl Drop for PgRestoreSession {
    fn drop(&mut self) {
        // Dropped without commit or abort (a cancelled future): pg_restore
        // is killed (kill_on_drop); drop the staging database in the
        // background if a runtime is still there.
        if let Some(staging) = self.staging.take() {
            let _ = self.child.start_kill();
            let (tools, admin) = (self.tools.clone(), self.admin.clone());
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    staging::drop_quietly(&tools, &admin, Some(&staging)).await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_databases_are_refused() {
        let target = PostgresTarget::new(PgConnection::new("h", 5432, "u", "db"));
        let plain = RestoreOptions::default();
        let clean = RestoreOptions::default().clean(true);
        for (db, opts, refused) in [
            ("template0", &plain, true),
            ("template1", &plain, true),
            ("postgres", &clean, true),
            ("postgres", &plain, false),
            ("Postgres", &clean, false),
            ("sales", &clean, false),
        ] {
            assert_eq!(target.check_reserved(db, opts).is_err(), refused, "{db}");
            assert!(
                target
                    .clone()
                    .allow_system_databases(true)
                    .check_reserved(db, opts)
                    .is_ok()
            );
        }
    }
}
