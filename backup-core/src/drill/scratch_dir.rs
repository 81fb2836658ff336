//! [`ScratchDir`]: a private directory for one drill's scratch (a
//! restored file, a restored data directory), told live from dead by a
//! lock, not by an age.

use std::fs::{File, TryLockError};
use std::path::Path;

use crate::error::{Error, Result};
use crate::source::{Leftover, LeftoverReport};

/// The file inside a scratch directory whose `flock` marks it live.
const LOCK_FILE: &str = "lock";

/// How long an empty lock file (its creator between creating and locking
/// it) is left alone.
const CREATION_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// `<parent>/<prefix><6 random characters>` (mode 0700), holding an
/// exclusive `flock` on its `lock` file while this value lives. Dropping
/// it removes the directory (recursively, blocking); a process killed
/// with it leaves the directory with its lock released, which
/// [`ScratchDir::remove_dead`] (the next drill under `parent`) removes. A
/// directory whose lock is held is never touched, however old.
#[derive(Debug)]
pub struct ScratchDir {
    home: Option<tempfile::TempDir>,
    name: String,
    _lock: File,
}

impl ScratchDir {
    /// Creates one under `parent` (which must exist).
    pub async fn create(parent: &Path, prefix: &str) -> Result<ScratchDir> {
        let (parent, prefix) = (parent.to_path_buf(), prefix.to_string());
        tokio::task::spawn_blocking(move || {
            let home = tempfile::Builder::new()
                .prefix(&prefix)
                .tempdir_in(&parent)
                .map_err(|e| {
                    Error::io(
                        format!("cannot create a drill directory in {}", parent.display()),
                        e,
                    )
                })?;
            // Locked, then written: a sweep leaves an empty lock file
            // alone for a while (it may be between creation and lock).
            let lock = File::create(home.path().join(LOCK_FILE))
                .and_then(|mut lock| {
                    lock_exclusively(&lock)?;
                    std::io::Write::write_all(
                        &mut lock,
                        std::process::id().to_string().as_bytes(),
                    )?;
                    Ok(lock)
                })
                .map_err(|e| Error::io("cannot lock the drill directory", e))?;
            let name = home
                .path()
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            Ok(ScratchDir {
                home: Some(home),
                name,
                _lock: lock,
            })
        })
        .await
        .map_err(|e| Error::task("creating a drill directory", e))?
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.home.as_ref().map_or(Path::new(""), |h| h.path())
    }

    /// Its name (the last component of its path).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Removes it now.
    pub async fn remove(mut self) -> Result<()> {
        let Some(home) = self.home.take() else {
            return Ok(());
        };
        let shown = home.path().display().to_string();
        tokio::task::spawn_blocking(move || home.close())
            .await
            .map_err(|e| Error::task("removing a drill directory", e))?
            .map_err(|e| Error::io(format!("cannot remove the drill directory {shown}"), e))
    }

    /// The directories named `<prefix>...` under `parent` whose lock
    /// nobody holds (their drill is gone). Live ones are not listed.
    pub async fn dead(parent: &Path, prefix: &str) -> Result<Vec<Leftover>> {
        let (parent, prefix) = (parent.to_path_buf(), prefix.to_string());
        tokio::task::spawn_blocking(move || dead_dirs(&parent, &prefix))
            .await
            .map_err(|e| Error::task("listing drill leftovers", e))?
    }

    /// Removes the directories [`ScratchDir::dead`] lists.
    pub async fn remove_dead(parent: &Path, prefix: &str) -> Result<LeftoverReport> {
        let (parent, prefix) = (parent.to_path_buf(), prefix.to_string());
        tokio::task::spawn_blocking(move || {
            let mut report = LeftoverReport::default();
            for leftover in dead_dirs(&parent, &prefix)? {
                match std::fs::remove_dir_all(parent.join(&leftover.name)) {
                    Ok(()) => report.removed.push(leftover),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => report.not_removed.push((leftover, e.to_string())),
                }
            }
            Ok(report)
        })
        .await
        .map_err(|e| Error::task("removing drill leftovers", e))?
    }
}

fn lock_exclusively(file: &File) -> std::io::Result<()> {
    file.try_lock().map_err(|e| match e {
        TryLockError::Error(e) => e,
        TryLockError::WouldBlock => std::io::Error::other("the file is locked by another process"),
    })
}

fn dead_dirs(parent: &Path, prefix: &str) -> Result<Vec<Leftover>> {
    let entries = match std::fs::read_dir(parent) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("cannot list {}", parent.display()), e)),
    };
    let mut dead = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(prefix) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        // A directory without its lock file yet, or with an empty one
        // younger than a minute, is being created (its creator locks the
        // file, then writes it): it is left alone.
        let Ok(lock) = File::open(entry.path().join(LOCK_FILE)) else {
            continue;
        };
        let fresh_and_empty = lock.metadata().is_ok_and(|m| {
            m.len() == 0
                && m.modified()
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_none_or(|age| age < CREATION_GRACE)
        });
        if fresh_and_empty {
            continue;
        }
        if lock_exclusively(&lock).is_ok() {
            dead.push(Leftover::new(name, None, None));
        }
    }
    dead.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(dead)
}
