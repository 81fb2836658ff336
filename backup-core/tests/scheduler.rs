//! The scheduler driven by a manual clock: no test sleeps for schedule time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use backup_core::prelude::*;
use backup_core::testing::ScriptedSource;
use backup_core::{
    catalog::HealthOptions, catalog::HealthStatus, clock::ManualClock, key::Key,
    manifest::BackupKind, memory::InMemoryStore, retention::KeepLast, schedule::parse_tz,
    scheduler::Job, scheduler::JobOutcome, scheduler::MisfirePolicy, scheduler::Shutdown,
    scheduler::Trigger,
};
use backup_core::{clock::Clock, store::StoreExt};
use chrono::{DateTime, TimeZone, Utc};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Records its triggers; optionally holds each run until released.
#[derive(Debug, Default)]
struct Probe {
    triggers: Mutex<Vec<Trigger>>,
    running: AtomicUsize,
    peak: AtomicUsize,
    gate: Option<Arc<Semaphore>>,
    hold: Option<Duration>,
}

impl Probe {
    fn gated(gate: Arc<Semaphore>) -> Self {
        Probe {
            gate: Some(gate),
            ..Probe::default()
        }
    }

    fn holding(d: Duration) -> Self {
        Probe {
            hold: Some(d),
            ..Probe::default()
        }
    }

    fn count(&self) -> usize {
        self.triggers.lock().unwrap().len()
    }

    fn times(&self) -> Vec<DateTime<Utc>> {
        self.triggers
            .lock()
            .unwrap()
            .iter()
            .filter_map(|t| t.scheduled_for)
            .collect()
    }
}

