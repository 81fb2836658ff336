//! [`BaseBackupSource`]: a physical base backup of a whole cluster,
//! `pg_basebackup` streamed as one tar archive from its stdout.
//!
//! The archive is the cluster's data directory with `backup_label`, the
//! WAL the backup needs (`-X fetch`: fetched into `pg_wal/` at the end,
//! so the archive restores on its own without a WAL archive) and
//! PostgreSQL's own `backup_manifest` (a CRC-32C of every file), which
//! `pg_verifybackup` checks after extraction. The store's digests
//! (SHA-256 and MD5) cover the archive as a whole, as for every backup, so
//! the per-file checksums only have to catch damage after extraction:
//! CRC-32C (pg_basebackup's default) does, for a fraction of the server's
//! CPU that per-file SHA-256 would cost (the server hashes every file).
//!
//! While `pg_basebackup` runs, a temporary replication slot holds the
//! WAL it fetches at its end (`crate::wal_hold`).
//!
//! This is the first part of physical backups (issue #14): the source,
//! its preflight and its archive. Restoring (extracting into a new data
//! directory, verified with `pg_verifybackup`), WAL archiving and
//! point-in-time recovery build on it.

use std::process::Stdio;
use std::sync::Arc;

use async_trait::async_trait;
use backup_core::{
    DumpSource, Error, Result, source::Details, source::DetailsSender, source::DumpOptions,
    source::DumpStream, source::SourceInfo, source::Versions, store::ByteStream,
};
use futures::StreamExt;

use crate::baseinfo::{BaseBackupInfo, ServerFacts};
use crate::conn::PgConnection;
use crate::dump::child_stream;
use crate::incremental::{Incremental, ParentManifest};
use crate::lsn::check_segment_size;
use crate::tarscan::TarScan;
use crate::tools::{PassFile, PgTools, Step, pg_command, preflight, psql, replication_refusal};

pub use crate::baseinfo::BASEBACKUP_FORMAT;

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
///
/// [`BaseBackupSource::incremental`] makes it take block-level
/// incremental backups on top of a parent (PostgreSQL 17+).
#[derive(Debug, Clone)]
pub struct BaseBackupSource {
    conn: PgConnection,
    tools: PgTools,
    incremental: Option<Incremental>,
    /// Why this full backup stands for an incremental one that was asked
    /// for (recorded as [`FELL_BACK`] in the details).
    fell_back: Option<String>,
}

/// The detail a base backup taken instead of an incremental one records
/// ([`BaseBackupSource::fallback_to_full`]): why it fell back.
pub const FELL_BACK: &str = "postgres.fell_back_to_full";

impl BaseBackupSource {
    /// A source backing up the cluster of `conn`.
    pub fn new(conn: PgConnection) -> Self {
        BaseBackupSource {
            conn,
            tools: PgTools::auto(),
            incremental: None,
            fell_back: None,
        }
    }

    /// Takes block-level incremental backups on top of `parent`
    /// (`pg_basebackup --incremental`, PostgreSQL 17+ with
    /// `summarize_wal = on`): only the blocks changed since the parent
    /// are stored. The dump declares the parent
    /// ([`DumpStream::with_parent`]), so the manifest records it, the
    /// details say `postgres.incremental = true` and `postgres.parent`,
    /// and retention keeps the parent. The preflight refuses, saying
    /// what to change, a server older than 17, `summarize_wal = off`, a
    /// parent of another major version, system identifier or timeline;
    /// WAL summaries that no longer reach back to the parent fail the
    /// backup unless [`BaseBackupSource::fallback_to_full`] allows a full
    /// one instead.
    pub fn incremental(mut self, parent: ParentManifest) -> Self {
        self.incremental = Some(Incremental {
            parent: Arc::new(parent),
            fallback_to_full: false,
        });
        self
    }

    /// With [`BaseBackupSource::incremental`]: when the server's WAL
    /// summaries no longer cover the parent, take a full base backup
    /// instead of failing (its manifest then has no parent, and its
    /// details say why under [`FELL_BACK`]). Off by default; ignored for
    /// full backups.
    pub fn fallback_to_full(mut self, yes: bool) -> Self {
        if let Some(inc) = &mut self.incremental {
            inc.fallback_to_full = yes;
        }
        self
    }

