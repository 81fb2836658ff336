//! Continuous WAL archiving while pgbench writes: our `WalArchiver` into
//! a directory store against bare `pg_receivewal` to local disk (issue
//! #14's figures).
//!
//! ```text
//! cargo bench -p backup-benches --bench walarchive [-- --json results.json]
//! ```
//!
//! Starts a throwaway PostgreSQL cluster (replication allowed, as the
//! tests start it), fills it with `pgbench -i -s BENCH_PGBENCH_SCALE`,
//! then, once per variant, runs `pgbench -n -c 2 -j 2 -T
//! BENCH_WAL_SECONDS` while the archiver streams from its own physical
//! replication slot: (a) ours, a `WalArchiver` into a `WalArchive` over
//! an `FsStore` (default compression, SHA-256 per segment), in a child
//! process of its own so its memory is its own; (b) `pg_receivewal -D dir
//! --slot ...`. Every second the server's flush position
//! (`pg_current_wal_flush_lsn()`) is compared with the end of the newest
//! complete segment in the archive (ours: from the archiver's status; the
//! bare tool: from its directory): that difference is the archive lag.
//! When pgbench stops, `pg_switch_wal()` closes the last segment and the
//! time until the archive holds everything written is the catch-up time.

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backup_benches::{
    BenchArgs, BenchServer, Measurement, PgEnv, Report, env_u64, human_bytes, human_duration,
    load_average, machine_meta,
};
use backup_core::Engine;
use backup_postgres::{ArchiverOptions, PgTools, WalArchive, WalArchiver, parse_segment_file_name};
use backup_store_fs::FsStore;
use serde::{Deserialize, Serialize};

/// Prefix of the status lines our archiver's child prints every second.
const STATUS: &str = "ARCHIVER-STATUS ";

/// What the child running our archiver is told (on its command line: no
/// secrets; the connection comes through [`PgEnv`]).
#[derive(Debug, Serialize, Deserialize)]
struct Job {
    slot: String,
    spool: PathBuf,
    store: PathBuf,
    bin: Option<PathBuf>,
}

/// What that child reports each second.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Status {
    last_segment: Option<String>,
    lag_bytes: Option<u64>,
    receiver_pid: Option<u32>,
    archived: u64,
    restarts: u64,
    last_error: Option<String>,
}

/// In the child: archives until stdin closes, printing its status each
/// second.
fn run_child(job: &Job) {
    let conn = PgEnv::connection_from_env().expect("connection from the environment");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (closed_tx, mut closed) = tokio::sync::watch::channel(false);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = closed_tx.send(true);
    });
    rt.block_on(async {
        let engine = Engine::new(Arc::new(FsStore::new(&job.store).expect("store")));
        let archive =
            WalArchive::new(Arc::new(engine), "default", "bench").expect("the WAL archive");
        let tools = job.bin.clone().map(PgTools::in_dir).unwrap_or_default();
        let options = ArchiverOptions::new(&job.slot, &job.spool)
            .tools(tools)
            .status_interval(Duration::from_secs(1));
        let handle = WalArchiver::new(conn, Arc::new(archive), options)
            .expect("the archiver")
            .start();
        // Often, so the parent sees a segment soon after it is archived.
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                _ = closed.changed() => break,
                _ = tick.tick() => print_status(&handle.status()),
            }
        }
        print_status(&handle.stop().await);
    });
}

fn print_status(s: &backup_postgres::ArchiverStatus) {
    let status = Status {
        last_segment: s.last_segment.clone(),
        lag_bytes: s.lag_bytes,
        receiver_pid: s.receiver_pid,
        archived: s.archived,
        restarts: s.restarts,
        last_error: s.last_error.clone(),
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{STATUS}{}",
        serde_json::to_string(&status).expect("a status serializes")
    );
    let _ = out.flush();
}

/// `VmHWM` and user + system CPU of another process, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
struct ProcSample {
    peak_rss: u64,
    cpu: Duration,
}

fn sample_proc(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ProcSample {
        peak_rss: kib * 1024,
        // USER_HZ is 100 on Linux.
        cpu: Duration::from_millis(ticks * 10),
    })
}

