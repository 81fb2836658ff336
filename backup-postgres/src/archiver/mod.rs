//! [`WalArchiver`]: continuous WAL archiving with `pg_receivewal`
//! (issue #14, item 2). `receiver` runs the tool, `spool` knows its
//! directory, `sink` is where completed files go.

mod receiver;
mod sink;
mod spool;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backup_core::events::{Event, EventBus};
use backup_core::manifest::DEFAULT_TENANT;
use backup_core::{Error, Result};
use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::conn::PgConnection;
use crate::tools::{PgTools, psql};
use receiver::{Ended, Receiver};
use spool::{Spool, WalFile, parse_lsn, segment_end, wal_file_kind};

pub use sink::{DirSink, SegmentSink, SinkOutcome};

/// Settings of a [`WalArchiver`]: the slot, the spool directory and the
/// rest with defaults (tools found automatically, backoff 1 s doubling to
/// 60 s, spool polled every second, lag every 10 s, events on a bus of
/// its own, tenant `default` and the slot name as source id).
#[derive(Debug, Clone)]
pub struct ArchiverOptions {
    slot: String,
    spool: PathBuf,
    tools: PgTools,
    backoff_initial: Duration,
    backoff_max: Duration,
    poll_interval: Duration,
    status_interval: Duration,
    events: EventBus,
    tenant: String,
    source_id: String,
}

impl ArchiverOptions {
    /// Streams from the physical replication slot `slot` (created if
    /// missing; `[a-z0-9_]{1,63}`) into the directory `spool` (created
    /// 0700 if missing; give each slot its own).
    pub fn new(slot: impl Into<String>, spool: impl Into<PathBuf>) -> Self {
        let slot = slot.into();
        ArchiverOptions {
            source_id: slot.clone(),
            slot,
            spool: spool.into(),
            tools: PgTools::auto(),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            status_interval: Duration::from_secs(10),
            events: EventBus::default(),
            tenant: DEFAULT_TENANT.to_string(),
        }
    }

    /// Where `pg_receivewal` and `psql` come from (as
    /// [`BaseBackupSource::with_tools`](crate::BaseBackupSource::with_tools)).
    pub fn tools(mut self, tools: PgTools) -> Self {
        self.tools = tools;
        self
    }

    /// Delay before restarting `pg_receivewal` after it exits: `initial`,
    /// doubled after each failure up to `max`, back to `initial` once a
    /// run lasted longer than `max`. Also the delay between retries of a
    /// segment the sink refused.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max;
        self
    }

    /// How often the spool is checked for completed files: the longest a
    /// completed segment waits before it is handed to the sink.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// How often the server's flush position is read for the archive lag
    /// (one short `psql` connection each time).
    pub fn status_interval(mut self, every: Duration) -> Self {
        self.status_interval = every;
        self
    }

    /// The bus the archiver's events go to.
    pub fn events(mut self, bus: EventBus) -> Self {
        self.events = bus;
        self
    }

    /// The tenant and source id the archiver's events carry.
    pub fn source(mut self, tenant: impl Into<String>, source_id: impl Into<String>) -> Self {
        self.tenant = tenant.into();
        self.source_id = source_id.into();
        self
    }

    fn validate(&self) -> Result<()> {
        let slot_ok = (1..=63).contains(&self.slot.len())
            && self
                .slot
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !slot_ok {
            return Err(Error::Config(format!(
                "replication slot name {:?} is not valid; use 1 to 63 lower-case letters, digits and underscores",
                self.slot
            )));
        }
        let positive = [
            ("backoff initial delay", self.backoff_initial),
            ("poll interval", self.poll_interval),
            ("status interval", self.status_interval),
        ];
        if let Some((what, _)) = positive.iter().find(|(_, d)| d.is_zero()) {
            return Err(Error::Config(format!(
                "WAL archiver {what} is zero; give a positive duration"
            )));
        }
        if self.backoff_max < self.backoff_initial {
            return Err(Error::Config(format!(
                "WAL archiver backoff maximum {:?} is below its initial delay {:?}; raise the maximum",
                self.backoff_max, self.backoff_initial
            )));
        }
        Ok(())
    }
}

