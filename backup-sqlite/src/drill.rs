//! [`SqliteDrill`]: scratch files for restore drills
//! ([`Engine::drill`](backup_core::Engine::drill)).
//!
//! Each drill restores into `scratch.db` inside a fresh private directory
//! `.backup-sqlite-drill-XXXXXX` of the drill directory, holding an
//! exclusive `flock` on the directory's `lock` file while it lives. The
//! directory is removed when the drill ends, also when it failed or its
//! future was dropped; one whose `lock` nobody holds (its process was
//! killed) is removed by the next drill in the same directory, or by
//! [`SqliteDrill::remove_leftovers`].

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use backup_core::drill::{DrillTarget, Scratch};
use backup_core::fingerprint::Fingerprint;
use backup_core::source::{Leftover, LeftoverReport};
use backup_core::{Error, RestoreOptions, RestoreTarget, Result};

use crate::checksum::content_fingerprint;
use crate::leftovers::mark_in_use;
use crate::target::SqliteTarget;

/// The start of every scratch directory's name.
pub const DRILL_PREFIX: &str = ".backup-sqlite-drill-";

/// The file inside a scratch directory whose `flock` marks it live.
const LOCK_FILE: &str = "lock";

/// Restore drills of SQLite backups into scratch files under one
/// directory (on a file system with room for the restored database).
#[derive(Debug, Clone)]
pub struct SqliteDrill {
    dir: PathBuf,
}

impl SqliteDrill {
    /// Drills in scratch directories under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SqliteDrill { dir: dir.into() }
    }

    /// Scratch directories under the drill directory whose drill is gone
    /// (nobody holds their lock). Live ones are not listed.
    pub async fn leftovers(&self) -> Result<Vec<Leftover>> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || dead_scratches(&dir))
            .await
            .map_err(|e| Error::task("listing SQLite drill leftovers", e))?
    }

    /// Removes the scratch directories of drills that are gone. A dead
    /// drill is known exactly by its released lock, so no age applies.
    pub async fn remove_leftovers(&self) -> Result<LeftoverReport> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut report = LeftoverReport::default();
            for leftover in dead_scratches(&dir)? {
                match std::fs::remove_dir_all(dir.join(&leftover.name)) {
                    Ok(()) => report.removed.push(leftover),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => report.not_removed.push((leftover, e.to_string())),
                }
            }
            Ok(report)
        })
        .await
        .map_err(|e| Error::task("removing SQLite drill leftovers", e))?
    }
}

/// The scratch directories under `dir` nobody holds.
fn dead_scratches(dir: &Path) -> Result<Vec<Leftover>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("cannot list {}", dir.display()), e)),
    };
    let mut dead = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(DRILL_PREFIX) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        // A directory without its lock file yet is being created (or its
        // creator died in that instant): it is left alone.
        let Ok(lock) = File::open(entry.path().join(LOCK_FILE)) else {
            continue;
        };
        if mark_in_use(&lock).is_ok() {
            dead.push(Leftover::new(name, None, None));
        }
    }
    dead.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(dead)
}

#[async_trait]
impl DrillTarget for SqliteDrill {
    fn engine(&self) -> &str {
        crate::source::ENGINE
    }

    /// A dead drill is known exactly by its released lock: no age applies.
    async fn remove_leftovers(&self, _older_than: Duration) -> Result<LeftoverReport> {
        SqliteDrill::remove_leftovers(self).await
    }

    async fn scratch(&self) -> Result<Box<dyn Scratch>> {
        let swept = self.remove_leftovers().await?;
        if !swept.removed.is_empty() {
            tracing::info!(
                removed = swept.removed.len(),
                "removed scratch directories of killed SQLite drills"
            );
        }
        let dir = self.dir.clone();
        let scratch = tokio::task::spawn_blocking(move || -> Result<SqliteScratch> {
            let home = tempfile::Builder::new()
                .prefix(DRILL_PREFIX)
                .tempdir_in(&dir)
                .map_err(|e| {
                    Error::io(
                        format!("cannot create a drill directory in {}", dir.display()),
                        e,
                    )
                })?;
            let lock = File::create(home.path().join(LOCK_FILE))
                .and_then(|lock| mark_in_use(&lock).map(|()| lock))
                .map_err(|e| Error::io("cannot lock the drill directory", e))?;
            let path = home.path().join("scratch.db");
            let name = home
                .path()
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            Ok(SqliteScratch {
                target: SqliteTarget::new(&path),
                path,
                name,
                _lock: lock,
                home: Some(home),
            })
        })
        .await
        .map_err(|e| Error::task("creating a SQLite drill directory", e))??;
        tracing::info!(scratch = %scratch.path.display(), "created SQLite drill scratch");
        Ok(Box::new(scratch))
    }
}

/// One drill's scratch directory; dropping it removes the directory.
#[derive(Debug)]
struct SqliteScratch {
    target: SqliteTarget,
    path: PathBuf,
    name: String,
    _lock: File,
    /// Removed (recursively) when dropped.
    home: Option<tempfile::TempDir>,
}

#[async_trait]
impl Scratch for SqliteScratch {
    fn name(&self) -> &str {
        &self.name
    }

    fn restore_target(&self) -> (&dyn RestoreTarget, RestoreOptions) {
        let mut opts = RestoreOptions::default();
        opts.must_be_new = true;
        (&self.target, opts)
    }

    async fn fingerprint(&self) -> Result<Fingerprint> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || content_fingerprint(&path))
            .await
            .map_err(|e| Error::task("fingerprinting a SQLite drill scratch", e))?
    }

    async fn discard(mut self: Box<Self>) -> Result<()> {
        let Some(home) = self.home.take() else {
            return Ok(());
        };
        let shown = home.path().display().to_string();
        tokio::task::spawn_blocking(move || home.close())
            .await
            .map_err(|e| Error::task("removing a SQLite drill scratch", e))?
            .map_err(|e| Error::io(format!("cannot remove the drill directory {shown}"), e))?;
        tracing::info!(scratch = %shown, "removed SQLite drill scratch");
        Ok(())
    }
}
