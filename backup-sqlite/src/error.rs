//! Mapping SQLite's errors into [`backup_core::Error`].

use std::path::Path;

use backup_core::Error;
use rusqlite::ErrorCode;

/// Which side of the adapter failed, for the error variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Dump,
    Restore,
}

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
    let detail = format!("{context} {}: {err}{hint}", path.display());
    match side {
        Side::Dump => Error::Dump {
            engine: "sqlite",
            detail,
        },
        Side::Restore => Error::Restore {
            engine: "sqlite",
            detail,
        },
    }
}
