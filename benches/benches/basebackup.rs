//! Physical base backups of a real PostgreSQL cluster, against the shell
//! pipeline an operator would write (issue #14's figures).
//!
//! ```text
//! cargo bench -p backup-benches --bench basebackup [-- --json results.json]
//! ```
//!
//! Starts a throwaway cluster (or uses `BACKUP_TEST_PG_URL`), loads
//! `BENCH_PG_ROWS` (default 5M, about 670 MB on disk) rows of random text,
//! then times `pg_basebackup -D - -Ft -X none` to /dev/null (the floor),
//! `pg_basebackup ... | zstd -1 -T0 > file`, and our `Engine::backup` of a
//! `BaseBackupSource` (zstd:1, all digests, `-X fetch`, the archive
//! scanned for its facts) into a directory store, each ours in a fresh
//! process so its peak RSS is its own; then a restore into a new data
//! directory (extract + `pg_verifybackup`) against `zstd -dc | tar -x`,
//! and a restore drill (`PhysicalDrill`: restore, verify, a server
//! started until consistent, every table read).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_benches::{
    BenchArgs, BenchServer, Measurement, PgEnv, Phase, Report, env_u64, human_bytes, load_average,
    machine_meta, measure_shell, quoted, report_isolated, run_isolated,
};
use backup_core::{BackupRequest, Compression, Engine, Filter, RestoreOptions};
use backup_postgres::{BaseBackupSource, DataDirTarget, PgTools, PhysicalDrill};
use backup_store_fs::FsStore;
use serde::{Deserialize, Serialize};

/// Our side, run in an isolated child that finds the server through
/// [`PgEnv`].
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Job {
    /// A base backup into a fresh store at `store`.
    Backup {
        name: String,
        compression: String,
        /// zstd job size in bytes (experiments; `None`: the default).
        #[serde(default)]
        job_size: Option<u32>,
        store: PathBuf,
        bin: Option<PathBuf>,
    },
    /// The newest backup in `store` restored into the new `dir`.
    Restore {
        name: String,
        store: PathBuf,
        dir: PathBuf,
        bin: Option<PathBuf>,
    },
    /// A restore drill of the newest backup in `store`: scratch data
    /// directories under `dir`.
    Drill {
        name: String,
        store: PathBuf,
        dir: PathBuf,
        bin: Option<PathBuf>,
    },
}

/// An engine on the directory store `store` and its newest backup.
fn newest_backup(
    rt: &tokio::runtime::Runtime,
    store: &Path,
) -> (Engine, Arc<backup_core::manifest::Manifest>) {
    let engine = Engine::new(Arc::new(FsStore::new(store).expect("store")));
    let listed = rt
        .block_on(engine.catalog().list(&Filter::all()))
        .expect("listing the store");
    let m = listed.first().cloned().expect("a backup in the store");
    (engine, m)
}

fn tools(bin: &Option<PathBuf>) -> PgTools {
    bin.clone().map(PgTools::in_dir).unwrap_or_default()
}

impl Job {
    /// In the child.
    fn run(&self) -> Measurement {
        let conn = PgEnv::connection_from_env().expect("connection from the environment");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let phase = Phase::start();
        let (name, input, output) = match self {
            Job::Backup {
                name,
                compression,
                job_size,
                store,
                bin,
            } => {
                let mut compression: Compression = compression.parse().expect("a compression");
                if let Some(bytes) = job_size {
                    compression = compression.with_job_size(*bytes);
                }
                let engine = Engine::new(Arc::new(FsStore::new(store).expect("store")))
                    .with_compressor(Arc::new(compression));
                let source = BaseBackupSource::new(conn).with_tools(tools(bin));
                let m = rt
                    .block_on(engine.backup(&source, &BackupRequest::new("bench")))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                (name, m.raw.size, Some(m.stored.size))
            }
            Job::Restore {
                name,
                store,
                dir,
                bin,
            } => {
                let (engine, m) = newest_backup(&rt, store);
                let target = DataDirTarget::new(dir).with_tools(tools(bin));
                rt.block_on(engine.restore(&m.id, &target, &RestoreOptions::default()))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                (name, m.raw.size, None)
            }
            Job::Drill {
                name,
                store,
                dir,
                bin,
            } => {
                let (engine, m) = newest_backup(&rt, store);
                let drill = PhysicalDrill::new(dir)
                    .with_tools(tools(bin))
                    .user(conn.user());
                let record = rt
                    .block_on(engine.drill(m.backup_ref(), &drill))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(record.passed(), "{name}: {record:?}");
                (name, m.raw.size, None)
            }
        };
        let m = phase.finish(name, input, "children");
        match output {
            Some(out) => m.output(out),
            None => m,
        }
    }
}

