//! The in-process scheduler: jobs on schedules, a global concurrency limit,
//! no overlapping runs of one job, misfire handling, leases for several
//! replicas, and graceful shutdown.

mod config;
mod drill_job;
mod job;
mod lease;
mod runner;

pub use config::SchedulerConfig;
pub use drill_job::DrillJob;
pub use job::{Job, JobInfo, JobOutcome, JobSpec, MisfirePolicy, Trigger};
pub use runner::{Scheduler, Shutdown};
