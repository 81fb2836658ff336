//! Backup and restore of a real PostgreSQL database, against the shell
//! pipelines an operator would write.
//!
//! ```text
//! cargo bench -p backup-benches --bench postgres [-- --json results.json]
//! ```
//!
//! Starts a throwaway cluster (or uses `BACKUP_TEST_PG_URL`), loads
//! `BENCH_PG_ROWS` (default 5M) rows of random text, then times `pg_dump`
//! alone, `pg_dump | zstd`, `pg_dump | gzip`, our `Engine::backup` with
//! several compressions, and both restores. Our variants run in fresh
//! processes so each peak RSS is its own. See `benches/README.md`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_benches::{
    BenchArgs, BenchServer, Measurement, PgEnv, Phase, ReadAhead, Report, WriteBehind, env_u64,
    human_bytes, load_average, machine_meta, measure_shell, quoted, report_isolated, run_isolated,
    selected,
};
use backup_core::{
    BackupRequest, Compression, DumpSource, Engine, Filter, RestoreOptions, RestoreTarget,
};
use backup_postgres::{PostgresSource, PostgresTarget};
use backup_store_fs::FsStore;
use serde::{Deserialize, Serialize};

/// Our side of a comparison, run in an isolated child that finds the
/// server through [`PgEnv`].
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Job {
    /// `Engine::backup` of `PGDATABASE` into a fresh store at `store`.
    Backup {
        name: String,
        compression: String,
        workers: u32,
        store: PathBuf,
        /// Chunks read ahead of the pipeline ([`ReadAhead`]); 0: none.
        read_ahead: usize,
    },
    /// `Engine::restore` of the backup in `store` into a new `database`.
    Restore {
        name: String,
        store: PathBuf,
        database: String,
        /// Chunks queued for `pg_restore` ([`WriteBehind`]); 0: none.
        write_behind: usize,
    },
}

impl Job {
    fn name(&self) -> &str {
        match self {
            Job::Backup { name, .. } | Job::Restore { name, .. } => name,
        }
    }

    /// In the child.
    fn run(&self) -> Measurement {
        let conn = PgEnv::connection_from_env().expect("connection from the environment");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        match self {
            Job::Backup {
                name,
                compression,
                workers,
                store,
                read_ahead,
            } => {
                let compression: Compression = compression.parse().expect("a compression");
                let engine = Engine::new(Arc::new(FsStore::new(store).expect("store")))
                    .with_compressor(Arc::new(compression.with_workers(*workers)));
                let source = PostgresSource::new(conn);
                let ahead = ReadAhead::new(source.clone(), *read_ahead);
                let source: &dyn DumpSource = if *read_ahead > 0 { &ahead } else { &source };
                let phase = Phase::start();
                let manifest = rt
                    .block_on(engine.backup(source, &BackupRequest::new("bench")))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                phase
                    .finish(name, manifest.raw.size, "pg_dump")
                    .output(manifest.stored.size)
            }
            Job::Restore {
                name,
                store,
                database,
                write_behind,
            } => {
                let engine = Engine::new(Arc::new(FsStore::new(store).expect("store")));
                let listed = rt
                    .block_on(engine.catalog().list(&Filter::all()))
                    .expect("listing the store");
                let manifest = listed.first().expect("a backup to restore");
                let target = PostgresTarget::new(conn.with_database("postgres"));
                let behind = WriteBehind::new(target.clone(), *write_behind);
                let target: &dyn RestoreTarget = if *write_behind > 0 { &behind } else { &target };
                let opts = RestoreOptions::into_database(database.as_str()).create(true);
                let phase = Phase::start();
                rt.block_on(engine.restore(&manifest.id, target, &opts))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                phase.finish(name, manifest.raw.size, "pg_restore")
            }
        }
    }
}

/// A backup variant.
enum Variant {
    /// A shell pipeline writing `output` (if any).
    Shell {
        name: String,
        script: String,
        output: Option<PathBuf>,
    },
    /// Ours, in a child.
    Ours(Job),
}

impl Variant {
    fn name(&self) -> &str {
        match self {
            Variant::Shell { name, .. } => name,
            Variant::Ours(job) => job.name(),
        }
    }
}

struct Bench {
    server: BenchServer,
    env: PgEnv,
    /// Raw dump size, learnt from our first backup.
    raw: u64,
}

impl Bench {
    fn psql(&self, database: &str, sql: &str) -> String {
        self.server.psql(database, sql)
    }

    fn run(&mut self, variant: &Variant) -> Measurement {
        match variant {
            Variant::Shell {
                name,
                script,
                output,
            } => measure_shell(&self.env, name, script.clone(), self.raw, output.as_deref()),
            Variant::Ours(job) => {
                if let Job::Backup { store, .. } = job {
                    let _ = std::fs::remove_dir_all(store);
                }
                let spec = serde_json::to_string(job).expect("a job serializes");
                let m = run_isolated(&spec, self.env.vars())
                    .unwrap_or_else(|e| panic!("{}: {e}", job.name()));
                if self.raw == 0 {
                    self.raw = m.input;
                }
                m
            }
        }
    }

