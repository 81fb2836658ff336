//! The restore session of [`SqliteTarget`](crate::SqliteTarget): bytes into
//! a temporary file, checked and renamed onto the target on commit.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use backup_core::source::{RestoreReport, RestoreSession};
use backup_core::{Error, Result};
use bytes::Bytes;
use rusqlite::{Connection, OpenFlags};
use tokio::io::AsyncWriteExt;

use crate::error::{Side, sqlite_error};
use crate::header::{HEADER_LEN, Header};
use crate::leftovers::{remove_with_side_files, with_suffix};
use crate::source::ENGINE;

/// Most lines of a failed integrity check quoted in the error.
const MAX_PROBLEMS: usize = 5;

/// A restore in progress: the temporary file is deleted unless the
/// session committed.
#[derive(Debug)]
pub(crate) struct FileSession {
    path: PathBuf,
    temp: Option<PathBuf>,
    file: Option<tokio::fs::File>,
    /// The temporary file's `flock`, held until the session ends (see
    /// [`crate::leftovers`]).
    _in_use: std::fs::File,
    overwrite: bool,
    written: u64,
}

impl FileSession {
    /// A session writing `file`, open on `temp` and marked in use by this
    /// descriptor (`in_use`, another descriptor of the same open file).
    pub(crate) fn new(
        path: PathBuf,
        temp: PathBuf,
        file: std::fs::File,
        in_use: std::fs::File,
        overwrite: bool,
    ) -> Self {
        FileSession {
            path,
            temp: Some(temp),
            file: Some(tokio::fs::File::from_std(file)),
            _in_use: in_use,
            overwrite,
            written: 0,
        }
    }

    fn restore_error(&self, detail: String) -> Error {
        Error::Restore {
            engine: ENGINE,
            detail: format!("{detail}; {} was left as it was", self.path.display()),
        }
    }
}

/// Removes `temp` and the side files SQLite may have made beside it.
fn remove_temp(temp: &Path) {
    let _ = remove_with_side_files(temp);
}

impl Drop for FileSession {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            remove_temp(&temp);
        }
    }
}

#[async_trait]
impl RestoreSession for FileSession {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        let file = self.file.as_mut().ok_or_else(|| Error::Restore {
            engine: ENGINE,
            detail: "write after the end of the session".into(),
        })?;
        file.write_all(&data)
            .await
            .map_err(|e| Error::from_store_io(parent_dir(&self.path).display(), "restore", e))?;
        self.written = self.written.saturating_add(data.len() as u64);
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<RestoreReport> {
        let temp = self
            .temp
            .clone()
            .expect("a session has its file until it ends");
        if let Some(mut file) = self.file.take() {
            let synced = async {
                file.flush().await?;
                file.sync_all().await
            };
            if let Err(e) = synced.await {
                return Err(self.restore_error(format!("cannot write the restored file: {e}")));
            }
        }
        let (path, overwrite) = (self.path.clone(), self.overwrite);
        let finished = tokio::task::spawn_blocking(move || finish(&path, &temp, overwrite))
            .await
            .map_err(|e| Error::task("committing a SQLite restore", e))?;
        match finished {
            Ok(()) => {
                // The temporary file is the target now.
                self.temp = None;
                tracing::info!(target = %self.path.display(), bytes = self.written, "SQLite restore committed");
                Ok(RestoreReport {
                    database: self.path.display().to_string(),
                    warnings: Vec::new(),
                })
            }
            Err(Finish::Refused(e)) => Err(e),
            Err(Finish::Failed(detail)) => Err(self.restore_error(detail)),
        }
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.file = None;
        if let Some(temp) = self.temp.take() {
            tokio::task::spawn_blocking(move || remove_temp(&temp))
                .await
                .map_err(|e| Error::task("aborting a SQLite restore", e))?;
        }
        Ok(())
    }
}

enum Finish {
    /// An error of its own kind (already exists, I/O).
    Refused(Error),
    /// The restored file is unfit: what is wrong with it.
    Failed(String),
}

impl From<Error> for Finish {
    fn from(e: Error) -> Self {
        Finish::Refused(e)
    }
}

