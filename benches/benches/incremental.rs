//! Block-level incremental base backups on PostgreSQL 18 against the full
//! base backup, the changed-block volume the server's WAL summaries
//! report, and logical dedup of `pg_dump` (issue #15's figures); then
//! restore times of chains of 1, 3 and 7 links.
//!
//! ```text
//! BACKUP_TEST_PG18_BIN=/path/to/pg18/bin cargo bench -p backup-benches --bench incremental [-- --json results.json]
//! ```
//!
//! Starts a throwaway PostgreSQL 18 cluster with `summarize_wal = on`,
//! fills it with `pgbench -i -s BENCH_PGBENCH_SCALE` (default 20; with
//! `BENCH_PGBENCH_FILLER=random`, the default, each account's `filler`
//! gets 64 random hex digits so the data compresses like real data,
//! `stock` keeps pgbench's blanks), then, each case on a fresh full base
//! backup in its own store (not chained on the other):
//!
//! - (a) 1% of `pgbench_accounts` updated as one contiguous `aid` range;
//! - (b) 1% updated uniformly at random (`random() < 0.01`).
//!
//! Each case: our full base backup (`BaseBackupSource`, `FsStore`, the
//! default pipeline: zstd:1) and a logical dedup base backup
//! (`BackupType::Incremental` of `pg_dump`, its own store), the update,
//! then our incremental base backup on the full (`ParentManifest::fetch`
//! included in its time) and the second logical dedup backup. For each
//! incremental the changed-block volume is what `pg_walsummary` lists for
//! the summary files covering the full's start LSN to the incremental's
//! (distinct blocks × 8 KiB), and the archive is listed (`zstd -dc | tar
//! -tv`) to show where its bytes are (WAL, `INCREMENTAL.*` files, whole
//! relation files).
//!
//! Chains: a fresh full base backup and six incrementals, each after 1%
//! of the accounts updated in its own contiguous range; `ChainRestore`
//! (extract every link with its digests checked, `pg_combinebackup`,
//! `pg_verifybackup`, rename) of the full (1 link), the second
//! incremental (3) and the sixth (7), against bare `pg_combinebackup` and
//! `pg_verifybackup` on the same links unpacked beforehand (untimed).
//!
//! Ours runs in fresh processes, so each peak RSS is its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_benches::{
    ArchiveParts, BLOCK_SIZE, BenchArgs, BenchServer, Measurement, PgEnv, Phase, Report,
    changed_blocks, env_u64, human_bytes, human_duration, load_average, machine_meta,
    measure_shell, quoted, report_isolated, run_isolated, summaries_covering,
};
use backup_core::manifest::Manifest;
use backup_core::{BackupRequest, BackupType, Engine, Filter};
use backup_postgres::{
    BaseBackupInfo, BaseBackupSource, ChainRestore, ParentManifest, PgTools, PostgresSource,
    TEST_PG18_BIN_VAR, TestServer,
};
use backup_store_fs::FsStore;
use serde::{Deserialize, Serialize};

/// Our side, run in an isolated child that finds the server through
/// [`PgEnv`].
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Job {
    /// A base backup into `store`: incremental on backup `parent` (of the
    /// same store) when given.
    Base {
        name: String,
        store: PathBuf,
        parent: Option<String>,
        bin: PathBuf,
    },
    /// A logical dedup backup (`BackupType::Incremental`) of `PGDATABASE`
    /// into `store`.
    Logical {
        name: String,
        store: PathBuf,
        bin: PathBuf,
    },
    /// `ChainRestore` of backup `id` of `store` into the new `dir`.
    Chain {
        name: String,
        store: PathBuf,
        id: String,
        dir: PathBuf,
        bin: PathBuf,
    },
}

fn engine(store: &Path) -> Engine {
    Engine::new(Arc::new(FsStore::new(store).expect("store")))
}