    fn rows_in(&self, database: &str) -> u64 {
        self.psql(database, "SELECT count(*) FROM t")
            .parse()
            .unwrap_or(0)
    }

    fn drop_database(&self, database: &str) {
        self.server.drop_database(database);
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
    let repeat = env_u64("BENCH_REPEAT", 1).max(1);
    let work = tempfile::tempdir().expect("work directory");

    let mut report = Report::new("postgres: pg_dump -Fc -Z0 -> compression -> file, and restore");
    machine_meta(&mut report);
    report.meta(
        "repetitions",
        format!(
            "{repeat} per variant, interleaved: fastest wall time (with its CPU time), largest RSS"
        ),
    );

    let server = BenchServer::start();
    let table = server.random_table(rows);
    let db = table.database.clone();
    let env = server.env(&db);
    let tools = server.tool_prefix("pg_dump");
    let mut bench = Bench {
        server,
        env,
        raw: 0,
    };
    let size = bench.psql(&db, "SELECT pg_total_relation_size('t')");
    report.meta("data", table.describe(size.parse().unwrap_or(0)));
    report.meta("server", bench.server.describe(&tools));

    let dir = work.path();
    let zst = dir.join("shell.dump.zst");
    let zst1 = dir.join("shell1.dump.zst");
    let gz = dir.join("shell.dump.gz");
    let fc = dir.join("shell.dump");
    let store = |tag: &str| dir.join(format!("store-{tag}"));
    let ours_with = |name: &str, compression: &str, workers: u32, tag: &str, read_ahead| {
        Variant::Ours(Job::Backup {
            name: name.into(),
            compression: compression.into(),
            workers,
            store: store(tag),
            read_ahead,
        })
    };
    let ours = |name: &str, compression: &str, workers: u32, tag: &str| {
        ours_with(name, compression, workers, tag, 0)
    };
    let shell = |name: &str, script: String, output: Option<&Path>| Variant::Shell {
        name: name.into(),
        script,
        output: output.map(Path::to_path_buf),
    };
    let floor = "pg_dump -Fc -Z0 > /dev/null (floor)";
    let zstd_shell = "pg_dump -Fc -Z0 | zstd -3 -T0 > file";
    let gzip_shell = "pg_dump -Fc -Z0 | gzip -6 > file";
    let default_name = "ours zstd:1 w2 (default)";
    let backups: Vec<Variant> = [
        // Ours first: the raw size it reports is the input of every row.
        ours(default_name, "zstd:1", 2, "default"),
        shell(floor, format!("{tools}pg_dump -Fc -Z0 > /dev/null"), None),
        shell(
            zstd_shell,
            format!("{tools}pg_dump -Fc -Z0 | zstd -q -3 -T0 > {}", quoted(&zst)),
            Some(&zst),
        ),
        shell(
            "pg_dump -Fc -Z0 | zstd -1 -T0 > file",
            format!(
                "{tools}pg_dump -Fc -Z0 | zstd -q -1 -T0 > {}",
                quoted(&zst1)
            ),
            Some(&zst1),
        ),
        shell(
            gzip_shell,
            format!("{tools}pg_dump -Fc -Z0 | gzip -6 > {}", quoted(&gz)),
            Some(&gz),
        ),
        shell(
            "pg_dump -Fc > file (built-in zlib)",
            format!("{tools}pg_dump -Fc > {}", quoted(&fc)),
            Some(&fc),
        ),
        ours("ours zstd:3 w2", "zstd:3", 2, "zstd3"),
        ours("ours zstd:3 w0", "zstd:3", 0, "zstd3w0"),
        ours("ours gzip:6", "gzip:6", 0, "gzip6"),
        ours("ours none (hash + store only)", "none", 0, "none"),
        ours_with(
            "experiment: ours zstd:3 w2, 8 MiB read-ahead",
            "zstd:3",
            2,
            "ra-zstd3",
            8,
        ),
        ours_with(
            "experiment: ours zstd:1 w2, 8 MiB read-ahead",
            "zstd:1",
            2,
            "ra-zstd1",
            8,
        ),
        ours_with(
            "experiment: ours none, 8 MiB read-ahead",
            "none",
            0,
            "ra-none",
            8,
        ),
    ]
    .into_iter()
    .filter(|v| selected(v.name()) || v.name() == default_name || v.name() == zstd_shell)
    .collect();

    eprintln!("warming up (one untimed pg_dump) ...");
    bench
        .env
        .shell(format!("{tools}pg_dump -Fc -Z0 > /dev/null"))
        .run()
        .expect("pg_dump");
    eprintln!("running ...");
    let mut runs: Vec<Vec<Measurement>> = backups.iter().map(|_| Vec::new()).collect();
    for _ in 0..repeat {
        for (variant, runs) in backups.iter().zip(&mut runs) {
            let m = bench.run(variant);
            eprintln!("  {}", m.summary());
            runs.push(m);
        }
    }
    for runs in runs {
        if let Some(m) = Measurement::best_of(runs) {
            let m = Measurement {
                input: bench.raw,
                ..m
            };
            report.push(m);
        }
    }

    // Restores: ours from the default backup, the shell's from its zstd
    // file: the same bytes, compressed the same way.
    let restores = [
        Variant::Ours(Job::Restore {
            name: "restore: ours (Engine::restore, create)".into(),
            store: store("default"),
            database: String::new(),
            write_behind: 0,
        }),
        Variant::Ours(Job::Restore {
            name: "experiment: restore: ours, 8 MiB write-behind".into(),
            store: store("default"),
            database: String::new(),
            write_behind: 8,
        }),
        shell(
            "restore: createdb && zstd -dc file | pg_restore -1 -d db",
            String::new(),
            None,
        ),
    ];
    let restores: Vec<Variant> = restores
        .into_iter()
        .filter(|v| selected(v.name()))
        .collect();
    let mut restore_runs: Vec<Vec<Measurement>> = restores.iter().map(|_| Vec::new()).collect();
    for rep in 0..repeat {
        for (i, variant) in restores.iter().enumerate() {
            let target = format!("{db}_restore_{i}_{rep}");
            let variant = match variant {
                Variant::Ours(Job::Restore {
                    name,
                    store,
                    write_behind,
                    ..
                }) => Variant::Ours(Job::Restore {
                    name: name.clone(),
                    store: store.clone(),
                    database: target.clone(),
                    write_behind: *write_behind,
                }),
                Variant::Shell { name, .. } => shell(
                    name,
                    format!(
                        "{tools}createdb '{target}' && zstd -dc {} | {tools}pg_restore -1 -d '{target}'",
                        quoted(&zst)
                    ),
                    None,
                ),
                Variant::Ours(other) => Variant::Ours(other.clone()),
            };
            let m = bench.run(&variant);
            let restored = bench.rows_in(&target);
            assert_eq!(restored, rows, "{}: restored {restored} rows", m.name);
            bench.drop_database(&target);
            eprintln!("  {}", m.summary());
            restore_runs[i].push(m);
        }
    }
    for runs in restore_runs {
        if let Some(m) = Measurement::best_of(runs) {
            report.push(m);
        }
    }

    let get = |name: &str| report.row(name).cloned();
    let mut lines = vec!["targets (measured / target):".to_string()];
    let check = |ok: bool| if ok { "ok" } else { "MISSED" };
    if let (Some(ours), Some(floor)) = (get(default_name), get(floor)) {
        let x = ours.wall.as_secs_f64() / floor.wall.as_secs_f64();
        lines.push(format!(
            "  backup time, ours default / pg_dump alone:   {x:.2}x  (<= 1.15x)  {}",
            check(x <= 1.15)
        ));
    }
    if let (Some(ours), Some(gzip)) = (get(default_name), get(gzip_shell)) {
        let (o, g) = (ours.output.unwrap_or(0), gzip.output.unwrap_or(0));
        lines.push(format!(
            "  output size, ours default / gzip -6:        {:.2}x  (<= 1.00x)  {}  ({} vs {})",
            o as f64 / g.max(1) as f64,
            check(o <= g),
            human_bytes(o),
            human_bytes(g)
        ));
    }
    if let (Some(ours), Some(shell)) = (
        get("restore: ours (Engine::restore, create)"),
        get("restore: createdb && zstd -dc file | pg_restore -1 -d db"),
    ) {
        let x = ours.wall.as_secs_f64() / shell.wall.as_secs_f64();
        lines.push(format!(
            "  restore time, ours / zstd -dc | pg_restore: {x:.2}x  (<= 1.05x)  {}",
            check(x <= 1.05)
        ));
        let peak = ours.peak_rss.unwrap_or(0);
        lines.push(format!(
            "  peak RSS, ours restore:                      {}  (<= 64 MiB)  {}",
            human_bytes(peak),
            check(peak <= 64 << 20)
        ));
    }
    if let Some(ours) = get(default_name) {
        let peak = ours.peak_rss.unwrap_or(0);
        lines.push(format!(
            "  peak RSS, ours backup:                       {}  (<= 64 MiB)  {}",
            human_bytes(peak),
            check(peak <= 64 << 20)
        ));
    }
    for line in lines {
        report.line(line);
    }
    report.meta("load average at end", load_average());
    bench.drop_database(&db);
    println!("{report}");
    if let Some(path) = &args.json {
        report.write_json(path).expect("writing the JSON report");
        eprintln!("wrote {}", path.display());
    }
}
