//! [`SqliteTarget`]: restores into a database file.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use backup_core::source::{
    Candidate, Leftover, LeftoverReport, Removal, RestoreOptions, RestoreSession, RestoreTarget,
};
use backup_core::{Error, Result};

use crate::leftovers::{
    DEFAULT_LEFTOVER_GRACE, clear_restores_of, mark_in_use, remove_leftover, restore_temps,
};
use crate::session::{FileSession, existing, parent_dir};
use crate::source::{ENGINE, FORMAT};

/// Where a restore writes a database file.
///
/// A restore writes the dump into a temporary file beside the target
/// (`.NAME.restore-XXXXXXXX.tmp`, mode `0600`, so the same filesystem),
/// and only on [`RestoreSession::commit`], which the engine reaches once
/// every digest matched (the last bytes are held back until then), checks
/// it with `PRAGMA integrity_check`, fsyncs it, renames it onto the
/// target and fsyncs the directory. A failure, an abort or a dropped
/// session deletes the temporary file and leaves the target as it was;
/// only a crash can leave the temporary file behind. A restore removes
/// such files of its own target once idle for
/// [`DEFAULT_LEFTOVER_GRACE`](crate::DEFAULT_LEFTOVER_GRACE) and held by
/// no process (a running restore holds an exclusive `flock` on its file);
/// [`RestoreTarget::leftovers`] and [`RestoreTarget::remove_leftovers`]
/// list and remove those beside this target's path.
///
/// The target path is [`RestoreOptions::database`] if set, else the one
/// given to [`SqliteTarget::new`]. An existing file is refused with
/// [`Error::AlreadyExists`] unless overwriting is asked for
/// ([`SqliteTarget::overwrite`] or [`RestoreOptions::clean`]), and always
/// with [`RestoreOptions::must_be_new`]. Overwriting keeps the old
/// file's mode and owner, and is refused while the old database has a
/// non-empty `-wal` or a `-journal` file (in use, or not closed cleanly:
/// SQLite would replay them into the new file). A new file gets mode
/// `0600`. [`RestoreOptions::only`] is refused: the file is restored whole.
#[derive(Debug, Clone)]
pub struct SqliteTarget {
    path: PathBuf,
    overwrite: bool,
}

impl SqliteTarget {
    /// A target restoring into the file at `path` (unless a restore names
    /// another in [`RestoreOptions::database`]).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteTarget {
            path: path.into(),
            overwrite: false,
        }
    }

    /// The restore temporary files beside this target's path.
    async fn scan(&self) -> Result<Vec<Candidate>> {
        let dir = parent_dir(&self.path);
        tokio::task::spawn_blocking(move || restore_temps(&dir).map_err(|e| (dir, e)))
            .await
            .map_err(|e| Error::task("listing SQLite restore leftovers", e))?
            .map_err(|(dir, e)| Error::io(format!("cannot list {}", dir.display()), e))
    }

    /// Allows every restore of this target to replace an existing file
    /// (as [`RestoreOptions::clean`] does for one restore).
    pub fn overwrite(mut self, yes: bool) -> Self {
        self.overwrite = yes;
        self
    }
}

/// The temporary file beside `target`, created new with mode `0600` and
/// marked in use ([`mark_in_use`]).
pub(crate) fn create_temp(target: &Path) -> Result<(PathBuf, std::fs::File)> {
    let dir = parent_dir(target);
    let name = target
        .file_name()
        .ok_or_else(|| Error::Config(format!("{} names no file", target.display())))?;
    for _ in 0..8 {
        let temp = dir.join(format!(
            ".{}.restore-{:08x}.tmp",
            name.to_string_lossy(),
            rand::random::<u32>()
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
        {
            Ok(file) => {
                if let Err(e) = mark_in_use(&file) {
                    let _ = std::fs::remove_file(&temp);
                    return Err(Error::io(
                        format!("cannot lock the temporary file {}", temp.display()),
                        e,
                    ));
                }
                return Ok((temp, file));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(Error::io(
                    format!("cannot create a temporary file in {}", dir.display()),
                    e,
                ));
            }
        }
    }
    Err(Error::Config(format!(
        "cannot find a free temporary file name in {}",
        dir.display()
    )))
}

#[async_trait]
impl RestoreTarget for SqliteTarget {
    fn engine(&self) -> &str {
        ENGINE
    }

    fn accepts_format(&self, format: &str) -> bool {
        format == FORMAT
    }

    async fn begin(&self, opts: &RestoreOptions) -> Result<Box<dyn RestoreSession>> {
        if !opts.only.is_empty() {
            return Err(Error::Config(
                "a SQLite backup restores as a whole file: it cannot be restricted to tables"
                    .into(),
            ));
        }
        let path = opts
            .database
            .as_ref()
            .map_or_else(|| self.path.clone(), PathBuf::from);
        let overwrite = self.overwrite || opts.clean;
        let must_be_new = opts.must_be_new;
        let (path, temp, file, in_use, overwrite) = tokio::task::spawn_blocking(move || {
            if existing(&path)? {
                if must_be_new || !overwrite {
                    return Err(Error::AlreadyExists {
                        key: if must_be_new {
                            path.display().to_string()
                        } else {
                            format!("{} (ask to overwrite it to replace it)", path.display())
                        },
                    });
                }
            } else {
                let dir = parent_dir(&path);
                if !dir.is_dir() {
                    return Err(Error::Config(format!(
                        "cannot restore into {}: directory {} does not exist",
                        path.display(),
                        dir.display()
                    )));
                }
            }
            clear_restores_of(&parent_dir(&path), &path, DEFAULT_LEFTOVER_GRACE);
            let (temp, file) = create_temp(&path)?;
            let in_use = match file.try_clone() {
                Ok(in_use) => in_use,
                Err(e) => {
                    let _ = std::fs::remove_file(&temp);
                    return Err(Error::io("cannot keep the temporary file locked", e));
                }
            };
            Ok((path, temp, file, in_use, overwrite && !must_be_new))
        })
        .await
        .map_err(|e| Error::task("starting a SQLite restore", e))??;
        tracing::debug!(target = %path.display(), temp = %temp.display(), "SQLite restore started");
        Ok(Box::new(FileSession::new(
            path, temp, file, in_use, overwrite,
        )))
    }

    /// The temporary files beside this target's path (the one given to
    /// [`SqliteTarget::new`]; restores into files elsewhere leave theirs
    /// beside those) whose restore never finished: a crash or `kill -9`
    /// skips the session's clean-up. A file a live restore holds (its
    /// `flock`) is listed with an unknown idle time, so it is never
    /// removed.
    async fn leftovers(&self) -> Result<Vec<Leftover>> {
        Ok(Candidate::marked(self.scan().await?))
    }

    /// Removes the [`leftovers`](RestoreTarget::leftovers) idle for
    /// `older_than` or more whose restore is gone (no process holds them),
    /// with the side files SQLite made beside them.
    async fn remove_leftovers(&self, older_than: Duration) -> Result<LeftoverReport> {
        let found = self.scan().await?;
        Ok(
            LeftoverReport::apply(found, older_than, None, |leftover| async move {
                let path = PathBuf::from(&leftover.name);
                tokio::task::spawn_blocking(move || remove_leftover(&path))
                    .await
                    .unwrap_or_else(|e| Removal::Refused(format!("the removal task failed: {e}")))
            })
            .await,
        )
    }
}