/// What a running [`WalArchiver`] reports. Serialises (for a host's
/// status page) to an object of these fields, times in RFC 3339, without
/// [`receiver_pid`](Self::receiver_pid).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct ArchiverStatus {
    /// The newest segment in the archive (from the spool's marker at
    /// start, then each segment handed over).
    pub last_segment: Option<String>,
    /// When the last file was handed over by this archiver.
    pub last_archived_at: Option<DateTime<Utc>>,
    /// Files handed over by this archiver (segments and history files).
    pub archived: u64,
    /// Times `pg_receivewal` was started again after it exited or could
    /// not start.
    pub restarts: u64,
    /// The most recent error (receiver or sink), one line, without
    /// secrets; it stays after things recover (compare the times).
    pub last_error: Option<String>,
    /// When [`last_error`](Self::last_error) happened.
    pub last_error_at: Option<DateTime<Utc>>,
    /// Bytes of WAL the server has flushed beyond the end of
    /// [`last_segment`](Self::last_segment), at the last status poll
    /// (`None` before the first poll or the first archived segment).
    pub lag_bytes: Option<u64>,
    /// Seconds since the archive last covered the server's flush position
    /// (at the last status poll; counted from the start until it first
    /// does). With segment archiving this grows while a segment fills.
    pub lag_seconds: Option<f64>,
    /// Process id of the running `pg_receivewal`, if one runs (not
    /// serialised: it means something on this host only).
    #[serde(skip_serializing)]
    pub receiver_pid: Option<u32>,
}

/// Continuous WAL archiving over the replication
/// protocol (issue #14, item 2), embeddable like the scheduler: started on
/// the host's tokio runtime, stopped cleanly, observable through
/// [`WalArchiverHandle::status`] and [`Event`](backup_core::events::Event)s.
///
/// `pg_receivewal` (of the server's major version or newer) streams WAL
/// from a physical replication slot into a spool directory; the archiver
/// supervises it (restarted with exponential backoff whenever it exits)
/// and polls the spool, handing each completed segment and timeline
/// `.history` file to a [`SegmentSink`] in name order, deleting it from
/// the spool only once the sink has it. A `.partial` segment is never
/// handed over. The slot keeps the server's WAL while the archiver is
/// down, the spool keeps what was received, so a restarted archiver
/// resumes with no gap and no segment received twice: the spool keeps
/// the newest archived segment (named in its `archived-through` file), so
/// a restarted `pg_receivewal` starts right after it rather than at the
/// slot's position, which it reports only every few seconds.
///
/// `pg_receivewal` runs with `--slot NAME --no-loop --no-password` and
/// *without* `--synchronous`: only completed segments are archived, and
/// `pg_receivewal` fsyncs each segment before giving it its final name
/// whatever that flag says, so `--synchronous` (an fsync and a status
/// message per message received) would cost a busy server's archiver
/// without making the archive any more complete. The archiver is not
/// meant to be a synchronous standby: keep its `application_name`
/// (`backup-postgres` unless the connection sets another) out of
/// `synchronous_standby_names`, and do not set that to `*`.
///
/// ```no_run
/// use std::sync::Arc;
/// use backup_postgres::{ArchiverOptions, DirSink, PgConnection, WalArchiver};
///
/// # async fn run() -> backup_core::Result<()> {
/// let conn = PgConnection::from_url("postgres://replicator@db.internal/postgres")?
///     .with_password_from_env();
/// let sink = Arc::new(DirSink::new("/var/lib/backup/wal")?);
/// let options = ArchiverOptions::new("backup_wal", "/var/lib/backup/wal-spool");
/// let archiver = WalArchiver::new(conn, sink, options)?.start();
/// // ... later
/// println!("{:?}", archiver.status().last_segment);
/// archiver.stop().await;
/// # Ok(()) }
/// ```
///
/// Build it with [`WalArchiver::new`], run it with [`WalArchiver::start`].
#[derive(Debug)]
pub struct WalArchiver {
    ctx: Context,
}

#[derive(Debug)]
struct Context {
    conn: PgConnection,
    sink: Arc<dyn SegmentSink>,
    options: ArchiverOptions,
    spool: Spool,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    status: ArchiverStatus,
    /// When the archive last covered the server's flush position.
    covered_at: Instant,
}

impl WalArchiver {
    /// An archiver of the cluster `conn` points at (a role with the
    /// `REPLICATION` attribute; the database only matters for the status
    /// queries). Refuses invalid options and creates the spool directory.
    pub fn new(
        conn: PgConnection,
        sink: Arc<dyn SegmentSink>,
        options: ArchiverOptions,
    ) -> Result<WalArchiver> {
        options.validate()?;
        let spool = Spool::open(&options.spool)?;
        let status = ArchiverStatus {
            last_segment: spool.marker()?,
            ..ArchiverStatus::default()
        };
        Ok(WalArchiver {
            ctx: Context {
                conn,
                sink,
                options,
                spool,
                state: Mutex::new(State {
                    status,
                    covered_at: Instant::now(),
                }),
            },
        })
    }

    /// Starts archiving on the current tokio runtime: first the files
    /// already in the spool, then whatever `pg_receivewal` receives.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn start(self) -> WalArchiverHandle {
        let ctx = Arc::new(self.ctx);
        let stop = CancellationToken::new();
        let task = tokio::spawn(supervise(ctx.clone(), stop.clone()));
        WalArchiverHandle {
            ctx,
            stop,
            task: Some(task),
        }
    }
}

