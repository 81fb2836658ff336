//! Walking the directory tree: listings and the stale temporary file sweep.

use std::fs;
use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use backup_core::{
    Result, key::Key, store::ObjectMeta, store::TemporaryObject, store::TemporarySweep,
};
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::root::{Lookup, Root, is_absent, object_meta};
use crate::temp::is_temp_name;

/// One non-directory entry met by [`walk`].
pub(crate) struct Entry<'a> {
    pub(crate) entry: &'a fs::DirEntry,
    pub(crate) name: &'a str,
    /// The key the entry would have (`/`-joined path below the root).
    pub(crate) key: String,
    pub(crate) file_type: fs::FileType,
}

/// Visits every non-directory entry below `dir`, depth first, descending
/// into real directories whose names do not start with `.` (never through
/// symbolic links). `prefix` is the key of `dir` itself (`None` for the
/// root). Entries with names that are not UTF-8 cannot be keys and are
/// skipped. Directories that vanish during the walk are skipped too.
pub(crate) fn walk(
    dir: PathBuf,
    prefix: Option<String>,
    mut visit: impl FnMut(Entry<'_>) -> ControlFlow<()>,
) -> io::Result<()> {
    let mut stack = vec![(dir, prefix)];
    while let Some((dir, prefix)) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if is_absent(&e) => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else {
                tracing::debug!(path = %entry.path().display(), "skipping non-UTF-8 name");
                continue;
            };
            let file_type = match entry.file_type() {
                Ok(t) => t,
                Err(e) if is_absent(&e) => continue,
                Err(e) => return Err(e),
            };
            let key = match &prefix {
                Some(p) => format!("{p}/{name}"),
                None => name.to_string(),
            };
            if file_type.is_dir() {
                if !name.starts_with('.') {
                    stack.push((entry.path(), Some(key)));
                }
                continue;
            }
            let visited = visit(Entry {
                entry: &entry,
                name,
                key,
                file_type,
            });
            if visited.is_break() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Lists the objects under `prefix` into `tx`, stopping after the first
/// error or when the receiver goes away.
pub(crate) fn list_into(root: &Root, prefix: Option<&Key>, tx: &mpsc::Sender<Result<ObjectMeta>>) {
    let send = |item| {
        tx.blocking_send(item)
            .map_or(ControlFlow::Break(()), ControlFlow::Continue)
    };
    let (start, start_key) = match prefix {
        None => (root.dir().to_path_buf(), None),
        Some(prefix) => match root.lookup(prefix) {
            Ok(Lookup::Absent) => return,
            Ok(Lookup::Path(path)) => match fs::symlink_metadata(&path) {
                // Only a real directory has objects under it; the object
                // named by the prefix itself is not "under" it.
                Ok(md) if md.is_dir() => (path, Some(prefix.to_string())),
                Ok(md) if md.file_type().is_symlink() => {
                    let _ = send(Err(root.refuse(
                        prefix.as_str(),
                        format!("refusing to follow symbolic link {}", path.display()),
                    )));
                    return;
                }
                Ok(_) => return,
                Err(e) if is_absent(&e) => return,
                Err(e) => {
                    let _ = send(Err(root.err(prefix.as_str(), e)));
                    return;
                }
            },
            Err(e) => {
                let _ = send(Err(e));
                return;
            }
        },
    };
    let start_name = start_key.clone().unwrap_or_default();
    let walked = walk(start, start_key, |entry| {
        if entry.name.starts_with('.') || !entry.file_type.is_file() {
            return ControlFlow::Continue(());
        }
        let Ok(key) = Key::new(entry.key.as_str()) else {
            tracing::debug!(name = %entry.key, "skipping file whose name is not a valid key");
            return ControlFlow::Continue(());
        };
        let meta = match entry.entry.metadata() {
            Ok(md) => object_meta(key, &md),
            Err(e) => Err(e),
        };
        match meta {
            Ok(meta) => send(Ok(meta)),
            // Deleted while we walked.
            Err(e) if is_absent(&e) => ControlFlow::Continue(()),
            Err(e) => {
                let _ = send(Err(root.err(&entry.key, e)));
                ControlFlow::Break(())
            }
        }
    });
    if let Err(e) = walked {
        let _ = send(Err(root.err(&start_name, e)));
    }
}

/// Finds every temporary file under the root and removes those last
/// modified at least `opts.older_than` ago (unless `opts.dry_run`), pruning
/// directories that leaves empty. Failures to remove one file are logged
/// and the file reported as not removed.
pub(crate) fn sweep_temporary(root: &Root, opts: &TemporarySweep) -> Result<Vec<TemporaryObject>> {
    let now = SystemTime::now();
    let mut found = Vec::new();
    walk(root.dir().to_path_buf(), None, |entry| {
        if !entry.file_type.is_file() || !is_temp_name(entry.name) {
            return ControlFlow::Continue(());
        }
        let path = entry.entry.path();
        let md = match entry.entry.metadata() {
            Ok(md) => md,
            Err(e) if is_absent(&e) => return ControlFlow::Continue(()),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not read temporary file");
                return ControlFlow::Continue(());
            }
        };
        let modified = md.modified().unwrap_or(now);
        let age = now.duration_since(modified).unwrap_or_default();
        let mut removed = false;
        if !opts.dry_run && age >= opts.older_than {
            match fs::remove_file(&path) {
                Ok(()) => {
                    removed = true;
                    prune_parent(root, &path);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return ControlFlow::Continue(()),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove stale temporary file")
                }
            }
        }
        found.push(TemporaryObject::new(
            entry.key,
            md.len(),
            DateTime::<Utc>::from(modified),
            removed,
        ));
        ControlFlow::Continue(())
    })
    .map_err(|e| root.err("", e))?;
    Ok(found)
}

fn prune_parent(root: &Root, file: &Path) {
    if let Some(dir) = file.parent() {
        root.prune_empty_dirs(dir);
    }
}
