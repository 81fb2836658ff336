//! Leftovers of interrupted restores (staging databases a killed restore
//! left on a registered database's server): removed at start once idle
//! for longer than the engine's grace, and reported in `/status` until a
//! later start (or the next restore of that database) removes them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backup_core::{RestoreTarget, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::DatabaseConfig;
use crate::engine::Engine as DbEngine;

/// The scan results by database id.
#[derive(Debug, Default)]
pub struct Leftovers(Mutex<BTreeMap<String, LeftoverStatus>>);

impl Leftovers {
    /// The scan results of the databases in `visible`.
    pub fn visible(&self, visible: &[String]) -> BTreeMap<String, LeftoverStatus> {
        self.0
            .lock()
            .expect("leftovers lock")
            .iter()
            .filter(|(id, _)| visible.contains(id))
            .map(|(id, s)| (id.clone(), s.clone()))
            .collect()
    }

    fn record(&self, id: &str, status: LeftoverStatus) {
        self.0
            .lock()
            .expect("leftovers lock")
            .insert(id.to_string(), status);
    }
}

/// What the start-up scan found for one registered database.
#[derive(Debug, Clone, Serialize)]
pub struct LeftoverStatus {
    /// When the scan ran.
    pub checked_at: DateTime<Utc>,
    /// Staging databases of this database's interrupted restores that were
    /// removed.
    pub removed: Vec<String>,
    /// Staging databases of this database still there: idle for less than
    /// the grace (a restore may still be running) or not removable (the
    /// reason follows the name).
    pub remaining: Vec<String>,
    /// Why the server could not be scanned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How long a staging database must have been idle before it is removed.
fn grace(db: &DatabaseConfig) -> Duration {
    match db.engine {
        DbEngine::Postgres => backup_postgres::DEFAULT_STAGING_GRACE,
        DbEngine::Mongodb => backup_mongo::DEFAULT_STAGING_GRACE,
        DbEngine::Mysql => backup_mysql::DEFAULT_STAGING_GRACE,
        DbEngine::Sqlite => backup_sqlite::DEFAULT_LEFTOVER_GRACE,
    }
}

/// Scans one database's server, removes what is old enough, and keeps
/// only what concerns this database (another entry's, possibly another
/// tenant's, leftovers are reported under that entry).
async fn scan(db: &DatabaseConfig, target: Result<Arc<dyn RestoreTarget>>) -> LeftoverStatus {
    let mut status = LeftoverStatus {
        checked_at: Utc::now(),
        removed: Vec::new(),
        remaining: Vec::new(),
        error: None,
    };
    let ours = |target: &Option<String>| target.as_deref() == Some(db.database_name.as_str());
    let report = match target {
        Ok(target) => target.remove_leftovers(grace(db)).await,
        Err(e) => Err(e),
    };
    match report {
        Ok(report) => {
            for l in report.removed.iter().filter(|l| ours(&l.target)) {
                tracing::warn!(database = %db.id, staging = %l.name, "removed the staging database of an interrupted restore");
                status.removed.push(l.name.clone());
            }
            for l in report.too_recent.iter().filter(|l| ours(&l.target)) {
                status
                    .remaining
                    .push(format!("{} (idle for less than the grace)", l.name));
            }
            for (l, why) in report.not_removed.iter().filter(|(l, _)| ours(&l.target)) {
                status.remaining.push(format!("{} ({why})", l.name));
            }
        }
        Err(e) => {
            tracing::warn!(database = %db.id, error = %e, "could not look for leftovers of interrupted restores");
            status.error = Some(e.to_string());
        }
    }
    status
}

/// Scans the servers of `databases` (each with its restore target, or why
/// there is none) in the background; results appear in `into` as they
/// come.
pub fn spawn_startup_scan(
    databases: Vec<(DatabaseConfig, Result<Arc<dyn RestoreTarget>>)>,
    into: Arc<Leftovers>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for (db, target) in databases {
            let status = scan(&db, target).await;
            into.record(&db.id, status);
        }
    })
}

/// Drops the scratch databases (directories) of restore drills killed
/// before this start, on the drill server of each entry with a `drill:`
/// schedule: at once for those already silent for
/// [`DEFAULT_DRILL_GRACE`](backup_core::drill::DEFAULT_DRILL_GRACE), and
/// once more when the grace has passed (a drill killed with the previous
/// process refreshed its mark until then), instead of leaving a full copy
/// of the data until the entry's next drill.
pub fn spawn_drill_sweeps(
    targets: Vec<(String, Arc<dyn backup_core::drill::DrillTarget>)>,
) -> tokio::task::JoinHandle<()> {
    use backup_core::drill::{DEFAULT_DRILL_GRACE, DRILL_HEARTBEAT};
    tokio::spawn(async move {
        sweep_drills(&targets).await;
        tokio::time::sleep(DEFAULT_DRILL_GRACE + DRILL_HEARTBEAT).await;
        sweep_drills(&targets).await;
    })
}

async fn sweep_drills(targets: &[(String, Arc<dyn backup_core::drill::DrillTarget>)]) {
    for (id, target) in targets {
        match target
            .remove_leftovers(backup_core::drill::DEFAULT_DRILL_GRACE)
            .await
        {
            Ok(report) => {
                for l in &report.removed {
                    tracing::warn!(database = %id, scratch = %l.name, "removed the scratch of a killed restore drill");
                }
            }
            Err(e) => {
                tracing::warn!(database = %id, error = %e, "could not look for scratches of killed restore drills")
            }
        }
    }
}
