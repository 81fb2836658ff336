//! Directory trees: listing, ageing and copying them.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Regular files below `root` (symbolic links are neither followed nor
/// listed), as paths relative to `root`, sorted. Entries that vanish
/// during the walk are skipped; a missing `root` is empty.
pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&rel)) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = rel.join(entry.file_name());
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Regular files below each of `roots` last modified at or after `since`
/// (absolute paths). Directories that cannot be read are skipped.
pub fn modified_since(roots: &[&Path], since: SystemTime) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for root in roots {
        for rel in walk(root) {
            let path = root.join(rel);
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.modified().is_ok_and(|m| m >= since) {
                out.push(path);
            }
        }
    }
    out
}

/// Sets the modification time of every regular file below `root` back
/// by `by`: as if that much time had passed since each was written.
pub fn backdate(root: &Path, by: Duration) {
    for rel in walk(root) {
        let path = root.join(rel);
        let Ok(file) = std::fs::File::options().write(true).open(&path) else {
            continue; // removed meanwhile
        };
        let Ok(modified) = file.metadata().and_then(|m| m.modified()) else {
            continue;
        };
        file.set_modified(modified - by)
            .unwrap_or_else(|e| panic!("backdating {}: {e}", path.display()));
    }
}

/// Copies the tree `from` to `to` (which must not exist), keeping
/// modification times (`cp -a`).
pub fn copy_tree(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}