/// The archiver of one run, seen from the parent.
enum Running {
    /// Our archiver in a child; its latest status.
    Ours {
        child: Child,
        status: Arc<Mutex<Status>>,
        reader: std::thread::JoinHandle<()>,
    },
    /// `pg_receivewal` writing into `dir`.
    Bare { child: Child, dir: PathBuf },
}

/// Peak memory and CPU of the archiver's processes, kept up to date.
#[derive(Debug, Default)]
struct Usage {
    /// Our bench process (ours) — or `pg_receivewal` (bare).
    main: ProcSample,
    /// The `pg_receivewal` our archiver runs (ours only).
    receiver: ProcSample,
}

impl Running {
    fn newest_segment(&self) -> Option<String> {
        match self {
            Running::Ours { status, .. } => status.lock().expect("status").last_segment.clone(),
            Running::Bare { dir, .. } => std::fs::read_dir(dir)
                .ok()?
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.len() == 24 && n.bytes().all(|b| b.is_ascii_hexdigit()))
                .max(),
        }
    }

    fn sample(&self, usage: &mut Usage) {
        let keep = |into: &mut ProcSample, pid: Option<u32>| {
            if let Some(s) = pid.and_then(sample_proc) {
                into.peak_rss = into.peak_rss.max(s.peak_rss);
                into.cpu = into.cpu.max(s.cpu);
            }
        };
        match self {
            Running::Ours { child, status, .. } => {
                keep(&mut usage.main, Some(child.id()));
                let pid = status.lock().expect("status").receiver_pid;
                keep(&mut usage.receiver, pid);
            }
            Running::Bare { child, .. } => keep(&mut usage.main, Some(child.id())),
        }
    }

    fn stop(self) -> Option<Status> {
        match self {
            Running::Ours {
                mut child,
                status,
                reader,
            } => {
                drop(child.stdin.take());
                let exit = child.wait().expect("waiting for the archiver");
                assert!(exit.success(), "our archiver's child failed: {exit}");
                reader.join().expect("status reader");
                let status = status.lock().expect("status").clone();
                Some(status)
            }
            Running::Bare { mut child, .. } => {
                let _ = Command::new("kill")
                    .args(["-INT", &child.id().to_string()])
                    .status();
                let _ = child.wait();
                None
            }
        }
    }
}

/// One run's figures.
#[derive(Debug)]
struct Run {
    name: String,
    wal_bytes: u64,
    segments: u64,
    pgbench: Duration,
    tps: String,
    peak_lag: u64,
    lag_at_end: u64,
    catch_up: Duration,
    usage: Usage,
    stored: u64,
    status: Option<Status>,
}

struct Bench {
    server: BenchServer,
    db: String,
    env: PgEnv,
    bin: Option<PathBuf>,
    segment_size: u64,
    work: PathBuf,
}

impl Bench {
    fn flush_lsn(&self) -> u64 {
        self.server
            .psql(
                "postgres",
                "SELECT pg_current_wal_flush_lsn() - '0/0'::pg_lsn",
            )
            .parse()
            .expect("an LSN as a number")
    }

    /// The end of `segment` (a WAL file name) as an LSN.
    fn segment_end(&self, segment: &str) -> u64 {
        let (_, number) =
            parse_segment_file_name(segment, self.segment_size).expect("a segment name");
        (number + 1) * self.segment_size
    }

