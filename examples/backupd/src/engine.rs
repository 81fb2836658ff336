//! The database engines backupd drives.

use serde::{Deserialize, Serialize};

/// Supported engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// PostgreSQL via pg_dump/pg_restore.
    Postgres,
    /// MongoDB via the native driver.
    Mongodb,
    /// MySQL or MariaDB via `mariadb-dump`/`mysqldump` and the client.
    Mysql,
    /// A SQLite database file, through SQLite's online backup API.
    Sqlite,
}
