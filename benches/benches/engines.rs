//! Logical backups of MySQL/MariaDB and SQLite against the bare tools and
//! the shell pipelines an operator would write (issue #16's figures).
//!
//! ```text
//! cargo bench -p backup-benches --bench engines [-- --json results.json]
//! ```
//!
//! MySQL: starts a throwaway MariaDB (or uses `BACKUP_TEST_MYSQL_URL`),
//! loads `BENCH_MYSQL_ROWS` (default 2M, about 560 MB of dump) rows of
//! random text, then times `mariadb-dump` to /dev/null (the floor),
//! `mariadb-dump | zstd -1 -T0 > file` and our `Engine::backup` of a
//! `MysqlSource` (zstd:1, all digests) into a directory store. SQLite: a
//! file of `BENCH_SQLITE_ROWS` (default 2M) rows, `sqlite3 DB ".backup
//! FILE"` (the same online backup API ours uses) and the same followed by
//! `zstd -1 -T0`, against our `SqliteSource`. Ours runs in a fresh process
//! per variant (its peak RSS is its own), on the full data and on a
//! sixteenth of it, to show that memory does not follow the size.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_benches::{
    BenchArgs, Measurement, Phase, Report, env_u64, human_bytes, load_average, machine_meta,
    quoted, report_isolated, run_isolated,
};
use backup_core::{BackupRequest, Compression, DumpSource, Engine, Secret};
use backup_mysql::{MysqlConnection, MysqlSource, TestServer as Mysql};
use backup_sqlite::SqliteSource;
use backup_store_fs::FsStore;
use serde::{Deserialize, Serialize};

/// The variable naming the 0600 file that holds the MySQL URL (password
/// included) for our isolated children: never on a command line.
const URL_FILE_VAR: &str = "BENCH_MYSQL_URL_FILE";

/// Our side, run in an isolated child.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Job {
    /// A backup of MySQL database `database` into a fresh store.
    Mysql {
        name: String,
        database: String,
        store: PathBuf,
    },
    /// A backup of the SQLite file `path` into a fresh store.
    Sqlite {
        name: String,
        path: PathBuf,
        store: PathBuf,
    },
}

impl Job {
    /// In the child.
    fn run(&self) -> Measurement {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let (name, source, store, children): (&str, Box<dyn DumpSource>, &Path, &str) = match self {
            Job::Mysql {
                name,
                database,
                store,
            } => {
                let file = std::env::var(URL_FILE_VAR).expect("the URL file variable");
                let url = Secret::new(std::fs::read_to_string(file).expect("the URL file"));
                let conn = MysqlConnection::from_url(url.expose().trim())
                    .expect("a MySQL URL")
                    .with_database(database);
                (
                    name,
                    Box::new(MysqlSource::new(conn)),
                    store,
                    "children (mariadb-dump)",
                )
            }
            Job::Sqlite { name, path, store } => (
                name,
                Box::new(SqliteSource::new(path)),
                store,
                "children (none: the snapshot runs in process)",
            ),
        };
        let engine = Engine::new(Arc::new(FsStore::new(store).expect("store")))
            .with_compressor(Arc::new(Compression::zstd(1)));
        let phase = Phase::start();
        let m = rt
            .block_on(engine.backup(source.as_ref(), &BackupRequest::new("bench")))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        phase
            .finish(name, m.raw.size, children)
            .output(m.stored.size)
    }
}