/// A running [`WalArchiver`]. Dropping it stops the archiver without
/// waiting; [`stop`](Self::stop) waits for a clean end.
#[derive(Debug)]
pub struct WalArchiverHandle {
    ctx: Arc<Context>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl WalArchiverHandle {
    /// The archiver's current status.
    pub fn status(&self) -> ArchiverStatus {
        self.ctx.status()
    }

    /// Stops cleanly: `pg_receivewal` is asked to exit (`SIGINT`; the
    /// segment it was writing stays `.partial` in the spool, to be
    /// resumed), then the segments it completed are handed to the sink.
    /// Returns the final status.
    pub async fn stop(mut self) -> ArchiverStatus {
        self.stop.cancel();
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            tracing::warn!(error = %e, "WAL archiver task failed");
        }
        self.ctx.status()
    }
}

impl Drop for WalArchiverHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Context {
    fn status(&self) -> ArchiverStatus {
        self.state.lock().expect("archiver state").status.clone()
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().expect("archiver state"));
    }

    fn set_pid(&self, pid: Option<u32>) {
        self.update(|s| s.status.receiver_pid = pid);
    }

    fn emit(&self, event: impl FnOnce(String, String, DateTime<Utc>) -> Event) {
        let o = &self.options;
        o.events
            .emit(event(o.tenant.clone(), o.source_id.clone(), Utc::now()));
    }

    /// Records an error in the status and sends it as an event.
    fn failed(&self, segment: Option<&str>, error: &str) {
        tracing::warn!(slot = %self.options.slot, segment, error, "WAL archiving failed");
        self.update(|s| {
            s.status.last_error = Some(error.to_string());
            s.status.last_error_at = Some(Utc::now());
        });
        self.emit(|tenant, source_id, at| Event::WalArchiveError {
            tenant,
            source_id,
            segment: segment.map(str::to_string),
            error: error.to_string(),
            at,
        });
    }
}

/// Runs the receiver and the lag poll beside the spool loop until `stop`,
/// then hands over what the receiver completed before it exited.
async fn supervise(ctx: Arc<Context>, stop: CancellationToken) {
    let receiver = tokio::spawn(receive_loop(ctx.clone(), stop.clone()));
    let lag = tokio::spawn(lag_loop(ctx.clone(), stop.clone()));
    let mut retry = Duration::ZERO;
    loop {
        let wait = match drain(&ctx).await {
            Ok(()) => {
                retry = Duration::ZERO;
                ctx.options.poll_interval
            }
            Err(()) => {
                retry = (retry * 2)
                    .max(ctx.options.backoff_initial)
                    .min(ctx.options.backoff_max);
                retry.max(ctx.options.poll_interval)
            }
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    let _ = receiver.await;
    let _ = lag.await;
    let _ = drain(&ctx).await;
}

/// Hands every completed file of the spool newer than the marker to the
/// sink, in name order, stopping at the first the sink refuses.
async fn drain(ctx: &Context) -> std::result::Result<(), ()> {
    let listed = on_spool(ctx, |s| Ok((s.marker()?, s.complete_files()?))).await;
    let (mut marker, names) = listed.map_err(|e| ctx.failed(None, &e.to_string()))?;
    for name in names {
        if let Some(m) = &marker
            && name.as_str() <= m.as_str()
        {
            // Archived before; the marker's own segment stays (see spool.rs).
            if name != *m {
                let stale = name.clone();
                on_spool(ctx, move |s| s.remove(&stale))
                    .await
                    .map_err(|e| ctx.failed(None, &e.to_string()))?;
            }
            continue;
        }
        let outcome = ctx
            .sink
            .push(&name, &ctx.spool.path(&name))
            .await
            .map_err(|e| ctx.failed(Some(&name), &e.to_string()))?;
        let is_segment = wal_file_kind(&name) == Some(WalFile::Segment);
        let previous = if is_segment {
            marker.replace(name.clone())
        } else {
            None
        };
        let done = name.clone();
        on_spool(ctx, move |s| {
            if !is_segment {
                return s.remove(&done);
            }
            s.set_marker(&done)?;
            previous.map_or(Ok(()), |previous| s.remove(&previous))
        })
        .await
        .map_err(|e| ctx.failed(Some(&name), &e.to_string()))?;
        ctx.update(|s| {
            if is_segment {
                s.status.last_segment = Some(name.clone());
            }
            s.status.last_archived_at = Some(Utc::now());
            s.status.archived += 1;
        });
        tracing::debug!(segment = %name, ?outcome, "WAL file archived");
        ctx.emit(|tenant, source_id, at| Event::WalArchived {
            tenant,
            source_id,
            segment: name.clone(),
            stored: outcome == SinkOutcome::Stored,
            at,
        });
    }
    Ok(())
}

/// Runs spool file operations (listing, fsync, deleting) on the blocking
/// pool, off the runtime's workers.
async fn on_spool<T: Send + 'static>(
    ctx: &Context,
    op: impl FnOnce(&Spool) -> Result<T> + Send + 'static,
) -> Result<T> {
    let spool = ctx.spool.clone();
    tokio::task::spawn_blocking(move || op(&spool))
        .await
        .map_err(|e| Error::task("WAL spool file operation", e))?
}

/// Runs `pg_receivewal` again and again until `stop`, with backoff.
async fn receive_loop(ctx: Arc<Context>, stop: CancellationToken) {
    let (initial, max) = (ctx.options.backoff_initial, ctx.options.backoff_max);
    let mut delay = initial;
    loop {
        let started = Instant::now();
        let receiver = Receiver {
            conn: &ctx.conn,
            tools: &ctx.options.tools,
            slot: &ctx.options.slot,
            spool: ctx.spool.dir(),
        };
        let (error, ran) = match receiver::run(&receiver, &stop, |pid| ctx.set_pid(pid)).await {
            Ended::Stopped => return,
            Ended::Failed { error, ran } => (error.to_string(), ran),
        };
        if stop.is_cancelled() {
            return;
        }
        if ran {
            ctx.update(|s| {
                s.status.last_error = Some(error.clone());
                s.status.last_error_at = Some(Utc::now());
            });
            tracing::warn!(slot = %ctx.options.slot, %error, "pg_receivewal ended");
        } else {
            ctx.failed(None, &error);
        }
        if started.elapsed() > max {
            delay = initial;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(max);
        let mut restarts = 0;
        ctx.update(|s| {
            s.status.restarts += 1;
            restarts = s.status.restarts;
        });
        ctx.emit(|tenant, source_id, at| Event::WalReceiverRestarted {
            tenant,
            source_id,
            restarts,
            reason: error.clone(),
            at,
        });
    }
}

/// Reads the server's flush position every status interval and updates
/// the archive lag.
async fn lag_loop(ctx: Arc<Context>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = poll_lag(&ctx) => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(ctx.options.status_interval) => {}
        }
    }
}

