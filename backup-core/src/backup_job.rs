//! [`BackupJob`]: the scheduler [`Job`] that backs a source up and applies
//! its retention.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::catalog::{Filter, RunRecord};
use crate::engine::{BackupRequest, Engine};
use crate::error::Result;
use crate::manifest::BackupKind;
use crate::retention::{PlanOptions, RetentionPolicy};
use crate::scheduler::{Job, JobOutcome, Trigger};
use crate::source::DumpSource;

/// Backs up one source with an [`Engine`]; after each successful
/// *scheduled* run, prunes that source with its retention policies (manual
/// backups are kept; see [`plan`](crate::retention::plan); so is the
/// newest backup with a passed restore drill when
/// [`BackupJob::keep_newest_verified`] is set). A failed prune is logged
/// and does not fail the backup. Each attempt's run record (in the store)
/// tells a restarted scheduler which trigger ran last ([`Job::last_run`]).
#[derive(Debug, Clone)]
pub struct BackupJob {
    /// The engine (store, compression, events).
    pub engine: Engine,
    /// What to dump.
    pub source: Arc<dyn DumpSource>,
    /// Tenant, source id, labels; `kind` is set per trigger.
    pub request: BackupRequest,
    /// Retention applied after scheduled runs (none: keep everything).
    pub retention: Vec<Arc<dyn RetentionPolicy>>,
    /// Retention never deletes the newest backup with a passed restore
    /// drill ([`PlanOptions::keep_newest_verified`]; a no-op for sources
    /// never drilled).
    pub keep_newest_verified: bool,
}

#[async_trait]
impl Job for BackupJob {
    async fn run(&self, trigger: &Trigger, cancel: CancellationToken) -> Result<JobOutcome> {
        let mut request = self
            .request
            .clone()
            .kind(trigger.kind)
            .cancel_token(cancel)
            .scheduled_for(match trigger.kind {
                BackupKind::Scheduled => trigger.scheduled_for,
                BackupKind::Manual => None,
            });
        if let Some(t) = trigger.backup_type {
            request = request.backup_type(t);
        }
        if request.created_by.is_none() {
            request.created_by = Some(match trigger.kind {
                BackupKind::Scheduled => "scheduler".into(),
                BackupKind::Manual => "manual".into(),
            });
        }
        let manifest = self.engine.backup(self.source.as_ref(), &request).await?;
        if trigger.kind == BackupKind::Scheduled && !self.retention.is_empty() {
            let policies: Vec<&dyn RetentionPolicy> = self
                .retention
                .iter()
                .map(|p| p.as_ref() as &dyn RetentionPolicy)
                .collect();
            let filter = Filter::tenant(&request.tenant).source(&request.source_id);
            if let Err(e) = self
                .engine
                .prune(
                    &filter,
                    &policies,
                    PlanOptions::default().keep_newest_verified(self.keep_newest_verified),
                    false,
                )
                .await
            {
                tracing::warn!(source = %request.source_id, error = %e, "retention after backup failed");
            }
        }
        Ok(JobOutcome {
            backup_id: Some(manifest.id),
        })
    }

    /// From the source's run record in the store (`last-run.json`): the
    /// trigger the latest scheduled attempt stood for, or when the latest
    /// manual one started. Failed attempts count: a trigger is tried once.
    async fn last_run(&self) -> Result<Option<DateTime<Utc>>> {
        Ok(RunRecord::load(
            self.engine.store().as_ref(),
            &self.request.tenant,
            &self.request.source_id,
        )
        .await?
        .map(|r| r.last_run()))
    }
}
