//! The scheduler jobs backupd registers: a database's guarded backup
//! (and its registration) and the package builder.

use std::sync::Arc;

use async_trait::async_trait;
use backup_core::{
    BackupJob, BackupRequest, DumpSource, Error, Event, EventBus, Filter, JobSpec, Result,
    Schedule, manifest::BackupKind, meter::MeteredSource, scheduler::Job, scheduler::JobOutcome,
    scheduler::Trigger,
};
use backup_postgres::IncrementalOnLatest;
use chrono::Utc;
use chrono_tz::Tz;
use tokio_util::sync::CancellationToken;

use super::App;
use super::entries::{base_backup_source, make_source, retention};
use super::operations::JobInfo;
use super::progress::{JobProgress, Work};
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
        let request = BackupRequest::new(&db.id)
            .tenant(&db.tenant)
            .created_by("backupd");
        // The entry's runs (full and incremental) take turns: an
        // incremental waits for a full being written, then takes it as
        // its parent. The turn outlives a re-registration (`PATCH`): a
        // run of the entry as it was may still hold it.
        let serial = self.turns.of(&db.id);
        let guarded = |source: Arc<dyn DumpSource>| GuardedJob {
            app: Arc::downgrade(self),
            db: db.clone(),
            inner: BackupJob {
                engine: self.engine_for(&db),
                source,
                request: request.clone(),
                retention: retention(&db),
                keep_newest_verified: db.keep_newest_verified,
            },
            serial: Arc::clone(&serial),
        };
        let last_run = last_run.or(Some(Utc::now()));
        self.scheduler.upsert(
            JobSpec::new(&db.id, db.schedule.clone(), Arc::new(guarded(source))).last_run(last_run),
        )?;
        match &db.incremental {
            Some(schedule) => {
                let source = IncrementalOnLatest::new(
                    base_backup_source(&db),
                    self.engine_for(&db),
                    &db.tenant,
                    &db.id,
                )
                .fallback_to_full(db.fallback_to_full);
                let job = IncrementalJob {
                    full: db.schedule.clone(),
                    tz: self.config.tz,
                    events: self.events.clone(),
                    inner: guarded(Arc::new(source)),
                };
                self.scheduler.upsert(
                    JobSpec::new(db.incremental_job_id(), schedule.clone(), Arc::new(job))
                        .last_run(last_run),
                )?;
            }
            None => {
                self.scheduler.remove(&db.incremental_job_id());
            }
        }
        super::drills::schedule(self, &db)?;
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
    /// The entry's turn ([`Turns`](super::turns::Turns)): shared by its
    /// jobs (full and incremental) and by those of its earlier and later
    /// registrations, so one run of the entry at a time.
    pub serial: super::turns::Turn,
}

#[async_trait]
impl Job for GuardedJob {
    /// A run the API started reports into the counters its request
    /// handed over ([`ManualRuns`](super::operations::ManualRuns)); any
    /// other run is listed as a job of its own.
    async fn run(&self, trigger: &Trigger, cancel: CancellationToken) -> Result<JobOutcome> {
        let app = self.app.upgrade().ok_or(Error::Cancelled)?;
        let handed = match trigger.kind {
            BackupKind::Manual => app.manual_runs.take(&trigger.job_id),
            BackupKind::Scheduled => None,
        };
        if let Some(progress) = handed {
            return self.run_metered(&app, trigger, cancel, &progress).await;
        }
        let progress = Arc::new(JobProgress::new(Work::Backup));
        let info = JobInfo {
            kind: "backup",
            tenant: Some(&self.db.tenant),
            source: Some(&self.db.id),
            trigger: trigger.kind.as_str(),
        };
        let run = self.run_metered(&app, trigger, cancel, &progress);
        app.operations
            .tracked_run(info, Arc::clone(&progress), run)
            .await
    }
}