#[async_trait]
impl Job for Probe {
    async fn run(&self, trigger: &Trigger, cancel: CancellationToken) -> Result<JobOutcome> {
        let n = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
        self.triggers.lock().unwrap().push(trigger.clone());
        let result = async {
            if let Some(gate) = &self.gate {
                tokio::select! {
                    p = gate.acquire() => { p.unwrap().forget(); }
                    _ = cancel.cancelled() => return Err(Error::Cancelled),
                }
            }
            if let Some(d) = self.hold {
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = cancel.cancelled() => return Err(Error::Cancelled),
                }
            }
            Ok(JobOutcome::default())
        }
        .await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

/// Polls until `cond` holds (real time, at most 10 s).
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Waits until the scheduler has handled every trigger up to `now`.
async fn settle(s: &Scheduler, now: DateTime<Utc>) {
    eventually("scheduler settles", || {
        s.running() == 0
            && s.jobs()
                .iter()
                .all(|j| j.next_run.is_none_or(|t| t > now) && !j.running)
    })
    .await;
}

fn start(clock: &ManualClock, config: SchedulerConfig) -> (Scheduler, EventBus) {
    let events = EventBus::default();
    let s = Scheduler::start(config, Arc::new(clock.clone()), events.clone());
    (s, events)
}

#[tokio::test]
async fn fires_exactly_the_computed_triggers_of_every_schedule_form() {
    // 2025-03-10 .. 2025-04-14 in Madrid: a spring-forward day (03-30) and
    // two month ends.
    let tz = parse_tz("Europe/Madrid").unwrap();
    let begin = utc("2025-03-10T00:00:00Z");
    let end = utc("2025-04-14T00:00:00Z");
    let clock = ManualClock::new(begin);
    let (s, _) = start(
        &clock,
        SchedulerConfig::default().tz(tz).max_parallel_jobs(16),
    );
    let forms = [
        "0 2 * * *",
        "30 2 * * *",
        "0 1 * * 1-5",
        "0 0 31 * *",
        "*/30 1-3 * * SUN",
        "@weekly",
        "daily 02:30",
        "every_12h 15:00",
        "every_6h 15:00",
        "weekly sun 02:30",
        "monthly 28 05:00",
        "once 2025-03-30T02:30",
    ];
    let mut probes = Vec::new();
    for (i, form) in forms.iter().enumerate() {
        let probe = Arc::new(Probe::default());
        let schedule: Schedule = form.parse().unwrap();
        s.upsert(JobSpec::new(format!("job{i}"), schedule, probe.clone()).last_run(Some(begin)))
            .unwrap();
        probes.push(probe);
    }
    // Jump from trigger to trigger.
    loop {
        let next = s.jobs().iter().filter_map(|j| j.next_run).min();
        let Some(next) = next.filter(|t| *t <= end) else {
            break;
        };
        clock.set(next);
        settle(&s, next).await;
    }
    for (form, probe) in forms.iter().zip(&probes) {
        let schedule: Schedule = form.parse().unwrap();
        let mut expected = Vec::new();
        let mut at = begin;
        while let Some(t) = schedule.next_after(at, tz).filter(|t| *t <= end) {
            expected.push(t);
            at = t;
        }
        assert!(!expected.is_empty(), "{form}");
        assert_eq!(probe.times(), expected, "{form}");
    }
    // Spot checks: the spring-forward day ran 02:30 once, at 03:00 CEST.
    let daily_0230 = probes[6].times();
    let on_the_day: Vec<_> = daily_0230
        .iter()
        .filter(|t| t.with_timezone(&tz).format("%m-%d").to_string() == "03-30")
        .collect();
    assert_eq!(on_the_day, [&utc("2025-03-30T01:00:00Z")]);
    assert_eq!(probes[11].count(), 1, "once runs once");
    s.shutdown(Shutdown::Cancel).await;
}

#[tokio::test]
async fn a_trigger_during_a_run_is_skipped_and_recorded() {
    let clock = ManualClock::new(utc("2025-01-01T00:00:30Z"));
    let (s, events) = start(&clock, SchedulerConfig::default());
    let mut rx = events.subscribe();
    let gate = Arc::new(Semaphore::new(0));
    let probe = Arc::new(Probe::gated(gate.clone()));
    s.upsert(
        JobSpec::new("minutely", "* * * * *".parse().unwrap(), probe.clone())
            .last_run(Some(clock.now())),
    )
    .unwrap();
    clock.set(utc("2025-01-01T00:01:00Z"));
    eventually("first run started", || probe.count() == 1).await;
    clock.set(utc("2025-01-01T00:02:00Z"));
    let skipped = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(Event::Skipped {
                job_id,
                reason,
                scheduled_for,
                ..
            }) = rx.recv().await
            {
                return (job_id, reason, scheduled_for);
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(skipped.0, "minutely");
    assert!(skipped.1.contains("still in progress"), "{}", skipped.1);
    assert_eq!(skipped.2, utc("2025-01-01T00:02:00Z"));
    assert_eq!(probe.count(), 1, "no overlapping run");
    gate.add_permits(1);
    eventually("first run finished", || s.running() == 0).await;
    clock.set(utc("2025-01-01T00:03:00Z"));
    eventually("third trigger ran", || probe.count() == 2).await;
    gate.add_permits(1);
    s.shutdown(Shutdown::Drain(Duration::from_secs(5))).await;
}

#[tokio::test]
async fn misfire_policies_on_start_up() {
    let now = utc("2025-06-10T10:00:00Z");
    let three_days_ago = now - chrono::Duration::days(3);
    // Run once: the daily 02:00 trigger of today was missed -> one run now.
    let clock = ManualClock::new(now);
    let (s, _) = start(&clock, SchedulerConfig::default());
    let probe = Arc::new(Probe::default());
    s.upsert(
        JobSpec::new("catchup", "0 2 * * *".parse().unwrap(), probe.clone())
            .last_run(Some(three_days_ago)),
    )
    .unwrap();
    eventually("catch-up run", || probe.count() == 1).await;
    assert_eq!(
        probe.times(),
        [utc("2025-06-10T02:00:00Z")],
        "coalesced into the latest trigger"
    );
    settle(&s, now).await;
    assert_eq!(probe.count(), 1, "exactly once");
    assert_eq!(s.jobs()[0].next_run, Some(utc("2025-06-11T02:00:00Z")));

    // Up to date: no catch-up.
    let fresh = Arc::new(Probe::default());
    s.upsert(
        JobSpec::new("fresh", "0 2 * * *".parse().unwrap(), fresh.clone())
            .last_run(Some(utc("2025-06-10T02:00:05Z"))),
    )
    .unwrap();
    settle(&s, now).await;
    assert_eq!(fresh.count(), 0);

    // Skip: nothing runs, a skip is recorded.
    let skipper = Arc::new(Probe::default());
    s.upsert(
        JobSpec::new("skipper", "0 2 * * *".parse().unwrap(), skipper.clone())
            .misfire(MisfirePolicy::Skip)
            .last_run(Some(three_days_ago)),
    )
    .unwrap();
    settle(&s, now).await;
    assert_eq!(skipper.count(), 0);
    s.shutdown(Shutdown::Cancel).await;
}

#[tokio::test]
async fn misfires_while_busy_follow_the_policy() {
    let start_at = utc("2025-06-10T00:00:00Z");
    let clock = ManualClock::new(start_at);
    let (s, events) = start(&clock, SchedulerConfig::default());
    let mut rx = events.subscribe();
    let runner = Arc::new(Probe::default());
    let skipper = Arc::new(Probe::default());
    s.upsert(
        JobSpec::new("hourly-run", "0 * * * *".parse().unwrap(), runner.clone())
            .last_run(Some(start_at)),
    )
    .unwrap();
    s.upsert(
        JobSpec::new("hourly-skip", "0 * * * *".parse().unwrap(), skipper.clone())
            .misfire(MisfirePolicy::Skip)
            .last_run(Some(start_at)),
    )
    .unwrap();
    // The process "wakes up" five hours later (suspended, clock jump).
    let late = utc("2025-06-10T05:20:00Z");
    clock.set(late);
    settle(&s, late).await;
    assert_eq!(
        runner.times(),
        [utc("2025-06-10T05:00:00Z")],
        "one coalesced run"
    );
    assert_eq!(skipper.count(), 0);
    let mut saw_skip = false;
    while let Ok(e) = rx.try_recv() {
        if let Event::Skipped { job_id, reason, .. } = e {
            assert_eq!(job_id, "hourly-skip");
            assert!(reason.contains("misfire policy: skip"), "{reason}");
            saw_skip = true;
        }
    }
    assert!(saw_skip);
    // Back on time: both run at 06:00.
    clock.set(utc("2025-06-10T06:00:00Z"));
    settle(&s, utc("2025-06-10T06:00:00Z")).await;
    assert_eq!(runner.count(), 2);
    assert_eq!(skipper.count(), 1);
    s.shutdown(Shutdown::Cancel).await;
}

#[tokio::test]
async fn fifty_triggers_with_limit_four() {
    let at = utc("2025-06-10T00:00:00Z");
    let clock = ManualClock::new(at);
    let (s, _) = start(&clock, SchedulerConfig::default().max_parallel_jobs(4));
    let probes: Vec<Arc<Probe>> = (0..50)
        .map(|_| Arc::new(Probe::holding(Duration::from_millis(30))))
        .collect();
    for (i, p) in probes.iter().enumerate() {
        s.upsert(
            JobSpec::new(format!("j{i}"), "0 1 * * *".parse().unwrap(), p.clone())
                .last_run(Some(at)),
        )
        .unwrap();
    }
    clock.set(utc("2025-06-10T01:00:00Z"));
    eventually("all 50 ran", || {
        probes.iter().all(|p| p.count() == 1) && s.running() == 0
    })
    .await;
    assert!(s.peak_running() <= 4, "peak {}", s.peak_running());
    assert_eq!(s.peak_running(), 4, "the limit was reached");

    // Manual runs go through the same limit: 50 concurrent run_now calls.
    let s = Arc::new(s);
    let calls = (0..50).map(|i| {
        let s = s.clone();
        async move { s.run_now(&format!("j{i}")).await }
    });
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(|r| r.is_ok()));
    assert!(probes.iter().all(|p| p.count() == 2));
    assert!(s.peak_running() <= 4);
    // Manual runs of one busy job queue up instead of overlapping.
    let one = probes[0].clone();
    let calls = (0..5).map(|_| {
        let s = s.clone();
        async move { s.run_now("j0").await }
    });
    futures::future::join_all(calls).await;
    assert_eq!(one.count(), 7);
    assert_eq!(
        one.peak.load(Ordering::SeqCst),
        1,
        "runs of one job never overlap"
    );
    s.shutdown(Shutdown::Drain(Duration::from_secs(5))).await;
}

#[tokio::test]
async fn jobs_change_at_run_time() {
    let at = utc("2025-06-10T00:00:00Z");
    let clock = ManualClock::new(at);
    let (s, _) = start(&clock, SchedulerConfig::default());
    let probe = Arc::new(Probe::default());
    s.upsert(JobSpec::new("db", "0 2 * * *".parse().unwrap(), probe.clone()).last_run(Some(at)))
        .unwrap();
    assert_eq!(s.jobs()[0].next_run, Some(utc("2025-06-10T02:00:00Z")));
    // Change: 03:00 instead.
    s.upsert(JobSpec::new("db", "0 3 * * *".parse().unwrap(), probe.clone()).last_run(Some(at)))
        .unwrap();
    clock.set(utc("2025-06-10T02:30:00Z"));
    settle(&s, clock.now()).await;
    assert_eq!(probe.count(), 0);
    clock.set(utc("2025-06-10T03:00:00Z"));
    settle(&s, clock.now()).await;
    assert_eq!(probe.times(), [utc("2025-06-10T03:00:00Z")]);
    // Disable, then remove.
    s.upsert(JobSpec::new("db", Schedule::Disabled, probe.clone()))
        .unwrap();
    assert_eq!(s.jobs()[0].next_run, None);
    assert!(s.remove("db"));
    assert!(!s.remove("db"));
    clock.set(utc("2025-06-12T03:00:00Z"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(probe.count(), 1);
    assert!(matches!(s.run_now("db").await, Err(Error::NotFound { .. })));
    assert!(
        s.upsert(JobSpec::new("../x", Schedule::Disabled, probe.clone()))
            .is_err()
    );
    s.shutdown(Shutdown::Cancel).await;
}

#[tokio::test]
async fn shutdown_drains_or_cancels() {
    let at = utc("2025-06-10T00:00:00Z");
    let clock = ManualClock::new(at);
    let (s, _) = start(&clock, SchedulerConfig::default());
    let gate = Arc::new(Semaphore::new(0));
    let stuck = Arc::new(Probe::gated(gate.clone()));
    s.upsert(JobSpec::new("stuck", "0 1 * * *".parse().unwrap(), stuck.clone()).last_run(Some(at)))
        .unwrap();
    clock.set(utc("2025-06-10T01:00:00Z"));
    eventually("running", || s.running() == 1).await;
    // Drain with a short timeout: the run is cancelled when it expires.
    tokio::time::timeout(
        Duration::from_secs(10),
        s.shutdown(Shutdown::Drain(Duration::from_millis(100))),
    )
    .await
    .expect("shutdown finished");
    assert_eq!(s.running(), 0);
    assert!(matches!(s.run_now("stuck").await, Err(Error::Cancelled)));

    // A drain that the run finishes within.
    let clock = ManualClock::new(at);
    let (s, _) = start(&clock, SchedulerConfig::default());
    let quick = Arc::new(Probe::holding(Duration::from_millis(50)));
    s.upsert(JobSpec::new("quick", "0 1 * * *".parse().unwrap(), quick.clone()).last_run(Some(at)))
        .unwrap();
    clock.set(utc("2025-06-10T01:00:00Z"));
    eventually("running", || quick.count() == 1).await;
    s.shutdown(Shutdown::Drain(Duration::from_secs(10))).await;
    assert_eq!(quick.peak.load(Ordering::SeqCst), 1);
    assert_eq!(s.running(), 0);
}

#[tokio::test]
async fn leases_make_two_processes_run_each_trigger_once() {
    let at = utc("2025-06-10T00:00:00Z");
    let clock = ManualClock::new(at);
    let shared: Arc<dyn Store> = Arc::new(InMemoryStore::new());
    let config = SchedulerConfig::default().leases(shared.clone());
    let (a, _) = start(&clock, config.clone());
    let (b, _) = start(&clock, config);
    let pa = Arc::new(Probe::default());
    let pb = Arc::new(Probe::default());
    a.upsert(JobSpec::new("nightly", "0 * * * *".parse().unwrap(), pa.clone()).last_run(Some(at)))
        .unwrap();
    b.upsert(JobSpec::new("nightly", "0 * * * *".parse().unwrap(), pb.clone()).last_run(Some(at)))
        .unwrap();
    for hour in 1..=6 {
        let t = Utc.with_ymd_and_hms(2025, 6, 10, hour, 0, 0).unwrap();
        clock.set(t);
        settle(&a, t).await;
        settle(&b, t).await;
        eventually("one run per trigger", || {
            pa.count() + pb.count() == hour as usize
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(pa.count() + pb.count(), 6);
    let leases = shared
        .list_all(Some(&Key::new("_locks/nightly").unwrap()))
        .await
        .unwrap();
    assert_eq!(leases.len(), 6);
    a.shutdown(Shutdown::Cancel).await;
    b.shutdown(Shutdown::Cancel).await;
}

#[tokio::test]
async fn backup_jobs_apply_retention_after_scheduled_runs() {
    let store = Arc::new(InMemoryStore::new());
    let events = EventBus::default();
    let mut rx = events.subscribe();
    let engine = Engine::new(store.clone() as Arc<dyn Store>).with_events(events.clone());
    let job = Arc::new(BackupJob {
        engine: engine.clone(),
        source: Arc::new(ScriptedSource::ok(10_000)),
        request: BackupRequest::new("orders").tenant("acme"),
        retention: vec![Arc::new(KeepLast(2))],
        keep_newest_verified: true,
    });
    let at = utc("2025-06-10T00:00:00Z");
    let clock = ManualClock::new(at);
    let s = Scheduler::start(
        SchedulerConfig::default(),
        Arc::new(clock.clone()),
        events.clone(),
    );
    s.upsert(JobSpec::new("orders", "0 * * * *".parse().unwrap(), job).last_run(Some(at)))
        .unwrap();
    s.run_now("orders").await.unwrap(); // manual: kept by retention
    for hour in 1..=4 {
        // Backup ids carry the real start time to the second.
        tokio::time::sleep(Duration::from_millis(1010)).await;
        let t = Utc.with_ymd_and_hms(2025, 6, 10, hour, 0, 0).unwrap();
        clock.set(t);
        settle(&s, t).await;
    }
    let left = engine
        .catalog()
        .list(&Filter::tenant("acme"))
        .await
        .unwrap();
    let kinds: Vec<BackupKind> = left.iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        [
            BackupKind::Scheduled,
            BackupKind::Scheduled,
            BackupKind::Manual
        ]
    );
    let mut names = Vec::new();
    while let Ok(e) = rx.try_recv() {
        names.push(e.name());
    }
    assert_eq!(names.iter().filter(|n| **n == "succeeded").count(), 5);
    assert_eq!(names.iter().filter(|n| **n == "pruned").count(), 2);
    assert_eq!(names.iter().filter(|n| **n == "started").count(), 5);
    let health = engine
        .catalog()
        .health(&Filter::all(), &HealthOptions::default(), Utc::now())
        .await
        .unwrap();
    assert_eq!(health.len(), 1);
    assert_eq!(health[0].status, HealthStatus::Healthy);
    s.shutdown(Shutdown::Drain(Duration::from_secs(5))).await;
}

#[tokio::test]
async fn removing_and_re_adding_a_running_job_never_runs_it_twice() {
    let at = utc("2025-06-10T00:00:00Z");
    let clock = ManualClock::new(at);
    let (s, _) = start(&clock, SchedulerConfig::default());
    let gate = Arc::new(Semaphore::new(0));
    let probe = Arc::new(Probe::gated(gate.clone()));
    s.upsert(JobSpec::new("db", "0 1 * * *".parse().unwrap(), probe.clone()).last_run(Some(at)))
        .unwrap();
    clock.set(utc("2025-06-10T01:00:00Z"));
    eventually("running", || s.running() == 1).await;
    // A config reload: remove, then add again with a catch-up due.
    assert!(s.remove("db"));
    s.upsert(JobSpec::new("db", "0 1 * * *".parse().unwrap(), probe.clone()).last_run(None))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        probe.peak.load(Ordering::SeqCst),
        1,
        "two runs of one job at once"
    );
    gate.add_permits(2);
    s.shutdown(Shutdown::Drain(Duration::from_secs(5))).await;
    assert_eq!(probe.peak.load(Ordering::SeqCst), 1);
}