/// Runs `script` with `bash -o pipefail` under `/usr/bin/time`.
fn shell(name: &str, script: String, input: u64, output: Option<&Path>) -> Measurement {
    let run = backup_benches::ShellCommand::new(script)
        .env("LC_MESSAGES", "C")
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

fn ours(job: Job, env: &[(String, String)]) -> Measurement {
    let spec = serde_json::to_string(&job).expect("a job serializes");
    run_isolated(&spec, env).unwrap_or_else(|e| panic!("{spec}: {e}"))
}

/// `ours / piped` and the peak RSS of our full and small runs, as a line.
fn targets(engine: &str, ours: &Measurement, small: &Measurement, piped: &Measurement) -> String {
    let x = ours.wall.as_secs_f64() / piped.wall.as_secs_f64().max(1e-9);
    let peak = ours.peak_rss.unwrap_or(0).max(small.peak_rss.unwrap_or(0));
    format!(
        "{engine}: ours / tool | zstd -1 -T0 {x:.2}x; peak RSS ours {} on {} and {} on {} (<= 64 MiB, flat) {}",
        human_bytes(ours.peak_rss.unwrap_or(0)),
        human_bytes(ours.input),
        human_bytes(small.peak_rss.unwrap_or(0)),
        human_bytes(small.input),
        if peak <= 64 << 20 { "ok" } else { "MISSED" }
    )
}

fn mysql(report: &mut Report, dir: &Path) {
    let rows = env_u64("BENCH_MYSQL_ROWS", 2_000_000);
    let server = Mysql::from_env_or_throwaway().expect("a MariaDB server");
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let mut databases = Vec::new();
    for (suffix, n) in [("full", rows), ("small", (rows / 16).max(1))] {
        let db = rt
            .block_on(server.create_database(&format!("bench_{suffix}")))
            .expect("a database");
        eprintln!("loading {n} rows into MySQL {db} ...");
        rt.block_on(server.sql(
            Some(&db),
            &format!(
                "CREATE TABLE t (id BIGINT PRIMARY KEY, a CHAR(128), b VARCHAR(200)) ENGINE=InnoDB; \
                 INSERT INTO t SELECT seq, sha2(rand(), 512), sha2(concat(seq, rand()), 512) FROM seq_1_to_{n}"
            ),
        ))
        .expect("loading rows");
        databases.push(db);
    }
    let conn = server.connection(&databases[0]);
    let password = server.password().map(|p| p.expose().to_string());
    // The shell's option file and our children's URL file: 0600, removed
    // with `dir`.
    let defaults = dir.join("my.cnf");
    let mut text = format!(
        "[client]\nuser=\"{}\"\nhost={}\nport={}\n",
        conn.user(),
        conn.host(),
        conn.port()
    );
    if let Some(p) = &password {
        text.push_str(&format!(
            "password=\"{}\"\n",
            p.replace('\\', "\\\\").replace('"', "\\\"")
        ));
    }
    write_private(&defaults, &text);
    let url_file = dir.join("mysql.url");
    write_private(&url_file, &server.url(""));
    let env = vec![(URL_FILE_VAR.to_string(), url_file.display().to_string())];
    // What `MysqlTools::auto` picks first, as ours runs it.
    let tool = "mariadb-dump";
    let dump = |db: &str| {
        format!(
            "{tool} --defaults-extra-file={} --single-transaction --quick --hex-blob --default-character-set=utf8mb4 --no-tablespaces -- {db}",
            quoted(&defaults)
        )
    };
    eprintln!("warming up (one untimed mariadb-dump) ...");
    shell(
        "warm-up",
        format!("{} > /dev/null", dump(&databases[0])),
        0,
        None,
    );
    let ours_full = ours(
        Job::Mysql {
            name: "mysql ours: MysqlSource zstd:1 (digests)".into(),
            database: databases[0].clone(),
            store: dir.join("mysql-store"),
        },
        &env,
    );
    let ours_small = ours(
        Job::Mysql {
            name: "mysql ours, a sixteenth of the rows".into(),
            database: databases[1].clone(),
            store: dir.join("mysql-store-small"),
        },
        &env,
    );
    let raw = ours_full.input;
    let floor = shell(
        "mysql: mariadb-dump > /dev/null (floor)",
        format!("{} > /dev/null", dump(&databases[0])),
        raw,
        None,
    );
    let out = dir.join("mysql.sql.zst");
    let piped = shell(
        "mysql: mariadb-dump | zstd -1 -T0 > file",
        format!(
            "{} | zstd -q -1 -T0 > {}",
            dump(&databases[0]),
            quoted(&out)
        ),
        raw,
        Some(&out),
    );
    report.line(targets("mysql", &ours_full, &ours_small, &piped));
    for m in [ours_full, ours_small, floor, piped] {
        report.push(m);
    }
    for db in &databases {
        rt.block_on(server.drop_database(db)).expect("dropping");
    }
}

fn sqlite(report: &mut Report, dir: &Path) {
    let rows = env_u64("BENCH_SQLITE_ROWS", 2_000_000);
    let mut files = Vec::new();
    for (suffix, n) in [("full", rows), ("small", (rows / 16).max(1))] {
        let path = dir.join(format!("bench-{suffix}.db"));
        eprintln!("writing {n} rows into {} ...", path.display());
        let db = rusqlite::Connection::open(&path).expect("a SQLite file");
        db.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; \
             CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b TEXT); \
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) \
             INSERT INTO t SELECT x, hex(randomblob(64)), hex(randomblob(48)) FROM c; \
             PRAGMA wal_checkpoint(TRUNCATE);"
        ))
        .expect("filling the file");
        files.push(path);
    }
    let ours_full = ours(
        Job::Sqlite {
            name: "sqlite ours: SqliteSource zstd:1 (snapshot, digests)".into(),
            path: files[0].clone(),
            store: dir.join("sqlite-store"),
        },
        &[],
    );
    let ours_small = ours(
        Job::Sqlite {
            name: "sqlite ours, a sixteenth of the rows".into(),
            path: files[1].clone(),
            store: dir.join("sqlite-store-small"),
        },
        &[],
    );
    let raw = ours_full.input;
    let copy = dir.join("copy.db");
    let floor = shell(
        "sqlite: sqlite3 DB \".backup FILE\" (floor)",
        format!(
            "rm -f {copy} && sqlite3 {} \".backup {copy}\"",
            quoted(&files[0]),
            copy = quoted(&copy)
        ),
        raw,
        Some(&copy),
    );
    let out = dir.join("copy.db.zst");
    let piped = shell(
        "sqlite: sqlite3 DB \".backup FILE\" && zstd -1 -T0 FILE",
        format!(
            "rm -f {copy} && sqlite3 {} \".backup {copy}\" && zstd -q -f -1 -T0 {copy} -o {out}",
            quoted(&files[0]),
            copy = quoted(&copy),
            out = quoted(&out)
        ),
        raw,
        Some(&out),
    );
    report.line(targets("sqlite", &ours_full, &ours_small, &piped));
    for m in [ours_full, ours_small, floor, piped] {
        report.push(m);
    }
}

/// Writes `text` into a new file at `path` readable by its owner only.
fn write_private(path: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .expect("a private file");
    file.write_all(text.as_bytes()).expect("writing it");
}

fn main() {
    let args = BenchArgs::from_env();
    if let Some(spec) = &args.isolated {
        let job: Job = serde_json::from_str(spec).expect("a job spec");
        report_isolated(&job.run());
        return;
    }
    let work = tempfile::tempdir().expect("work directory");
    let mut report = Report::new("logical backups of MySQL/MariaDB and SQLite");
    machine_meta(&mut report);
    if backup_benches::selected("mysql") {
        mysql(&mut report, work.path());
    }
    if backup_benches::selected("sqlite") {
        sqlite(&mut report, work.path());
    }
    report.meta("load average at end", load_average());
    println!("{report}");
    if let Some(path) = &args.json {
        report.write_json(path).expect("writing the JSON report");
        eprintln!("wrote {}", path.display());
    }
}