impl Job {
    /// In the child.
    fn run(&self) -> Measurement {
        let conn = PgEnv::connection_from_env().expect("connection from the environment");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let request = BackupRequest::new("bench");
        let phase = Phase::start();
        match self {
            Job::Base {
                name,
                store,
                parent,
                bin,
            } => {
                let engine = engine(store);
                let source = BaseBackupSource::new(conn).with_tools(PgTools::in_dir(bin));
                let m = rt
                    .block_on(async {
                        let source = match parent {
                            Some(id) => {
                                let parent = engine.catalog().get(id.as_str()).await?;
                                source.incremental(ParentManifest::fetch(&engine, &parent).await?)
                            }
                            None => source,
                        };
                        engine.backup(&source, &request).await
                    })
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                phase
                    .finish(name, m.raw.size, "pg_basebackup")
                    .output(m.bytes_stored())
            }
            Job::Logical { name, store, bin } => {
                let engine = engine(store);
                let source = PostgresSource::new(conn).with_tools(PgTools::in_dir(bin));
                let request = request.backup_type(BackupType::Incremental);
                let m = rt
                    .block_on(engine.backup(&source, &request))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                phase
                    .finish(name, m.raw.size, "pg_dump")
                    .output(m.bytes_stored())
            }
            Job::Chain {
                name,
                store,
                id,
                dir,
                bin,
            } => {
                let engine = engine(store);
                let report = rt
                    .block_on(
                        ChainRestore::new(dir)
                            .with_tools(PgTools::in_dir(bin))
                            .run(&engine, id.as_str()),
                    )
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                let raw = rt
                    .block_on(engine.catalog().get(report.links[0].as_str()))
                    .map(|m| m.raw.size)
                    .unwrap_or(0);
                phase.finish(name, raw, "pg_combinebackup, pg_verifybackup")
            }
        }
    }

    fn name(&self) -> &str {
        match self {
            Job::Base { name, .. } | Job::Logical { name, .. } | Job::Chain { name, .. } => name,
        }
    }
}

/// The bench's state: the server, its database, where things go.
struct Bench {
    server: BenchServer,
    env: PgEnv,
    db: String,
    bin: PathBuf,
    dir: PathBuf,
    accounts: u64,
}

/// What one case measured.
struct Case {
    full: Measurement,
    incremental: Measurement,
    dedup_base: Measurement,
    dedup_second: Measurement,
    /// Distinct changed blocks `pg_walsummary` lists, and the number of
    /// summary files read.
    changed: (u64, usize),
    parts: ArchiveParts,
}

impl Bench {
    fn ours(&self, job: Job) -> Measurement {
        let spec = serde_json::to_string(&job).expect("a job serializes");
        let m =
            run_isolated(&spec, self.env.vars()).unwrap_or_else(|e| panic!("{}: {e}", job.name()));
        eprintln!("  {}", m.summary());
        m
    }

    fn base(&self, name: &str, store: &Path, parent: Option<&Manifest>) -> (Measurement, Manifest) {
        let m = self.ours(Job::Base {
            name: name.into(),
            store: store.to_path_buf(),
            parent: parent.map(|p| p.id.clone()),
            bin: self.bin.clone(),
        });
        (m, self.newest(store))
    }

    fn logical(&self, name: &str, store: &Path) -> Measurement {
        self.ours(Job::Logical {
            name: name.into(),
            store: store.to_path_buf(),
            bin: self.bin.clone(),
        })
    }

    /// The newest backup in `store`.
    fn newest(&self, store: &Path) -> Manifest {
        let listed = self
            .server
            .rt()
            .block_on(engine(store).catalog().list(&Filter::all()))
            .expect("listing the store");
        let newest = listed
            .iter()
            .max_by_key(|m| m.finished_at)
            .expect("a backup");
        Manifest::clone(newest)
    }

    fn update(&self, sql: &str) {
        eprintln!("{sql} ...");
        self.server.psql(&self.db, sql);
        self.server.psql(&self.db, "CHECKPOINT");
    }

