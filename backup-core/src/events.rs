//! Events: every start, progress step, success, failure, skip, deletion and
//! staleness alert, broadcast to whoever subscribes. Notifiers (log,
//! webhook) and metrics are subscribers, not special cases.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::manifest::BackupKind;

/// Something that happened to a backup or a source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A backup started.
    Started {
        /// Tenant of the source.
        tenant: String,
        /// Source id.
        source_id: String,
        /// Manual or scheduled.
        kind: BackupKind,
        /// When.
        at: DateTime<Utc>,
    },
    /// A running backup read more of its source.
    Progress {
        /// Tenant of the source.
        tenant: String,
        /// Source id.
        source_id: String,
        /// Raw (uncompressed) bytes read so far.
        bytes: u64,
        /// When.
        at: DateTime<Utc>,
    },
    /// A backup was committed.
    Succeeded {
        /// Tenant of the source.
        tenant: String,
        /// Source id.
        source_id: String,
        /// The new backup's id.
        backup_id: String,
        /// Manual or scheduled.
        kind: BackupKind,
        /// Bytes stored.
        bytes: u64,
        /// Wall time in seconds.
        duration_seconds: f64,
        /// When.
        at: DateTime<Utc>,
    },
    /// A backup failed; nothing was committed.
    Failed {
        /// Tenant of the source.
        tenant: String,
        /// Source id.
        source_id: String,
        /// Manual or scheduled.
        kind: BackupKind,
        /// The error, one line, without secrets.
        error: String,
        /// Wall time in seconds until the failure.
        duration_seconds: f64,
        /// When.
        at: DateTime<Utc>,
    },
    /// A scheduled trigger did not run (previous run still going, missed
    /// while down with the skip policy, lease held by another replica).
    Skipped {
        /// Scheduler job id.
        job_id: String,
        /// The trigger time that was skipped.
        scheduled_for: DateTime<Utc>,
        /// Why.
        reason: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Retention (or a person) deleted a backup.
    Pruned {
        /// Tenant of the source.
        tenant: String,
        /// Source id.
        source_id: String,
        /// The deleted backup's id.
        backup_id: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// A source has had no successful backup for longer than its threshold.
    Stale {
        /// Tenant of the source.
        tenant: String,
        /// Source id.
        source_id: String,
        /// Hours since the last success (`None`: never succeeded).
        hours_since_success: Option<f64>,
        /// When.
        at: DateTime<Utc>,
    },
    /// A WAL archiver handed a completed WAL segment (or timeline
    /// `.history` file) to its archive.
    WalArchived {
        /// Tenant of the source.
        tenant: String,
        /// Source id (the cluster).
        source_id: String,
        /// The file's name (`000000010000000000000003`, `00000002.history`).
        segment: String,
        /// `false` when the archive already held it, byte for byte.
        stored: bool,
        /// When.
        at: DateTime<Utc>,
    },
    /// A WAL archiver could not archive: a segment the archive refused
    /// (kept in the spool, retried; nothing later is archived past it), or
    /// the receiver could not run (kept retrying with backoff).
    WalArchiveError {
        /// Tenant of the source.
        tenant: String,
        /// Source id (the cluster).
        source_id: String,
        /// The segment concerned, if the error is about one.
        segment: Option<String>,
        /// The error, one line, without secrets.
        error: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// A WAL archiver restarted its receiver (`pg_receivewal`) after it
    /// exited or failed to start.
    WalReceiverRestarted {
        /// Tenant of the source.
        tenant: String,
        /// Source id (the cluster).
        source_id: String,
        /// Restarts since the archiver started, this one included.
        restarts: u64,
        /// Why the previous run ended, one line, without secrets.
        reason: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// A restore drill restored a backup into a scratch database and
    /// found its content as recorded (or restored one without a recorded
    /// fingerprint: see the drill record's note).
    DrillSucceeded {
        /// Tenant of the source.
        tenant: String,
        /// Source id.
        source_id: String,
        /// The backup drilled.
        backup_id: String,
        /// Wall time in seconds.
        duration_seconds: f64,
        /// When.
        at: DateTime<Utc>,
    },
    /// A restore drill failed: the backup did not restore, or its content
    /// differs from what was recorded at dump time.
    DrillFailed {
        /// Tenant of the source.
        tenant: String,
        /// Source id.
        source_id: String,
        /// The backup drilled.
        backup_id: String,
        /// Why, one line, without secrets.
        error: String,
        /// When.
        at: DateTime<Utc>,
    },
}

impl Event {
    /// The event's name (`started`, `succeeded`...).
    pub fn name(&self) -> &'static str {
        match self {
            Event::Started { .. } => "started",
            Event::Progress { .. } => "progress",
            Event::Succeeded { .. } => "succeeded",
            Event::Failed { .. } => "failed",
            Event::Skipped { .. } => "skipped",
            Event::Pruned { .. } => "pruned",
            Event::Stale { .. } => "stale",
            Event::WalArchived { .. } => "wal_archived",
            Event::WalArchiveError { .. } => "wal_archive_error",
            Event::WalReceiverRestarted { .. } => "wal_receiver_restarted",
            Event::DrillSucceeded { .. } => "drill_succeeded",
            Event::DrillFailed { .. } => "drill_failed",
        }
    }

    /// A one-line human summary (for logs and chat messages).
    pub fn summary(&self) -> String {
        match self {
            Event::Started {
                tenant,
                source_id,
                kind,
                ..
            } => {
                format!("{kind} backup of {tenant}/{source_id} started")
            }
            Event::Progress {
                tenant,
                source_id,
                bytes,
                ..
            } => {
                format!(
                    "backup of {tenant}/{source_id}: {} read",
                    crate::format::human_bytes(*bytes)
                )
            }
            Event::Succeeded {
                tenant,
                source_id,
                backup_id,
                bytes,
                duration_seconds,
                ..
            } => format!(
                "backup {backup_id} of {tenant}/{source_id} succeeded: {} in {duration_seconds:.1} s",
                crate::format::human_bytes(*bytes)
            ),
            Event::Failed {
                tenant,
                source_id,
                error,
                ..
            } => {
                format!("backup of {tenant}/{source_id} FAILED: {error}")
            }
            Event::Skipped {
                job_id,
                scheduled_for,
                reason,
                ..
            } => {
                format!("trigger {scheduled_for} of job {job_id} skipped: {reason}")
            }
            Event::Pruned {
                tenant,
                source_id,
                backup_id,
                ..
            } => {
                format!("backup {backup_id} of {tenant}/{source_id} deleted by retention")
            }
            Event::Stale {
                tenant,
                source_id,
                hours_since_success,
                ..
            } => match hours_since_success {
                Some(h) => format!("{tenant}/{source_id}: no successful backup for {h:.1} h"),
                None => format!("{tenant}/{source_id}: no successful backup yet"),
            },
            Event::WalArchived {
                tenant,
                source_id,
                segment,
                stored,
                ..
            } => {
                let how = if *stored {
                    "archived"
                } else {
                    "already archived"
                };
                format!("WAL {segment} of {tenant}/{source_id} {how}")
            }
            Event::WalArchiveError {
                tenant,
                source_id,
                segment,
                error,
                ..
            } => match segment {
                Some(segment) => {
                    format!("WAL archiving of {tenant}/{source_id} FAILED at {segment}: {error}")
                }
                None => format!("WAL archiving of {tenant}/{source_id} FAILED: {error}"),
            },
            Event::WalReceiverRestarted {
                tenant,
                source_id,
                restarts,
                reason,
                ..
            } => format!(
                "WAL receiver of {tenant}/{source_id} restarted (restart {restarts}): {reason}"
            ),
            Event::DrillSucceeded {
                tenant,
                source_id,
                backup_id,
                duration_seconds,
                ..
            } => format!(
                "restore drill of backup {backup_id} of {tenant}/{source_id} passed in {duration_seconds:.1} s"
            ),
            Event::DrillFailed {
                tenant,
                source_id,
                backup_id,
                error,
                ..
            } => format!(
                "restore drill of backup {backup_id} of {tenant}/{source_id} FAILED: {error}"
            ),
        }
    }
}

/// Broadcasts [`Event`]s to subscribers. Cheap to clone; sending never
/// blocks and never fails (events nobody listens to are dropped, and a
/// subscriber that falls more than `capacity` events behind loses the
/// oldest ones rather than slowing backups down).
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBus")
            .field("subscribers", &self.tx.receiver_count())
            .finish()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new(1024)
    }
}

