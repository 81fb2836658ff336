//! Block-level incremental base backups (PostgreSQL 17+): the parent's
//! `backup_manifest` fetched from the store ([`ParentManifest`]), the
//! server checks an incremental backup needs, and `pg_basebackup`'s
//! failures turned into errors that say what to do.
//!
//! With `summarize_wal = on` the server keeps summaries of which blocks
//! the WAL changed; `pg_basebackup --incremental=<parent's
//! backup_manifest>` then sends only the blocks changed since the parent
//! (plus whole small files and the WAL the backup needs). Such a backup
//! restores only as part of its chain, with `pg_combinebackup`: see
//! [`ChainRestore`](crate::ChainRestore).

use std::path::Path;
use std::sync::Arc;

use backup_core::backup_ref::BackupRef;
use backup_core::manifest::Manifest;
use backup_core::{Engine, Error, Result};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::baseinfo::BaseBackupInfo;
use crate::conn::PgConnection;
use crate::tarscan::TarScan;
use crate::tools::{PgTools, ServerInfo, parse_major, psql};

const ENGINE: &str = "postgres";

/// The `backup_manifest` of a base backup in the store, kept in a private
/// temporary file (mode 0600, removed when this is dropped) for
/// `pg_basebackup --incremental`; with the parent's facts, checked
/// against the server before the backup starts.
///
/// ```no_run
/// use backup_core::Engine;
/// use backup_postgres::{BaseBackupSource, ParentManifest, PgConnection};
///
/// # async fn run(engine: Engine, conn: PgConnection, parent_id: &str) -> backup_core::Result<()> {
/// let parent = engine.catalog().get(parent_id).await?;
/// let parent = ParentManifest::fetch(&engine, &parent).await?;
/// let source = BaseBackupSource::new(conn).incremental(parent);
/// # let _ = source; Ok(()) }
/// ```
#[derive(Debug)]
pub struct ParentManifest {
    id: String,
    info: BaseBackupInfo,
    server_major: Option<u32>,
    file: tempfile::TempPath,
}