/// Checks the restored `temp` and moves it onto `path`: header, `PRAGMA
/// integrity_check`, fsync, rename (or a link that never replaces when
/// not overwriting), fsync of the directory.
fn finish(path: &Path, temp: &Path, overwrite: bool) -> std::result::Result<(), Finish> {
    let mut first = Vec::with_capacity(HEADER_LEN);
    std::fs::File::open(temp)
        .and_then(|f| f.take(HEADER_LEN as u64).read_to_end(&mut first))
        .map_err(|e| Error::io("cannot read the restored file", e))?;
    if Header::parse(&first).is_none() {
        return Err(Finish::Failed(
            "the restored bytes are no SQLite database (no SQLite 3 header)".into(),
        ));
    }
    integrity_check(temp)?;
    remove_side_files(temp);
    std::fs::File::open(temp)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("cannot sync the restored file", e))?;

    if existing(path)? {
        if !overwrite {
            return Err(Error::AlreadyExists {
                key: format!("{} (created while the restore ran)", path.display()),
            }
            .into());
        }
        replace(path, temp)?;
    } else if overwrite {
        std::fs::rename(temp, path)
            .map_err(|e| Error::io(format!("cannot rename into {}", path.display()), e))?;
    } else {
        // A hard link never replaces a file that appeared meanwhile.
        std::fs::hard_link(temp, path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::AlreadyExists {
                key: format!("{} (created while the restore ran)", path.display()),
            },
            _ => Error::io(
                format!("cannot link the restored file to {}", path.display()),
                e,
            ),
        })?;
        let _ = std::fs::remove_file(temp);
    }
    let dir = parent_dir(path);
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("cannot sync directory {}", dir.display()), e))?;
    Ok(())
}

/// Replaces the existing database at `path` by `temp`, keeping its mode
/// and owner; refuses while it has a WAL or journal SQLite would replay.
fn replace(path: &Path, temp: &Path) -> std::result::Result<(), Finish> {
    let wal = with_suffix(path, "-wal");
    if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
        return Err(Finish::Failed(format!(
            "{} is not empty: the database is in use or was not closed cleanly (checkpoint it or close its connections first)",
            wal.display()
        )));
    }
    let journal = with_suffix(path, "-journal");
    if journal.exists() {
        return Err(Finish::Failed(format!(
            "{} exists: the database is in use or has a hot journal (open and close it once first)",
            journal.display()
        )));
    }
    let old = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?;
    std::fs::set_permissions(temp, old.permissions())
        .map_err(|e| Error::io("cannot set the restored file's mode", e))?;
    let new = std::fs::metadata(temp).map_err(|e| Error::io("cannot stat the restored file", e))?;
    if (new.uid(), new.gid()) != (old.uid(), old.gid()) {
        std::os::unix::fs::chown(temp, Some(old.uid()), Some(old.gid())).map_err(|e| {
            Error::io(
                format!(
                    "cannot give the restored file the owner of {} ({}:{})",
                    path.display(),
                    old.uid(),
                    old.gid()
                ),
                e,
            )
        })?;
    }
    std::fs::rename(temp, path)
        .map_err(|e| Error::io(format!("cannot rename into {}", path.display()), e))?;
    Ok(())
}

/// Removes the `-wal` and `-shm` SQLite may have left beside `temp` when a
/// check opened it (it removes them itself on close).
fn remove_side_files(temp: &Path) {
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(with_suffix(temp, side));
    }
}

/// `PRAGMA integrity_check` of the file at `temp`: `ok` or the reason.
fn integrity_check(temp: &Path) -> std::result::Result<(), Finish> {
    let db = Connection::open_with_flags(
        temp,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sqlite_error(Side::Restore, "cannot open the restored copy", temp, &e))?;
    let problems: Vec<String> = db
        .prepare("PRAGMA integrity_check")
        .and_then(|mut stmt| {
            stmt.query_map([], |r| r.get::<_, String>(0))?
                .take(MAX_PROBLEMS + 1)
                .collect()
        })
        .map_err(|e| Finish::Failed(format!("the restored file cannot be checked: {e}")))?;
    db.close().map_err(|(_, e)| {
        sqlite_error(Side::Restore, "cannot close the restored copy", temp, &e)
    })?;
    if problems != ["ok"] {
        return Err(Finish::Failed(format!(
            "PRAGMA integrity_check of the restored file: {}",
            problems[..problems.len().min(MAX_PROBLEMS)].join("; ")
        )));
    }
    Ok(())
}

/// The directory `path` is in (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Whether a file is at `path`; refuses what a restore must not replace.
pub(crate) fn existing(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(Error::Config(format!(
            "{} is a symbolic link: restore to the file it points to",
            path.display()
        ))),
        Ok(meta) if !meta.is_file() => Err(Error::Config(format!(
            "{} exists and is not a regular file",
            path.display()
        ))),
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(format!("cannot stat {}", path.display()), e)),
    }
}
