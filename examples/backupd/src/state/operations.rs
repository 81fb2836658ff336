//! The job table (`GET /api/v1/jobs`): operations the API started
//! (backups, restores, drills, packages) and the runs the scheduler
//! started (backups and drills), each with its progress. The table
//! bounds itself: past 10 000 jobs, the oldest finished ones are
//! forgotten.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use backup_core::manifest::new_backup_id;
use chrono::{DateTime, Utc};
use serde::Serialize;

use async_trait::async_trait;
use backup_core::scheduler::{DrillJob, Job, JobOutcome, Trigger};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::progress::{self, JobProgress, Work};
use crate::error::ApiError;

/// What every job id starts with (`job-20250101T000000Z-1a2b3c4d`): never
/// taken for a backup id, nor a backup id for a job's.
pub const JOB_PREFIX: &str = "job-";

/// Jobs kept before the oldest finished ones are forgotten.
const MAX_JOBS: usize = 10_000;
/// How many finished jobs one clean-up forgets.
const FORGET_AT_ONCE: usize = 1000;

/// A job the API started.
pub const BY_API: &str = "api";
/// A run of the scheduler (a `schedule:`, `incremental:` or `drill:`
/// trigger, or its catch-up at start); a run the scheduler was asked for
/// outside the API is `manual`.
pub const BY_SCHEDULE: &str = "scheduled";

/// State of an asynchronous operation: started through the API, or a
/// scheduled run.
#[derive(Debug, Clone, Serialize)]
pub struct Operation {
    /// Operation id.
    pub id: String,
    /// `backup`, `restore`, `drill` or `package`.
    pub kind: String,
    /// Tenant it belongs to (`None`: started by a token without a tenant,
    /// possibly spanning tenants; visible to such tokens only).
    pub tenant: Option<String>,
    /// The database entry it works on, when one.
    pub source: Option<String>,
    /// Who started it: `api`, `scheduled` ([`BY_SCHEDULE`]) or `manual`.
    pub trigger: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// What it produced (backup id, restore report...).
    pub result: Option<serde_json::Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// The error's code (`upstream_auth_failed`, ...), as the API would
    /// answer it.
    pub error_code: Option<String>,
    /// Bytes read and stored, elapsed time and rate ([`progress`]).
    #[serde(serialize_with = "progress::serialize_shared")]
    pub progress: Arc<JobProgress>,
}

/// What a job is, before it starts.
#[derive(Debug, Clone, Copy)]
pub struct JobInfo<'a> {
    /// `backup`, `restore`, `drill` or `package`.
    pub kind: &'a str,
    /// Its tenant (`None`: visible to tenant-less tokens only).
    pub tenant: Option<&'a str>,
    /// The database entry it works on.
    pub source: Option<&'a str>,
    /// [`BY_API`], [`BY_SCHEDULE`] or `manual`.
    pub trigger: &'a str,
}

/// The job table, shared (cloning it shares it).
#[derive(Debug, Clone, Default)]
pub struct JobTable {
    jobs: Arc<Mutex<HashMap<String, Operation>>>,
}

impl JobTable {
    /// Lists a running job; returns its id. End it with
    /// [`JobTable::end`].
    pub fn begin(&self, info: JobInfo<'_>, progress: Arc<JobProgress>) -> String {
        let mut ops = self.jobs.lock().expect("jobs lock");
        // Ids are a second and 32 random bits: two jobs of one second can
        // draw the same, and the second must not replace the first.
        let id = loop {
            let id = format!("{JOB_PREFIX}{}", new_backup_id(Utc::now()));
            if !ops.contains_key(&id) {
                break id;
            }
        };
        let op = Operation {
            id: id.clone(),
            kind: info.kind.to_string(),
            tenant: info.tenant.map(str::to_string),
            source: info.source.map(str::to_string),
            trigger: info.trigger.to_string(),
            status: "running".into(),
            started_at: Utc::now(),
            finished_at: None,
            result: None,
            error: None,
            error_code: None,
            progress,
        };
        // Keep the table bounded: forget the oldest finished ones.
        if ops.len() >= MAX_JOBS {
            let mut finished: Vec<(DateTime<Utc>, String)> = ops
                .values()
                .filter(|o| o.finished_at.is_some())
                .map(|o| (o.started_at, o.id.clone()))
                .collect();
            finished.sort();
            for (_, old) in finished.into_iter().take(FORGET_AT_ONCE) {
                ops.remove(&old);
            }
        }
        ops.insert(id.clone(), op);
        id
    }

