//! What an incremental (deduplicated) backup stores after 1% of a pgbench
//! database changed, for two update patterns and three chunk sizes.
//!
//! ```text
//! cargo test -p backup-postgres --release --test dedup_bench -- --ignored --nocapture
//! ```
//!
//! It runs once per major version of the test matrix:
//! `dedup_bench_postgres_15` (Debian's) and `dedup_bench_postgres_18`
//! (`BACKUP_TEST_PG18_BIN`), each printing its version first; add
//! `--test-threads 1` to keep their figures apart.
//!
//! `DEDUP_BENCH_SCALE` sets the pgbench scale (default 10: 1M accounts,
//! about 130 MB dumped). Each case clones a freshly initialised database,
//! takes an incremental backup (the base: it stores every chunk), updates
//! 1% of `pgbench_accounts`, and takes a second incremental backup:
//!
//! - contiguous: `UPDATE ... WHERE aid <= N/100`;
//! - random: `UPDATE ... WHERE random() < 0.01` (rows spread over the
//!   whole table, as pgbench's own transactions touch them).
//!
//! PostgreSQL never updates a row in place: the new version goes where
//! there is free space, at the end of the heap for pgbench's tables
//! (fillfactor 100), and `pg_dump` writes rows in heap order. So a
//! contiguous update moves one block of rows from the start of the table's
//! data to its end, while a random update removes one row in a hundred from
//! everywhere — every chunk of more than a few rows changes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backup_core::prelude::*;
use backup_core::{dedup::DedupOptions, memory::InMemoryStore};
use backup_postgres::{PostgresSource, PostgresTarget, TestServer};

struct Case {
    pattern: &'static str,
    sizes: (usize, usize, usize),
}

