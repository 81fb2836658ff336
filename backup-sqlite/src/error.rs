//! Mapping SQLite's errors into [`backup_core::Error`].

use std::path::Path;

use backup_core::Error;
/// Which side of the adapter failed (shared with every engine).
pub(crate) use backup_core::Side;
use rusqlite::ErrorCode;

/// Maps `err`, raised while `context` on the database at `path`, into
/// [`Error::Dump`] or [`Error::Restore`] with a word on what SQLite's
/// code means where it is not obvious.
pub(crate) fn sqlite_error(side: Side, context: &str, path: &Path, err: &rusqlite::Error) -> Error {
    let hint = match err.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => " (the file is not a SQLite database)",
        Some(ErrorCode::DatabaseCorrupt) => " (the database file is corrupt)",
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
            " (another connection holds a lock on it)"
        }
        Some(ErrorCode::CannotOpen) => " (the file or its directory cannot be opened)",
        Some(ErrorCode::ReadOnly) => {
            " (a WAL-mode database needs its -shm file, or a writable directory to create it)"
        }
        Some(ErrorCode::PermissionDenied) => " (permission denied)",
        Some(ErrorCode::DiskFull) => " (the disk is full)",
        _ => "",
    };
    side.error(
        "sqlite",
        format!("{context} {}: {err}{hint}", path.display()),
    )
}
