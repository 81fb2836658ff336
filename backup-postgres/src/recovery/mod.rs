//! Point-in-time restore ([`PointInTimeRestore`]): replays archived WAL
//! over a data directory that [`DataDirTarget`](crate::DataDirTarget) has
//! just restored from a base backup, up to a [`RecoveryTarget`].
//!
//! # Steps
//!
//! 1. **Checks, nothing written.** `backup_label` names the segment and
//!    timeline the base backup starts at. The archive's history files
//!    (`TTTTTTTT.history`, fetched and verified like segments) say which
//!    timelines branched off which, and where: per [`RecoveryTimeline`]
//!    recovery follows the base backup's own timeline (`current`), or a
//!    later one whose history descends from it at a switch point after
//!    the backup's start (`latest`, the default: the newest such; or a
//!    number). Along that path the archive ([`WalSource`]) must hold,
//!    without a gap, each timeline's segments up to the one before the
//!    segment holding its switch point (that segment comes from the next
//!    timeline, as PostgreSQL reads it), and the target timeline's from
//!    its switch on to the newest it has: a gap is an error naming the
//!    first missing segment. A time or LSN target before the backup's
//!    start is refused, and so is staging onto a file system without
//!    room for it.
//! 2. **Staging.** Every history file of the archive (the server reads
//!    the target timeline's, and promotes to a timeline past all of them)
//!    and every segment of the path is fetched (verified by the source:
//!    a store checks its digests) into `.<data dir name>.pitr/wal/`
//!    beside the data directory, and its size and first page header are
//!    checked against the cluster (system identifier, segment size,
//!    position). The segments of the base backup's own WAL range must
//!    also hold the bytes of the backup's own copy (its `pg_wal`, checked
//!    by `pg_verifybackup` when restored) up to where that range ends
//!    (`backup_manifest`'s `WAL-Ranges`): damage there is named, segment
//!    and byte, for a source without digests too (PostgreSQL would only
//!    say "WAL ends before end of online backup"). That costs disk: one
//!    segment size (16 MiB by default) per segment staged, until
//!    recovery is over (the stage is removed once the
//!    server this type started is promoted). Staging instead of a
//!    `restore_command` that reaches the store keeps store credentials and
//!    decryption keys in this process (the server's command line and
//!    configuration never see them) and catches a corrupt or missing
//!    segment before the server reads anything.
//! 3. **Settings.** `recovery.signal`, and appended to
//!    `postgresql.auto.conf`: `restore_command` copying from the stage
//!    (shell- and configuration-quoted), the `recovery_target_*` setting,
//!    `recovery_target_action = 'promote'`, `recovery_target_timeline`
//!    (`current`, or the number of the timeline chosen), and
//!    `archive_mode = 'off'` unless
//!    [`keep_archiving`](PointInTimeRestore::keep_archiving) (a restored
//!    copy must not write into the archive of the cluster it came from).
//! 4. **Optionally, recovery** ([`StartOptions`]): the server starts on
//!    the given port (as `postgres` when this process is root), replays,
//!    and must be promoted. A time, LSN or name target it does not reach
//!    stops it ("recovery ended before configured recovery target was
//!    reached", PostgreSQL 13 and later, the oldest supported here); for
//!    [`RecoveryTarget::Latest`] replay must end in the newest staged
//!    segment: ending earlier means PostgreSQL refused a damaged record
//!    (its CRC), and that is an error, not a silent early stop. Damage in
//!    the newest archived segment itself cannot be told from the end of
//!    the WAL by PostgreSQL; a source with digests catches it when fetched.
//!
//! Time, LSN and name targets apply along the path: one on a later
//! timeline is reached there, one on the base backup's timeline after
//! the switch point is not (choose [`RecoveryTimeline::Current`]).
//!
//! Any failure after the checks leaves the data directory **marked
//! unusable**: `global/pg_control` renamed to
//! `global/pg_control.restore-failed` (no server starts on it) and a
//! `RESTORE_FAILED` file saying why; restore the base backup again.
//! A caller that restores the base backup itself checks what it can
//! before that ([`PointInTimeRestore::check_backup`]: nothing written on
//! a refusal) and marks the directory the same way ([`mark_unusable`])
//! when anything fails once the base backup is in place.