struct Outcome {
    base_bytes: u64,
    base_secs: f64,
    second_bytes: u64,
    second_secs: f64,
    second_new_chunks: u64,
    second_chunks: u64,
    raw: u64,
    restore_secs: Option<f64>,
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

async fn clone_db(server: &TestServer, template: &str, prefix: &str) -> String {
    let name = format!("{prefix}_{:08x}", rand::random::<u32>());
    server
        .psql(
            "postgres",
            &format!("CREATE DATABASE {name} TEMPLATE {template}"),
        )
        .await
        .unwrap();
    name
}

async fn run_case(
    server: &TestServer,
    template: &str,
    accounts: u64,
    case: &Case,
    restore: bool,
) -> Outcome {
    let db = clone_db(server, template, "bench").await;
    let (min, avg, max) = case.sizes;
    let store = Arc::new(InMemoryStore::new());
    let engine = Engine::new(store.clone() as Arc<dyn Store>)
        .with_dedup(DedupOptions::default().chunk_sizes(min, avg, max));
    let source = PostgresSource::new(server.connection(&db)).with_tools(server.tools());
    let request = BackupRequest::new("bench").backup_type(BackupType::Incremental);

    let t = Instant::now();
    let base = engine.backup(&source, &request).await.unwrap();
    let base_secs = t.elapsed().as_secs_f64();

    let update = match case.pattern {
        "contiguous" => format!(
            "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= {}",
            accounts / 100
        ),
        _ => "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE random() < 0.01".into(),
    };
    let changed = server
        .psql(&db, &format!("{update}; SELECT 1"))
        .await
        .unwrap();
    assert!(!changed.is_empty());

    let t = Instant::now();
    let second = engine.backup(&source, &request).await.unwrap();
    let second_secs = t.elapsed().as_secs_f64();
    let d = second.dedup.clone().unwrap();

    let restore_secs = if restore {
        let target_db = format!("{db}_restored");
        let target = PostgresTarget::new(server.connection("postgres")).with_tools(server.tools());
        let t = Instant::now();
        engine
            .restore(
                &second.id,
                &target,
                &RestoreOptions::into_database(&target_db).create(true),
            )
            .await
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(
            server.fingerprint(&target_db).await.unwrap(),
            server.fingerprint(&db).await.unwrap(),
            "restored database differs"
        );
        server.drop_database(&target_db).await.unwrap();
        Some(secs)
    } else {
        None
    };
    server.drop_database(&db).await.unwrap();
    Outcome {
        base_bytes: base.bytes_stored(),
        base_secs,
        second_bytes: second.bytes_stored(),
        second_secs,
        second_new_chunks: d.new_chunks,
        second_chunks: d.chunks,
        raw: second.raw.size,
        restore_secs,
    }
}

#[tokio::test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
async fn dedup_bench_postgres_15() {
    dedup_bench(TestServer::shared()).await;
}

#[tokio::test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
async fn dedup_bench_postgres_18() {
    let server = TestServer::shared_pg18();
    assert_eq!(
        server.major().await.unwrap(),
        18,
        "the PostgreSQL 18 server"
    );
    dedup_bench(server).await;
}

async fn dedup_bench(server: &TestServer) {
    println!("\nPostgreSQL {}", server.major().await.unwrap());
    let scale: u32 = std::env::var("DEDUP_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let stock = server.create_database("bench_stock").await.unwrap();
    server.pgbench_init(&stock, scale).await.unwrap();
    // pgbench's `filler` column is blank and every balance zero: the dump
    // compresses about 80 times. A second data set puts 64 random hex
    // digits in each account's filler, so the dump compresses like real
    // data (about 3 times); VACUUM FULL puts the rows back in aid order.
    let random = clone_db(server, &stock, "bench_random").await;
    for sql in [
        "UPDATE pgbench_accounts SET filler = md5(random()::text) || md5(random()::text)",
        "VACUUM FULL pgbench_accounts",
    ] {
        server.psql(&random, sql).await.unwrap();
    }
    let accounts = u64::from(scale) * 100_000;
    for (data, template) in [("stock pgbench", &stock), ("random filler", &random)] {
        bench_data_set(server, data, scale, template, accounts).await;
    }
    server.drop_database(&stock).await.unwrap();
    server.drop_database(&random).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
}

async fn bench_data_set(
    server: &TestServer,
    data: &str,
    scale: u32,
    template: &str,
    accounts: u64,
) {
    // Reference: a full backup with the default compression.
    let store = Arc::new(InMemoryStore::new());
    let engine = Engine::new(store.clone() as Arc<dyn Store>);
    let source = PostgresSource::new(server.connection(template)).with_tools(server.tools());
    let t = Instant::now();
    let full = engine
        .backup(&source, &BackupRequest::new("bench"))
        .await
        .unwrap();
    let full_secs = t.elapsed().as_secs_f64();
    let target_db = format!("{template}_full_restored");
    let target = PostgresTarget::new(server.connection("postgres")).with_tools(server.tools());
    let t = Instant::now();
    engine
        .restore(
            &full.id,
            &target,
            &RestoreOptions::into_database(&target_db).create(true),
        )
        .await
        .unwrap();
    let full_restore = t.elapsed().as_secs_f64();
    server.drop_database(&target_db).await.unwrap();
    println!(
        "\n{data}, scale {scale}: dump {} raw; a full backup (default zstd) stores {} in {full_secs:.1} s and restores in {full_restore:.1} s",
        mib(full.raw.size),
        mib(full.stored.size)
    );
    println!(
        "{:<11} {:>18} {:>12} {:>7} {:>12} {:>7} {:>11} {:>7} {:>9}",
        "1% update",
        "chunks min/avg/max",
        "base stored",
        "base s",
        "2nd stored",
        "2nd s",
        "new chunks",
        "ratio",
        "restore s"
    );
    let default = DedupOptions::default();
    let default_sizes = (default.min_chunk, default.avg_chunk, default.max_chunk);
    for pattern in ["contiguous", "random"] {
        for sizes in [
            (4 * 1024, 16 * 1024, 64 * 1024),
            default_sizes,
            (64 * 1024, 256 * 1024, 1024 * 1024),
        ] {
            let case = Case { pattern, sizes };
            let o = run_case(server, template, accounts, &case, sizes == default_sizes).await;
            println!(
                "{:<11} {:>18} {:>12} {:>7.1} {:>12} {:>7.1} {:>11} {:>6.1}% {:>9}",
                pattern,
                format!(
                    "{}K/{}K/{}K",
                    sizes.0 / 1024,
                    sizes.1 / 1024,
                    sizes.2 / 1024
                ),
                mib(o.base_bytes),
                o.base_secs,
                mib(o.second_bytes),
                o.second_secs,
                format!("{}/{}", o.second_new_chunks, o.second_chunks),
                100.0 * o.second_bytes as f64 / o.base_bytes as f64,
                o.restore_secs.map_or("-".into(), |s| format!("{s:.1}")),
            );
            assert!(o.raw > 0);
        }
    }
}
