//! The [`Scheduler`]: its loop, firing due triggers, and runs.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::SchedulerConfig;
use super::job::{Job, JobInfo, JobOutcome, JobSpec, MisfirePolicy, Trigger, already_ran};
use super::lease::{LOCKS, acquire_lease};
use crate::clock::Clock;
use crate::duration::{MAX_DURATION, to_chrono};
use crate::error::{Error, Result};
use crate::events::{Event, EventBus};
use crate::key::{Key, validate_id};
use crate::manifest::{BackupKind, BackupType};
use crate::store::StoreExt;

/// How [`Scheduler::shutdown`] treats runs in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Let running jobs finish, up to the timeout; then cancel them.
    Drain(Duration),
    /// Cancel running jobs now (they abort cleanly; nothing is committed).
    Cancel,
}

struct Entry {
    spec: JobSpec,
    next_fire: Option<DateTime<Utc>>,
    /// The next firing is a catch-up decided without knowing the last run:
    /// ask [`Job::last_run`] first.
    ask_history: bool,
    run_lock: Arc<tokio::sync::Mutex<()>>,
    last_finished: Option<DateTime<Utc>>,
    last_error: Option<String>,
}

struct Inner {
    config: SchedulerConfig,
    clock: Arc<dyn Clock>,
    events: EventBus,
    permits: Arc<Semaphore>,
    jobs: Mutex<HashMap<String, Entry>>,
    wake: Notify,
    stop: CancellationToken,
    cancel_runs: CancellationToken,
    tracker: TaskTracker,
    running: AtomicUsize,
    peak_running: AtomicUsize,
    /// Run locks by job id. They outlive their jobs, so removing and
    /// re-adding a job while it runs cannot start a second run.
    run_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Runs [`Job`]s on their [`Schedule`](crate::schedule::Schedule)s.
///
/// - Jobs can be added, changed and removed while it runs.
/// - At most `max_parallel_jobs` runs at once; manual runs
///   ([`Scheduler::run_now`]) count too.
/// - Never two runs of one job at once: a scheduled trigger that finds the
///   previous run still going is skipped (an [`Event::Skipped`] is emitted);
///   manual runs of a busy job wait their turn.
/// - Missed triggers follow the job's [`MisfirePolicy`].
/// - With leases, several processes sharing a store run each trigger once;
///   a trigger whose lease cannot be taken (store failing, or without
///   exclusive create-only puts) is skipped with an [`Event::Skipped`]
///   naming the reason, never run twice.
///
/// Time comes from a [`Clock`]: [`SystemClock`](crate::clock::SystemClock) in
/// production, [`ManualClock`](crate::clock::ManualClock) in tests.
pub struct Scheduler {
    inner: Arc<Inner>,
    main: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("tz", &self.inner.config.tz)
            .field("max_parallel_jobs", &self.inner.config.max_parallel_jobs)
            .field("running", &self.running())
            .finish()
    }
}

impl Scheduler {
    /// Starts the scheduler loop on the current tokio runtime.
    pub fn start(config: SchedulerConfig, clock: Arc<dyn Clock>, events: EventBus) -> Scheduler {
        let inner = Arc::new(Inner {
            permits: Arc::new(Semaphore::new(
                config.max_parallel_jobs.clamp(1, Semaphore::MAX_PERMITS),
            )),
            config,
            clock,
            events,
            jobs: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            stop: CancellationToken::new(),
            cancel_runs: CancellationToken::new(),
            tracker: TaskTracker::new(),
            running: AtomicUsize::new(0),
            peak_running: AtomicUsize::new(0),
            run_locks: Mutex::new(HashMap::new()),
        });
        let main = tokio::spawn(Arc::clone(&inner).run_loop());
        Scheduler {
            inner,
            main: Mutex::new(Some(main)),
        }
    }