    /// Records in the details of a full backup why it stands for an
    /// incremental one (see [`FELL_BACK`]).
    pub(crate) fn fell_back(mut self, why: String) -> Self {
        self.fell_back = Some(why);
        self
    }

    /// Starts `pg_basebackup` (incremental on top of the manifest at
    /// `parent` when given) and returns its output.
    fn start(
        &self,
        tool: &std::path::Path,
        parent: Option<&std::path::Path>,
    ) -> Result<ByteStream> {
        let passfile = PassFile::create(&self.conn)?;
        let mut cmd = pg_command(tool, &self.conn, &passfile)?;
        cmd.args([
            "--pgdata=-",
            "--format=tar",
            "--wal-method=fetch",
            "--checkpoint=fast",
            "--manifest-checksums=CRC32C",
            "--no-password",
            "--label=backup-postgres",
        ]);
        if let Some(parent) = parent {
            let mut arg = std::ffi::OsString::from("--incremental=");
            arg.push(parent);
            cmd.arg(arg);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("starting {}", tool.display()), e))?;
        tracing::debug!(tool = %tool.display(), incremental = parent.is_some(), "pg_basebackup started");
        Ok(child_stream(child, "pg_basebackup", Step::Dump, &self.conn))
    }

    /// Chooses where the tools come from.
    pub fn with_tools(mut self, tools: PgTools) -> Self {
        self.tools = tools;
        self
    }

    /// Checks the server can serve a base backup to this role and asks
    /// what the archive will not say: `wal_segment_size` and, before
    /// PostgreSQL 17 (whose backup manifest names it), the system
    /// identifier.
    async fn check_server(&self, major: u32) -> Result<ServerFacts> {
        if let Some(why) = replication_refusal(&self.tools, &self.conn).await? {
            return Err(refused(why));
        }
        // Only servers before 17 are asked: `pg_control_system()` may
        // need a grant for a replication role that is no superuser.
        let system_identifier = if major < 17 {
            "(SELECT system_identifier FROM pg_control_system())::text"
        } else {
            "''"
        };
        let answer = psql(
            &self.tools,
            &self.conn,
            &format!(
                "SELECT (SELECT count(*) FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')) \
                 || '|' || (SELECT setting || ' ' || coalesce(unit, '') FROM pg_settings WHERE name = 'wal_segment_size') \
                 || '|' || {system_identifier}"
            ),
        )
        .await?;
        let parts: Vec<&str> = answer.trim().split('|').collect();
        let [tablespaces, segment_size, system_id] = parts[..] else {
            return Err(refused(format!("unexpected preflight answer {answer:?}")));
        };
        if tablespaces.trim() != "0" {
            return Err(refused(format!(
                "the cluster has {} tablespace(s) besides pg_default and pg_global; base backups of clusters with tablespaces are not supported yet",
                tablespaces.trim()
            )));
        }
        let system_identifier = match system_id.trim() {
            "" => None,
            id => Some(id.parse().map_err(|_| {
                refused(format!(
                    "unexpected system identifier {id:?} from pg_control_system()"
                ))
            })?),
        };
        Ok(ServerFacts {
            system_identifier,
            wal_segment_size: segment_size_bytes(segment_size.trim())?,
        })
    }
}

/// `wal_segment_size` as `pg_settings` gives it (`16777216 B`) in bytes.
fn segment_size_bytes(answer: &str) -> Result<u64> {
    let bad = || refused(format!("unexpected wal_segment_size {answer:?}"));
    let (value, unit) = answer.split_once(' ').ok_or_else(bad)?;
    let unit: u64 = match unit {
        "B" => 1,
        "kB" => 1024,
        "8kB" => 8192,
        "MB" => 1024 * 1024,
        _ => return Err(bad()),
    };
    let bytes = value
        .parse::<u64>()
        .ok()
        .and_then(|v| v.checked_mul(unit))
        .ok_or_else(bad)?;
    check_segment_size(bytes).map_err(|_| bad())?;
    Ok(bytes)
}

