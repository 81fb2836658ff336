//! Marking a data directory unusable after a failed point-in-time
//! restore ([`mark_unusable`]), so no server is ever started on a copy
//! that did not reach its target as if it were good.

use std::path::{Path, PathBuf};

use backup_core::{Error, Result};

use super::target::RecoveryTarget;

const ENGINE: &str = "postgres";
/// The file that says why a data directory must not be started.
pub const RESTORE_FAILED_FILE: &str = "RESTORE_FAILED";

/// Marks `data_dir` unusable after a point-in-time restore to `target`
/// failed with `cause`, and returns the error saying so:
/// `global/pg_control` renamed to `global/pg_control.restore-failed` (no
/// server starts on it), a [`RESTORE_FAILED_FILE`] saying why, and the
/// staged WAL (`.<name>.pitr/wal`) removed.
///
/// For a caller that restored a base backup into a new directory and
/// then failed before or during recovery (the restore could not go on,
/// whatever the reason): the directory holds the base backup, which would
/// start as a cluster at the backup's end, not at the target. A directory
/// already marked (by [`PointInTimeRestore::run`](super::PointInTimeRestore::run))
/// is left as it is and `cause` returned unchanged.
pub async fn mark_unusable(data_dir: &Path, target: &RecoveryTarget, cause: Error) -> Error {
    if data_dir.join(RESTORE_FAILED_FILE).exists() {
        return cause;
    }
    let cause = match cause {
        Error::Restore { detail, .. } => detail,
        other => other.to_string(),
    };
    if let Ok(work_dir) = work_dir_of(data_dir) {
        remove_dir(&work_dir.join("wal")).await;
    }
    let control = data_dir.join("global").join("pg_control");
    let renamed = std::fs::rename(&control, control.with_extension("restore-failed"));
    let note = format!(
        "Point-in-time restore to {target} failed: {cause}\nDo not start a server on this directory: restore the base backup again.\n"
    );
    let written = std::fs::write(data_dir.join(RESTORE_FAILED_FILE), note);
    let marked = if renamed.is_ok() && written.is_ok() {
        "it is marked unusable (global/pg_control renamed to pg_control.restore-failed, RESTORE_FAILED written)".to_string()
    } else {
        format!(
            "marking it unusable failed ({}): do not start a server on it",
            [renamed.err(), written.err()]
                .into_iter()
                .flatten()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Error::Restore {
        engine: ENGINE,
        detail: format!(
            "point-in-time restore of {} to {target} failed: {cause}; {marked}: restore the base backup again",
            data_dir.display(),
        ),
    }
}

/// `.<name>.pitr` beside `data_dir`.
pub(super) fn work_dir_of(data_dir: &Path) -> Result<PathBuf> {
    let name = data_dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Config(format!("{} has no directory name", data_dir.display())))?;
    let parent = data_dir
        .parent()
        .ok_or_else(|| Error::Config(format!("{} has no parent directory", data_dir.display())))?;
    Ok(parent.join(format!(".{name}.pitr")))
}

pub(super) async fn remove_dir(dir: &Path) {
    let dir = dir.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn marks_once_and_keeps_an_earlier_mark() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        std::fs::create_dir_all(dir.join("global")).unwrap();
        std::fs::write(dir.join("global/pg_control"), b"x").unwrap();
        let target = RecoveryTarget::Latest;
        let err = mark_unusable(&dir, &target, Error::Config("no pg_controldata".into())).await;
        let text = err.to_string();
        assert!(
            text.contains("no pg_controldata") && text.contains("marked unusable"),
            "{text}"
        );
        assert!(dir.join(RESTORE_FAILED_FILE).is_file());
        assert!(dir.join("global/pg_control.restore-failed").is_file());
        assert!(!dir.join("global/pg_control").exists());
        // Marked already: the cause comes back as it is.
        let again = mark_unusable(&dir, &target, Error::Config("second".into())).await;
        assert_eq!(
            again.to_string(),
            Error::Config("second".into()).to_string()
        );
    }
}
