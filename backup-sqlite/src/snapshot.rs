//! The consistent snapshot of a live database file, taken with SQLite's
//! online backup API into a private spool file (blocking code: it runs on
//! a blocking thread of its own).
//!
//! SQLite forces the spool: the backup API writes into a database, not a
//! stream, and it restarts when another connection writes to the source,
//! so no byte of a snapshot is final before its last step. The spool is
//! created `0600` by `tempfile`, and unlinked as soon as the snapshot is
//! complete: what is streamed afterwards is read through the open file,
//! which disappears with the last descriptor, also when the host dies.
//! A host killed while the snapshot is being taken leaves its spool
//! (`.backup-sqlite-XXXXXX.spool`): the next snapshot into the same
//! directory removes it (see [`crate::leftovers`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use backup_core::Error;
use backup_core::source::{Details, MAX_DETAILS};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::error::{Side, sqlite_error};
use crate::header::{HEADER_LEN, Header, preflight};
use crate::leftovers::{
    DEFAULT_LEFTOVER_GRACE, SIDE_FILES, SPOOL_PREFIX, SPOOL_SUFFIX, mark_in_use, sweep_spools,
    with_suffix,
};

/// How a snapshot is taken; see [`SqliteSource`](crate::SqliteSource).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SnapshotOptions {
    /// Directory of the spool file (default: the system's temporary
    /// directory). It needs room for a copy of the database.
    pub spool_dir: Option<PathBuf>,
    /// Pages copied per step of the backup API (default 1024). Between
    /// steps a database in rollback-journal mode is unlocked, so writers
    /// get in; a database in WAL mode never blocks its writers.
    pub pages_per_step: u32,
    /// Pause after each step of a rollback-journal database, the writers'
    /// window (default 5 ms).
    pub pause: Duration,
    /// How often a write to a rollback-journal database may restart the
    /// copy before the rest is taken in one step, which holds the shared
    /// lock (writers wait) for that step (default 3): a busy database
    /// would otherwise never finish.
    pub max_restarts: u32,
    /// How long a step may keep finding the source locked before the dump
    /// fails (default 30 s); also the source connection's busy timeout.
    pub busy_limit: Duration,
    /// Record each table's row count in the manifest's details (default
    /// on): one `count(*)` per table, on the spool, not the source.
    pub row_counts: bool,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            spool_dir: None,
            pages_per_step: 1024,
            pause: Duration::from_millis(5),
            max_restarts: 3,
            busy_limit: Duration::from_secs(30),
            row_counts: true,
        }
    }
}

impl SnapshotOptions {
    /// Sets [`SnapshotOptions::pages_per_step`] (at least 1).
    pub fn pages_per_step(mut self, pages: u32) -> Self {
        self.pages_per_step = pages.max(1);
        self
    }

    /// Sets [`SnapshotOptions::pause`].
    pub fn pause(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }

    /// Sets [`SnapshotOptions::max_restarts`].
    pub fn max_restarts(mut self, restarts: u32) -> Self {
        self.max_restarts = restarts;
        self
    }

    /// Sets [`SnapshotOptions::busy_limit`].
    pub fn busy_limit(mut self, limit: Duration) -> Self {
        self.busy_limit = limit;
        self
    }

    /// Sets [`SnapshotOptions::row_counts`].
    pub fn row_counts(mut self, yes: bool) -> Self {
        self.row_counts = yes;
        self
    }
}

/// A complete snapshot: the unlinked spool, open for reading, and what
/// the manifest records.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) file: std::fs::File,
    pub(crate) len: u64,
    pub(crate) details: Details,
    /// A read-only connection to the (unlinked) spool to compute its
    /// content fingerprint from while it streams, when asked for.
    pub(crate) fingerprint: Option<Connection>,
}

/// Most tables whose row counts are recorded: details are capped at
/// [`MAX_DETAILS`] entries, and a few are the snapshot's own.
const MAX_COUNTED_TABLES: usize = MAX_DETAILS - 12;
/// Most bytes of row-count details (of the 16 KiB all details may take).
const MAX_COUNT_BYTES: usize = 8 * 1024;