    /// Distinct blocks the WAL summaries list between the starts of
    /// `parent` and `backup`, and how many summary files that is.
    fn changed_between(&self, parent: &Manifest, backup: &Manifest) -> (u64, usize) {
        let start = |m: &Manifest| {
            BaseBackupInfo::from_manifest(m)
                .expect("a base backup")
                .start_lsn
                .0
        };
        let data = self
            .server
            .server()
            .cluster()
            .expect("a throwaway cluster")
            .data_dir();
        let files =
            summaries_covering(&data.join("pg_wal/summaries"), start(parent), start(backup))
                .expect("reading pg_wal/summaries");
        let blocks = changed_blocks(&self.bin.join("pg_walsummary"), &files)
            .unwrap_or_else(|e| panic!("pg_walsummary: {e}"));
        (blocks, files.len())
    }

    /// One case: full, dedup base, `update`, incremental, dedup second.
    fn case(&self, tag: &str, what: &str, update: &str) -> Case {
        let store = self.dir.join(format!("store-{tag}"));
        let dedup = self.dir.join(format!("dedup-{tag}"));
        let (full, full_m) = self.base(&format!("({tag}) full base backup (zstd:1)"), &store, None);
        let dedup_base = self.logical(
            &format!("({tag}) logical dedup: base (pg_dump, zstd:1)"),
            &dedup,
        );
        self.update(update);
        let (incremental, inc_m) = self.base(
            &format!("({tag}) incremental on the full, {what}"),
            &store,
            Some(&full_m),
        );
        let dedup_second = self.logical(
            &format!("({tag}) logical dedup: second backup, {what}"),
            &dedup,
        );
        let changed = self.changed_between(&full_m, &inc_m);
        let parts = ArchiveParts::of_zstd_tar(&store.join(&inc_m.artifact))
            .expect("listing the incremental's archive");
        std::fs::remove_dir_all(&dedup).expect("removing the dedup store");
        Case {
            full,
            incremental,
            dedup_base,
            dedup_second,
            changed,
            parts,
        }
    }

    /// Updates 1% of the accounts: the contiguous range starting at
    /// `from`.
    fn contiguous(&self, from: u64) -> String {
        format!(
            "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid BETWEEN {from} AND {}",
            from + self.accounts / 100 - 1
        )
    }
}

fn pct(part: u64, whole: u64) -> f64 {
    100.0 * part as f64 / whole.max(1) as f64
}

fn ok(yes: bool) -> &'static str {
    if yes { "ok" } else { "MISSED" }
}

