//! The PostgreSQL side the `postgres`, `basebackup`, `walarchive` and
//! `pitr` benchmarks share: a server with a runtime beside it, the
//! random-data table, where the client tools are, and the metadata lines
//! every report starts with.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use backup_postgres::{PgConnection, TestServer};

use crate::args::load_average;
use crate::human::{human_bytes, human_duration};
use crate::pgenv::PgEnv;
use crate::report::{Measurement, Report};

/// A PostgreSQL server for a benchmark (a throwaway cluster, or the one
/// `BACKUP_TEST_PG_URL` names) and a tokio runtime to talk to it with.
/// Its helpers panic on failure: a benchmark cannot go on without them.
#[derive(Debug)]
pub struct BenchServer {
    server: TestServer,
    rt: tokio::runtime::Runtime,
}

/// The random-data database of [`BenchServer::random_table`].
#[derive(Debug, Clone)]
pub struct RandomTable {
    /// The database holding table `t`.
    pub database: String,
    /// Rows loaded.
    pub rows: u64,
    /// How long loading and `VACUUM` took.
    pub loaded_in: Duration,
}

impl BenchServer {
    /// Starts a throwaway cluster (or connects to `BACKUP_TEST_PG_URL`).
    pub fn start() -> BenchServer {
        eprintln!("starting the server ...");
        let server = TestServer::from_env_or_throwaway().expect("a PostgreSQL server");
        BenchServer::with(server)
    }

    /// Wraps a server started otherwise (e.g. with extra settings).
    pub fn with(server: TestServer) -> BenchServer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        BenchServer { server, rt }
    }

    /// The server.
    pub fn server(&self) -> &TestServer {
        &self.server
    }

    /// The runtime beside it.
    pub fn rt(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }

    /// Runs `sql` in `database`; psql's unaligned output, trimmed.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        self.rt
            .block_on(self.server.psql(database, sql))
            .unwrap_or_else(|e| panic!("psql {sql:?}: {e}"))
            .trim()
            .to_string()
    }

    /// Connection to `database` with the admin credentials.
    pub fn connection(&self, database: &str) -> PgConnection {
        self.server.connection(database)
    }

    /// [`PgEnv`] for `database`: how tools and isolated children reach it.
    pub fn env(&self, database: &str) -> PgEnv {
        PgEnv::new(&self.connection(database)).expect("the tools' environment")
    }

    /// The server's major version.
    pub fn major(&self) -> u32 {
        self.psql("postgres", "SHOW server_version_num")
            .parse::<u32>()
            .unwrap_or(0)
            / 10_000
    }

    /// Where the client tools for this server are: the throwaway cluster's
    /// bin directory, else `/usr/lib/postgresql/<major>/bin` when it has
    /// `tool`; `None` means `$PATH`.
    pub fn bin_dir(&self, tool: &str) -> Option<PathBuf> {
        self.server
            .tools()
            .bin_dir()
            .map(Path::to_path_buf)
            .or_else(|| {
                let dir = PathBuf::from(format!("/usr/lib/postgresql/{}/bin", self.major()));
                dir.join(tool).is_file().then_some(dir)
            })
    }

    /// [`bin_dir`](Self::bin_dir) as a prefix for a shell command
    /// (`/usr/lib/postgresql/15/bin/`, or empty for `$PATH`).
    pub fn tool_prefix(&self, tool: &str) -> String {
        self.bin_dir(tool)
            .map(|d| format!("{}/", d.display()))
            .unwrap_or_default()
    }

    /// Creates a database with table `t` of `rows` rows of random text (id,
    /// three `md5` columns, a timestamp), frozen and analysed.
    pub fn random_table(&self, rows: u64) -> RandomTable {
        let database = self
            .rt
            .block_on(self.server.create_database("bench"))
            .expect("creating the database");
        eprintln!("loading {rows} rows into {database} ...");
        let started = Instant::now();
        self.psql(
            &database,
            &format!(
                "CREATE TABLE t AS SELECT i AS id, md5(random()::text) a, md5(random()::text) b, \
                 md5(random()::text) c, now() - i * interval '1 second' AS ts \
                 FROM generate_series(1, {rows}) i"
            ),
        );
        // Set hint bits and statistics now, so the first run does not pay.
        self.psql(&database, "VACUUM (FREEZE, ANALYZE) t");
        RandomTable {
            database,
            rows,
            loaded_in: started.elapsed(),
        }
    }

    /// Prepares the write load of the WAL benchmarks in `database` (filled
    /// by `pgbench -i`): table `bench_wal` and, in `dir`, a pgbench script
    /// inserting `rows` rows of random text per transaction. Returns
    /// pgbench's arguments for `seconds` of `-c 2 -j 2`, half of the
    /// transactions the built-in TPC-B-like one, half that insert (to
    /// produce enough WAL to fill several segments on a busy machine).
    pub fn pgbench_load(&self, database: &str, dir: &Path, rows: u64, seconds: u64) -> Vec<String> {
        self.psql(
            database,
            "CREATE TABLE IF NOT EXISTS bench_wal (a text, b text)",
        );
        let script = dir.join("insert.sql");
        std::fs::write(
            &script,
            format!(
                "INSERT INTO bench_wal SELECT md5(random()::text), md5(random()::text) FROM generate_series(1, {rows});\n"
            ),
        )
        .expect("writing the pgbench script");
        [
            "-n",
            "-c",
            "2",
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "-b",
            "tpcb-like@1",
            "-f",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("{}@1", script.display())])
        .collect()
    }

    /// The report's `server` line: version, where it runs, where the
    /// tools come from (`prefix` as from [`tool_prefix`](Self::tool_prefix)).
    pub fn describe(&self, prefix: &str) -> String {
        format!(
            "PostgreSQL {} ({}); tools from {}",
            self.psql("postgres", "SHOW server_version"),
            if std::env::var_os(backup_postgres::TEST_URL_VAR).is_some() {
                "BACKUP_TEST_PG_URL"
            } else {
                "throwaway cluster, fsync=off, synchronous_commit=off, full_page_writes=off"
            },
            if prefix.is_empty() { "$PATH" } else { prefix }
        )
    }

    /// Drops `database`.
    pub fn drop_database(&self, database: &str) {
        self.rt
            .block_on(self.server.drop_database(database))
            .unwrap_or_else(|e| panic!("dropping {database}: {e}"));
    }
}

