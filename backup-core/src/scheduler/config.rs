//! [`SchedulerConfig`]: time zone, concurrency, misfire grace and leases.

use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;

use crate::store::Store;

/// Scheduler settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SchedulerConfig {
    /// Zone schedules are evaluated in (default UTC).
    pub tz: Tz,
    /// Most runs at once, across all jobs (manual runs included).
    pub max_parallel_jobs: usize,
    /// A trigger found this late is a misfire (default 60 s; anything
    /// beyond [`MAX_DURATION`](crate::duration::MAX_DURATION) means never).
    pub misfire_grace: Duration,
    /// Store used for leases so that several processes sharing it run each
    /// scheduled trigger once (`None`: no leases).
    pub lease_store: Option<Arc<dyn Store>>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            tz: Tz::UTC,
            max_parallel_jobs: 4,
            misfire_grace: Duration::from_secs(60),
            lease_store: None,
        }
    }
}

impl SchedulerConfig {
    /// Sets the time zone.
    pub fn tz(mut self, tz: Tz) -> Self {
        self.tz = tz;
        self
    }

    /// Sets the global concurrency limit (at least 1; at most
    /// [`tokio::sync::Semaphore::MAX_PERMITS`], which is far beyond anything
    /// useful).
    pub fn max_parallel_jobs(mut self, n: usize) -> Self {
        self.max_parallel_jobs = n.max(1);
        self
    }

    /// Enables leases in `store`, for several replicas sharing it: each
    /// scheduled trigger runs in the replica that creates its lease object
    /// first. The store needs exclusive create-only puts (see
    /// [`Scheduler::try_start`](super::runner::Scheduler::try_start), which checks); a trigger whose lease cannot
    /// be taken is skipped, never run without it.
    pub fn leases(mut self, store: Arc<dyn Store>) -> Self {
        self.lease_store = Some(store);
        self
    }
}
