//! Restore drills: what [`Engine::drill`](crate::Engine::drill) needs from
//! an engine adapter ([`DrillTarget`], [`Scratch`]) and what it records
//! ([`DrillRecord`]).
//!
//! Records are small JSON objects in a reserved namespace of the store,
//! `{tenant}/_drills/{source_id}/{backup_id}/{verified_at}-{random}.json`,
//! written create-only. Keys with a `_` segment are never backups, so
//! listing, sweep, GC and prune do not see them; deleting a backup
//! leaves its drill records (a few hundred bytes each) as history.

mod scratch_dir;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::fingerprint::{Fingerprint, TableCheck};
use crate::key::{Key, validate_id};
use crate::source::{LeftoverReport, RestoreOptions, RestoreTarget};

pub use scratch_dir::ScratchDir;

/// The reserved directory, under each tenant, drill records live in.
pub const DRILLS_DIR: &str = "_drills";

/// Note of a passed drill of a backup without a recorded fingerprint.
pub const NOT_COMPARED: &str = "restored, content not compared: the backup recorded no fingerprint";

/// Whether a drill passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DrillStatus {
    /// The backup restored (digests verified) and its content matched the
    /// recorded fingerprint, or there was none to compare (see
    /// [`DrillRecord::note`]).
    Passed,
    /// The restore failed or the content differs.
    Failed,
}

impl DrillStatus {
    /// `passed` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            DrillStatus::Passed => "passed",
            DrillStatus::Failed => "failed",
        }
    }
}

/// The result of one restore drill, stored beside the backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillRecord {
    /// The backup drilled.
    pub backup_id: String,
    /// Its source id.
    pub database: String,
    /// Its tenant.
    pub tenant: String,
    /// Passed or failed.
    pub status: DrillStatus,
    /// When the drill finished.
    pub verified_at: DateTime<Utc>,
    /// Wall time of the whole drill (restore, count, drop).
    pub duration_ms: u64,
    /// Per-table comparison (empty when the backup recorded no
    /// fingerprint or the restore failed).
    pub tables: Vec<TableCheck>,
    /// Why it failed.
    pub error: Option<String>,
    /// What a passed drill could not check
    /// ([`NOT_COMPARED`]), or that the scratch database could not be
    /// dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl DrillRecord {
    /// Whether the drill passed.
    pub fn passed(&self) -> bool {
        self.status == DrillStatus::Passed
    }

    /// The record's key in the store.
    pub fn key(&self) -> Result<Key> {
        validate_id(&self.tenant)?;
        validate_id(&self.database)?;
        validate_id(&self.backup_id)?;
        Key::new(format!(
            "{}/{DRILLS_DIR}/{}/{}/{}-{:08x}.json",
            self.tenant,
            self.database,
            self.backup_id,
            self.verified_at.format("%Y%m%dT%H%M%S%.3fZ"),
            rand::random::<u32>()
        ))
    }
}

/// Where drills of one source tenant live: `{tenant}/_drills/` and, with a
/// source, `{tenant}/_drills/{source_id}/`.
pub fn records_prefix(tenant: &str, source_id: Option<&str>) -> Result<Key> {
    validate_id(tenant)?;
    match source_id {
        Some(source) => {
            validate_id(source)?;
            Key::new(format!("{tenant}/{DRILLS_DIR}/{source}"))
        }
        None => Key::new(format!("{tenant}/{DRILLS_DIR}")),
    }
}

/// A server a drill restores into: creates [`Scratch`] databases.
#[async_trait]
pub trait DrillTarget: fmt::Debug + Send + Sync {
    /// Engine name (`postgres`), compared with the manifest's.
    fn engine(&self) -> &str;

    /// Creates an empty, marked scratch database (collection namespace,
    /// data directory) with a fresh random name.
    async fn scratch(&self) -> Result<Box<dyn Scratch>>;

    /// Drops the scratches of killed drills on this server: marked ones
    /// whose drill has shown no sign of life for `older_than` (adapters
    /// that tell a live drill from a dead one exactly, by a lock, ignore
    /// the age); look-alikes without the mark are reported, never
    /// dropped.
    async fn remove_leftovers(&self, older_than: Duration) -> Result<LeftoverReport>;
}

/// A scratch database of one drill. [`Scratch::discard`] drops it;
/// dropping the value without discarding (a failure, a panic unwinding)
/// must drop it too, in the background, and what a crash leaves behind is
/// marked so that the adapter's leftover sweep finds it.
#[async_trait]
pub trait Scratch: fmt::Debug + Send + Sync {
    /// Its name.
    fn name(&self) -> &str;

    /// The target restoring into it, with the options to use.
    fn restore_target(&self) -> (&dyn RestoreTarget, RestoreOptions);

