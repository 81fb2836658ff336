//! What the scheduler runs: a [`Job`] with its [`JobSpec`], the [`Trigger`]
//! of each run and what it reports.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::manifest::{BackupKind, BackupType};
use crate::schedule::Schedule;

/// Why a job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// The job's id.
    pub job_id: String,
    /// Manual (`run_now`) or scheduled.
    pub kind: BackupKind,
    /// The schedule time this run stands for (scheduled runs only).
    pub scheduled_for: Option<DateTime<Utc>>,
    /// What to store, when the caller of a manual run asked for a type
    /// (`None`: the job's own setting).
    pub backup_type: Option<BackupType>,
}

/// What a finished run reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOutcome {
    /// Id of the backup the run committed, if any.
    pub backup_id: Option<String>,
}

/// The work a scheduled job does (usually a [`BackupJob`](crate::BackupJob)).
#[async_trait]
pub trait Job: fmt::Debug + Send + Sync + 'static {
    /// Runs once. `cancel` fires on a cancelling shutdown; the job must then
    /// stop cleanly (nothing half-committed) and return an error.
    async fn run(&self, trigger: &Trigger, cancel: CancellationToken) -> Result<JobOutcome>;

    /// When this job last ran, as recorded somewhere that outlives the
    /// process (a [`BackupJob`](crate::BackupJob) reads its source's
    /// [`RunRecord`](crate::catalog::RunRecord) in the store): the schedule time a
    /// scheduled run stood for, or when a manual run started.
    ///
    /// The scheduler asks before catching up a missed trigger of a job
    /// registered without [`JobSpec::last_run`], and skips the catch-up
    /// (an [`Event::Skipped`](crate::events::Event::Skipped)) when the trigger already ran: a host that
    /// registers its jobs at every start does not back up at every start.
    /// The default knows nothing (`Ok(None)`), so such jobs always catch up.
    async fn last_run(&self) -> Result<Option<DateTime<Utc>>> {
        Ok(None)
    }
}

/// What to do about triggers that passed while the process was down or too
/// busy to fire them on time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MisfirePolicy {
    /// Run once as soon as possible, however many triggers were missed.
    #[default]
    RunOnce,
    /// Do not catch up; record the skip and wait for the next trigger.
    Skip,
}

/// A job as registered with the scheduler.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// Unique id (letters, digits, `-`, `_`, `.`).
    pub id: String,
    /// When it runs.
    pub schedule: Schedule,
    /// What it does.
    pub job: Arc<dyn Job>,
    /// Missed-trigger handling.
    pub misfire: MisfirePolicy,
    /// When it last ran on a schedule, as the host knows it (for example
    /// the newest scheduled backup in the catalog). With
    /// [`MisfirePolicy::RunOnce`], a job whose last run is older than its
    /// latest trigger runs once right after being added. When `None`, the
    /// scheduler asks the job itself ([`Job::last_run`]) before that
    /// catch-up, so a trigger that ran before a restart is not run again.
    pub last_run: Option<DateTime<Utc>>,
}

impl JobSpec {
    /// A job with the default misfire policy and no run history.
    pub fn new(id: impl Into<String>, schedule: Schedule, job: Arc<dyn Job>) -> Self {
        JobSpec {
            id: id.into(),
            schedule,
            job,
            misfire: MisfirePolicy::default(),
            last_run: None,
        }
    }

    /// Sets the misfire policy.
    pub fn misfire(mut self, policy: MisfirePolicy) -> Self {
        self.misfire = policy;
        self
    }

    /// Sets the last known scheduled run.
    pub fn last_run(mut self, at: Option<DateTime<Utc>>) -> Self {
        self.last_run = at;
        self
    }
}

/// The state of a job, for status pages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    /// Job id.
    pub id: String,
    /// Its schedule.
    pub schedule: String,
    /// Next scheduled run, if any.
    pub next_run: Option<DateTime<Utc>>,
    /// Whether a run is in progress.
    pub running: bool,
    /// When the last run (of any kind) finished.
    pub last_finished: Option<DateTime<Utc>>,
    /// Its error, if it failed.
    pub last_error: Option<String>,
}

/// The job's last run if it covers `trigger` (it ran for this schedule
/// time or later). A job that cannot tell is caught up: a redundant backup
/// is better than a missing one.
pub(super) async fn already_ran(job: &dyn Job, trigger: &Trigger) -> Option<DateTime<Utc>> {
    let due = trigger.scheduled_for?;
    match job.last_run().await {
        Ok(Some(last)) if last >= due => Some(last),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(job = %trigger.job_id, error = %e, "could not read the job's last run; catching up");
            None
        }
    }
}