    fn tool(&self, name: &str) -> Command {
        let path = self
            .bin
            .as_ref()
            .map_or_else(|| PathBuf::from(name), |b| b.join(name));
        let mut cmd = Command::new(path);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env.vars().iter().map(|(k, v)| (k, v)))
            .env("LC_MESSAGES", "C")
            .stdin(Stdio::null());
        cmd
    }

    fn wait_streaming(&self, running: &Running) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.server.psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
        ) == "0"
        {
            assert!(Instant::now() < deadline, "the archiver never streamed");
            if let Running::Ours { status, .. } = running
                && let Some(e) = &status.lock().expect("status").last_error
            {
                eprintln!("  archiver: {e}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn start(&self, ours: bool, slot: &str) -> Running {
        let dir = self.work.join(if ours { "ours" } else { "bare" });
        std::fs::create_dir_all(&dir).expect("run directory");
        if ours {
            let job = Job {
                slot: slot.to_string(),
                spool: dir.join("spool"),
                store: dir.join("store"),
                bin: self.bin.clone(),
            };
            let mut child = Command::new(std::env::current_exe().expect("this executable"))
                .args([
                    "--isolated",
                    &serde_json::to_string(&job).expect("a job serializes"),
                ])
                .envs(self.env.vars().iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("starting our archiver");
            let stdout = child.stdout.take().expect("its stdout");
            let status = Arc::new(Mutex::new(Status::default()));
            let latest = status.clone();
            let reader = std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(json) = line.strip_prefix(STATUS)
                        && let Ok(s) = serde_json::from_str(json)
                    {
                        *latest.lock().expect("status") = s;
                    }
                }
            });
            Running::Ours {
                child,
                status,
                reader,
            }
        } else {
            self.server.psql(
                "postgres",
                &format!("SELECT pg_create_physical_replication_slot('{slot}', true)"),
            );
            let wal = dir.join("wal");
            std::fs::create_dir_all(&wal).expect("pg_receivewal directory");
            let child = self
                .tool("pg_receivewal")
                .arg("-D")
                .arg(&wal)
                .args(["--slot", slot, "--no-password"])
                .stdout(Stdio::null())
                .spawn()
                .expect("starting pg_receivewal");
            Running::Bare { child, dir: wal }
        }
    }

    fn run(&self, ours: bool, load: &[String]) -> Run {
        let name = if ours {
            "ours: WalArchiver -> WalArchive (FsStore, default zstd, SHA-256)"
        } else {
            "pg_receivewal -D dir --slot (local disk)"
        };
        eprintln!("{name} ...");
        let slot = format!("bench_{}", if ours { "ours" } else { "bare" });
        let running = self.start(ours, &slot);
        self.wait_streaming(&running);
        let mut usage = Usage::default();
        let archived_end =
            |running: &Running| running.newest_segment().map_or(0, |s| self.segment_end(&s));
        let start = self.flush_lsn();
        let started = Instant::now();
        let pgbench = self
            .tool("pgbench")
            .args(load)
            .arg(&self.db)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting pgbench");
        let (done_tx, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done_tx.send(pgbench.wait_with_output());
        });
        let mut peak_lag = 0u64;
        let mut lag_at_end;
        let output = loop {
            std::thread::sleep(Duration::from_secs(1));
            let flush = self.flush_lsn();
            lag_at_end = flush.saturating_sub(archived_end(&running).max(start));
            peak_lag = peak_lag.max(lag_at_end);
            running.sample(&mut usage);
            if let Ok(out) = done.try_recv() {
                break out.expect("pgbench");
            }
        };
        let pgbench_time = started.elapsed();
        assert!(output.status.success(), "pgbench failed");
        let tps = String::from_utf8_lossy(&output.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("tps = "))
            .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
            .map(|t| format!("{t:.0}"))
            .unwrap_or_default();
        let end = self.flush_lsn();
        self.server.psql("postgres", "SELECT pg_switch_wal()");
        let stopped = Instant::now();
        let deadline = stopped + Duration::from_secs(600);
        while archived_end(&running) < end {
            assert!(Instant::now() < deadline, "{name}: never caught up");
            running.sample(&mut usage);
            std::thread::sleep(Duration::from_millis(50));
        }
        let catch_up = stopped.elapsed();
        running.sample(&mut usage);
        let status = running.stop();
        let _ = self.server.psql(
            "postgres",
            &format!("SELECT pg_drop_replication_slot('{slot}')"),
        );
        let dir = self.work.join(if ours { "ours/store" } else { "bare/wal" });
        Run {
            name: name.to_string(),
            wal_bytes: end - start,
            segments: end / self.segment_size - start / self.segment_size,
            pgbench: pgbench_time,
            tps,
            peak_lag,
            lag_at_end,
            catch_up,
            usage,
            stored: du(&dir),
            status,
        }
    }
}