impl EventBus {
    /// A bus buffering up to `capacity` events per subscriber.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        EventBus { tx }
    }

    /// Publishes an event.
    pub fn emit(&self, event: Event) {
        let _ = self.tx.send(event);
    }

    /// A new subscription, receiving events emitted from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

/// Delivers events somewhere (a log, a webhook, a pager).
#[async_trait]
pub trait Notifier: fmt::Debug + Send + Sync + 'static {
    /// Whether this notifier wants the event (default: successes, failures,
    /// skips, prunes, staleness and WAL archiving errors and restarts; not
    /// starts, progress or each archived WAL segment).
    fn wants(&self, event: &Event) -> bool {
        !matches!(
            event,
            Event::Started { .. } | Event::Progress { .. } | Event::WalArchived { .. }
        )
    }

    /// Delivers one event. Errors are retried by [`spawn_notifier`].
    async fn notify(&self, event: &Event) -> Result<()>;
}

/// Writes events to the `tracing` log: failures and staleness as warnings,
/// the rest as info.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    fn wants(&self, event: &Event) -> bool {
        !matches!(event, Event::Progress { .. })
    }

    async fn notify(&self, event: &Event) -> Result<()> {
        match event {
            Event::Failed { .. }
            | Event::Stale { .. }
            | Event::Skipped { .. }
            | Event::WalArchiveError { .. }
            | Event::WalReceiverRestarted { .. } => {
                tracing::warn!(event = event.name(), "{}", event.summary())
            }
            Event::WalArchived { .. } => {
                tracing::debug!(event = event.name(), "{}", event.summary())
            }
            _ => tracing::info!(event = event.name(), "{}", event.summary()),
        }
        Ok(())
    }
}