    /// Like [`Scheduler::start`], but with leases configured it first checks
    /// that the lease store's create-only puts are exclusive
    /// ([`StoreExt::check_create_only`] under `_locks/`), and refuses to
    /// start with that check's error ([`Error::Unsupported`] for a store
    /// without them, such as an S3 server that ignores `If-None-Match`):
    /// there, two replicas could both take one lease and run a trigger
    /// twice. Run a single replica without leases on such a store. When
    /// the store cannot be reached to check (down, refused credentials),
    /// the scheduler starts and each trigger checks again through its lease,
    /// skipped until the check passes.
    ///
    /// Hosts that configure leases should start this way. Started with
    /// [`Scheduler::start`] instead, a scheduler on such a store fails
    /// closed at each trigger: it is skipped with an [`Event::Skipped`]
    /// naming the reason, never run without its lease.
    pub async fn try_start(
        config: SchedulerConfig,
        clock: Arc<dyn Clock>,
        events: EventBus,
    ) -> Result<Scheduler> {
        if let Some(store) = &config.lease_store {
            match store.check_create_only(&Key::new(LOCKS)?).await {
                Ok(()) => {}
                Err(e @ Error::Unsupported { .. }) => {
                    tracing::error!(store = %store, error = %e, "scheduler leases cannot be exclusive in this store");
                    return Err(e);
                }
                // The store could not be asked (unreachable, refused
                // credentials): start anyway so the host can report it;
                // each lease probes again and fails closed until it can.
                Err(e) => {
                    tracing::warn!(store = %store, error = %e, "could not check that scheduler leases are exclusive in this store yet; triggers are skipped until it can be checked");
                }
            }
        }
        Ok(Scheduler::start(config, clock, events))
    }

