//! [`SqliteSource`]: dumps of a database file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use backup_core::source::{DumpOptions, DumpSource, DumpStream, SourceInfo, Versions};
use backup_core::store::ByteStream;
use backup_core::{Error, Result};
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncReadExt;

use crate::header::MAGIC;
use crate::snapshot::{Snapshot, SnapshotOptions, take};

/// The engine name in manifests.
pub const ENGINE: &str = "sqlite";

/// The dump format in manifests: the raw database file, as SQLite's online
/// backup API copies it (page for page, `SQLite format 3` header first).
pub const FORMAT: &str = "sqlite3";

/// Bytes read from the spool per chunk of the dump.
pub const DEFAULT_CHUNK_SIZE: usize = 256 * 1024;

/// A SQLite database file to back up.
///
/// Each dump takes a consistent snapshot while other connections keep
/// writing, through SQLite's online backup API, into a private spool file
/// (`0600`, in [`SnapshotOptions::spool_dir`]), then streams that file
/// and deletes it. The spool is forced by SQLite: the backup API writes a
/// database, not a stream, and starts over when another connection
/// writes, so no byte is final before the last step. It is unlinked as
/// soon as the snapshot is complete, so even a crash while it is being
/// uploaded leaves no copy behind; a crash while the snapshot is being
/// taken can leave a `.backup-sqlite-*.spool` file in the spool directory.
///
/// - **WAL mode**: the copy runs inside one read transaction, a snapshot
///   as of its start; writers are never blocked (checkpoints cannot pass
///   the snapshot until it ends).
/// - **Rollback-journal mode**: the copy steps
///   [`SnapshotOptions::pages_per_step`] pages at a time and unlocks the
///   database between steps, so writers get in; a write restarts the copy,
///   and after [`SnapshotOptions::max_restarts`] restarts the rest is taken
///   in one step (writers wait for it, up to their busy timeout).
///
/// Either way the result is the database as it was at one commit. The
/// manifest records engine [`ENGINE`], format [`FORMAT`], the database's
/// file name, the SQLite library version, and in its details
/// (`sqlite.*`): path, journal mode, page size and count, the version of
/// the library that last wrote the file, restarts, and each table's row
/// count ([`SnapshotOptions::row_counts`]). The source is opened read-only.
#[derive(Debug, Clone)]
pub struct SqliteSource {
    path: PathBuf,
    options: SnapshotOptions,
    chunk_size: usize,
}

impl SqliteSource {
    /// A source dumping the database file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteSource {
            path: path.into(),
            options: SnapshotOptions::default(),
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }

    /// Takes snapshots with `options`.
    pub fn with_options(mut self, options: SnapshotOptions) -> Self {
        self.options = options;
        self
    }

    /// Spools snapshots in `dir` ([`SnapshotOptions::spool_dir`]).
    pub fn with_spool_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.options.spool_dir = Some(dir.into());
        self
    }

    /// Streams the snapshot in chunks of `bytes` (at least 4 KiB).
    pub fn with_chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes.max(4096);
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Sets a flag when dropped: a snapshot whose dump was abandoned stops at
/// its next step.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[async_trait]
impl DumpSource for SqliteSource {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            engine: ENGINE.into(),
            database: self.path.file_name().map_or_else(
                || self.path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            format: FORMAT.into(),
            extension: "sqlite3".into(),
            magic: Some(MAGIC.to_vec()),
        }
    }

    /// Takes the snapshot (failing before any byte for a missing file, one
    /// that cannot be read or is no SQLite database, a database locked for
    /// longer than [`SnapshotOptions::busy_limit`]), with its content
    /// fingerprint unless [`DumpOptions::skip_fingerprint`] (rows and
    /// SHA-256 of every table, read from the spool on a blocking thread
    /// while the spool streams), then streams it.
    async fn dump(&self, opts: &DumpOptions) -> Result<DumpStream> {
        if !opts.only.is_empty() {
            return Err(Error::Config(
                "a SQLite backup is the whole database file: it cannot be restricted to tables"
                    .into(),
            ));
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let guard = CancelOnDrop(Arc::clone(&cancel));
        let (path, options) = (self.path.clone(), self.options.clone());
        let fingerprint = !opts.skip_fingerprint;
        let snapshot =
            tokio::task::spawn_blocking(move || take(&path, &options, fingerprint, &cancel))
                .await
                .map_err(|e| Error::task("a SQLite snapshot", e))??;
        drop(guard);
        tracing::debug!(path = %self.path.display(), bytes = snapshot.len, "SQLite snapshot taken");
        let Snapshot {
            file,
            len,
            details,
            fingerprint,
        } = snapshot;
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Known before the first byte; the engine reads them after the last.
        let _ = tx.send(details);
        let (mut fingerprint_tx, fingerprint_rx) = tokio::sync::oneshot::channel();
        if let Some(db) = fingerprint {
            // Read beside the stream; the engine waits for it after the
            // last byte. A failure leaves the backup without one (logged).
            // A backup that ends early drops the receiver: the count is
            // interrupted, so the unlinked spool's space is freed at once.
            let shown = self.path.clone();
            let interrupt = db.get_interrupt_handle();
            let mut counting = tokio::task::spawn_blocking(move || {
                crate::checksum::content_fingerprint_of(&db, &shown)
            });
            tokio::spawn(async move {
                let counted = tokio::select! {
                    counted = &mut counting => Some(counted),
                    () = fingerprint_tx.closed() => None,
                };
                match counted {
                    None => {
                        interrupt.interrupt();
                        tracing::debug!(
                            "SQLite content fingerprint interrupted: the backup ended without it"
                        );
                    }
                    Some(Ok(Ok(fingerprint))) => {
                        let _ = fingerprint_tx.send(fingerprint);
                    }
                    Some(Ok(Err(e))) => {
                        tracing::warn!(error = %e, "SQLite content fingerprint failed; the backup is recorded without one");
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "SQLite content fingerprint task failed; the backup is recorded without one");
                    }
                }
            });
        }
        let versions = Versions {
            tool: Some(format!("SQLite {} (bundled)", rusqlite::version())),
            server: None,
        };
        Ok(
            DumpStream::new(stream_spool(file, len, self.chunk_size), versions)
                .with_details(rx)
                .with_fingerprint(fingerprint_rx),
        )
    }
}

/// The spool's bytes as a stream read on demand, `chunk` at a time. It
/// ends with an error unless exactly `len` bytes came: a spool cut short
/// (or grown) under the dump is never taken for a complete snapshot.
fn stream_spool(file: std::fs::File, len: u64, chunk: usize) -> ByteStream {
    let file = tokio::fs::File::from_std(file);
    futures::stream::unfold(Some((file, 0u64)), move |state| async move {
        let (mut file, read) = state?;
        let mut buf = vec![0u8; chunk];
        let n = match file.read(&mut buf).await {
            Ok(n) => n as u64,
            Err(e) => return Some((Err(Error::io("reading the SQLite snapshot spool", e)), None)),
        };
        let total = read.checked_add(n).filter(|&t| t <= len);
        match total {
            _ if n == 0 && read == len => None,
            Some(total) if n > 0 => {
                buf.truncate(n as usize);
                Some((Ok(Bytes::from(buf)), Some((file, total))))
            }
            _ => Some((
                Err(Error::Dump {
                    engine: ENGINE,
                    detail: format!(
                        "the snapshot spool changed under the dump: {} bytes read of {len} (its file was truncated or written to)",
                        read.saturating_add(n)
                    ),
                }),
                None,
            )),
        }
    })
    .boxed()
}