    /// Records the outcome of job `id`.
    pub fn end(&self, id: &str, outcome: Result<serde_json::Value, ApiError>) {
        let mut ops = self.jobs.lock().expect("jobs lock");
        if let Some(op) = ops.get_mut(id) {
            op.finished_at = Some(Utc::now());
            op.progress.end();
            match outcome {
                Ok(v) => {
                    op.status = "succeeded".into();
                    op.result = Some(v);
                }
                Err(e) => {
                    op.status = "failed".into();
                    op.error = Some(e.message);
                    op.error_code = Some(e.code.to_string());
                }
            }
        }
    }

    /// Job `id`, if `tenant` (`None`: any) may see it.
    pub fn get(&self, id: &str, tenant: Option<&str>) -> Option<Operation> {
        self.jobs
            .lock()
            .expect("jobs lock")
            .get(id)
            .filter(|o| tenant.is_none() || o.tenant.as_deref() == tenant)
            .cloned()
    }

    /// The jobs `tenant` sees (`None`: all), in no order.
    pub fn visible_to(&self, tenant: Option<&str>) -> Vec<Operation> {
        self.jobs
            .lock()
            .expect("jobs lock")
            .values()
            .filter(|o| tenant.is_none() || o.tenant.as_deref() == tenant)
            .cloned()
            .collect()
    }

    /// Starts a job whose `work` runs in the background on `tracker` (so
    /// a draining shutdown waits for it) and returns its id; its outcome
    /// is recorded, its progress read from `progress`.
    pub fn start<F>(
        &self,
        tracker: &TaskTracker,
        info: JobInfo<'_>,
        progress: Arc<JobProgress>,
        work: F,
    ) -> String
    where
        F: std::future::Future<Output = Result<serde_json::Value, ApiError>> + Send + 'static,
    {
        let id = self.begin(info, progress);
        let table = self.clone();
        let job = id.clone();
        tracker.spawn(async move {
            let outcome = work.await;
            table.end(&job, outcome);
        });
        id
    }

    /// Runs `work` (a scheduler's run of `info`) listed as a job with
    /// `progress`, and passes its outcome on.
    pub async fn tracked_run<T, F>(
        &self,
        info: JobInfo<'_>,
        progress: Arc<JobProgress>,
        work: F,
    ) -> backup_core::Result<T>
    where
        F: std::future::Future<Output = backup_core::Result<T>>,
        T: Serialize,
    {
        let id = self.begin(info, progress);
        let outcome = work.await;
        self.end(
            &id,
            match &outcome {
                Ok(v) => Ok(serde_json::to_value(v).unwrap_or(serde_json::Value::Null)),
                Err(e) => {
                    let (status, code) = crate::error::status_and_code(e);
                    Err(ApiError::new(status, code, e.to_string()))
                }
            },
        );
        outcome
    }
}

/// A scheduled restore drill ([`DrillJob`]) listed as a job, its store
/// reads counted: a failed drill is a failed job.
#[derive(Debug)]
pub struct TrackedDrill {
    /// Where it is listed.
    pub jobs: JobTable,
    /// The drill itself.
    pub inner: DrillJob,
}

