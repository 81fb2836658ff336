//! MySQL and MariaDB databases in backupd: `host`, `port`,
//! `database_name` and the credential variables become a
//! [`MysqlConnection`]; the password reaches the client tools only
//! through their in-memory option file, never argv or environment.

use std::sync::Arc;

use backup_core::{DumpSource, Error, RestoreTarget, Result};
use backup_mysql::{MysqlConnection, MysqlDrill, MysqlSource, MysqlTarget};

use super::config::DatabaseConfig;

fn connection(db: &DatabaseConfig) -> Result<MysqlConnection> {
    let Some(user) = &db.username else {
        return Err(Error::Config(format!(
            "database {}: a MySQL entry needs a user name (username_var); backupd does not guess one",
            db.id
        )));
    };
    let mut conn = MysqlConnection::new(db.host.clone(), db.port, user.clone(), &db.database_name);
    if let Some(password) = &db.password {
        conn = conn.with_password(password.clone());
    }
    Ok(conn)
}

/// The dump source of a MySQL entry.
pub fn source(db: &DatabaseConfig) -> Result<Arc<dyn DumpSource>> {
    Ok(Arc::new(MysqlSource::new(connection(db)?)))
}

/// The restore target of a MySQL entry.
pub fn target(db: &DatabaseConfig) -> Result<Arc<dyn RestoreTarget>> {
    Ok(Arc::new(MysqlTarget::new(connection(db)?)))
}

/// The drill target of a MySQL entry: scratch databases on the entry's
/// own server, made and dropped with the entry's credentials (the
/// account needs `CREATE` and `DROP` on `_backup_drill_%`).
pub fn drill(db: &DatabaseConfig) -> Result<Arc<dyn backup_core::drill::DrillTarget>> {
    Ok(Arc::new(MysqlDrill::new(connection(db)?)))
}
