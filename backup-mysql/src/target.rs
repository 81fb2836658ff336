//! [`MysqlTarget`]: restores through a hidden staging database.

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;

use backup_core::source::{
    Leftover, LeftoverReport, RestoreOptions, RestoreReport, RestoreSession, RestoreTarget,
};
use backup_core::{Error, Result};
use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin};
use tokio::task::JoinHandle;

use crate::catalog::database_exists;
use crate::client::{ENGINE, MysqlTools, Side, classify, command, drain_stderr};
use crate::conn::MysqlConnection;
use crate::leftovers::STAGING_PREFIX;
use crate::leftovers::{self, create_staging, heartbeat};
use crate::promote::{Promotion, TRASH_PREFIX, drop_quietly, promote};
use crate::source::FORMAT;

/// The line `mariadb-dump`/`mysqldump` end a complete dump with.
const COMPLETED: &[u8] = b"-- Dump completed";

/// Bytes of the end of the script kept to find [`COMPLETED`].
const TAIL: usize = 256;

/// Restores [`FORMAT`] dumps into a MySQL or MariaDB database.
///
/// # What is atomic
///
/// MySQL commits every DDL statement on its own, so a restore cannot be
/// one transaction. It goes:
///
/// 1. [`RestoreTarget::begin`] checks the target database
///    ([`Error::AlreadyExists`] under [`RestoreOptions::must_be_new`],
///    [`Error::DatabaseMissing`] when it is missing and
///    [`RestoreOptions::create`] is not set), creates a hidden staging
///    database `_backup_staging_<16 hex>` and starts the `mariadb`
///    client loading the script into it as the bytes arrive.
/// 2. [`RestoreSession::commit`], which the engine reaches only once every
///    digest of the backup matched (the last bytes are held back until
///    then), waits for the client, checks that the script ended with
///    `-- Dump completed`, and reads the staged objects.
/// 3. The target database is created if missing. If it exists, tables or
///    views of the same names as restored ones are refused unless
///    [`RestoreOptions::clean`]. **One `RENAME TABLE` statement** then
///    moves every staged table into the target (and, with `clean`, every
///    table it replaces out, into `_backup_replaced_<hex>`, dropped
///    after): all tables appear together, or none does.
/// 4. Not atomic: views, triggers, procedures, functions and events
///    cannot move between databases; they are recreated in the target
///    after the rename, with their `sql_mode`, character set and
///    definer. Between steps 3 and 4 the tables are there without them;
///    a failure here is reported with what is missing. With `clean`, the
///    triggers of tables about to be replaced are dropped just before the
///    rename, and same-named views, triggers and routines are replaced.
///
/// An abort, a failure before the rename or a dropped session drops the
/// staging database and leaves the target as it was (a dropped session
/// drops it from a background task). Only a crash of this process leaves
/// a staging database behind; its marker table
/// ([`MARKER_TABLE`](crate::MARKER_TABLE)) names the target, and
/// [`RestoreTarget::leftovers`] / [`RestoreTarget::remove_leftovers`]
/// find and drop it once no connection uses it and it has been idle for
/// the grace ([`DEFAULT_STAGING_GRACE`](crate::DEFAULT_STAGING_GRACE)).
///
/// [`RestoreOptions::only`] restores the named tables (and their
/// triggers) and leaves views, routines and events out, with a warning.
/// Definers are kept: restoring objects whose definer is another
/// account needs the `SET USER` (or `SUPER`) privilege.
#[derive(Debug, Clone)]
pub struct MysqlTarget {
    conn: MysqlConnection,
    tools: MysqlTools,
}

impl MysqlTarget {
    /// A target on the server of `conn`, restoring into `conn.database()`
    /// unless a restore names another in [`RestoreOptions::database`].
    pub fn new(conn: MysqlConnection) -> Self {
        MysqlTarget {
            conn,
            tools: MysqlTools::auto(),
        }
    }

    /// Chooses where the tools come from.
    pub fn with_tools(mut self, tools: MysqlTools) -> Self {
        self.tools = tools;
        self
    }
}

#[async_trait]
impl RestoreTarget for MysqlTarget {
    fn engine(&self) -> &str {
        ENGINE
    }

    fn accepts_format(&self, format: &str) -> bool {
        format == FORMAT
    }

    /// The staging databases (`_backup_staging_*`) whose marker table
    /// names their target; idle is zero while a connection uses one (its
    /// loader), else the time since its restore last marked it.
    async fn leftovers(&self) -> Result<Vec<Leftover>> {
        Ok(backup_core::source::Candidate::marked(
            leftovers::scan(&self.tools, &self.conn).await?,
        ))
    }

    /// Drops the marked staging databases idle for `older_than` or more
    /// that no connection uses; unmarked look-alikes are reported only.
    async fn remove_leftovers(&self, older_than: Duration) -> Result<LeftoverReport> {
        let found = leftovers::scan(&self.tools, &self.conn).await?;
        let (tools, conn) = (&self.tools, &self.conn);
        Ok(
            LeftoverReport::apply(found, older_than, None, |leftover| async move {
                leftovers::remove(tools, conn, &leftover).await
            })
            .await,
        )
    }

