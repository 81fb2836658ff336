//! What a killed process leaves beside SQLite files, and its removal.
//!
//! Two kinds of files are this crate's own: a restore's temporary file
//! beside its target (`.NAME.restore-XXXXXXXX.tmp`) and a snapshot's spool
//! (`.backup-sqlite-XXXXXX.spool` in the spool directory). While the
//! process that made one is working on it, that process holds an exclusive
//! `flock` on it, so another process (or a sweep in the same one) can tell
//! a live file from one whose owner died: a file that can be locked and
//! was last modified before the grace is a leftover. SQLite's own locks
//! are POSIX record locks, which `flock` does not touch.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use backup_core::source::{Candidate, Leftover, Removal};

/// The prefix of spool file names.
pub(crate) const SPOOL_PREFIX: &str = ".backup-sqlite-";
/// The suffix of spool file names.
pub(crate) const SPOOL_SUFFIX: &str = ".spool";
/// The side files SQLite may make beside a database file.
pub(crate) const SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];
/// How long a file of this crate that nobody holds must have been idle
/// before a snapshot (spools in its spool directory) or a restore (the
/// temporary files of its own target) removes it. The `flock` tells live
/// from dead exactly; the grace only covers the instant between creating
/// a file and locking it.
pub const DEFAULT_LEFTOVER_GRACE: Duration = Duration::from_secs(10 * 60);

/// Takes the exclusive `flock` that marks `file` as in use by this
/// process; it holds until the last descriptor of this open file closes.
pub(crate) fn mark_in_use(file: &File) -> std::io::Result<()> {
    file.try_lock().map_err(|e| match e {
        TryLockError::Error(e) => e,
        TryLockError::WouldBlock => std::io::Error::other("the file is locked by another process"),
    })
}

/// `path` with `suffix` appended (`x.db` → `x.db-wal`).
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Removes `path` and the side files SQLite may have made beside it.
pub(crate) fn remove_with_side_files(path: &Path) -> std::io::Result<()> {
    for side in SIDE_FILES {
        let _ = std::fs::remove_file(with_suffix(path, side));
    }
    std::fs::remove_file(path)
}

/// The name of the target a restore temporary file named `name` is for:
/// `.NAME.restore-XXXXXXXX.tmp` (eight hex digits) gives `NAME`.
pub(crate) fn restore_temp_target(name: &str) -> Option<&str> {
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (target, hex) = inner.rsplit_once(".restore-")?;
    let ours = !target.is_empty()
        && hex.len() == 8
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    ours.then_some(target)
}

/// Whether `name` is a spool file's (not one of its side files).
fn is_spool(name: &str) -> bool {
    name.len() > SPOOL_PREFIX.len() + SPOOL_SUFFIX.len()
        && name.starts_with(SPOOL_PREFIX)
        && name.ends_with(SPOOL_SUFFIX)
}

/// How long `file` has been idle, or `None` while its owner holds it
/// (or when its modification time is in the future).
fn idle(file: &File) -> std::io::Result<Option<Duration>> {
    match file.try_lock() {
        Ok(()) => {
            let modified = file.metadata()?.modified()?;
            file.unlock()?;
            Ok(SystemTime::now().duration_since(modified).ok())
        }
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// The restore temporary files in `dir`, as leftovers named by path, for
/// the target beside them.
pub(crate) fn restore_temps(dir: &Path) -> std::io::Result<Vec<Candidate>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(target) = name.to_str().and_then(restore_temp_target) else {
            continue;
        };
        let path = entry.path();
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if !file.metadata()?.is_file() {
            continue;
        }
        found.push(Candidate::Marked(Leftover::new(
            path.display().to_string(),
            Some(dir.join(target).display().to_string()),
            idle(&file)?,
        )));
    }
    found.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    Ok(found)
}

/// Removes the leftover file at `path` (and its side files) unless a live
/// process holds it.
pub(crate) fn remove_leftover(path: &Path) -> Removal {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Removal::Vanished,
        Err(e) => return Removal::Refused(format!("cannot open it: {e}")),
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Removal::Refused("a running restore holds it".into());
        }
        Err(TryLockError::Error(e)) => return Removal::Refused(format!("cannot lock it: {e}")),
    }
    // Held while removing: a restore cannot take it over meanwhile.
    match remove_with_side_files(path) {
        Ok(()) => Removal::Removed,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Removal::Vanished,
        Err(e) => Removal::Refused(format!("cannot remove it: {e}")),
    }
}

/// Removes the temporary files in `dir` of restores into `target` that
/// died, idle for `grace` or more; returns their paths.
pub(crate) fn clear_restores_of(dir: &Path, target: &Path, grace: Duration) -> Vec<String> {
    let Ok(found) = restore_temps(dir) else {
        return Vec::new();
    };
    let target = target.display().to_string();
    let mut removed = Vec::new();
    for leftover in Candidate::marked(found) {
        let stale = leftover.idle.is_some_and(|idle| idle >= grace);
        if stale
            && leftover.target.as_deref() == Some(target.as_str())
            && remove_leftover(Path::new(&leftover.name)) == Removal::Removed
        {
            tracing::warn!(leftover = %leftover.name, %target, "removed what an interrupted restore left");
            removed.push(leftover.name);
        }
    }
    removed
}

