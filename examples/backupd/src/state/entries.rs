//! What a database entry of the configuration turns into: its source,
//! restore target, connection and retention policies.

use std::path::PathBuf;
use std::sync::Arc;

use backup_core::{
    DumpSource, Error, RestoreTarget, Result, RetentionPolicy, retention::KeepLast,
    retention::KeepWithin,
};
use backup_postgres::{BaseBackupSource, PgConnection, PgTools, PostgresSource, PostgresTarget};
use backup_sqlite::{SqliteSource, SqliteTarget};

use crate::config::{BackupMode, DatabaseConfig};
use crate::engine::Engine as DbEngine;

/// Builds the source for a database entry.
pub fn make_source(db: &DatabaseConfig) -> Result<Arc<dyn DumpSource>> {
    match db.engine {
        DbEngine::Postgres if db.mode == BackupMode::Physical => {
            Ok(Arc::new(base_backup_source(db)))
        }
        DbEngine::Postgres => Ok(Arc::new(
            PostgresSource::new(pg_connection(db, &db.database_name)).with_tools(pg_tools(db)),
        )),
        DbEngine::Mongodb => crate::mongo::source(db),
        DbEngine::Mysql => crate::mysql::source(db),
        DbEngine::Sqlite => Ok(Arc::new(SqliteSource::new(sqlite_path(db)?))),
    }
}

/// The base backup source of a physical PostgreSQL entry.
pub fn base_backup_source(db: &DatabaseConfig) -> BaseBackupSource {
    BaseBackupSource::new(pg_connection(db, &db.database_name)).with_tools(pg_tools(db))
}

/// Builds the restore target for a database entry.
pub fn make_target(db: &DatabaseConfig) -> Result<Arc<dyn RestoreTarget>> {
    match db.engine {
        DbEngine::Postgres if db.mode == BackupMode::Physical => Err(Error::Config(format!(
            "{} takes physical backups of the whole cluster: restore them into a new data directory with `backupctl restore ID --datadir DIR` (point-in-time: --target-time, --target-name, --target-lsn)",
            db.id
        ))),
        DbEngine::Postgres => Ok(Arc::new(
            PostgresTarget::new(pg_connection(db, &db.database_name)).with_tools(pg_tools(db)),
        )),
        DbEngine::Mongodb => crate::mongo::target(db),
        DbEngine::Mysql => crate::mysql::target(db),
        DbEngine::Sqlite => Ok(Arc::new(SqliteTarget::new(sqlite_path(db)?))),
    }
}

/// A `sqlite` entry's database file.
fn sqlite_path(db: &DatabaseConfig) -> Result<PathBuf> {
    db.path
        .clone()
        .ok_or_else(|| Error::Config(format!("database {}: a sqlite entry needs its path", db.id)))
}

/// What a restore of `db` into `database` (a name the tenancy checks
/// passed) tells its target: the name itself, or for a `sqlite` entry the
/// file of that name beside the entry's file.
pub fn restore_database(db: &DatabaseConfig, database: &str) -> String {
    match db.engine {
        DbEngine::Sqlite => std::path::Path::new(&db.host)
            .join(database)
            .display()
            .to_string(),
        _ => database.to_string(),
    }
}

/// The entry's `pg_bin`, else discovery by the server's major version.
pub fn pg_tools(db: &DatabaseConfig) -> PgTools {
    db.pg_bin
        .clone()
        .map(PgTools::in_dir)
        .unwrap_or_default()
        .configured_by("the database entry's pg_bin")
}

/// The connection of a PostgreSQL entry to `database`.
pub fn pg_connection(db: &DatabaseConfig, database: &str) -> PgConnection {
    let mut conn = PgConnection::new(
        db.host.clone(),
        db.port,
        db.username.clone().unwrap_or_else(|| "postgres".into()),
        database,
    );
    if let Some(p) = &db.password {
        conn = conn.with_password(p.clone());
    }
    if let Some(mode) = &db.sslmode {
        conn = conn.with_sslmode(mode.clone());
    }
    conn
}

/// Retention policies of a database entry.
pub fn retention(db: &DatabaseConfig) -> Vec<Arc<dyn RetentionPolicy>> {
    let mut out: Vec<Arc<dyn RetentionPolicy>> = Vec::new();
    if let Some(n) = db.retention.keep_last {
        out.push(Arc::new(KeepLast(n)));
    }
    if let Some(age) = db.retention.max_age {
        out.push(Arc::new(KeepWithin(age)));
    }
    out
}