    async fn begin(&self, opts: &RestoreOptions) -> Result<Box<dyn RestoreSession>> {
        let database = opts
            .database
            .clone()
            .unwrap_or_else(|| self.conn.database().to_string());
        if database.starts_with(STAGING_PREFIX) || database.starts_with(TRASH_PREFIX) {
            return Err(Error::Config(format!(
                "cannot restore into {database:?}: the name is reserved for restores in progress"
            )));
        }
        if database.is_empty() || database.len() > 64 {
            return Err(Error::Config(format!(
                "{database:?} is no MySQL database name (1 to 64 characters)"
            )));
        }
        let exists = database_exists(&self.tools, &self.conn, &database, Side::Restore).await?;
        if exists && opts.must_be_new {
            return Err(Error::AlreadyExists {
                key: format!("mysql database {database:?}"),
            });
        }
        if !exists && !opts.create {
            return Err(Error::DatabaseMissing {
                engine: ENGINE,
                database,
            });
        }
        let client = self.tools.client().await?;
        let staging = format!("{STAGING_PREFIX}{:016x}", rand::random::<u64>());
        create_staging(&self.tools, &self.conn, &staging, &database).await?;
        let spawned = (|| {
            let staged = self.conn.with_database(&staging);
            let (mut cmd, _options) = command(&client.path, &staged)?;
            cmd.args([
                "--batch",
                "--binary-mode",
                "--default-character-set=utf8mb4",
            ])
            .arg(format!("--database={staging}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
            cmd.spawn()
                .map_err(|e| Error::io(format!("starting {}", client.path.display()), e))
        })();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                drop_quietly(&self.tools, &self.conn, &staging).await;
                return Err(e);
            }
        };
        tracing::debug!(%staging, target = %database, "mysql restore started");
        let stdin = child.stdin.take().expect("stdin is piped");
        let stderr = drain_stderr(child.stderr.take().expect("stderr is piped"));
        Ok(Box::new(MysqlSession {
            child: Some(child),
            stdin: Some(stdin),
            stderr: Some(stderr),
            tail: Vec::new(),
            tools: self.tools.clone(),
            admin: self.conn.clone(),
            database,
            staging: Some(staging),
            clean: opts.clean,
            must_be_new: opts.must_be_new,
            only: opts.only.clone(),
        }))
    }
}

/// A restore loading into its staging database.
#[derive(Debug)]
struct MysqlSession {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    stderr: Option<JoinHandle<String>>,
    /// The last [`TAIL`] bytes written.
    tail: Vec<u8>,
    tools: MysqlTools,
    admin: MysqlConnection,
    database: String,
    /// Until it is dropped.
    staging: Option<String>,
    clean: bool,
    must_be_new: bool,
    only: Vec<String>,
}

impl MysqlSession {
    /// Waits for the client after its input ended (or broke): its exit
    /// status, with its stderr classified on failure.
    async fn wait_client(&mut self) -> Result<()> {
        self.stdin = None;
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let status = child
            .wait()
            .await
            .map_err(|e| Error::io("waiting for the mysql client", e))?;
        let stderr = match self.stderr.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => String::new(),
        };
        if status.success() {
            return Ok(());
        }
        Err(classify(
            Side::Restore,
            &stderr,
            &format!("loading the dump: mysql client {status}"),
            &self.admin,
        ))
    }

    /// Ends the client and drops the staging database.
    async fn discard(&mut self) {
        self.stdin = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
        if let Some(staging) = self.staging.take() {
            drop_quietly(&self.tools, &self.admin, &staging).await;
        }
    }

    async fn finish(&mut self) -> Result<Vec<String>> {
        self.wait_client().await?;
        let end = String::from_utf8_lossy(&self.tail);
        if !self.tail.windows(COMPLETED.len()).any(|w| w == COMPLETED) {
            return Err(Error::Restore {
                engine: ENGINE,
                detail: format!(
                    "the script does not end with {:?}: it is not a complete dump (it ends with {:?})",
                    String::from_utf8_lossy(COMPLETED),
                    end.trim_end().rsplit('\n').next().unwrap_or_default()
                ),
            });
        }
        let staging = self.staging.clone().expect("staging until the end");
        heartbeat(&self.tools, &self.admin, &staging).await?;
        promote(&Promotion {
            tools: &self.tools,
            admin: &self.admin,
            staging: &staging,
            target: &self.database,
            clean: self.clean,
            must_be_new: self.must_be_new,
            only: &self.only,
        })
        .await
    }
}

impl Drop for MysqlSession {
    fn drop(&mut self) {
        // The child dies with its handle (kill_on_drop); the staging
        // database is dropped in the background when a runtime is there.
        if let Some(staging) = self.staging.take() {
            self.stdin = None;
            self.child = None;
            let (tools, admin) = (self.tools.clone(), self.admin.clone());
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn(async move { drop_quietly(&tools, &admin, &staging).await });
                }
                Err(_) => {
                    tracing::warn!(%staging, "a mysql restore was dropped outside a runtime: its staging database is left");
                }
            }
        }
    }
}

#[async_trait]
impl RestoreSession for MysqlSession {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| Error::Restore {
            engine: ENGINE,
            detail: "write after the end of the session".into(),
        })?;
        if let Err(e) = stdin.write_all(&data).await {
            // The client exited: its own error says why.
            return Err(match self.wait_client().await {
                Err(err) => err,
                Ok(()) => Error::io("writing to the mysql client", e),
            });
        }
        self.tail.extend_from_slice(&data);
        if self.tail.len() > TAIL {
            self.tail.drain(..self.tail.len() - TAIL);
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<RestoreReport> {
        let finished = self.finish().await;
        // Whatever happened, the staging database goes (after a
        // successful promotion it holds nothing the target needs).
        self.discard().await;
        let warnings = finished?;
        tracing::info!(database = %self.database, "mysql restore committed");
        Ok(RestoreReport {
            database: self.database.clone(),
            warnings,
        })
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.discard().await;
        Ok(())
    }
}