fn main() {
    let args = BenchArgs::from_env();
    if let Some(spec) = &args.isolated {
        let job: Job = serde_json::from_str(spec).expect("a job spec");
        report_isolated(&job.run());
        return;
    }
    let scale = env_u64("BENCH_PGBENCH_SCALE", 20);
    let filler = std::env::var("BENCH_PGBENCH_FILLER").unwrap_or_else(|_| "random".into());
    assert!(
        filler == "random" || filler == "stock",
        "BENCH_PGBENCH_FILLER={filler:?}: random or stock"
    );
    let bin =
        PathBuf::from(std::env::var_os(TEST_PG18_BIN_VAR).unwrap_or_else(|| {
            panic!("{TEST_PG18_BIN_VAR} must name a PostgreSQL 17+ bin directory")
        }));
    let work = tempfile::tempdir().expect("work directory");
    let mut report = Report::new(
        "postgres: block-level incremental base backups vs full, WAL summaries and logical dedup",
    );
    machine_meta(&mut report);
    eprintln!("starting PostgreSQL ({}) ...", bin.display());
    let server =
        TestServer::throwaway_with(&bin, &[("summarize_wal", "on"), ("wal_level", "replica")])
            .expect("a PostgreSQL server with summarize_wal = on");
    let server = BenchServer::with(server);
    let db = server
        .rt()
        .block_on(server.server().create_database("pgbench"))
        .expect("creating the database");
    eprintln!("pgbench -i -s {scale} ...");
    server
        .rt()
        .block_on(server.server().pgbench_init(&db, scale as u32))
        .expect("pgbench -i");
    if filler == "random" {
        eprintln!("random filler ...");
        server.psql(
            &db,
            "UPDATE pgbench_accounts SET filler = md5(random()::text) || md5(random()::text)",
        );
        // Back in aid order, without the dead versions.
        server.psql(&db, "VACUUM FULL pgbench_accounts");
    }
    // Frozen and all-visible now, so no later vacuum writes.
    server.psql(&db, "VACUUM (FREEZE, ANALYZE)");
    server.psql(&db, "CHECKPOINT");
    let accounts = scale * 100_000;
    let size: u64 = server
        .psql(&db, "SELECT pg_database_size(current_database())")
        .parse()
        .unwrap_or(0);
    report.meta(
        "data",
        format!(
            "pgbench -i -s {scale} ({accounts} accounts, filler: {}), {} database",
            if filler == "random" {
                "64 random hex digits"
            } else {
                "stock (blank)"
            },
            human_bytes(size)
        ),
    );
    let prefix = format!("{}/", bin.display());
    report.meta(
        "server",
        format!("{}; summarize_wal = on", server.describe(&prefix)),
    );
    report.meta(
        "cases",
        "(a) and (b) each start from a fresh full base backup in their own store (not chained); \
         incremental wall time includes fetching the parent's backup_manifest from the store",
    );
    let env = server.env(&db);
    let bench = Bench {
        server,
        env,
        db,
        bin,
        dir: work.path().to_path_buf(),
        accounts,
    };

    let a = bench.case("a", "1% contiguous", &bench.contiguous(1));
    let b = bench.case(
        "b",
        "1% random",
        "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE random() < 0.01",
    );
    let mut lines = Vec::new();
    for (tag, c) in [("a", &a), ("b", &b)] {
        let full = c.full.output.unwrap_or(0);
        let stored = c.incremental.output.unwrap_or(0);
        let raw = c.incremental.input;
        let changed = c.changed.0 * BLOCK_SIZE;
        let p = c.parts;
        lines.push(format!(
            "({tag}) incremental stores {} = {:.2}% of the full's {}{}; uncompressed archive {} \
             (WAL {}, {} INCREMENTAL.* files {}, {} whole relation files {}, other {})",
            human_bytes(stored),
            pct(stored, full),
            human_bytes(full),
            if tag == "a" {
                format!(" (goal <= 5%: {})", ok(pct(stored, full) <= 5.0))
            } else {
                String::new()
            },
            human_bytes(raw),
            human_bytes(p.wal),
            p.incremental_files,
            human_bytes(p.incremental),
            p.whole_relation_files,
            human_bytes(p.whole_relations),
            human_bytes(p.other),
        ));
        let x = stored as f64 / changed.max(1) as f64;
        lines.push(format!(
            "({tag}) pg_walsummary: {} distinct blocks changed ({} summary files, full's start \
             LSN .. incremental's) = {}; stored / changed {x:.2}x{}; uncompressed archive / \
             changed {:.2}x, without its WAL {:.2}x",
            c.changed.0,
            c.changed.1,
            human_bytes(changed),
            if tag == "b" {
                format!(" (goal <= 1.1x: {})", ok(x <= 1.1))
            } else {
                String::new()
            },
            raw as f64 / changed.max(1) as f64,
            raw.saturating_sub(p.wal) as f64 / changed.max(1) as f64,
        ));
        let (base, second) = (
            c.dedup_base.output.unwrap_or(0),
            c.dedup_second.output.unwrap_or(0),
        );
        lines.push(format!(
            "({tag}) logical dedup: base stores {}, second {} = {:.1}% of the base",
            human_bytes(base),
            human_bytes(second),
            pct(second, base)
        ));
    }
    for c in [a, b] {
        for m in [c.full, c.dedup_base, c.incremental, c.dedup_second] {
            report.push(m);
        }
    }
    chains(&bench, &mut report, &mut lines);
    lines.push(
        "wall times are indicative: a shared 2-core machine (other builds ran meanwhile)".into(),
    );
    for line in lines {
        report.line(line);
    }
    report.meta("load average at end", load_average());
    bench.server.drop_database(&bench.db);
    println!("{report}");
    if let Some(path) = &args.json {
        report.write_json(path).expect("writing the JSON report");
        eprintln!("wrote {}", path.display());
    }
}