mod backup_wal;
mod before;
mod drill;
mod label;
mod server;
mod settings;
mod start;
mod target;
mod timeline;
mod unusable;
mod wal;

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::{Error, Result};

use crate::tools::PgTools;
use backup_wal::{backup_wal_end, check_against_backup};
pub use drill::{PHYSICAL_DRILL_PREFIX, PhysicalDrill};
use label::{BackupLabel, ControlData, major_version};
use server::{Launch, LogFacts, Server, chown_tree, explain_failure, server_user};
use settings::{recovery_settings, write_settings};
pub use start::{RecoveredServer, StartOptions};
pub use target::{RecoveryTarget, RecoveryTimeline};
use target::{format_lsn, parse_lsn};
pub(crate) use timeline::read_histories;
use timeline::{TimelinePlan, plan_timelines};
pub use unusable::{RESTORE_FAILED_FILE, mark_unusable};
use unusable::{remove_dir, work_dir_of};
pub use wal::{DirWalSource, WalSource};
use wal::{Geometry, check_header};

const ENGINE: &str = "postgres";
/// The oldest major version that reports an unreached recovery target.
const OLDEST_MAJOR: u32 = 13;

/// Replays archived WAL over a freshly restored base backup up to a
/// target (see the module docs for the steps and what each checks).
#[derive(Debug, Clone)]
pub struct PointInTimeRestore {
    data_dir: PathBuf,
    source: Arc<dyn WalSource>,
    target: RecoveryTarget,
    timeline: RecoveryTimeline,
    bin_dir: PathBuf,
    keep_archiving: bool,
    start: Option<StartOptions>,
}

/// What a point-in-time restore did.
#[derive(Debug)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// The target recovery was set to.
    pub target: RecoveryTarget,
    /// The base backup's timeline.
    pub timeline: u32,
    /// The timeline recovery ends on (the base backup's own, or a later
    /// one per [`RecoveryTimeline`]).
    pub target_timeline: u32,
    /// The first and last segment staged (of the base backup's timeline
    /// and of the target timeline).
    pub segments: (String, String),
    /// The history files staged (every one of the archive).
    pub history_files: Vec<String>,
    /// How many segments were staged, and their bytes.
    pub staged_segments: u64,
    /// Bytes staged.
    pub staged_bytes: u64,
    /// `.<name>.pitr` beside the data directory: the server log
    /// (`server.log`) and, until a server this restore started is
    /// promoted, the staged segments (`wal/`).
    pub work_dir: PathBuf,
    /// The recovered server, when [`StartOptions`] were given.
    pub server: Option<RecoveredServer>,
}

/// What the checks found: the plan the writes follow.
#[derive(Debug)]
struct Plan {
    data_dir: PathBuf,
    work_dir: PathBuf,
    timeline: u32,
    geometry: Geometry,
    system_id: u64,
    /// The timelines followed and the segments staged of each.
    timelines: TimelinePlan,
    /// Where the base backup's own WAL ends (its `backup_manifest`'s
    /// `WAL-Ranges` on its timeline), if it says.
    backup_end: Option<u64>,
}

impl PointInTimeRestore {
    /// Recovery of `data_dir` (restored by
    /// [`DataDirTarget`](crate::DataDirTarget), not started since) from
    /// `source` to `target`, with the server binaries (`postgres`,
    /// `pg_ctl`, `pg_controldata`) of `bin_dir`, which must be of the
    /// backup's major version.
    pub fn new(
        data_dir: impl Into<PathBuf>,
        source: Arc<dyn WalSource>,
        target: RecoveryTarget,
        bin_dir: impl Into<PathBuf>,
    ) -> PointInTimeRestore {
        PointInTimeRestore {
            data_dir: data_dir.into(),
            source,
            target,
            timeline: RecoveryTimeline::default(),
            bin_dir: bin_dir.into(),
            keep_archiving: false,
            start: None,
        }
    }