    /// Restores `backup` into it and says what else it checked on the
    /// way (a note for the drill's record). By default
    /// [`Engine::restore`](crate::Engine::restore) through
    /// [`Scratch::restore_target`]; adapters whose backups restore
    /// otherwise (a chain of incremental base backups, a cluster started
    /// to prove it recovers) override it.
    async fn restore(
        &self,
        engine: &crate::Engine,
        backup: crate::BackupRef,
    ) -> Result<Option<String>> {
        let (target, opts) = self.restore_target();
        engine.restore(backup, target, &opts).await.map(|_| None)
    }

    /// The fingerprint of what it now holds, computed like the source's.
    async fn fingerprint(&self) -> Result<Fingerprint>;

    /// Drops it.
    async fn discard(self: Box<Self>) -> Result<()>;
}

/// What a [`Scratch`]'s `Drop` does when its drill did not discard it (a
/// failure, a panic unwinding, a dropped future): runs `discard` on the
/// current tokio runtime in the background. Without a runtime, or when
/// `discard` fails, it logs a warning naming `sweep`, the call that
/// removes the leftover later.
pub fn discard_in_background<F>(name: &str, sweep: &'static str, discard: F)
where
    F: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let name = name.to_string();
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                if let Err(e) = discard.await {
                    tracing::warn!(scratch = %name, error = %e, "could not drop a drill scratch; {sweep} drops it later");
                }
            });
        }
        Err(_) => {
            tracing::warn!(scratch = %name, "no runtime to drop a drill scratch; {sweep} drops it later");
        }
    }
}

/// How often a running drill refreshes its scratch's mark ([`Heartbeat`]).
pub const DRILL_HEARTBEAT: Duration = Duration::from_secs(30);

/// How long a scratch's mark may go unrefreshed (twenty missed
/// [`DRILL_HEARTBEAT`]s) before the next drill on the same server drops
/// it as what a killed drill left.
pub const DEFAULT_DRILL_GRACE: Duration = Duration::from_secs(10 * 60);

/// Refreshes a scratch's mark every [`DRILL_HEARTBEAT`] while its drill
/// runs, so that a leftover sweep (another process's drill on the same
/// server) can tell a live scratch from a killed drill's: a task on the
/// current tokio runtime, stopped when the value is dropped. A failed
/// refresh is logged and retried at the next beat.
#[derive(Debug)]
pub struct Heartbeat(tokio::task::JoinHandle<()>);

impl Heartbeat {
    /// Starts beating for the scratch `name`: `beat` refreshes its mark.
    /// Needs a tokio runtime (it panics without one, like
    /// `tokio::spawn`).
    pub fn start<F, Fut>(name: &str, mut beat: F) -> Heartbeat
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<()>> + Send + 'static,
    {
        let name = name.to_string();
        Heartbeat(tokio::spawn(async move {
            let mut tick = tokio::time::interval(DRILL_HEARTBEAT);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick is immediate: the mark is new
            loop {
                tick.tick().await;
                // A beat that hangs must not stop the next ones.
                match tokio::time::timeout(DRILL_HEARTBEAT, beat()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(scratch = %name, error = %e, "could not refresh the mark of a drill scratch")
                    }
                    Err(_) => {
                        tracing::warn!(scratch = %name, "refreshing the mark of a drill scratch timed out")
                    }
                }
            }
        }))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Logs what a sweep of killed drills' scratches before a new drill
/// found: the removed ones, and the sweep's failure, which never fails
/// the drill (the new scratch does not depend on it).
pub fn log_leftover_sweep(engine: &str, swept: Result<LeftoverReport>) {
    match swept {
        Ok(report) => {
            for leftover in &report.removed {
                tracing::warn!(engine, scratch = %leftover.name, "dropped the scratch database of a killed drill");
            }
            for name in &report.unmarked {
                tracing::warn!(engine, database = %name, "a database named like a drill scratch has no drill mark; left alone");
            }
        }
        Err(e) => {
            tracing::warn!(engine, error = %e, "could not look for scratch databases of killed drills")
        }
    }
}

#[cfg(test)]
mod heartbeat_tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn beats_every_interval_until_dropped_and_survives_a_failed_beat() {
        let beats = Arc::new(AtomicUsize::new(0));
        let counter = beats.clone();
        let heartbeat = Heartbeat::start("_backup_drill_00000000", move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err(crate::Error::Restore {
                        engine: "test",
                        detail: "server gone for a moment".into(),
                    })
                } else {
                    Ok(())
                }
            }
        });
        tokio::time::sleep(DRILL_HEARTBEAT / 2).await;
        assert_eq!(beats.load(Ordering::SeqCst), 0, "no beat at once");
        tokio::time::sleep(DRILL_HEARTBEAT * 3).await;
        assert_eq!(beats.load(Ordering::SeqCst), 3, "a failed beat is retried");
        drop(heartbeat);
        tokio::time::sleep(DRILL_HEARTBEAT * 3).await;
        assert_eq!(beats.load(Ordering::SeqCst), 3, "stopped when dropped");
    }
}