async fn poll_lag(ctx: &Context) {
    let answer = psql(
        &ctx.options.tools,
        &ctx.conn,
        "SELECT pg_current_wal_flush_lsn() || ' ' || setting FROM pg_settings WHERE name = 'wal_segment_size'",
    )
    .await;
    let parsed = answer.as_ref().ok().and_then(|a| {
        let (lsn, size) = a.trim().split_once(' ')?;
        Some((parse_lsn(lsn)?, size.parse::<u64>().ok()?))
    });
    let Some((flush, segment_size)) = parsed else {
        tracing::debug!(?answer, "WAL archiver: no flush position");
        return;
    };
    ctx.update(|s| {
        let end = s
            .status
            .last_segment
            .as_deref()
            .and_then(|name| segment_end(name, segment_size));
        if end.is_some_and(|end| end >= flush) {
            s.covered_at = Instant::now();
        }
        s.status.lag_bytes = end.map(|end| flush.saturating_sub(end));
        s.status.lag_seconds = Some(s.covered_at.elapsed().as_secs_f64());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        let ok = |o: &ArchiverOptions| o.validate().map_err(|e| e.to_string());
        assert!(ok(&ArchiverOptions::new("backup_wal_1", "/x")).is_ok());
        assert!(ok(&ArchiverOptions::new("a".repeat(63), "/x")).is_ok());
        for bad in ["", "Backup", "wal-1", "wal 1", "wal;drop", "é"] {
            let err = ok(&ArchiverOptions::new(bad, "/x")).unwrap_err();
            assert!(err.contains("replication slot name"), "{bad}: {err}");
        }
        assert!(ok(&ArchiverOptions::new("a".repeat(64), "/x")).is_err());
        let base = || ArchiverOptions::new("s", "/x");
        let cases = [
            base().poll_interval(Duration::ZERO),
            base().status_interval(Duration::ZERO),
            base().backoff(Duration::ZERO, Duration::from_secs(1)),
            base().backoff(Duration::from_secs(2), Duration::from_secs(1)),
        ];
        for options in cases {
            assert!(ok(&options).is_err(), "{options:?}");
        }
    }

    #[test]
    fn a_spool_path_that_is_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        let conn = PgConnection::new("h", 5432, "u", "d");
        let sink = Arc::new(DirSink::new(dir.path().join("archive")).unwrap());
        let err = WalArchiver::new(conn.clone(), sink.clone(), ArchiverOptions::new("s", &file))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a directory"), "{err}");
        let spool = dir.path().join("spool");
        WalArchiver::new(conn, sink, ArchiverOptions::new("s", &spool)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&spool).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "spool mode {mode:o}");
    }
}
