//! MongoDB databases in backupd: `host`, `port`, `database_name` and the
//! credential variables become a [`MongoConnection`]; the password is
//! attached as a secret, never written into the connection string.

use std::sync::Arc;

use backup_core::drill::DrillTarget;
use backup_core::{DumpSource, RestoreTarget, Result};
use backup_mongo::{MongoConnection, MongoDrill, MongoSource, MongoTarget};

use super::config::DatabaseConfig;

fn connection(db: &DatabaseConfig) -> Result<MongoConnection> {
    // Host and database name are pasted into a URI: refuse anything that
    // could add user-info, a path or options to it.
    if db.host.is_empty() || db.host.contains(['@', '/', '?', '#', ',', ' ', '\\']) {
        return Err(backup_core::Error::Config(format!(
            "database {}: invalid MongoDB host {:?}",
            db.id, db.host
        )));
    }
    if db.database_name.is_empty()
        || db
            .database_name
            .contains(['/', '\\', '.', ' ', '"', '$', '?', '#', '@', '\0'])
    {
        return Err(backup_core::Error::Config(format!(
            "database {}: invalid MongoDB database name {:?}",
            db.id, db.database_name
        )));
    }
    if db.password.is_some() && db.username.is_none() {
        return Err(backup_core::Error::Config(format!(
            "database {}: a MongoDB password needs a user name",
            db.id
        )));
    }
    let host = if db.host.contains(':') && !db.host.starts_with('[') {
        format!("[{}]", db.host)
    } else {
        db.host.clone()
    };
    let uri = format!("mongodb://{host}:{}/{}", db.port, db.database_name);
    let mut conn = MongoConnection::from_uri(&uri)?.with_database(&db.database_name);
    if let (Some(user), Some(password)) = (&db.username, &db.password) {
        conn = conn.with_credentials(user.clone(), password.clone());
    }
    Ok(conn)
}

/// The dump source of a MongoDB entry.
pub fn source(db: &DatabaseConfig) -> Result<Arc<dyn DumpSource>> {
    Ok(Arc::new(MongoSource::new(connection(db)?)))
}

/// The restore target of a MongoDB entry.
pub fn target(db: &DatabaseConfig) -> Result<Arc<dyn RestoreTarget>> {
    Ok(Arc::new(MongoTarget::new(connection(db)?)))
}

/// The drill target of a MongoDB entry: scratch databases on its own
/// deployment, with its credentials (the user must be allowed to create
/// and drop databases).
pub fn drill(db: &DatabaseConfig) -> Result<Arc<dyn DrillTarget>> {
    Ok(Arc::new(MongoDrill::new(connection(db)?)))
}