/// Removes the spools in `dir` whose snapshot died: unlocked and idle for
/// `grace` or more. Returns how many were removed; errors only log (a
/// snapshot does not fail over another one's leftovers).
pub(crate) fn sweep_spools(dir: &Path, grace: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_str().is_some_and(is_spool) {
            continue;
        }
        let path = entry.path();
        let Ok(file) = File::open(&path) else {
            continue;
        };
        let stale = idle(&file).ok().flatten().is_some_and(|idle| idle >= grace);
        if stale && matches!(remove_leftover(&path), Removal::Removed) {
            tracing::warn!(spool = %path.display(), "removed the spool of a snapshot that died");
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_crates_names_are_recognised() {
        assert_eq!(
            restore_temp_target(".app.db.restore-0a1b2c3d.tmp"),
            Some("app.db")
        );
        assert_eq!(
            restore_temp_target(".a.restore-x.restore-0a1b2c3d.tmp"),
            Some("a.restore-x")
        );
        for other in [
            "app.db.restore-0a1b2c3d.tmp",
            ".app.db.restore-0a1b2c3.tmp",
            ".app.db.restore-0A1B2C3D.tmp",
            ".app.db.restore-0a1b2c3g.tmp",
            "..restore-0a1b2c3d.tmp",
            ".app.db.restore-0a1b2c3d.tmp-journal",
        ] {
            assert_eq!(restore_temp_target(other), None, "{other}");
        }
        assert!(is_spool(".backup-sqlite-abc123.spool"));
        assert!(!is_spool(".backup-sqlite-abc123.spool-journal"));
        assert!(!is_spool(".backup-sqlite-.spool"));
    }

    #[test]
    fn a_locked_file_is_live_and_an_unlocked_one_is_removed_with_its_side_files() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join(".app.db.restore-0000abcd.tmp");
        let held = File::create(&temp).unwrap();
        std::fs::write(with_suffix(&temp, "-journal"), b"j").unwrap();
        mark_in_use(&held).unwrap();

        let found = restore_temps(dir.path()).unwrap();
        let [Candidate::Marked(leftover)] = found.as_slice() else {
            panic!("one leftover: {found:?}");
        };
        assert_eq!(leftover.idle, None, "held: alive");
        assert_eq!(
            leftover.target.as_deref(),
            Some(dir.path().join("app.db").to_str().unwrap())
        );
        assert!(matches!(remove_leftover(&temp), Removal::Refused(_)));
        assert!(temp.exists());

        drop(held);
        let found = restore_temps(dir.path()).unwrap();
        let [Candidate::Marked(leftover)] = found.as_slice() else {
            panic!("one leftover: {found:?}");
        };
        assert!(leftover.idle.is_some(), "released: idle time known");
        assert_eq!(remove_leftover(&temp), Removal::Removed);
        assert_eq!(remove_leftover(&temp), Removal::Vanished);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_restore_clears_only_its_own_targets_stale_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        let make = |name: &str, modified: SystemTime| {
            let path = dir.path().join(name);
            File::create(&path).unwrap().set_modified(modified).unwrap();
            path
        };
        let stale = make(".app.db.restore-0000aaaa.tmp", hour_ago);
        let fresh = make(".app.db.restore-0000bbbb.tmp", SystemTime::now());
        let other = make(".other.db.restore-0000cccc.tmp", hour_ago);
        let removed = clear_restores_of(
            dir.path(),
            &dir.path().join("app.db"),
            DEFAULT_LEFTOVER_GRACE,
        );
        assert_eq!(removed, vec![stale.display().to_string()]);
        assert!(!stale.exists() && fresh.exists() && other.exists());
    }

    #[test]
    fn a_spool_sweep_spares_live_and_recent_spools() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join(".backup-sqlite-live01.spool");
        let dead = dir.path().join(".backup-sqlite-dead01.spool");
        let other = dir.path().join("someone-elses.spool");
        let held = File::create(&live).unwrap();
        mark_in_use(&held).unwrap();
        std::fs::write(&dead, b"x").unwrap();
        std::fs::write(with_suffix(&dead, "-journal"), b"j").unwrap();
        std::fs::write(&other, b"x").unwrap();

        assert_eq!(sweep_spools(dir.path(), Duration::from_secs(3600)), 0);
        assert!(dead.exists(), "within the grace");
        assert_eq!(sweep_spools(dir.path(), Duration::ZERO), 1);
        assert!(!dead.exists() && !with_suffix(&dead, "-journal").exists());
        assert!(live.exists() && other.exists());
    }
}