    /// Which timeline to follow (`recovery_target_timeline`; by default
    /// [`RecoveryTimeline::Latest`]).
    pub fn timeline(mut self, timeline: RecoveryTimeline) -> PointInTimeRestore {
        self.timeline = timeline;
        self
    }

    /// Keep the cluster's `archive_mode` (off by default after a restore,
    /// so a copy never archives into the original's archive).
    pub fn keep_archiving(mut self, keep: bool) -> PointInTimeRestore {
        self.keep_archiving = keep;
        self
    }

    /// Start the server once prepared and confirm recovery (step 4).
    /// Without this the caller starts it (as the server's user: when
    /// this process is root, give the data directory and the work
    /// directory to that user first); the target is then checked by
    /// PostgreSQL alone (a time, LSN or name it does not reach stops it),
    /// not the end of replay of [`RecoveryTarget::Latest`]. A restore
    /// dropped while the server recovers kills the server; the directory
    /// is then not marked (it still holds `recovery.signal`).
    pub fn start_server(mut self, options: StartOptions) -> PointInTimeRestore {
        self.start = Some(options);
        self
    }

    /// Runs the restore (see the module docs).
    pub async fn run(&self) -> Result<RecoveryReport> {
        let plan = self.plan().await?;
        match self.apply(&plan).await {
            Ok(report) => Ok(report),
            Err(e) => Err(mark_unusable(&plan.data_dir, &self.target, e).await),
        }
    }

    /// Step 1: everything that can be refused before writing.
    async fn plan(&self) -> Result<Plan> {
        let data_dir = std::fs::canonicalize(&self.data_dir).map_err(|e| {
            Error::io(
                format!("opening the data directory {}", self.data_dir.display()),
                e,
            )
        })?;
        for (file, why) in [
            (RESTORE_FAILED_FILE, "an earlier restore into it failed"),
            ("recovery.signal", "it already has recovery settings"),
            ("standby.signal", "it is set up as a standby"),
            ("postmaster.pid", "a server may be running on it"),
        ] {
            if data_dir.join(file).exists() {
                return Err(Error::Config(format!(
                    "{} has {file} ({why}): restore the base backup into a new directory first",
                    data_dir.display()
                )));
            }
        }
        let work_dir = work_dir_of(&data_dir)?;
        if work_dir.exists() {
            return Err(Error::AlreadyExists {
                key: format!(
                    "{} (left by an earlier point-in-time restore: remove it)",
                    work_dir.display()
                ),
            });
        }
        let label = BackupLabel::read(&data_dir)?;
        let major = major_version(&data_dir)?;
        if major < OLDEST_MAJOR {
            return Err(Error::Config(format!(
                "point-in-time restore needs PostgreSQL {OLDEST_MAJOR} or newer (older servers do not report an unreached target); this cluster is {major}"
            )));
        }
        let control = ControlData::read(&PgTools::in_dir(&self.bin_dir), major, &data_dir).await?;
        let geometry = Geometry {
            segment_size: control.segment_size,
        };
        self.check_target(&label)?;
        let (tli, first) = geometry.parse(&label.start_segment).ok_or_else(|| {
            Error::Config(format!(
                "backup_label names {:?}, not a WAL segment",
                label.start_segment
            ))
        })?;
        if tli != label.timeline {
            return Err(Error::Config(format!(
                "backup_label's segment {} is not on its START TIMELINE {}",
                label.start_segment, label.timeline
            )));
        }
        let timelines =
            plan_timelines(&*self.source, self.timeline, &label, first, geometry).await?;
        let segments: u64 = timelines.spans.iter().map(|s| s.last - s.first + 1).sum();
        check_space(&work_dir, segments.saturating_mul(geometry.segment_size))?;
        let backup_end = backup_wal_end(&data_dir, tli)?;
        Ok(Plan {
            data_dir,
            work_dir,
            timeline: tli,
            geometry,
            system_id: control.system_id,
            timelines,
            backup_end,
        })
    }

