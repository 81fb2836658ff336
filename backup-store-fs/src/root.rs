//! The store's root directory and the mapping of keys onto paths below it.
//!
//! A [`Key`] has no empty, `.` or `..` segments and is never absolute, so
//! joining its segments onto the root cannot climb out lexically. What is
//! left is symbolic links planted inside the root: every lookup here checks
//! the directories on the way down with `lstat` and refuses to go through a
//! link, and listings never follow one.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use backup_core::{Error, Result, key::Key, store::ObjectMeta};
use chrono::{DateTime, Utc};

/// A store root: the directory plus the name errors report (`fs:{root}`).
#[derive(Debug)]
pub(crate) struct Root {
    dir: PathBuf,
    name: String,
}

/// Where a key's object would live, once the directories above it have been
/// checked.
pub(crate) enum Lookup {
    /// The directories above exist and are real directories; the object may
    /// or may not exist at this path.
    Path(PathBuf),
    /// A directory above the key is missing or is a file, or the key uses a
    /// reserved name: the object cannot exist.
    Absent,
}

impl Root {
    pub(crate) fn new(dir: PathBuf) -> Root {
        let name = format!("fs:{}", dir.display());
        Root { dir, name }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// `fs:{root}`, the store name used in errors and `Display`.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Maps an I/O error on `key` into the core error variants.
    pub(crate) fn err(&self, key: &str, err: io::Error) -> Error {
        Error::from_store_io(&self.name, key, err)
    }

    /// A permanent store error for something the store refuses to do.
    pub(crate) fn refuse(&self, key: &str, what: impl std::fmt::Display) -> Error {
        Error::Store {
            store: self.name.clone(),
            retryable: false,
            source: format!("{key}: {what}").into(),
        }
    }

    /// Names starting with `.` are reserved for the store's temporary files;
    /// keys using them are rejected on write and treated as absent on read.
    pub(crate) fn is_reserved(key: &Key) -> bool {
        key.segments().any(|s| s.starts_with('.'))
    }

    /// Finds where `key` lives, checking each directory above it.
    pub(crate) fn lookup(&self, key: &Key) -> Result<Lookup> {
        if Self::is_reserved(key) {
            return Ok(Lookup::Absent);
        }
        let mut path = self.dir.clone();
        let mut segments = key.segments().peekable();
        while let Some(segment) = segments.next() {
            path.push(segment);
            if segments.peek().is_none() {
                break;
            }
            match fs::symlink_metadata(&path) {
                Ok(md) if md.file_type().is_symlink() => {
                    return Err(self.symlink(key, &path));
                }
                Ok(md) if md.is_dir() => {}
                Ok(_) => return Ok(Lookup::Absent),
                Err(e) if is_absent(&e) => return Ok(Lookup::Absent),
                Err(e) => return Err(self.err(key.as_str(), e)),
            }
        }
        Ok(Lookup::Path(path))
    }

    /// The path and metadata of `key`'s object, or `None` if there is no
    /// object (a directory is not an object).
    pub(crate) fn object(&self, key: &Key) -> Result<Option<(PathBuf, fs::Metadata)>> {
        let Lookup::Path(path) = self.lookup(key)? else {
            return Ok(None);
        };
        match fs::symlink_metadata(&path) {
            Ok(md) if md.file_type().is_symlink() => Err(self.symlink(key, &path)),
            Ok(md) if md.is_file() => Ok(Some((path, md))),
            Ok(_) => Ok(None),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(self.err(key.as_str(), e)),
        }
    }

    /// Creates the directories above `key` as needed and returns the one
    /// the object goes in. Parents of newly created directories are fsynced,
    /// so the new entries survive a crash. `None` means a directory on the
    /// way vanished meanwhile (a concurrent delete pruned it): try again.
    pub(crate) fn prepare_dir(&self, key: &Key) -> Result<Option<PathBuf>> {
        if Self::is_reserved(key) {
            return Err(Error::InvalidKey {
                key: key.to_string(),
                reason: "names starting with '.' are reserved for the fs store's temporary files",
            });
        }
        let io = |e| self.err(key.as_str(), e);
        let mut dir = self.dir.clone();
        let mut created = Vec::new();
        let segments: Vec<&str> = key.segments().collect();
        for segment in &segments[..segments.len() - 1] {
            dir.push(segment);
            match fs::create_dir(&dir) {
                Ok(()) => created.push(dir.parent().unwrap_or(&self.dir).to_path_buf()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let md = match fs::symlink_metadata(&dir) {
                        Ok(md) => md,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                        Err(e) => return Err(io(e)),
                    };
                    if md.file_type().is_symlink() {
                        return Err(self.symlink(key, &dir));
                    }
                    if !md.is_dir() {
                        return Err(self.refuse(
                            key.as_str(),
                            format!("{} is an object, not a directory", dir.display()),
                        ));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io(e)),
            }
        }
        for parent in &created {
            match fsync_dir(parent) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                other => other.map_err(io)?,
            }
        }
        Ok(Some(dir))
    }

    /// Removes `dir` and then its parents while they are empty, stopping
    /// below the root. Best effort: a directory another writer is using is
    /// not empty, and any failure just stops the climb.
    pub(crate) fn prune_empty_dirs(&self, dir: &Path) {
        let mut current = Some(dir);
        while let Some(d) = current {
            if d == self.dir || !d.starts_with(&self.dir) {
                break;
            }
            match fs::remove_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => break,
            }
            current = d.parent();
        }
    }

    fn symlink(&self, key: &Key, path: &Path) -> Error {
        self.refuse(
            key.as_str(),
            format!("refusing to follow symbolic link {}", path.display()),
        )
    }
}

/// Whether an error means "nothing there" (including a file where a
/// directory was expected).
pub(crate) fn is_absent(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Makes a directory's entries (new files, renames, links) durable. A no-op
/// where directories cannot be opened as files, and on filesystems that
/// reject fsync on directories.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        match fs::File::open(dir)?.sync_all() {
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(()),
            other => other,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Builds the metadata of an object from its file's metadata.
pub(crate) fn object_meta(key: Key, md: &fs::Metadata) -> io::Result<ObjectMeta> {
    Ok(ObjectMeta {
        key,
        size: md.len(),
        last_modified: DateTime::<Utc>::from(md.modified()?),
    })
}
