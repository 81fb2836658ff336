//! Temporary files: every write lands in a hidden file next to its target
//! and is renamed (or hard-linked) into place only once it is complete and
//! fsynced.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::{Error, Result, key::Key, store::PutMode};

use crate::root::{Root, fsync_dir};

/// Marks temporary names: `.{name}.tmp-{16 hex digits}`.
const TEMP_MARKER: &str = ".tmp-";

/// How much of the target's name a temporary name keeps, so that the extra
/// characters never push a long name past the filesystem's limit.
const KEPT_NAME_BYTES: usize = 100;

/// How often creating a temporary file is retried when a concurrent delete
/// pruned the directory it was meant to go in.
const CREATE_ATTEMPTS: usize = 5;

/// Whether `name` is one of the store's temporary files.
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with('.')
        && name.rsplit_once(TEMP_MARKER).is_some_and(|(_, suffix)| {
            suffix.len() == 16 && suffix.bytes().all(|b| b.is_ascii_hexdigit())
        })
}

fn temp_name(target: &str) -> String {
    let mut end = target.len().min(KEPT_NAME_BYTES);
    while !target.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        ".{}{TEMP_MARKER}{:016x}",
        &target[..end],
        rand::random::<u64>()
    )
}

/// A temporary file that is removed when dropped unless it was committed.
/// Dropping also prunes directories the write left empty.
#[derive(Debug)]
pub(crate) struct TempFile {
    root: Arc<Root>,
    path: PathBuf,
    armed: bool,
}

/// A freshly created temporary file, open for writing.
pub(crate) struct Created {
    pub(crate) temp: TempFile,
    pub(crate) file: fs::File,
    /// Where the object goes on commit.
    pub(crate) target: PathBuf,
}

impl TempFile {
    /// Creates an empty temporary file in the directory `key`'s object goes
    /// in, creating that directory as needed.
    pub(crate) fn create(root: &Arc<Root>, key: &Key) -> Result<Created> {
        for _ in 0..CREATE_ATTEMPTS {
            let Some(dir) = root.prepare_dir(key)? else {
                continue;
            };
            let path = dir.join(temp_name(key.file_name()));
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(Created {
                        temp: TempFile {
                            root: Arc::clone(root),
                            path,
                            armed: true,
                        },
                        file,
                        target: dir.join(key.file_name()),
                    });
                }
                // A concurrent delete pruned the directory we just made.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(root.err(key.as_str(), e)),
            }
        }
        Err(Error::Store {
            store: root.name().to_string(),
            retryable: true,
            source: format!("{key}: directories kept vanishing under concurrent deletes").into(),
        })
    }

    /// Moves the (complete, fsynced, closed) temporary file to `target` and
    /// makes that durable. With [`PutMode::Create`] the move is a hard link,
    /// which fails atomically if `target` exists.
    pub(crate) fn commit(mut self, key: &Key, target: &Path, mode: PutMode) -> Result<()> {
        let root = Arc::clone(&self.root);
        let dir = target.parent().unwrap_or(root.dir()).to_path_buf();
        match mode {
            PutMode::Overwrite => {
                fs::rename(&self.path, target).map_err(|e| root.err(key.as_str(), e))?;
                self.armed = false;
            }
            PutMode::Create => {
                fs::hard_link(&self.path, target).map_err(|e| match e.kind() {
                    io::ErrorKind::Unsupported => Error::Unsupported {
                        store: root.name().to_string(),
                        operation: "create-only puts (no hard links on this filesystem)",
                    },
                    _ => root.err(key.as_str(), e),
                })?;
                self.armed = false;
                if let Err(e) = fs::remove_file(&self.path) {
                    // Committed anyway; `remove_stale_temp_files` collects it.
                    tracing::warn!(path = %self.path.display(), error = %e, "could not remove temporary file");
                }
            }
            _ => {
                return Err(Error::Unsupported {
                    store: root.name().to_string(),
                    operation: "this put mode",
                });
            }
        }
        fsync_dir(&dir).map_err(|e| root.err(key.as_str(), e))
    }

    /// Removes the temporary file now, reporting failures (a missing file is
    /// fine).
    pub(crate) fn discard(mut self) -> io::Result<()> {
        self.armed = false;
        let result = remove_if_present(&self.path);
        self.prune();
        result
    }

    fn prune(&self) {
        if let Some(dir) = self.path.parent() {
            self.root.prune_empty_dirs(dir);
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Err(e) = remove_if_present(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove temporary file");
        }
        self.prune();
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised() {
        let name = temp_name("backup.dump.zst");
        assert!(name.starts_with(".backup.dump.zst.tmp-"), "{name}");
        assert!(is_temp_name(&name));
        for other in ["backup.dump", ".hidden", ".x.tmp-nothex", ".x.tmp-0123"] {
            assert!(!is_temp_name(other), "{other}");
        }
    }

    #[test]
    fn long_names_are_shortened_on_a_char_boundary() {
        let long = "ñ".repeat(200);
        let name = temp_name(&long);
        assert!(name.len() < 130, "{}", name.len());
        assert!(is_temp_name(&name));
    }
}
