//! MongoDB databases in backupd.

use std::sync::Arc;

use backup_core::{DumpSource, Error, RestoreTarget, Result};

use super::config::DatabaseConfig;

/// The dump source of a MongoDB entry.
pub fn source(db: &DatabaseConfig) -> Result<Arc<dyn DumpSource>> {
    Err(unsupported(db))
}

/// The restore target of a MongoDB entry.
pub fn target(db: &DatabaseConfig) -> Result<Arc<dyn RestoreTarget>> {
    Err(unsupported(db))
}

fn unsupported(db: &DatabaseConfig) -> Error {
    Error::Unsupported {
        store: format!("database {}", db.id),
        operation: "mongodb in this build of backupd",
    }
}
