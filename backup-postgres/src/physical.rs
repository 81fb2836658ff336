//! [`BaseBackupSource`]: a physical base backup of a whole cluster,
//! `pg_basebackup` streamed as one tar archive from its stdout.
//!
//! The archive is the cluster's data directory with `backup_label`, the
//! WAL the backup needs (`-X fetch`: fetched into `pg_wal/` at the end,
//! so the archive restores on its own without a WAL archive) and
//! PostgreSQL's own `backup_manifest` (SHA-256 of every file), which
//! `pg_verifybackup` checks after extraction. The store's digests cover
//! the archive as a whole, as for every backup.
//!
//! This is the first part of physical backups (issue #14): the source,
//! its preflight and its archive. Restoring (extracting into a new data
//! directory, verified with `pg_verifybackup`), WAL archiving and
//! point-in-time recovery build on it.

use std::process::Stdio;

use async_trait::async_trait;
use backup_core::{
    DumpSource, Error, Result, source::DumpOptions, source::DumpStream, source::SourceInfo,
    source::Versions,
};

use crate::conn::PgConnection;
use crate::dump::child_stream;
use crate::tools::{PassFile, PgTools, Step, pg_command, preflight, psql, replication_refusal};

/// The format name recorded in manifests: a `pg_basebackup` tar archive
/// with WAL and `backup_manifest`.
pub const BASEBACKUP_FORMAT: &str = "basebackup";

const ENGINE: &str = "postgres";

/// Takes a base backup of the cluster `conn` points at (its database
/// only matters for the preflight connection) with `pg_basebackup -D -
/// -Ft -X fetch --checkpoint=fast`.
///
/// The preflight refuses, with an error that says what to change, a role
/// that may not open replication connections, `max_wal_senders = 0`,
/// `wal_level = minimal`, a cluster with tablespaces besides the default
/// ones (a single tar stream cannot carry them) and a `pg_basebackup`
/// older than the server. Credentials reach the tool as for
/// [`PostgresSource`](crate::PostgresSource): through an in-memory
/// password file only.
#[derive(Debug, Clone)]
pub struct BaseBackupSource {
    conn: PgConnection,
    tools: PgTools,
}

impl BaseBackupSource {
    /// A source backing up the cluster of `conn`.
    pub fn new(conn: PgConnection) -> Self {
        BaseBackupSource {
            conn,
            tools: PgTools::auto(),
        }
    }

    /// Chooses where the tools come from.
    pub fn with_tools(mut self, tools: PgTools) -> Self {
        self.tools = tools;
        self
    }

    /// Checks the server can serve a base backup to this role.
    async fn check_server(&self) -> Result<()> {
        if let Some(why) = replication_refusal(&self.tools, &self.conn).await? {
            return Err(refused(why));
        }
        let tablespaces = psql(
            &self.tools,
            &self.conn,
            "SELECT count(*) FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')",
        )
        .await?;
        if tablespaces.trim() != "0" {
            return Err(refused(format!(
                "the cluster has {} tablespace(s) besides pg_default and pg_global; base backups of clusters with tablespaces are not supported yet",
                tablespaces.trim()
            )));
        }
        Ok(())
    }
}

fn refused(why: String) -> Error {
    Error::Dump {
        engine: ENGINE,
        detail: format!("cannot take a base backup: {why}"),
    }
}

#[async_trait]
impl DumpSource for BaseBackupSource {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            engine: ENGINE.into(),
            database: self.conn.database().to_string(),
            format: BASEBACKUP_FORMAT.into(),
            extension: "tar".into(),
            magic: None,
        }
    }

    async fn dump(&self, opts: &DumpOptions) -> Result<DumpStream> {
        if !opts.only.is_empty() {
            return Err(refused(
                "a base backup is of the whole cluster; it cannot select tables".into(),
            ));
        }
        let server = preflight(&self.tools, &self.conn).await?;
        self.check_server().await?;
        let tool = self
            .tools
            .resolve("pg_basebackup", Some(server.major))
            .await?;
        let passfile = PassFile::create(&self.conn)?;
        let mut cmd = pg_command(&tool.path, &self.conn, &passfile)?;
        cmd.args([
            "--pgdata=-",
            "--format=tar",
            "--wal-method=fetch",
            "--checkpoint=fast",
            "--manifest-checksums=SHA256",
            "--no-password",
            "--label=backup-postgres",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("starting {}", tool.path.display()), e))?;
        tracing::debug!(tool = %tool.path.display(), "pg_basebackup started");
        Ok(DumpStream {
            stream: child_stream(child, "pg_basebackup", Step::Dump, &self.conn),
            versions: Versions {
                tool: Some(tool.version),
                server: Some(server.version),
            },
        })
    }
}