/// A full and six incrementals, each after 1% of the accounts updated;
/// chain restores of 1, 3 and 7 links, ours against bare
/// `pg_combinebackup` and `pg_verifybackup` on the unpacked links.
fn chains(bench: &Bench, report: &mut Report, lines: &mut Vec<String>) {
    let store = bench.dir.join("store-chain");
    let mut links = vec![bench.base("chain: full", &store, None).1];
    for i in 1..=6u64 {
        bench.update(&bench.contiguous(i * bench.accounts / 7 + 1));
        let parent = links.last().expect("a parent").clone();
        links.push(
            bench
                .base(&format!("chain: incremental {i}"), &store, Some(&parent))
                .1,
        );
    }
    let raw = links[0].raw.size;
    let sizes: Vec<String> = links
        .iter()
        .map(|m| human_bytes(m.bytes_stored()))
        .collect();
    lines.push(format!("chain links stored: {}", sizes.join(", ")));
    for (n, tip) in [(1, 0), (3, 2), (7, 6)] {
        let dir = bench.dir.join(format!("restored-{n}"));
        let m = bench.ours(Job::Chain {
            name: format!("chain restore, {n} link(s): ours (extract, combine, verify)"),
            store: store.clone(),
            id: links[tip].id.clone(),
            dir: dir.clone(),
            bin: bench.bin.clone(),
        });
        report.push(Measurement { input: raw, ..m });
        std::fs::remove_dir_all(&dir).expect("removing the restored cluster");
    }
    // The same links unpacked (untimed), for the bare tools.
    eprintln!("unpacking the links ...");
    let unpacked: Vec<PathBuf> = (0..links.len())
        .map(|i| bench.dir.join(format!("link-{i}")))
        .collect();
    for (m, dir) in links.iter().zip(&unpacked) {
        std::fs::create_dir(dir).expect("link directory");
        bench
            .env
            .shell(format!(
                "zstd -dc {} | tar -x -C {}",
                quoted(&store.join(&m.artifact)),
                quoted(dir)
            ))
            .run()
            .expect("unpacking a link");
    }
    let prefix = format!("{}/", bench.bin.display());
    for n in [3usize, 7] {
        let out = bench.dir.join(format!("combined-{n}"));
        let dirs: Vec<String> = unpacked[..n].iter().map(|d| quoted(d)).collect();
        let combine = measure_shell(
            &bench.env,
            &format!("chain restore, {n} links: bare pg_combinebackup (links unpacked)"),
            format!(
                "{prefix}pg_combinebackup -o {} {}",
                quoted(&out),
                dirs.join(" ")
            ),
            raw,
            None,
        );
        let verify = measure_shell(
            &bench.env,
            &format!("chain restore, {n} links: bare pg_verifybackup of the result"),
            format!("{prefix}pg_verifybackup {}", quoted(&out)),
            raw,
            None,
        );
        lines.push(format!(
            "chain of {n}: bare pg_combinebackup + pg_verifybackup {}",
            human_duration(combine.wall + verify.wall)
        ));
        report.push(combine);
        report.push(verify);
        std::fs::remove_dir_all(&out).expect("removing the combined cluster");
    }
    let verify_full = measure_shell(
        &bench.env,
        "chain restore, 1 link: bare pg_verifybackup of the unpacked full",
        format!("{prefix}pg_verifybackup {}", quoted(&unpacked[0])),
        raw,
        None,
    );
    report.push(verify_full);
}