#[async_trait]
impl Job for TrackedDrill {
    async fn run(
        &self,
        trigger: &Trigger,
        cancel: CancellationToken,
    ) -> backup_core::Result<JobOutcome> {
        let progress = Arc::new(JobProgress::new(Work::Read));
        let drill = DrillJob {
            engine: self.inner.engine.metered(progress.meter()),
            ..self.inner.clone()
        };
        let info = JobInfo {
            kind: "drill",
            tenant: Some(&self.inner.tenant),
            source: Some(&self.inner.source_id),
            trigger: trigger.kind.as_str(),
        };
        self.jobs
            .tracked_run(info, progress, drill.run(trigger, cancel))
            .await
    }
}

/// Hands the counters of an API-started backup to the run the scheduler
/// makes of it (`run_now`), which reports into them instead of listing a
/// job of its own.
#[derive(Debug, Default)]
pub struct ManualRuns {
    /// One API-started run per scheduler job at a time, so each run takes
    /// the counters of the request that started it.
    order: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The counters waiting for the run, by scheduler job id.
    handed: Mutex<HashMap<String, Arc<JobProgress>>>,
}

impl ManualRuns {
    /// Runs `run` (which makes the scheduler run job `job_id` now) with
    /// `progress` handed to that run ([`ManualRuns::take`]).
    pub async fn run<T>(
        &self,
        job_id: &str,
        progress: Arc<JobProgress>,
        run: impl std::future::Future<Output = T>,
    ) -> T {
        let turn = Arc::clone(
            self.order
                .lock()
                .expect("manual runs lock")
                .entry(job_id.to_string())
                .or_default(),
        );
        let _turn = turn.lock().await;
        self.handed
            .lock()
            .expect("manual runs lock")
            .insert(job_id.to_string(), progress);
        // Withdrawn however this ends (also when the request is dropped).
        let _withdraw = Withdraw { runs: self, job_id };
        run.await
    }

    /// The counters an API request handed to the manual run of `job_id`,
    /// if any (taken: a later run without a request lists its own job).
    pub fn take(&self, job_id: &str) -> Option<Arc<JobProgress>> {
        self.handed.lock().expect("manual runs lock").remove(job_id)
    }
}

/// Withdraws the counters [`ManualRuns::run`] handed over, when dropped.
struct Withdraw<'a> {
    runs: &'a ManualRuns,
    job_id: &'a str,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        if let Ok(mut handed) = self.runs.handed.lock() {
            handed.remove(self.job_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_run_takes_the_counters_of_its_request_once() {
        let runs = ManualRuns::default();
        let mine = Arc::new(JobProgress::default());
        let taken = runs
            .run("db", Arc::clone(&mine), async {
                (runs.take("other"), runs.take("db"), runs.take("db"))
            })
            .await;
        assert!(taken.0.is_none());
        assert!(taken.1.is_some_and(|p| Arc::ptr_eq(&p, &mine)));
        assert!(taken.2.is_none(), "taken twice");
        // A request dropped before its run took them withdraws them.
        let pending = runs.run("db", Arc::clone(&mine), std::future::pending::<()>());
        let _ = tokio::time::timeout(std::time::Duration::from_millis(1), pending).await;
        assert!(runs.take("db").is_none());
    }

    #[test]
    fn the_table_forgets_the_oldest_finished_jobs_past_its_bound() {
        let table = JobTable::default();
        let info = JobInfo {
            kind: "backup",
            tenant: Some("a"),
            source: Some("db"),
            trigger: BY_SCHEDULE,
        };
        let first = table.begin(info, Arc::default());
        for _ in 1..MAX_JOBS {
            let id = table.begin(info, Arc::default());
            table.end(&id, Ok(serde_json::Value::Null));
        }
        table.begin(info, Arc::default());
        let kept = table.visible_to(None);
        assert_eq!(kept.len(), MAX_JOBS + 1 - FORGET_AT_ONCE);
        // The running one stays, whatever its age; other tenants see none.
        assert_eq!(table.get(&first, Some("a")).unwrap().status, "running");
        assert!(table.get(&first, Some("b")).is_none());
        assert!(table.visible_to(Some("b")).is_empty());
    }
}