impl ParentManifest {
    /// Streams base backup `parent` from `engine`'s store (digests
    /// verified, decrypted with the engine's identities when it is
    /// encrypted) and keeps its `backup_manifest` member in a temporary
    /// file, written as it passes (never whole in memory). Refuses a
    /// backup that is not a PostgreSQL base backup; fails, with nothing
    /// left behind, when a digest does not match or the archive holds no
    /// `backup_manifest`.
    pub async fn fetch(engine: &Engine, parent: &Manifest) -> Result<ParentManifest> {
        let info = BaseBackupInfo::from_manifest(parent).map_err(|e| {
            refused(format!(
                "the parent {} is not a usable base backup: {e}",
                parent.id
            ))
        })?;
        let (_, mut stream) = engine
            .open_dump(BackupRef::in_tenant(&parent.tenant, &parent.id))
            .await?;
        let file = tempfile::Builder::new()
            .prefix("backup-postgres-parent-manifest-")
            .tempfile()
            .map_err(|e| Error::io("creating a temporary file for the parent's manifest", e))?;
        let (file, path) = file.into_parts();
        let mut out = tokio::fs::File::from_std(file);
        let mut scan = TarScan::new();
        let mut pending = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            scan.feed_with(&chunk, &mut |bytes| pending.extend_from_slice(bytes))
                .map_err(|why| archive_error(&parent.id, why))?;
            if !pending.is_empty() {
                out.write_all(&pending)
                    .await
                    .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
                pending.clear();
            }
        }
        // The stream ended cleanly: every digest matched.
        scan.finish()
            .map_err(|why| archive_error(&parent.id, why))?;
        out.flush()
            .await
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        Ok(ParentManifest {
            id: parent.id.clone(),
            info,
            server_major: parent.versions.server.as_deref().and_then(parse_major),
            file: path,
        })
    }

    /// The parent backup's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The parent backup's facts.
    pub fn info(&self) -> &BaseBackupInfo {
        &self.info
    }

    /// Where the parent's `backup_manifest` is (until this is dropped).
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// Refuses, with what to change, a server that cannot take an
    /// incremental backup on top of this parent: older than 17,
    /// `summarize_wal` off, another major version than the parent's, and
    /// (when the role may read `pg_control_*()`) another system
    /// identifier or timeline.
    pub(crate) async fn check_server(
        &self,
        tools: &PgTools,
        conn: &PgConnection,
        server: &ServerInfo,
    ) -> Result<()> {
        if server.major < 17 {
            return Err(refused(format!(
                "incremental base backups need PostgreSQL 17 or later; the server is {}",
                server.version
            )));
        }
        if let Some(major) = self.server_major
            && major != server.major
        {
            return Err(refused(format!(
                "the parent {} was taken from PostgreSQL {major}, the server is {}; take a full base backup",
                self.id, server.version
            )));
        }
        let answer = psql(
            tools,
            conn,
            "SELECT current_setting('summarize_wal') || '|' \
             || (has_function_privilege('pg_control_system()', 'EXECUTE') \
                 AND has_function_privilege('pg_control_checkpoint()', 'EXECUTE'))",
        )
        .await?;
        let (summarize, may_read_control) = answer
            .trim()
            .split_once('|')
            .ok_or_else(|| refused(format!("unexpected preflight answer {answer:?}")))?;
        // Without the grant, pg_basebackup checks both itself; its errors
        // are explained.
        if may_read_control == "true" {
            self.check_system(tools, conn).await?;
        }
        if summarize != "on" {
            return Err(refused(
                "summarize_wal is off; turn it on (ALTER SYSTEM SET summarize_wal = on; \
                 SELECT pg_reload_conf(); no restart needed), then take a full base backup: \
                 incremental backups need WAL summaries from their parent on"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Refuses a server of another system identifier or timeline than
    /// the parent's.
    async fn check_system(&self, tools: &PgTools, conn: &PgConnection) -> Result<()> {
        let answer = psql(
            tools,
            conn,
            "SELECT s.system_identifier || '|' || c.timeline_id \
             FROM pg_control_system() s, pg_control_checkpoint() c",
        )
        .await?;
        let (system, timeline) = answer
            .trim()
            .split_once('|')
            .ok_or_else(|| refused(format!("unexpected preflight answer {answer:?}")))?;
        if system != self.info.system_identifier.to_string() {
            return Err(refused(format!(
                "the parent {} is a backup of system {}, the server is system {system}: \
                 another cluster; take a full base backup",
                self.id, self.info.system_identifier
            )));
        }
        if timeline != self.info.stop_timeline.to_string() {
            return Err(refused(format!(
                "the parent {} ended on timeline {}, the server is on timeline {timeline} \
                 (promoted or restored since?); take a full base backup",
                self.id, self.info.stop_timeline
            )));
        }
        Ok(())
    }

    /// Explains a failure of `pg_basebackup --incremental` on top of this
    /// parent; the flag says the WAL summaries no longer cover it (the
    /// case a full backup may replace).
    pub(crate) fn explain(&self, e: Error) -> (Error, bool) {
        let text = e.to_string();
        if text.contains("WAL summaries are required") || text.contains("WAL summarization") {
            let why = if text.contains("WAL summarization") {
                "WAL summarization is not enabled (summarize_wal = off)"
            } else {
                "the server's WAL summaries no longer cover the WAL since the parent \
                 (removed after wal_summary_keep_time, or summarize_wal was off meanwhile)"
            };
            return (
                refused(format!(
                    "{why}; take a full base backup (or allow a fallback to one); \
                     parent {}; {text}",
                    self.id
                )),
                true,
            );
        }
        if text.contains("system identifier") {
            return (
                refused(format!(
                    "the parent {} is a backup of another cluster (system {}); {text}",
                    self.id, self.info.system_identifier
                )),
                false,
            );
        }
        if text.contains("manifest requires WAL") || text.contains("timeline") {
            return (
                refused(format!(
                    "the parent {}'s WAL is not in the server's timeline history; {text}",
                    self.id
                )),
                false,
            );
        }
        (e, false)
    }
}

/// How [`BaseBackupSource`](crate::BaseBackupSource) takes an incremental
/// backup: the parent, and whether a full backup may replace it.
#[derive(Debug, Clone)]
pub(crate) struct Incremental {
    pub(crate) parent: Arc<ParentManifest>,
    pub(crate) fallback_to_full: bool,
}

fn refused(why: String) -> Error {
    Error::Dump {
        engine: ENGINE,
        detail: format!("cannot take an incremental base backup: {why}"),
    }
}

fn archive_error(id: &str, why: String) -> Error {
    Error::InvalidDump {
        engine: ENGINE.into(),
        detail: format!("the parent {id}'s archive: {why}"),
    }
}
