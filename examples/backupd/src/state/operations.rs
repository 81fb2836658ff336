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

use super::progress::{self, JobProgress};
use super::{App, JOB_PREFIX};
use crate::error::ApiError;

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

impl App {
    /// Lists a running job in the table; returns its id. End it with
    /// [`App::end_operation`].
    pub fn begin_operation(&self, info: JobInfo<'_>, progress: Arc<JobProgress>) -> String {
        let id = format!("{JOB_PREFIX}{}", new_backup_id(Utc::now()));
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
        let mut ops = self.operations.lock().expect("operations lock");
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
    pub fn end_operation(&self, id: &str, outcome: Result<serde_json::Value, ApiError>) {
        let mut ops = self.operations.lock().expect("operations lock");
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

    /// Starts an operation of the API and returns its id; `work` runs in
    /// the background and its outcome is recorded.
    pub fn start_operation<F>(self: &Arc<Self>, info: JobInfo<'_>, work: F) -> String
    where
        F: std::future::Future<Output = Result<serde_json::Value, ApiError>> + Send + 'static,
    {
        self.start_tracked(info, Arc::default(), work)
    }

    /// [`App::start_operation`] with the counters `progress` reports
    /// (fed by what `work` runs).
    pub fn start_tracked<F>(
        self: &Arc<Self>,
        info: JobInfo<'_>,
        progress: Arc<JobProgress>,
        work: F,
    ) -> String
    where
        F: std::future::Future<Output = Result<serde_json::Value, ApiError>> + Send + 'static,
    {
        let id = self.begin_operation(info, progress);
        let me = Arc::clone(self);
        let op_id = id.clone();
        self.tracker.spawn(async move {
            let outcome = work.await;
            me.end_operation(&op_id, outcome);
        });
        id
    }

    /// Runs `work` (a scheduled run of `info`) listed as a job with
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
        let id = self.begin_operation(info, progress);
        let outcome = work.await;
        self.end_operation(
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
        let out = run.await;
        self.handed.lock().expect("manual runs lock").remove(job_id);
        out
    }

    /// The counters an API request handed to the manual run of `job_id`,
    /// if any (taken: a later run without a request lists its own job).
    pub fn take(&self, job_id: &str) -> Option<Arc<JobProgress>> {
        self.handed.lock().expect("manual runs lock").remove(job_id)
    }
}
