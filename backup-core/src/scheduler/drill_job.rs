//! [`DrillJob`]: a restore drill of a source's newest backup, as a
//! scheduled job (a `drill` schedule beside the backup schedule).

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::job::{Job, JobOutcome, Trigger};
use crate::drill::DrillTarget;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// Drills the newest backup of `source_id` in `tenant` on `target` at
/// every trigger. A failed drill fails the run (its record, event and
/// metrics are written first); the outcome names the backup drilled.
#[derive(Debug, Clone)]
pub struct DrillJob {
    /// The engine over the store.
    pub engine: Engine,
    /// Where scratch databases are made.
    pub target: Arc<dyn DrillTarget>,
    /// Tenant of the source.
    pub tenant: String,
    /// The source.
    pub source_id: String,
}

#[async_trait]
impl Job for DrillJob {
    async fn run(&self, _trigger: &Trigger, cancel: CancellationToken) -> Result<JobOutcome> {
        let drill = self
            .engine
            .drill_latest(&self.tenant, &self.source_id, self.target.as_ref());
        let record = tokio::select! {
            record = drill => record?,
            _ = cancel.cancelled() => return Err(Error::Cancelled),
        };
        match record.error {
            None => Ok(JobOutcome {
                backup_id: Some(record.backup_id),
            }),
            Some(error) => Err(Error::Restore {
                engine: "drill",
                detail: format!("restore drill of {} failed: {error}", record.backup_id),
            }),
        }
    }
}