impl RandomTable {
    /// The report's `data` line, with `size` (bytes on disk) measured by
    /// the caller.
    pub fn describe(&self, size: u64) -> String {
        format!(
            "table t: {} rows (id, 3 x md5 text, timestamptz), {} on disk, loaded in {}",
            self.rows,
            human_bytes(size),
            human_duration(self.loaded_in)
        )
    }
}

/// Adds the `machine` line (cores, load average now) to `report`.
pub fn machine_meta(report: &mut Report) {
    report.meta(
        "machine",
        format!(
            "{} cores, load average at start {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            load_average()
        ),
    );
}

/// Measures one phase of an isolated child: wall time, CPU time (this
/// process and its waited-for children) and this process's peak RSS from
/// [`Phase::start`] to [`Phase::finish`].
#[derive(Debug)]
pub struct Phase {
    baseline: u64,
    cpu: Duration,
    started: Instant,
}

impl Phase {
    /// Resets the peak RSS and starts the clocks.
    pub fn start() -> Phase {
        let baseline = crate::rss::current_rss().expect("VmRSS");
        crate::rss::reset_peak_rss().expect("resetting VmHWM");
        Phase {
            baseline,
            cpu: crate::cpu::cpu_time().expect("cpu time"),
            started: Instant::now(),
        }
    }

    /// The row for `name`, `input` bytes processed; the note says what
    /// the CPU time includes besides this process (`children`, e.g.
    /// `pg_dump`).
    pub fn finish(self, name: &str, input: u64, children: &str) -> Measurement {
        let wall = self.started.elapsed();
        let cpu = crate::cpu::cpu_time()
            .expect("cpu time")
            .saturating_sub(self.cpu);
        Measurement::new(name, input, wall)
            .peak_rss(crate::rss::peak_rss().expect("VmHWM"))
            .cpu(cpu)
            .note(format!(
                "RSS: bench process (baseline {}); CPU incl. {children}",
                human_bytes(self.baseline)
            ))
    }
}

/// Runs `script` (with `env`) under `/usr/bin/time` and makes its row:
/// `input` bytes, the size of `output` if given.
pub fn measure_shell(
    env: &PgEnv,
    name: &str,
    script: String,
    input: u64,
    output: Option<&Path>,
) -> Measurement {
    let run = env
        .shell(script)
        .run()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut m = Measurement::new(name, input, run.wall)
        .peak_rss(run.peak_rss)
        .cpu(run.cpu)
        .note("RSS: largest process; CPU: whole pipeline");
    if let Some(path) = output {
        m = m.output(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0));
    }
    m
}

/// `'path'` for a shell script (paths here are temporary directories
/// without quotes in them).
pub fn quoted(path: &Path) -> String {
    format!("'{}'", path.display())
}
