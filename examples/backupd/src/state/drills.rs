//! What a restore drill of a database entry drills on: for a logical
//! PostgreSQL entry, scratch databases on the entry's own server, made
//! and dropped through its maintenance database (`postgres`) with the
//! entry's credentials (the role needs `CREATEDB`); for a SQLite entry,
//! private scratch directories (`.backup-sqlite-drill-*`) beside the
//! entry's file, so on its file system; for a physical PostgreSQL
//! entry, private scratch data directories under its `drill_dir`
//! ([`PhysicalDrill`]); for a MySQL/MariaDB entry,
//! scratch databases on its own server ([`crate::mysql::drill`]); for a
//! MongoDB entry, scratch databases (`_backup_drill_<hex>`) on the
//! entry's own deployment.

use std::sync::Arc;

use backup_core::drill::DrillTarget;
use backup_postgres::{PhysicalDrill, PostgresDrill};
use backup_sqlite::SqliteDrill;

use crate::config::{BackupMode, DatabaseConfig};
use crate::engine::Engine as DbEngine;

use super::entries::{pg_connection, pg_tools};

/// The maintenance database scratch databases are created from.
pub const DRILL_MAINTENANCE_DB: &str = "postgres";

/// The drill target of `db`, or why it has none.
pub fn drill_target(db: &DatabaseConfig) -> Result<Arc<dyn DrillTarget>, String> {
    match (db.engine, db.mode) {
        (DbEngine::Postgres, BackupMode::Logical) => Ok(Arc::new(
            PostgresDrill::new(pg_connection(db, DRILL_MAINTENANCE_DB)).with_tools(pg_tools(db)),
        )),
        (DbEngine::Postgres, BackupMode::Physical) => {
            let dir = db.drill_dir.as_ref().ok_or_else(|| {
                format!(
                    "database {}: a physical entry drills under its drill_dir, which it does not name",
                    db.id
                )
            })?;
            let drill = PhysicalDrill::new(dir).with_tools(pg_tools(db));
            Ok(Arc::new(match &db.drill_user {
                Some(user) => drill.user(user),
                None => drill,
            }))
        }
        (DbEngine::Sqlite, _) => Ok(Arc::new(SqliteDrill::new(&db.host))),
        (DbEngine::Mysql, _) => crate::mysql::drill(db).map_err(|e| e.to_string()),
        (DbEngine::Mongodb, _) => crate::mongo::drill(db).map_err(|e| e.to_string()),
    }
}

/// Adds (or replaces) the scheduler job of `db`'s `drill:` schedule, or
/// removes it when the entry has none.
pub(super) fn schedule(
    app: &std::sync::Arc<super::App>,
    db: &DatabaseConfig,
) -> backup_core::Result<()> {
    let Some(when) = &db.drill else {
        app.scheduler.remove(&db.drill_job_id());
        return Ok(());
    };
    let target = drill_target(db).map_err(backup_core::Error::Config)?;
    let job = backup_core::scheduler::DrillJob {
        engine: app.engine.clone(),
        target,
        tenant: db.tenant.clone(),
        source_id: db.id.clone(),
    };
    // No catch-up at start: a drill missed while down waits for its next
    // trigger.
    let job = super::operations::TrackedDrill {
        jobs: app.operations.clone(),
        inner: job,
    };
    app.scheduler.upsert(
        backup_core::JobSpec::new(db.drill_job_id(), when.clone(), Arc::new(job))
            .last_run(Some(chrono::Utc::now())),
    )?;
    Ok(())
}

/// Adds `last_verified_at` (the newest passed drill, or null) to each
/// source of `/status` (`sources`, the JSON of the catalog's health), and
/// turns a `healthy` source `unverified` when its entry has a
/// `verify_max_age` and no drill passed within it.
pub async fn annotate(
    app: &super::App,
    sources: &mut serde_json::Value,
) -> backup_core::Result<()> {
    let Some(items) = sources.as_array_mut() else {
        return Ok(());
    };
    let now = chrono::Utc::now();
    for item in items {
        let (Some(tenant), Some(source)) = (
            item["tenant"].as_str().map(str::to_string),
            item["source_id"].as_str().map(str::to_string),
        ) else {
            continue;
        };
        let last = app
            .engine
            .drill_records(&tenant, Some(&source))
            .await?
            .into_iter()
            .find(backup_core::drill::DrillRecord::passed)
            .map(|r| r.verified_at);
        item["last_verified_at"] = serde_json::json!(last);
        let max_age = app
            .database(&source, Some(&tenant))
            .and_then(|db| db.verify_max_age)
            .and_then(|age| chrono::Duration::from_std(age).ok());
        if let Some(age) = max_age {
            let fresh = last.is_some_and(|at| now - at <= age);
            if !fresh && item["status"] == "healthy" {
                item["status"] = serde_json::json!("unverified");
            }
        }
    }
    Ok(())
}