/// Takes a snapshot of the database at `path`, with its content
/// fingerprint when `fingerprint` (a second read of the spool, which is
/// local and fresh in the page cache); `cancel` stops it between steps.
pub(crate) fn take(
    path: &Path,
    opts: &SnapshotOptions,
    fingerprint: bool,
    cancel: &AtomicBool,
) -> Result<Snapshot, Error> {
    let header = preflight(path)?;
    let dump_error =
        |context: &str, e: &rusqlite::Error| sqlite_error(Side::Dump, context, path, e);
    let dir = opts.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
    sweep_spools(&dir, DEFAULT_LEFTOVER_GRACE);
    let spool = tempfile::Builder::new()
        .prefix(SPOOL_PREFIX)
        .suffix(SPOOL_SUFFIX)
        .tempfile_in(&dir)
        .and_then(|spool| mark_in_use(spool.as_file()).map(|()| spool))
        .map_err(|e| {
            Error::io(
                format!("cannot create a spool file in {}", dir.display()),
                e,
            )
        })?;

    let source = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| dump_error("cannot open", &e))?;
    source
        .busy_timeout(opts.busy_limit)
        .map_err(|e| dump_error("cannot configure", &e))?;
    let journal_mode: String = source
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(|e| dump_error("cannot read the journal mode of", &e))?;
    let wal = journal_mode.eq_ignore_ascii_case("wal");

    let mut spool_db = Connection::open(spool.path())
        .and_then(|c| {
            c.pragma_update(None, "journal_mode", "OFF")?;
            c.pragma_update(None, "synchronous", "OFF")?;
            Ok(c)
        })
        .map_err(|e| Error::Dump {
            engine: "sqlite",
            detail: format!("cannot open the spool {}: {e}", spool.path().display()),
        })?;

    // In WAL mode one read transaction spans every step: a consistent
    // snapshot that never restarts and never blocks a writer.
    if wal {
        source
            .execute_batch("BEGIN")
            .and_then(|()| source.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(())))
            .map_err(|e| dump_error("cannot start a read transaction on", &e))?;
    }
    let restarts = {
        let backup =
            Backup::new(&source, &mut spool_db).map_err(|e| dump_error("cannot back up", &e))?;
        copy(&backup, wal, opts, cancel).map_err(|e| match e {
            Copy::Sqlite(e) => dump_error("backing up", &e),
            Copy::Other(e) => e,
        })?
    };
    if wal {
        source
            .execute_batch("COMMIT")
            .map_err(|e| dump_error("cannot end the read transaction on", &e))?;
    }
    drop(source);

    let mut details = Details::new();
    if opts.row_counts {
        count_rows(&spool_db, &mut details).map_err(|e| Error::Dump {
            engine: "sqlite",
            detail: format!(
                "counting the rows of the snapshot of {}: {e}",
                path.display()
            ),
        })?;
    }
    spool_db.close().map_err(|(_, e)| Error::Dump {
        engine: "sqlite",
        detail: format!("cannot close the spool: {e}"),
    })?;

    // Opened before the spool is unlinked: the fingerprint is read from
    // it while the spool streams (both read the same pages, fresh in the
    // page cache), so its cost overlaps the upload.
    let fingerprint = if fingerprint {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        let db = Connection::open_with_flags(
            spool.path(),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| Error::Dump {
            engine: "sqlite",
            detail: format!("cannot open the spool to fingerprint it: {e}"),
        })?;
        // The schema is read now, while the file still has its name.
        db.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
            .map_err(|e| Error::Dump {
                engine: "sqlite",
                detail: format!("cannot read the spool to fingerprint it: {e}"),
            })?;
        Some(db)
    } else {
        None
    };
    let mut file = std::fs::File::open(spool.path())
        .map_err(|e| Error::io("cannot reopen the spool file", e))?;
    for suffix in SIDE_FILES {
        let _ = std::fs::remove_file(with_suffix(spool.path(), suffix));
    }
    spool
        .close()
        .map_err(|e| Error::io("cannot unlink the spool file", e))?;

    let len = file
        .metadata()
        .map_err(|e| Error::io("cannot stat the spool file", e))?
        .len();
    let mut first = Vec::with_capacity(HEADER_LEN);
    (&mut file)
        .take(HEADER_LEN as u64)
        .read_to_end(&mut first)
        .map_err(|e| Error::io("cannot read the spool file", e))?;
    let Some(snap) = Header::parse(&first) else {
        return Err(Error::Dump {
            engine: "sqlite",
            detail: "the snapshot has no SQLite header".into(),
        });
    };
    if len == 0 || len % u64::from(snap.page_size) != 0 {
        return Err(Error::Dump {
            engine: "sqlite",
            detail: format!(
                "the snapshot is {len} bytes, not a whole number of {}-byte pages",
                snap.page_size
            ),
        });
    }
    use std::io::Seek;
    file.rewind()
        .map_err(|e| Error::io("cannot rewind the spool file", e))?;

    let facts = [
        ("sqlite.path", path.display().to_string()),
        ("sqlite.library", rusqlite::version().to_string()),
        ("sqlite.last_writer", header.last_writer_version()),
        ("sqlite.journal_mode", journal_mode.to_ascii_lowercase()),
        ("sqlite.page_size", snap.page_size.to_string()),
        (
            "sqlite.page_count",
            (len / u64::from(snap.page_size)).to_string(),
        ),
        ("sqlite.restarts", restarts.to_string()),
    ];
    details.extend(facts.into_iter().map(|(k, v)| (k.to_string(), v)));
    Ok(Snapshot {
        file,
        len,
        details,
        fingerprint,
    })
}

