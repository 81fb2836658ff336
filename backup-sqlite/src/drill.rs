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

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use backup_core::drill::{DrillTarget, Scratch, ScratchDir};
use backup_core::fingerprint::Fingerprint;
use backup_core::source::{Leftover, LeftoverReport};
use backup_core::{Error, RestoreOptions, RestoreTarget, Result};

use crate::checksum::content_fingerprint;
use crate::target::SqliteTarget;

/// The start of every scratch directory's name.
pub const DRILL_PREFIX: &str = ".backup-sqlite-drill-";

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
        ScratchDir::dead(&self.dir, DRILL_PREFIX).await
    }

    /// Removes the scratch directories of drills that are gone. A dead
    /// drill is known exactly by its released lock, so no age applies.
    pub async fn remove_leftovers(&self) -> Result<LeftoverReport> {
        ScratchDir::remove_dead(&self.dir, DRILL_PREFIX).await
    }
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
        let home = ScratchDir::create(&self.dir, DRILL_PREFIX).await?;
        let path = home.path().join("scratch.db");
        let scratch = SqliteScratch {
            target: SqliteTarget::new(&path),
            path,
            name: home.name().to_string(),
            home: Some(home),
        };
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
    /// Removed (recursively) when dropped.
    home: Option<ScratchDir>,
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
        home.remove().await?;
        tracing::info!(scratch = %shown, "removed SQLite drill scratch");
        Ok(())
    }
}