fn main() {
    let args = BenchArgs::from_env();
    if let Some(spec) = &args.isolated {
        let job: Job = serde_json::from_str(spec).expect("a job spec");
        report_isolated(&job.run());
        return;
    }
    let rows = env_u64("BENCH_PG_ROWS", 5_000_000);
    let work = tempfile::tempdir().expect("work directory");
    let dir = work.path();
    // The drill's server runs as postgres when this is root: it must be
    // able to enter the drill directory below.
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("work directory permissions");
    let mut report = Report::new("postgres: base backups (pg_basebackup -Ft) and restore");
    machine_meta(&mut report);
    let bench = BenchServer::start();
    let table = bench.random_table(rows);
    let db = table.database.clone();
    bench.psql(&db, "CHECKPOINT");
    let size = bench.psql(
        "postgres",
        "SELECT sum(pg_database_size(oid)) FROM pg_database",
    );
    report.meta("data", table.describe(size.parse().unwrap_or(0)));
    let bin = bench.bin_dir("pg_basebackup");
    let prefix = bench.tool_prefix("pg_basebackup");
    report.meta("server", bench.describe(&prefix));
    let env = bench.env(&db);
    let shell = |name: &str, script: String, output: Option<&Path>| {
        measure_shell(&env, name, script, 0, output)
    };
    let ours = |job: Job| {
        let spec = serde_json::to_string(&job).expect("a job serializes");
        run_isolated(&spec, env.vars()).unwrap_or_else(|e| panic!("{spec}: {e}"))
    };

    eprintln!("warming up (one untimed pg_basebackup) ...");
    shell(
        "warm-up",
        format!("{prefix}pg_basebackup -D - -Ft -X none --checkpoint=fast > /dev/null"),
        None,
    );
    let store = dir.join("store");
    let zst = dir.join("shell.tar.zst");
    let floor_name = "pg_basebackup -D - -Ft -X none > /dev/null (floor)";
    let shell_name = "pg_basebackup -D - -Ft -X none | zstd -1 -T0 > file";
    let digests_name =
        "same + our digests: | tee >(sha256sum) | zstd -1 -T0 | tee >(sha256sum) >(md5sum) > file";
    let ours_name = "ours: BaseBackupSource zstd:1 (-X fetch, digests, facts)";
    eprintln!("running ...");
    let ours_backup = ours(Job::Backup {
        name: ours_name.into(),
        compression: "zstd:1".into(),
        job_size: None,
        store: store.clone(),
        bin: bin.clone(),
    });
    // Experiments: other zstd job sizes (`BENCH_ZSTD_JOB_SIZES`, MiB,
    // comma-separated), each into a store of its own.
    let mut experiments = Vec::new();
    for mib in std::env::var("BENCH_ZSTD_JOB_SIZES")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.trim().is_empty())
    {
        let mib: u32 = mib
            .trim()
            .parse()
            .expect("BENCH_ZSTD_JOB_SIZES: MiB numbers");
        experiments.push(ours(Job::Backup {
            name: format!("experiment: ours zstd:1 with {mib} MiB zstd jobs"),
            compression: "zstd:1".into(),
            job_size: Some(mib.checked_mul(1 << 20).expect("a job size under 4 GiB")),
            store: dir.join(format!("store-job-{mib}")),
            bin: bin.clone(),
        }));
    }
    let raw = ours_backup.input;
    let floor = shell(
        floor_name,
        format!("{prefix}pg_basebackup -D - -Ft -X none --checkpoint=fast > /dev/null"),
        None,
    );
    let piped = shell(
        shell_name,
        format!(
            "{prefix}pg_basebackup -D - -Ft -X none --checkpoint=fast | zstd -q -1 -T0 > {}",
            quoted(&zst)
        ),
        Some(&zst),
    );
    // The shell pipeline computing what ours computes: SHA-256 of the raw
    // archive, SHA-256 and MD5 of the stored bytes (FIFOs, so the
    // measured shell waits for every hasher).
    let fifos = dir.join("fifos");
    std::fs::create_dir(&fifos).expect("fifo dir");
    let f = |name: &str| quoted(&fifos.join(name));
    let zst_digests = dir.join("shell-digests.tar.zst");
    let with_digests = shell(
        digests_name,
        format!(
            "mkfifo {raw} {s1} {s2} && {{ sha256sum < {raw} > {raw}.sum & sha256sum < {s1} > {s1}.sum & md5sum < {s2} > {s2}.sum & \
             {prefix}pg_basebackup -D - -Ft -X none --checkpoint=fast | tee {raw} | zstd -q -1 -T0 | tee {s1} {s2} > {out}; wait; }}",
            raw = f("raw"),
            s1 = f("s1"),
            s2 = f("s2"),
            out = quoted(&zst_digests),
        ),
        Some(&zst_digests),
    );
    let restored = dir.join("restored");
    let ours_restore = ours(Job::Restore {
        name: "restore: ours (extract + pg_verifybackup + rename)".into(),
        store: store.clone(),
        dir: restored.clone(),
        bin: bin.clone(),
    });
    let drills = dir.join("drills");
    std::fs::create_dir(&drills).expect("drill dir");
    std::fs::set_permissions(&drills, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("drill dir permissions");
    let ours_drill = ours(Job::Drill {
        name: "drill: ours (restore + pg_verifybackup + start until consistent + read every table)"
            .into(),
        store: store.clone(),
        dir: drills,
        bin: bin.clone(),
    });
    let untar = dir.join("untar");
    std::fs::create_dir(&untar).expect("untar dir");
    let shell_restore = shell(
        "restore: zstd -dc file | tar -x (no verification)",
        format!("zstd -dc {} | tar -x -C {}", quoted(&zst), quoted(&untar)),
        None,
    );
    let x = ours_backup.wall.as_secs_f64() / piped.wall.as_secs_f64().max(1e-9);
    let same_work = ours_backup.wall.as_secs_f64() / with_digests.wall.as_secs_f64().max(1e-9);
    let peak = ours_backup.peak_rss.unwrap_or(0);
    for m in experiments.into_iter().chain([
        ours_backup,
        floor,
        piped,
        with_digests,
        ours_restore,
        shell_restore,
        ours_drill,
    ]) {
        report.push(Measurement { input: raw, ..m });
    }
    report.line(format!(
        "targets: backup time ours / shell pipeline {x:.2}x (<= 1.05x) {}; peak RSS ours {} (<= 64 MiB) {}",
        if x <= 1.05 { "ok" } else { "MISSED" },
        human_bytes(peak),
        if peak <= 64 << 20 { "ok" } else { "MISSED" }
    ));
    report.line(format!(
        "same work: ours / shell pipeline with the same digests {same_work:.2}x"
    ));
    report.meta("load average at end", load_average());
    bench.drop_database(&db);
    println!("{report}");
    if let Some(path) = &args.json {
        report.write_json(path).expect("writing the JSON report");
        eprintln!("wrote {}", path.display());
    }
}
