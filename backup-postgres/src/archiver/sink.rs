//! [`SegmentSink`]: where a [`WalArchiver`](crate::WalArchiver) hands
//! completed WAL files, and [`DirSink`], a local directory archive.

use std::fmt::Debug;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use backup_core::{Error, Result};

use crate::archiver::spool::{sync_dir, wal_file_kind};

/// What a [`SegmentSink`] did with a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SinkOutcome {
    /// The file is now durably in the archive.
    Stored,
    /// The archive already held this file with the same content (a
    /// segment received again after a crash); nothing was written.
    AlreadyPresent,
}

/// Receives completed WAL files (segments and timeline `.history` files)
/// from a [`WalArchiver`](crate::WalArchiver), one at a time, in name
/// order.
///
/// # Contract
///
/// - `push` returns `Ok` only once the file is durably stored: the
///   archiver deletes it from its spool right after.
/// - Pushing a file the archive already holds with the same content is
///   [`SinkOutcome::AlreadyPresent`], not an error (idempotent).
/// - A file of that name with *different* content is an `Err` (a
///   conflict: WAL of another cluster, or a diverged history). The
///   archiver then reports an error event, keeps the file in its spool
///   and archives nothing past it until the push succeeds.
/// - `path` is a complete, flushed file that does not change while the
///   call runs; `name` is its file name (24 upper-case hex digits, or
///   `<8 hex digits>.history`).
#[async_trait]
pub trait SegmentSink: Send + Sync + Debug {
    /// Stores the file at `path` under `name`.
    async fn push(&self, name: &str, path: &Path) -> Result<SinkOutcome>;
}

/// A local directory archive: each WAL file copied into one directory
/// under its own name, durably (written to a temporary file, fsynced,
/// linked into place without ever replacing a file, directory fsynced).
/// A file already there with the same bytes is
/// [`SinkOutcome::AlreadyPresent`]; with other bytes, an
/// [`Error::Integrity`] naming it. Such a directory is what a
/// `restore_command = 'cp <dir>/%f %p'` reads.
#[derive(Debug, Clone)]
pub struct DirSink {
    dir: PathBuf,
}

impl DirSink {
    /// An archive in `dir`, created (0700) if missing.
    pub fn new(dir: impl Into<PathBuf>) -> Result<DirSink> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = dir.into();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io(format!("creating WAL archive {}", dir.display()), e))?;
        Ok(DirSink { dir })
    }

    /// The archive directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn store(&self, name: &str, path: &Path) -> Result<SinkOutcome> {
        if wal_file_kind(name).is_none() {
            return Err(Error::InvalidKey {
                key: name.to_string(),
                reason: "not a WAL segment or timeline history file name",
            });
        }
        let target = self.dir.join(name);
        if target.exists() {
            return self.compare(name, path, &target);
        }
        let tmp = self
            .dir
            .join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
        let copied = copy_synced(path, &tmp);
        let linked = copied.and_then(|()| {
            std::fs::hard_link(&tmp, &target).or_else(|e| match e.kind() {
                ErrorKind::AlreadyExists => Ok(()),
                _ => Err(Error::io(format!("storing {}", target.display()), e)),
            })
        });
        let _ = std::fs::remove_file(&tmp);
        linked?;
        sync_dir(&self.dir)?;
        // A concurrent writer may have linked first: check what is there.
        match self.compare(name, path, &target)? {
            SinkOutcome::AlreadyPresent => Ok(SinkOutcome::Stored),
            other => Ok(other),
        }
    }

    fn compare(&self, name: &str, path: &Path, target: &Path) -> Result<SinkOutcome> {
        if same_content(path, target)? {
            Ok(SinkOutcome::AlreadyPresent)
        } else {
            Err(Error::Integrity {
                what: format!("WAL file {name} in {}", self.dir.display()),
                detail: "the archive holds a different file of that name (WAL of another cluster, or a diverged timeline); give each cluster its own archive and check which copy is right".into(),
            })
        }
    }
}

#[async_trait]
impl SegmentSink for DirSink {
    async fn push(&self, name: &str, path: &Path) -> Result<SinkOutcome> {
        let (this, name, path) = (self.clone(), name.to_string(), path.to_path_buf());
        tokio::task::spawn_blocking(move || this.store(&name, &path))
            .await
            .map_err(|e| Error::task("copying a WAL file into the archive", e))?
    }
}

fn copy_synced(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e| Error::io(format!("copying {} to {}", from.display(), to.display()), e);
    let mut src = std::fs::File::open(from).map_err(io)?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(io)?;
    std::io::copy(&mut src, &mut dst).map_err(io)?;
    dst.flush().map_err(io)?;
    dst.sync_all().map_err(io)
}

fn same_content(a: &Path, b: &Path) -> Result<bool> {
    let io = |e| Error::io(format!("comparing {} with {}", a.display(), b.display()), e);
    let (mut fa, mut fb) = (
        std::fs::File::open(a).map_err(io)?,
        std::fs::File::open(b).map_err(io)?,
    );
    if fa.metadata().map_err(io)?.len() != fb.metadata().map_err(io)?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = fa.read(&mut ba).map_err(io)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n]).map_err(io)?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dir_sink_is_idempotent_and_refuses_conflicts() {
        let spool = tempfile::tempdir().unwrap();
        let archive = tempfile::tempdir().unwrap();
        let sink = DirSink::new(archive.path().join("wal")).unwrap();
        let name = "000000010000000000000003";
        let file = spool.path().join(name);
        std::fs::write(&file, b"segment bytes").unwrap();
        assert_eq!(sink.push(name, &file).await.unwrap(), SinkOutcome::Stored);
        assert_eq!(
            sink.push(name, &file).await.unwrap(),
            SinkOutcome::AlreadyPresent
        );
        std::fs::write(&file, b"other bytes!!").unwrap();
        let err = sink.push(name, &file).await.unwrap_err().to_string();
        assert!(
            err.contains(name) && err.contains("different file"),
            "{err}"
        );
        assert_eq!(
            std::fs::read(sink.dir().join(name)).unwrap(),
            b"segment bytes"
        );
        assert!(sink.push("../x", &file).await.is_err());
        let left: Vec<_> = std::fs::read_dir(sink.dir()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary files left");
    }
}