    /// Adds a job or replaces the one with the same id. A replaced job keeps
    /// its run lock (a run in progress is not duplicated) and recomputes
    /// its next trigger from now; a new job may catch up once according to
    /// its misfire policy.
    pub fn upsert(&self, spec: JobSpec) -> Result<()> {
        validate_id(&spec.id)?;
        let now = self.inner.clock.now();
        let tz = self.inner.config.tz;
        let mut jobs = self.inner.jobs.lock().expect("scheduler lock");
        match jobs.get_mut(&spec.id) {
            Some(entry) => {
                entry.next_fire = spec.schedule.next_after(now, tz);
                entry.ask_history = false;
                entry.spec = spec;
            }
            None => {
                let catch_up = spec.misfire == MisfirePolicy::RunOnce
                    && spec
                        .schedule
                        .prev_at_or_before(now, tz)
                        .is_some_and(|prev| spec.last_run.is_none_or(|last| last < prev));
                let next_fire = if catch_up {
                    spec.schedule.prev_at_or_before(now, tz)
                } else {
                    spec.schedule.next_after(now, tz)
                };
                let ask_history = catch_up && spec.last_run.is_none();
                let run_lock = Arc::clone(
                    self.inner
                        .run_locks
                        .lock()
                        .expect("scheduler lock")
                        .entry(spec.id.clone())
                        .or_default(),
                );
                jobs.insert(
                    spec.id.clone(),
                    Entry {
                        spec,
                        next_fire,
                        ask_history,
                        run_lock,
                        last_finished: None,
                        last_error: None,
                    },
                );
            }
        }
        drop(jobs);
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Removes a job; a run in progress finishes. Returns whether it existed.
    pub fn remove(&self, id: &str) -> bool {
        let removed = self
            .inner
            .jobs
            .lock()
            .expect("scheduler lock")
            .remove(id)
            .is_some();
        self.inner.wake.notify_one();
        removed
    }

    /// Every job's state, sorted by id.
    pub fn jobs(&self) -> Vec<JobInfo> {
        let jobs = self.inner.jobs.lock().expect("scheduler lock");
        let mut out: Vec<JobInfo> = jobs
            .iter()
            .map(|(id, e)| JobInfo {
                id: id.clone(),
                schedule: e.spec.schedule.to_string(),
                next_run: e.next_fire,
                running: e.run_lock.try_lock().is_err(),
                last_finished: e.last_finished,
                last_error: e.last_error.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Runs a job now, as a manual run, through the same concurrency limit;
    /// waits for it (and for a run already in progress) to finish.
    pub async fn run_now(&self, id: &str) -> Result<JobOutcome> {
        self.run_now_as(id, None).await
    }

    /// Like [`Scheduler::run_now`], asking for a full or incremental backup
    /// instead of the job's own setting.
    pub async fn run_now_as(
        &self,
        id: &str,
        backup_type: Option<BackupType>,
    ) -> Result<JobOutcome> {
        let (job, lock) = {
            let jobs = self.inner.jobs.lock().expect("scheduler lock");
            let entry = jobs
                .get(id)
                .ok_or_else(|| Error::not_found(format!("job {id}")))?;
            (Arc::clone(&entry.spec.job), Arc::clone(&entry.run_lock))
        };
        if self.inner.stop.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let trigger = Trigger {
            job_id: id.to_string(),
            kind: BackupKind::Manual,
            scheduled_for: None,
            backup_type,
        };
        let inner = Arc::clone(&self.inner);
        // Tracked, so a draining shutdown waits for manual runs too.
        self.inner
            .tracker
            .spawn(async move {
                let guard = lock.lock_owned().await;
                inner.execute(job, trigger, guard).await
            })
            .await
            .map_err(|e| Error::task("a scheduled job", e))?
    }

    /// Runs in progress now.
    pub fn running(&self) -> usize {
        self.inner.running.load(Ordering::SeqCst)
    }

    /// The most runs that were ever in progress at once.
    pub fn peak_running(&self) -> usize {
        self.inner.peak_running.load(Ordering::SeqCst)
    }

    /// Stops scheduling new runs and waits for running ones according to
    /// `mode`. Idempotent.
    pub async fn shutdown(&self, mode: Shutdown) {
        self.inner.stop.cancel();
        self.inner.tracker.close();
        if let Some(main) = self.main.lock().expect("scheduler lock").take() {
            main.abort();
        }
        match mode {
            Shutdown::Cancel => self.inner.cancel_runs.cancel(),
            Shutdown::Drain(timeout) => {
                if tokio::time::timeout(timeout, self.inner.tracker.wait())
                    .await
                    .is_err()
                {
                    tracing::warn!("shutdown timeout: cancelling running backups");
                    self.inner.cancel_runs.cancel();
                }
            }
        }
        self.inner.tracker.wait().await;
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.inner.stop.cancel();
        if let Ok(mut main) = self.main.lock()
            && let Some(main) = main.take()
        {
            main.abort();
        }
    }
}

impl Inner {
    async fn run_loop(self: Arc<Self>) {
        loop {
            let now = self.clock.now();
            let next = self.fire_due(now);
            let sleep = async {
                match next {
                    Some(at) => self.clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = sleep => {}
            }
        }
    }

    /// Fires every due trigger; returns the earliest future trigger.
    fn fire_due(self: &Arc<Self>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let tz = self.config.tz;
        let grace =
            // Beyond 1000 years a grace cannot make any trigger late: cap it
            // there, where the conversion is exact.
            to_chrono(self.config.misfire_grace.min(MAX_DURATION), "misfire grace")
                .expect("MAX_DURATION fits a chrono::Duration");
        let mut to_fire = Vec::new();
        let mut earliest: Option<DateTime<Utc>> = None;
        {
            let mut jobs = self.jobs.lock().expect("scheduler lock");
            for (id, entry) in jobs.iter_mut() {
                if let Some(due) = entry.next_fire
                    && due <= now
                {
                    // Coalesce everything missed into the latest trigger.
                    let latest = entry
                        .spec
                        .schedule
                        .prev_at_or_before(now, tz)
                        .unwrap_or(due)
                        .max(due);
                    // Late is judged by the trigger that will run: after a
                    // long pause, an on-time latest trigger still runs.
                    let late = now - latest > grace;
                    entry.next_fire = entry.spec.schedule.next_after(now, tz);
                    let ask_history = std::mem::take(&mut entry.ask_history);
                    if late && entry.spec.misfire == MisfirePolicy::Skip {
                        self.events.emit(Event::Skipped {
                            job_id: id.clone(),
                            scheduled_for: latest,
                            reason: format!(
                                "missed by {} s (misfire policy: skip)",
                                (now - due).num_seconds()
                            ),
                            at: now,
                        });
                    } else {
                        to_fire.push((
                            Arc::clone(&entry.spec.job),
                            Arc::clone(&entry.run_lock),
                            ask_history,
                            Trigger {
                                job_id: id.clone(),
                                kind: BackupKind::Scheduled,
                                scheduled_for: Some(latest),
                                backup_type: None,
                            },
                        ));
                    }
                }
                if let Some(next) = entry.next_fire {
                    earliest = Some(earliest.map_or(next, |e| e.min(next)));
                }
            }
        }
        for (job, lock, ask_history, trigger) in to_fire {
            let inner = Arc::clone(self);
            self.tracker.spawn(async move {
                let Ok(guard) = lock.try_lock_owned() else {
                    inner.skip(&trigger, "the previous run is still in progress");
                    return;
                };
                if ask_history && let Some(ran) = already_ran(job.as_ref(), &trigger).await {
                    inner.skip(
                        &trigger,
                        &format!(
                            "already ran for this trigger (last run {}, as recorded by the job)",
                            ran.format("%Y-%m-%dT%H:%M:%SZ")
                        ),
                    );
                    return;
                }
                if let Some(store) = &inner.config.lease_store {
                    match acquire_lease(store.as_ref(), &trigger, inner.clock.now()).await {
                        Ok(true) => {}
                        Ok(false) => {
                            inner.skip(&trigger, "another process holds the lease for this trigger");
                            return;
                        }
                        // Fail closed: without the lease another replica
                        // may be running this trigger.
                        Err(e) => {
                            tracing::warn!(job = %trigger.job_id, error = %e, "could not take the lease; trigger skipped");
                            inner.skip(
                                &trigger,
                                &format!("could not take the lease for this trigger, so it was skipped rather than risk running it twice: {e}"),
                            );
                            return;
                        }
                    }
                }
                let _ = inner.execute(job, trigger, guard).await;
            });
        }
        earliest
    }

    fn skip(&self, trigger: &Trigger, reason: &str) {
        tracing::info!(job = %trigger.job_id, reason, "trigger skipped");
        self.events.emit(Event::Skipped {
            job_id: trigger.job_id.clone(),
            scheduled_for: trigger.scheduled_for.unwrap_or_else(|| self.clock.now()),
            reason: reason.to_string(),
            at: self.clock.now(),
        });
    }

    /// Waits for a permit, runs the job, records the result.
    async fn execute(
        &self,
        job: Arc<dyn Job>,
        trigger: Trigger,
        _guard: tokio::sync::OwnedMutexGuard<()>,
    ) -> Result<JobOutcome> {
        let permit = tokio::select! {
            biased;
            _ = self.cancel_runs.cancelled() => return Err(Error::Cancelled),
            p = Arc::clone(&self.permits).acquire_owned() => p.map_err(|_| Error::Cancelled)?,
        };
        // Once shutdown has begun, runs still waiting for a slot never start
        // (scheduled ones; manual ones are refused at `run_now`).
        if self.cancel_runs.is_cancelled()
            || (self.stop.is_cancelled() && trigger.kind == BackupKind::Scheduled)
        {
            return Err(Error::Cancelled);
        }
        /// Decrements the running count even if the job panics.
        struct Running<'a>(&'a AtomicUsize);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let now_running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        let counted = Running(&self.running);
        self.peak_running.fetch_max(now_running, Ordering::SeqCst);
        let result = job.run(&trigger, self.cancel_runs.child_token()).await;
        drop(counted);
        drop(permit);
        // A run cancelled by a shutdown did not fail: the job keeps the
        // outcome of its previous run.
        if matches!(result, Err(Error::Cancelled)) {
            tracing::info!(job = %trigger.job_id, kind = %trigger.kind, "job cancelled");
            return result;
        }
        if let Some(entry) = self
            .jobs
            .lock()
            .expect("scheduler lock")
            .get_mut(&trigger.job_id)
        {
            entry.last_finished = Some(self.clock.now());
            entry.last_error = result.as_ref().err().map(|e| e.to_string());
        }
        if let Err(e) = &result {
            tracing::warn!(job = %trigger.job_id, kind = %trigger.kind, error = %e, "job failed");
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup_job::BackupJob;
    use crate::catalog::RunRecord;
    use crate::clock::SystemClock;
    use crate::engine::{BackupRequest, Engine};
    use crate::memory::InMemoryStore;
    use crate::schedule::Schedule;
    use crate::testing::ScriptedSource;

    /// A backup cancelled by a shutdown is no failure: no run record, no
    /// `Failed` event, no error on the job.
    #[tokio::test]
    async fn a_run_cancelled_by_shutdown_is_not_recorded_as_a_failure() {
        let store = Arc::new(InMemoryStore::new());
        let events = EventBus::default();
        let mut rx = events.subscribe();
        let engine = Engine::new(store.clone()).with_events(events.clone());
        let scheduler = Arc::new(Scheduler::start(
            SchedulerConfig::default(),
            Arc::new(SystemClock),
            events,
        ));
        let job = BackupJob {
            engine,
            source: Arc::new(ScriptedSource::stall_after(1024)),
            request: BackupRequest::new("db").tenant("t"),
            retention: Vec::new(),
            keep_newest_verified: true,
        };
        scheduler
            .upsert(JobSpec::new("db", Schedule::Disabled, Arc::new(job)))
            .unwrap();
        let running = {
            let s = Arc::clone(&scheduler);
            tokio::spawn(async move { s.run_now("db").await })
        };
        // Wait until the backup has started, then cancel it.
        loop {
            if let Event::Started { .. } = rx.recv().await.unwrap() {
                break;
            }
        }
        scheduler.shutdown(Shutdown::Cancel).await;
        assert!(matches!(running.await.unwrap(), Err(Error::Cancelled)));
        assert_eq!(
            RunRecord::load(store.as_ref(), "t", "db").await.unwrap(),
            None
        );
        let info = &scheduler.jobs()[0];
        assert_eq!(info.last_error, None);
        while let Ok(e) = rx.try_recv() {
            assert!(!matches!(e, Event::Failed { .. }), "{e:?}");
        }
    }
}