/// Passes the archive through, looking at it as it goes
/// ([`TarScan`]); once `pg_basebackup` exited successfully and the archive
/// ended cleanly, sends its facts on `details`. A malformed archive, or
/// one without `backup_label` or `backup_manifest`, ends the stream with
/// an error instead.
/// `extra` details (a fallback's reason) are sent with the archive's.
fn inspect_archive(
    stream: ByteStream,
    server: ServerFacts,
    parent: Option<String>,
    extra: Details,
    details: DetailsSender,
) -> ByteStream {
    struct Inspecting {
        inner: ByteStream,
        scan: TarScan,
        server: ServerFacts,
        parent: Option<String>,
        extra: Details,
        details: DetailsSender,
    }
    let rejected = |why: String| Error::InvalidDump {
        engine: ENGINE.into(),
        detail: format!("pg_basebackup's archive: {why}"),
    };
    let state = Inspecting {
        inner: stream,
        scan: TarScan::new(),
        server,
        parent,
        extra,
        details,
    };
    futures::stream::unfold(Some(state), move |state| async move {
        let mut st = state?;
        match st.inner.next().await {
            Some(Ok(chunk)) => match st.scan.feed(&chunk) {
                Ok(()) => Some((Ok(chunk), Some(st))),
                Err(why) => Some((Err(rejected(why)), None)),
            },
            Some(Err(e)) => Some((Err(explain_cut_short(e)), None)),
            None => {
                let Inspecting {
                    scan,
                    server,
                    parent,
                    extra,
                    details,
                    ..
                } = st;
                match scan.finish().and_then(|captured| {
                    BaseBackupInfo::from_archive(&captured, server, parent.as_deref())
                })
                {
                    Ok(info) => {
                        tracing::debug!(start = %info.start_lsn, stop = %info.stop_lsn, timeline = info.timeline, "base backup archive inspected");
                        let mut all = info.details();
                        all.extend(extra);
                        let _ = details.send(all);
                        None
                    }
                    Err(why) => Some((Err(rejected(why)), None)),
                }
            }
        }
    })
    .boxed()
}

/// What `pg_basebackup` says when the server ended the archive in the
/// middle of a file.
const CUT_SHORT: &str = "COPY stream ended before last file was finished";