impl GuardedJob {
    /// The run itself, its store and source counted into `progress`.
    async fn run_metered(
        &self,
        app: &App,
        trigger: &Trigger,
        cancel: CancellationToken,
        progress: &JobProgress,
    ) -> Result<JobOutcome> {
        self.db
            .check_database_name()
            .map_err(|e| Error::Config(format!("database {}: {e}", self.db.id)))?;
        app.check_owner(&self.db, Some(&self.db.id))
            .await
            .map_err(|e| Error::Config(e.message))?;
        let _turn = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(Error::Cancelled),
            turn = self.serial.take() => turn,
        };
        let metered = BackupJob {
            engine: self.inner.engine.metered(progress.meter()),
            source: Arc::new(MeteredSource::new(
                Arc::clone(&self.inner.source),
                progress.meter(),
            )),
            ..self.inner.clone()
        };
        let result = metered.run(trigger, cancel).await;
        // Retention pruned the entry's base backups: its WAL archive
        // loses what none of the rest needs, still in the entry's turn, so
        // no base backup of it is being taken meanwhile.
        if result.is_ok()
            && let Err(e) = app.wal.prune(&self.db.id, None, false).await
        {
            tracing::warn!(source = %self.db.id, error = %e, "WAL pruning after the backup failed");
        }
        // Removed while it ran: the record it just wrote is forgotten too.
        if app.database(&self.db.id, Some(&self.db.tenant)).is_none() {
            app.forget_run_record(&self.db.tenant, &self.db.id).await;
        }
        result
    }
}

/// A physical entry's incremental base backups (`incremental:`): its
/// [`GuardedJob`] on an [`IncrementalOnLatest`] source, except that a
/// scheduled trigger at which the full backups' schedule fires too is
/// skipped (an [`Event::Skipped`]): the full backup runs instead, and no
/// incremental is taken on a parent being written.
#[derive(Debug)]
pub struct IncrementalJob {
    /// The entry's full backups' schedule.
    pub full: Schedule,
    /// The zone schedules are evaluated in.
    pub tz: Tz,
    /// Where the skip is reported.
    pub events: EventBus,
    /// The incremental backup itself.
    pub inner: GuardedJob,
}

/// Whether `trigger` of the incremental job is also a trigger of the
/// `full` schedule (in `tz`), so that the full backup wins. Manual runs
/// never coincide.
pub fn full_wins(full: &Schedule, tz: Tz, trigger: &Trigger) -> bool {
    trigger.kind == BackupKind::Scheduled
        && trigger
            .scheduled_for
            .is_some_and(|at| full.prev_at_or_before(at, tz) == Some(at))
}

#[async_trait]
impl Job for IncrementalJob {
    async fn run(&self, trigger: &Trigger, cancel: CancellationToken) -> Result<JobOutcome> {
        if full_wins(&self.full, self.tz, trigger) {
            let reason =
                "the full backups' schedule fires at the same time: a full backup is taken instead";
            tracing::info!(job = %trigger.job_id, reason, "incremental skipped");
            self.events.emit(Event::Skipped {
                job_id: trigger.job_id.clone(),
                scheduled_for: trigger.scheduled_for.unwrap_or_else(Utc::now),
                reason: reason.into(),
                at: Utc::now(),
            });
            return Ok(JobOutcome::default());
        }
        self.inner.run(trigger, cancel).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_trigger_at_the_same_time_wins_over_the_incremental() {
        let full: Schedule = "weekly sun 03:00".parse().unwrap();
        let at = |s: &str| Some(s.parse::<chrono::DateTime<Utc>>().unwrap());
        let trigger = |kind, scheduled_for| Trigger {
            job_id: "_incremental.c".into(),
            kind,
            scheduled_for,
            backup_type: None,
        };
        let paris: Tz = "Europe/Paris".parse().unwrap();
        for (kind, when, tz, wins) in [
            // Sunday 29 November 2026, 03:00.
            (
                BackupKind::Scheduled,
                at("2026-11-29T03:00:00Z"),
                Tz::UTC,
                true,
            ),
            (
                BackupKind::Scheduled,
                at("2026-11-30T03:00:00Z"),
                Tz::UTC,
                false,
            ),
            (
                BackupKind::Scheduled,
                at("2026-11-29T03:01:00Z"),
                Tz::UTC,
                false,
            ),
            // 03:00 in Paris is 02:00 UTC in winter.
            (
                BackupKind::Scheduled,
                at("2026-11-29T02:00:00Z"),
                paris,
                true,
            ),
            (
                BackupKind::Scheduled,
                at("2026-11-29T03:00:00Z"),
                paris,
                false,
            ),
            (
                BackupKind::Manual,
                at("2026-11-29T03:00:00Z"),
                Tz::UTC,
                false,
            ),
            (BackupKind::Manual, None, Tz::UTC, false),
        ] {
            assert_eq!(
                full_wins(&full, tz, &trigger(kind, when)),
                wins,
                "{kind:?} {when:?} {tz}"
            );
        }
        let disabled: Schedule = "disabled".parse().unwrap();
        let sunday = trigger(BackupKind::Scheduled, at("2026-11-29T03:00:00Z"));
        assert!(!full_wins(&disabled, Tz::UTC, &sunday));
    }
}