/// Bytes of the files under `dir`.
fn du(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => du(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

fn main() {
    let args = BenchArgs::from_env();
    if let Some(spec) = &args.isolated {
        run_child(&serde_json::from_str(spec).expect("a job spec"));
        return;
    }
    let scale = env_u64("BENCH_PGBENCH_SCALE", 10);
    let seconds = env_u64("BENCH_WAL_SECONDS", 30);
    let rows = env_u64("BENCH_WAL_ROWS", 100);
    let work = tempfile::tempdir().expect("work directory");
    let mut report = Report::new("postgres: WAL archiving while pgbench writes");
    machine_meta(&mut report);
    let server = BenchServer::start();
    let db = server
        .rt()
        .block_on(server.server().create_database("pgbench"))
        .expect("creating the database");
    eprintln!("pgbench -i -s {scale} ...");
    let started = Instant::now();
    server
        .rt()
        .block_on(server.server().pgbench_init(&db, scale as u32))
        .expect("pgbench -i");
    server.psql(&db, "CHECKPOINT");
    report.meta(
        "data",
        format!(
            "pgbench -i -s {scale} ({} on disk, {} to load); then per run pgbench -n -c 2 -j 2 -T {seconds}: TPC-B-like and INSERT of {rows} rows (2 x md5 text) in turn",
            human_bytes(server.psql(&db, "SELECT pg_database_size(current_database())").parse().unwrap_or(0)),
            human_duration(started.elapsed())
        ),
    );
    let bin = server.bin_dir("pg_receivewal");
    let prefix = server.tool_prefix("pg_receivewal");
    report.meta("server", server.describe(&prefix));
    let segment_size = server
        .psql(
            "postgres",
            "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'",
        )
        .parse()
        .expect("wal_segment_size");
    let env = server.env(&db);
    let bench = Bench {
        server,
        db: db.clone(),
        env,
        bin,
        segment_size,
        work: work.path().to_path_buf(),
    };
    let load = bench.server.pgbench_load(&db, work.path(), rows, seconds);
    let runs = [bench.run(true, &load), bench.run(false, &load)];
    report.line(format!(
        "{:<66}  {:>9}  {:>4}  {:>6}  {:>8}  {:>9}  {:>9}  {:>8}  {:>10}  {:>10}",
        "archiver",
        "WAL",
        "segs",
        "tps",
        "MB/s",
        "peak lag",
        "lag@end",
        "catch-up",
        "RSS",
        "its recv."
    ));
    for run in &runs {
        let total = run.pgbench + run.catch_up;
        let ours = run.status.is_some();
        report.line(format!(
            "{:<66}  {:>9}  {:>4}  {:>6}  {:>8.1}  {:>9}  {:>9}  {:>8}  {:>10}  {:>10}",
            run.name,
            human_bytes(run.wal_bytes),
            run.segments,
            run.tps,
            run.wal_bytes as f64 / 1e6 / total.as_secs_f64(),
            human_bytes(run.peak_lag),
            human_bytes(run.lag_at_end),
            format!("{:.2} s", run.catch_up.as_secs_f64()),
            human_bytes(run.usage.main.peak_rss),
            if ours {
                human_bytes(run.usage.receiver.peak_rss)
            } else {
                "-".into()
            },
        ));
        let cpu = run.usage.main.cpu + run.usage.receiver.cpu;
        let mut m = Measurement::new(&run.name, run.wal_bytes, total)
            .output(run.stored)
            .peak_rss(run.usage.main.peak_rss + run.usage.receiver.peak_rss)
            .cpu(cpu)
            .note(if ours {
                format!(
                    "bench process {} + its pg_receivewal {}; wall = pgbench + catch-up",
                    human_bytes(run.usage.main.peak_rss),
                    human_bytes(run.usage.receiver.peak_rss)
                )
            } else {
                "pg_receivewal; wall = pgbench + catch-up; output includes its preallocated .partial".to_string()
            });
        if let Some(status) = &run.status {
            m.note.push_str(&format!(
                "; {} files archived, {} restarts{}",
                status.archived,
                status.restarts,
                status
                    .last_error
                    .as_ref()
                    .map(|e| format!(", last error: {e}"))
                    .unwrap_or_default()
            ));
        }
        report.push(m);
    }
    report.line(
        "lag: server flush position minus the end of the newest complete segment archived, sampled every second while pgbench ran (peak) and at its end; catch-up: from pgbench's end and pg_switch_wal() until the archive holds all WAL written; MB/s: WAL bytes / (pgbench time + catch-up)",
    );
    report.meta("load average at end", load_average());
    bench.server.drop_database(&db);
    println!("{report}");
    if let Some(path) = &args.json {
        report.write_json(path).expect("writing the JSON report");
        eprintln!("wrote {}", path.display());
    }
}
