//! Scheduler and catalog costs (issue 4): the CPU an idle scheduler with
//! 10,000 jobs uses over a minute, the time to compute 10,000 fire times,
//! and list/stats/health over a catalog of 10,000 manifests in an FsStore.
//!
//! ```text
//! cargo bench -p backup-benches --bench scheduler
//! BENCH_JOBS=10000 BENCH_IDLE_SECONDS=60 BENCH_MANIFESTS=10000 cargo bench -p backup-benches --bench scheduler
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backup_benches::{cpu_time, human_duration, peak_rss};
use backup_core::testing::ScriptedSource;
use backup_core::{
    BackupRequest, Engine, EventBus, Filter, JobSpec, Result, Schedule, Scheduler, SchedulerConfig,
    Store, catalog::Catalog, catalog::HealthOptions, clock::SystemClock, schedule::parse_tz,
    scheduler::Job, scheduler::JobOutcome, scheduler::Shutdown, scheduler::Trigger,
};
use backup_store_fs::FsStore;
use chrono::Utc;
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
struct Noop;

#[async_trait]
impl Job for Noop {
    async fn run(&self, _: &Trigger, _: CancellationToken) -> Result<JobOutcome> {
        Ok(JobOutcome::default())
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A spread of real-world schedules, none firing in the next minutes.
fn schedule(i: usize) -> Schedule {
    let now = Utc::now();
    let hour = (now.format("%H").to_string().parse::<usize>().unwrap() + 2 + i % 20) % 24;
    let text = match i % 5 {
        0 => format!("{} {hour} * * *", i % 60),
        1 => format!("{} {hour} * * 1-5", i % 60),
        2 => format!("every_12h {:02}:{:02}", hour % 12 + 1, i % 60),
        3 => format!("weekly mon {hour:02}:{:02}", i % 60),
        _ => format!("monthly {} {hour:02}:{:02}", 1 + i % 28, i % 60),
    };
    text.parse().expect("valid schedule")
}

async fn scheduler_bench() {
    let jobs = env_usize("BENCH_JOBS", 10_000);
    let idle = Duration::from_secs(env_usize("BENCH_IDLE_SECONDS", 60) as u64);
    let tz = parse_tz("Europe/Madrid").unwrap();

    // Fire-time computation, pure.
    let s: Schedule = "0 1 * * 1-5".parse().unwrap();
    let start = Instant::now();
    let mut at = Utc::now();
    for _ in 0..10_000 {
        at = s.next_after(at, tz).unwrap();
    }
    let successive = start.elapsed();
    let schedules: Vec<Schedule> = (0..10_000).map(schedule).collect();
    let now = Utc::now();
    let start = Instant::now();
    for s in &schedules {
        std::hint::black_box(s.next_after(now, tz));
    }
    let each_once = start.elapsed();

    // An idle scheduler with many jobs.
    let scheduler = Scheduler::start(
        SchedulerConfig::default().tz(tz).max_parallel_jobs(4),
        Arc::new(SystemClock),
        EventBus::default(),
    );
    let job: Arc<dyn Job> = Arc::new(Noop);
    let start = Instant::now();
    for i in 0..jobs {
        scheduler
            .upsert(
                JobSpec::new(format!("job{i}"), schedule(i), Arc::clone(&job)).last_run(Some(now)),
            )
            .unwrap();
    }
    let register = start.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu_before = cpu_time().unwrap();
    let wall = Instant::now();
    tokio::time::sleep(idle).await;
    let idle_cpu = cpu_time().unwrap() - cpu_before;
    let idle_wall = wall.elapsed();
    scheduler.shutdown(Shutdown::Cancel).await;

    println!("== scheduler ==");
    println!(
        "next 10,000 fire times of one schedule (\"0 1 * * 1-5\", Europe/Madrid): {}",
        human_duration(successive)
    );
    println!(
        "next fire time of 10,000 different schedules:                        {}",
        human_duration(each_once)
    );
    println!(
        "registering {jobs} jobs (upsert, incl. misfire check):               {}",
        human_duration(register)
    );
    println!(
        "idle with {jobs} jobs for {}: CPU {} ({:.3} % of one core)",
        human_duration(idle_wall),
        human_duration(idle_cpu),
        100.0 * idle_cpu.as_secs_f64() / idle_wall.as_secs_f64()
    );
}

async fn catalog_bench() {
    let count = env_usize("BENCH_MANIFESTS", 10_000);
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(FsStore::new(dir.path()).unwrap());
    let engine = Engine::new(Arc::clone(&store));
    let source = ScriptedSource::ok(256);
    let start = Instant::now();
    for i in 0..count {
        let req = BackupRequest::new(format!("db{}", i % 50)).tenant(format!("t{}", i % 5));
        engine.backup(&source, &req).await.unwrap();
    }
    let fill = start.elapsed();

    let fresh = Catalog::new(Arc::clone(&store));
    let start = Instant::now();
    let all = fresh.list(&Filter::all()).await.unwrap();
    let cold = start.elapsed();
    let start = Instant::now();
    let again = fresh.list(&Filter::all()).await.unwrap();
    let warm = start.elapsed();
    assert_eq!(all.len(), count);
    assert_eq!(again.len(), count);
    let start = Instant::now();
    let stats = fresh.stats(&Filter::all()).await.unwrap();
    let stats_time = start.elapsed();
    let start = Instant::now();
    let one_tenant = fresh.list(&Filter::tenant("t3")).await.unwrap();
    let tenant_time = start.elapsed();
    let start = Instant::now();
    fresh.get(&all[count / 2].id).await.unwrap();
    let get_time = start.elapsed();
    let start = Instant::now();
    let health = fresh
        .health(&Filter::all(), &HealthOptions::default(), Utc::now())
        .await
        .unwrap();
    let health_time = start.elapsed();

    println!("== catalog: {count} manifests in an FsStore ==");
    println!(
        "filling it through Engine::backup: {} ({:.1} backups/s)",
        human_duration(fill),
        count as f64 / fill.as_secs_f64()
    );
    println!(
        "list all, cold (parse every manifest): {}",
        human_duration(cold)
    );
    println!(
        "list all, warm (manifest cache):       {}",
        human_duration(warm)
    );
    println!(
        "stats (warm):                          {} (count {}, {} bytes)",
        human_duration(stats_time),
        stats.total.count,
        stats.total.total_bytes
    );
    println!(
        "list one tenant ({} backups):        {}",
        one_tenant.len(),
        human_duration(tenant_time)
    );
    println!(
        "get by id:                             {}",
        human_duration(get_time)
    );
    println!(
        "health of {} sources:                  {}",
        health.len(),
        human_duration(health_time)
    );
    println!(
        "peak RSS: {:.1} MiB",
        peak_rss().unwrap() as f64 / 1048576.0
    );
}

#[tokio::main]
async fn main() {
    scheduler_bench().await;
    catalog_bench().await;
}