/// How [`spawn_notifier`] retries a failing notifier.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per event, including the first.
    pub attempts: u32,
    /// Delay before the first retry; doubled after each.
    pub initial_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            initial_backoff: Duration::from_millis(500),
        }
    }
}

/// Feeds every event of `bus` that `notifier` wants to it, in order, on a
/// background task, retrying with exponential backoff and logging what
/// still fails. Backups never wait for notifiers. The task ends when the
/// bus is dropped.
pub fn spawn_notifier(
    bus: &EventBus,
    notifier: Arc<dyn Notifier>,
    retry: RetryPolicy,
) -> JoinHandle<()> {
    let mut rx = bus.subscribe();
    tokio::spawn(async move {
        loop {
            let event = match rx.recv().await {
                Ok(event) => event,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        ?notifier,
                        missed = n,
                        "notifier fell behind; events dropped"
                    );
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            };
            if !notifier.wants(&event) {
                continue;
            }
            let mut backoff = retry.initial_backoff;
            for attempt in 1..=retry.attempts.max(1) {
                match notifier.notify(&event).await {
                    Ok(()) => break,
                    Err(e) if attempt < retry.attempts => {
                        tracing::debug!(?notifier, attempt, error = %e, "notification failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff *= 2;
                    }
                    Err(e) => {
                        tracing::warn!(?notifier, event = event.name(), error = %e, "notification failed; giving up");
                    }
                }
            }
        }
    })
}