enum Copy {
    Sqlite(rusqlite::Error),
    Other(Error),
}

impl From<rusqlite::Error> for Copy {
    fn from(e: rusqlite::Error) -> Self {
        Copy::Sqlite(e)
    }
}

/// Runs `backup` to its end and returns how often it restarted.
fn copy(
    backup: &Backup<'_, '_>,
    wal: bool,
    opts: &SnapshotOptions,
    cancel: &AtomicBool,
) -> Result<u32, Copy> {
    let mut pages = i32::try_from(opts.pages_per_step.max(1)).unwrap_or(i32::MAX);
    let mut restarts = 0u32;
    let mut remaining = i32::MAX;
    let mut busy_since: Option<Instant> = None;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(Copy::Other(Error::Cancelled));
        }
        match backup.step(pages)? {
            StepResult::Done => return Ok(restarts),
            StepResult::More => {
                busy_since = None;
                let now = backup.progress().remaining;
                if now >= remaining {
                    restarts = restarts.saturating_add(1);
                    if restarts > opts.max_restarts {
                        tracing::info!(
                            restarts,
                            "the database keeps changing: copying the rest in one step"
                        );
                        pages = -1;
                    }
                }
                remaining = now;
                if !wal {
                    std::thread::sleep(opts.pause);
                }
            }
            StepResult::Busy | StepResult::Locked => {
                let since = *busy_since.get_or_insert_with(Instant::now);
                if since.elapsed() > opts.busy_limit {
                    return Err(Copy::Other(Error::Dump {
                        engine: "sqlite",
                        detail: format!(
                            "the database stayed locked by a writer for more than {} s",
                            opts.busy_limit.as_secs()
                        ),
                    }));
                }
                std::thread::sleep(opts.pause.max(Duration::from_millis(1)));
            }
            _ => std::thread::sleep(opts.pause),
        }
    }
}

/// Adds `sqlite.rows.<table>` for each table of the snapshot, as long as
/// they fit the caps; `sqlite.tables` always. Virtual tables (FTS and the
/// like) are left out: counting them may need a module this build lacks,
/// and their content lives in shadow tables that are counted.
fn count_rows(db: &Connection, details: &mut Details) -> rusqlite::Result<()> {
    let mut stmt = db.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL%' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
    )?;
    let tables: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    details.insert("sqlite.tables".into(), tables.len().to_string());
    let mut bytes = 0usize;
    for (i, table) in tables.iter().enumerate() {
        let key = format!("sqlite.rows.{table}");
        bytes = bytes.saturating_add(key.len() + 20);
        if i >= MAX_COUNTED_TABLES || bytes > MAX_COUNT_BYTES {
            details.insert("sqlite.rows_omitted".into(), (tables.len() - i).to_string());
            break;
        }
        let sql = format!("SELECT count(*) FROM \"{}\"", table.replace('"', "\"\""));
        let rows: i64 = db.query_row(&sql, [], |r| r.get(0))?;
        details.insert(key, rows.to_string());
    }
    Ok(())
}