    /// Refuses a time or LSN target before the base backup's start.
    fn check_target(&self, label: &BackupLabel) -> Result<()> {
        let before = match &self.target {
            RecoveryTarget::Time(t) => label.start_time.filter(|start| t < start).map(|start| {
                format!(
                    "time {} is before the base backup started ({start})",
                    t.to_rfc3339()
                )
            }),
            RecoveryTarget::Lsn(lsn) if *lsn < label.start_lsn => Some(format!(
                "LSN {} is before the base backup's start {}",
                format_lsn(*lsn),
                format_lsn(label.start_lsn)
            )),
            _ => None,
        };
        match before {
            Some(why) => Err(Error::Config(format!(
                "recovery target {why}: choose a later target or an older base backup"
            ))),
            None => Ok(()),
        }
    }

    /// Steps 2 to 4.
    async fn apply(&self, plan: &Plan) -> Result<RecoveryReport> {
        let wal_dir = plan.work_dir.join("wal");
        for dir in [&plan.work_dir, &wal_dir] {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        let mut staged_bytes = 0u64;
        for (name, text) in &plan.timelines.histories {
            let dest = wal_dir.join(name);
            std::fs::write(&dest, text)
                .map_err(|e| Error::io(format!("writing {}", dest.display()), e))?;
            staged_bytes = staged_bytes.saturating_add(text.len() as u64);
        }
        let mut staged_segments = 0u64;
        for span in &plan.timelines.spans {
            for segno in span.first..=span.last {
                let name = plan.geometry.name(span.timeline, segno);
                let dest = wal_dir.join(&name);
                self.source
                    .fetch(&name, &dest)
                    .await
                    .map_err(|e| Error::Restore {
                        engine: ENGINE,
                        detail: format!("fetching WAL segment {name}: {e}"),
                    })?;
                check_header(&dest, &name, segno, plan.geometry, plan.system_id).await?;
                if span.timeline == plan.timeline {
                    check_against_backup(
                        &plan.data_dir,
                        plan.backup_end,
                        plan.geometry,
                        &dest,
                        &name,
                        segno,
                    )
                    .await?;
                }
                staged_bytes = staged_bytes.saturating_add(plan.geometry.segment_size);
                staged_segments += 1;
            }
        }
        let timeline = if plan.timelines.target == plan.timeline {
            "current".to_string()
        } else {
            plan.timelines.target.to_string()
        };
        write_settings(
            &plan.data_dir,
            &recovery_settings(&self.target, &timeline, self.keep_archiving, &wal_dir)?,
        )?;
        let server = match &self.start {
            Some(options) => Some(self.recover(plan, options).await?),
            None => None,
        };
        if server.is_some() {
            remove_dir(&wal_dir).await;
        }
        let spans = &plan.timelines.spans;
        let name_of = |s: Option<&timeline::Span>, last: bool| {
            s.map(|s| {
                plan.geometry
                    .name(s.timeline, if last { s.last } else { s.first })
            })
            .unwrap_or_default()
        };
        Ok(RecoveryReport {
            target: self.target.clone(),
            timeline: plan.timeline,
            target_timeline: plan.timelines.target,
            segments: (name_of(spans.first(), false), name_of(spans.last(), true)),
            history_files: plan
                .timelines
                .histories
                .iter()
                .map(|(name, _)| name.clone())
                .collect(),
            staged_segments,
            staged_bytes,
            work_dir: plan.work_dir.clone(),
            server,
        })
    }

    /// Step 4: start, wait for promotion, confirm the target.
    async fn recover(&self, plan: &Plan, options: &StartOptions) -> Result<RecoveredServer> {
        let user = server_user()?;
        if let Some((uid, gid)) = user {
            chown_tree(plan.data_dir.clone(), uid, gid).await?;
            chown_tree(plan.work_dir.clone(), uid, gid).await?;
        }
        let socket_dir = options
            .socket_dir
            .clone()
            .unwrap_or_else(|| plan.work_dir.clone());
        let log = plan.work_dir.join("server.log");
        let mut server = Server::start(&Launch {
            bin_dir: &self.bin_dir,
            data_dir: &plan.data_dir,
            port: options.port,
            socket_dir: &socket_dir,
            listen_addresses: &options.listen_addresses,
            log: &log,
            user,
            settings: &[],
        })?;
        let facts = match server.wait_promoted(options.timeout).await {
            Ok(()) => LogFacts::parse(&server.log_text()),
            Err(e) => {
                let _ = server.stop("immediate").await;
                return Err(e);
            }
        };
        if let Err(e) = self.confirm_latest(plan, &facts, &server.log_text()) {
            let _ = server.stop("immediate").await;
            return Err(e);
        }
        let running = if options.leave_running {
            Some(server.keep_running())
        } else {
            server.stop("fast").await?;
            None
        };
        Ok(RecoveredServer {
            end_lsn: facts.redo_done_at,
            end_reason: facts.end_reason,
            stopped_at: facts.stopped,
            last_transaction: facts.last_transaction,
            port: options.port,
            socket_dir,
            log,
            running,
        })
    }

    /// For [`RecoveryTarget::Latest`]: replay ended in the newest staged
    /// segment, not before (a damaged record ends replay early).
    fn confirm_latest(&self, plan: &Plan, facts: &LogFacts, log: &str) -> Result<()> {
        if self.target != RecoveryTarget::Latest {
            return Ok(());
        }
        let end = facts
            .redo_done_at
            .as_deref()
            .and_then(parse_lsn)
            .ok_or_else(|| Error::Restore {
                engine: ENGINE,
                detail: format!(
                    "the server's log does not say where replay ended, so reaching the archive's end cannot be confirmed; {}",
                    explain_failure(log)
                ),
            })?;
        let segno = plan.geometry.segment_of(end);
        let last = plan.timelines.last();
        if segno >= last {
            return Ok(());
        }
        Err(Error::Integrity {
            what: format!(
                "WAL segment {}",
                plan.geometry.name(plan.timelines.timeline_of(segno), segno)
            ),
            detail: format!(
                "replay ended at {} in it ({}), but the archive holds WAL up to segment {}: PostgreSQL refused a damaged record there",
                format_lsn(end),
                facts.end_reason.as_deref().unwrap_or("no reason logged"),
                plan.geometry.name(plan.timelines.target, last),
            ),
        })
    }
}

/// Refuses to stage `needed` bytes beside the data directory when its
/// file system has less free.
fn check_space(work_dir: &Path, needed: u64) -> Result<()> {
    let parent = work_dir.parent().unwrap_or(work_dir);
    let stat = nix::sys::statvfs::statvfs(parent).map_err(|e| {
        Error::io(
            format!("reading the free space of {}", parent.display()),
            e.into(),
        )
    })?;
    let free = stat.blocks_available().saturating_mul(stat.fragment_size());
    if needed > free {
        return Err(Error::StorageFull {
            store: format!(
                "{} to stage the WAL ({needed} bytes needed, {free} free; nothing was written): free space or restore where there is more",
                parent.display()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_needs_room() {
        let work = std::env::temp_dir().join(".data.pitr");
        assert!(check_space(&work, 0).is_ok());
        let err = check_space(&work, u64::MAX).unwrap_err();
        assert!(matches!(err, Error::StorageFull { .. }), "{err}");
        assert!(err.to_string().contains("nothing was written"), "{err}");
    }
}
