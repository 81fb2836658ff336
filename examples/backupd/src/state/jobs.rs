//! The scheduler jobs backupd registers: a database's guarded backup
//! (and its registration) and the package builder.

use std::sync::Arc;

use async_trait::async_trait;
use backup_core::{
    BackupJob, BackupRequest, Error, Filter, JobSpec, Result, manifest::BackupKind, scheduler::Job,
    scheduler::JobOutcome, scheduler::Trigger,
};
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::App;
use super::entries::{make_source, retention};
use crate::config::DatabaseConfig;

impl App {
    /// Registers or replaces a database and its scheduler job, without the
    /// checks of [`App::register_checked`] (its only caller). The last
    /// scheduled backup in the catalog drives the misfire check. Each run
    /// checks again that no other tenant has the database.
    pub(super) async fn register(self: &Arc<Self>, db: DatabaseConfig) -> Result<()> {
        let source = make_source(&db)?;
        let mut filter = Filter::tenant(&db.tenant).source(&db.id);
        filter.kind = Some(BackupKind::Scheduled);
        let last_run = self
            .engine
            .catalog()
            .list(&filter)
            .await
            .ok()
            .and_then(|l| l.first().map(|m| m.started_at));
        let job = BackupJob {
            engine: self.engine_for(&db),
            source,
            request: BackupRequest::new(&db.id)
                .tenant(&db.tenant)
                .created_by("backupd"),
            retention: retention(&db),
        };
        let guarded = GuardedJob {
            app: Arc::downgrade(self),
            db: db.clone(),
            inner: job,
        };
        self.scheduler.upsert(
            JobSpec::new(&db.id, db.schedule.clone(), Arc::new(guarded))
                .last_run(last_run.or(Some(Utc::now()))),
        )?;
        self.metrics.touch(&db.tenant, &db.id);
        self.wal
            .replace(
                &db,
                self.engine_for(&db),
                &self.events,
                &self.config.wal_spool,
            )
            .await?;
        self.databases
            .write()
            .expect("databases lock")
            .insert(db.id.clone(), db);
        Ok(())
    }
}

/// A database's backup job, preceded on every run by the ownership check:
/// a run never dumps a database that another tenant has registered.
#[derive(Debug)]
pub struct GuardedJob {
    /// The daemon (weak, so the scheduler does not keep it alive).
    pub app: std::sync::Weak<App>,
    /// The entry the job was built from.
    pub db: DatabaseConfig,
    /// The backup itself.
    pub inner: BackupJob,
}

#[async_trait]
impl Job for GuardedJob {
    async fn run(&self, trigger: &Trigger, cancel: CancellationToken) -> Result<JobOutcome> {
        let app = self.app.upgrade().ok_or(Error::Cancelled)?;
        self.db
            .check_database_name()
            .map_err(|e| Error::Config(format!("database {}: {e}", self.db.id)))?;
        app.check_owner(&self.db, Some(&self.db.id))
            .await
            .map_err(|e| Error::Config(e.message))?;
        let result = self.inner.run(trigger, cancel).await;
        // Removed while it ran: the record it just wrote is forgotten too.
        if app.database(&self.db.id, Some(&self.db.tenant)).is_none() {
            app.forget_run_record(&self.db.tenant, &self.db.id).await;
        }
        result
    }
}

/// The scheduler job that builds packages on `package-conf.schedule`.
#[derive(Debug)]
pub struct PackageJob {
    /// The daemon (weak, so the scheduler does not keep it alive).
    pub app: std::sync::Weak<App>,
}

#[async_trait]
impl Job for PackageJob {
    async fn run(&self, trigger: &Trigger, _cancel: CancellationToken) -> Result<JobOutcome> {
        let app = self.app.upgrade().ok_or(Error::Cancelled)?;
        let built = app.build_packages(None, trigger.kind.as_str()).await?;
        Ok(JobOutcome {
            backup_id: built.first().map(|p| p.id.clone()),
        })
    }
}
