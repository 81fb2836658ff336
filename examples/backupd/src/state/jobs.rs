//! The scheduler jobs backupd registers: a database's guarded backup and
//! the package builder.

use async_trait::async_trait;
use backup_core::{
    BackupJob, Error, Result, scheduler::Job, scheduler::JobOutcome, scheduler::Trigger,
};
use tokio_util::sync::CancellationToken;

use super::App;
use crate::config::{BackupMode, DatabaseConfig};
use crate::tenancy;

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
        if self.db.mode == BackupMode::Logical {
            tenancy::check_database_name(self.db.engine, &self.db.database_name)
                .map_err(|e| Error::Config(format!("database {}: {e}", self.db.id)))?;
        }
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