/// `pg_basebackup` (15 to 18, whatever the server's version) reports an
/// error the server raised in the middle of a file as [`CUT_SHORT`]: it
/// ends the archive it was writing before it reads the server's error,
/// so that message is lost. Says so, and what usually causes it.
fn explain_cut_short(e: Error) -> Error {
    match e {
        Error::Dump { engine, detail } if detail.contains(CUT_SHORT) => Error::Dump {
            engine,
            detail: format!(
                "{detail} (the server ended the archive in the middle of a file: that is how pg_basebackup reports an error the server raised while sending it, whose message is then only in the server's log; with the WAL fetched at the end of the backup the usual one is \"requested WAL segment ... has already been removed\": a checkpoint recycled WAL the backup needs before it was sent, after another base backup's checkpoint or heavy writes, when no temporary replication slot could hold it (a warning says so); set wal_keep_size to cover a backup's duration)"
            ),
        },
        other => other,
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
        let facts = self.check_server(server.major).await?;
        if let Some(inc) = &self.incremental {
            inc.parent
                .check_server(&self.tools, &self.conn, &server)
                .await?;
        }
        let tool = self
            .tools
            .resolve("pg_basebackup", Some(server.major))
            .await?;
        let hold = crate::wal_hold::hold(&self.tools, &self.conn).await;
        let mut stream = self.start(
            &tool.path,
            self.incremental.as_ref().map(|i| i.parent.path()),
        )?;
        let mut parent = None;
        let mut fell_back = self.fell_back.clone();
        if let Some(inc) = &self.incremental {
            // The server refuses an incremental backup before sending a
            // byte: the first item says whether it started.
            match stream.next().await {
                Some(Err(e)) => {
                    let (e, summaries_gone) = inc.parent.explain(e);
                    if !(summaries_gone && inc.fallback_to_full) {
                        return Err(e);
                    }
                    tracing::warn!(parent = inc.parent.id(), error = %e, "taking a full base backup instead of an incremental one");
                    fell_back = Some(format!(
                        "the server's WAL summaries do not cover the WAL since the parent {}",
                        inc.parent.id()
                    ));
                    stream = self.start(&tool.path, None)?;
                }
                first => {
                    // pg_basebackup has read the parent's manifest file by
                    // now; the stream keeps it anyway until it ends.
                    let manifest = Arc::clone(&inc.parent);
                    stream = futures::stream::iter(first)
                        .chain(stream)
                        .inspect(move |_| {
                            let _ = &manifest;
                        })
                        .boxed();
                    parent = Some(inc.parent.id().to_string());
                }
            }
        }
        let (details, promised) = tokio::sync::oneshot::channel();
        let extra = fell_back
            .map(|why| Details::from([(FELL_BACK.to_string(), why)]))
            .unwrap_or_default();
        // The hold lasts as long as the stream (pg_basebackup fetches the
        // WAL at its end).
        let stream = stream
            .inspect(move |_| {
                let _ = &hold;
            })
            .boxed();
        let stream = inspect_archive(stream, facts, parent.clone(), extra, details);
        let dump = DumpStream::new(
            stream,
            Versions {
                tool: Some(tool.version),
                server: Some(server.version),
            },
        )
        .with_details(promised);
        Ok(match parent {
            Some(id) => dump.with_parent(id),
            None => dump,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const FACTS: ServerFacts = ServerFacts {
        system_identifier: Some(1),
        wal_segment_size: 16 * 1024 * 1024,
    };

    /// Runs `chunks` through [`inspect_archive`]: the items, and what
    /// arrived on the details channel.
    async fn inspect(
        chunks: Vec<Vec<u8>>,
    ) -> (Vec<Result<Bytes>>, Option<backup_core::source::Details>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let inner = futures::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c)))).boxed();
        let items = inspect_archive(inner, FACTS, None, Details::new(), tx)
            .collect::<Vec<_>>()
            .await;
        (items, rx.await.ok())
    }

    #[tokio::test]
    async fn a_malformed_or_incomplete_archive_ends_the_stream_with_an_error_and_no_details() {
        for (what, chunks, expected) in [
            ("garbage", vec![vec![b'x'; 1024]], "checksum"),
            ("empty tar", vec![vec![0; 1024]], "no backup_label"),
            ("truncated", vec![vec![0; 512]], "truncated"),
        ] {
            let (items, details) = inspect(chunks).await;
            let last = items.last().expect("an item");
            let err = last.as_ref().expect_err(what);
            assert!(matches!(err, Error::InvalidDump { .. }), "{what}: {err}");
            assert!(err.to_string().contains(expected), "{what}: {err}");
            assert!(
                details.is_none(),
                "{what}: no details for a rejected archive"
            );
        }
    }

    #[tokio::test]
    async fn a_failed_tool_passes_its_error_through_without_details() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let inner = futures::stream::iter([
            Ok(Bytes::from_static(&[0; 100])),
            Err(Error::Dump {
                engine: ENGINE,
                detail: "pg_basebackup exited with status 1".into(),
            }),
        ])
        .boxed();
        let items = inspect_archive(inner, FACTS, None, Details::new(), tx)
            .collect::<Vec<_>>()
            .await;
        assert_eq!(items.len(), 2);
        assert!(matches!(items[1], Err(Error::Dump { .. })));
        assert!(rx.await.is_err());
    }

    #[tokio::test]
    async fn an_archive_cut_short_by_the_server_is_explained() {
        let (tx, _rx) = tokio::sync::oneshot::channel();
        let cut = format!("pg_basebackup exit status: 1: pg_basebackup: error: {CUT_SHORT}");
        let inner = futures::stream::iter([
            Ok(Bytes::from_static(&[0; 100])),
            Err(Error::Dump {
                engine: ENGINE,
                detail: cut,
            }),
        ])
        .boxed();
        let items = inspect_archive(inner, FACTS, None, Details::new(), tx)
            .collect::<Vec<_>>()
            .await;
        let err = items[1].as_ref().unwrap_err().to_string();
        assert!(
            err.contains(CUT_SHORT)
                && err.contains("server's log")
                && err.contains("wal_keep_size"),
            "{err}"
        );
    }

    #[test]
    fn segment_sizes_from_pg_settings() {
        assert_eq!(segment_size_bytes("16777216 B").unwrap(), 16 * 1024 * 1024);
        assert_eq!(segment_size_bytes("16 MB").unwrap(), 16 * 1024 * 1024);
        for bad in ["16777216", "3 MB", "16 GB", "x B", "99999999999999999 MB"] {
            assert!(segment_size_bytes(bad).is_err(), "{bad}");
        }
    }
}
