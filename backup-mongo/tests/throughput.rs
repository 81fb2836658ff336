//! Dump (and restore) throughput and memory for 1 million documents, against
//! the MongoDB-compatible stand-in (SecantusDB; not MongoDB) or the server
//! of `MONGODB_URI`. Ignored by default; run it with
//!
//! ```text
//! cargo test -p backup-mongo --release -- --ignored --nocapture mongo_dump_throughput
//! ```
//!
//! Set `BENCH_MONGO_DOCS` to change the document count. Peak RSS is this
//! process's high-water mark (`VmHWM`), reset just before each phase, so
//! loading the data does not count; RSS is also sampled as the dump
//! advances to show that it does not grow with the collection.

use std::io::Write;
use std::time::Instant;

use backup_core::testing::write_from_reader;
use backup_core::{DumpSource, RestoreOptions, RestoreTarget, source::DumpOptions};
use backup_mongo::{MongoSource, MongoTarget, TestServer};
use futures::StreamExt;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Resets the peak-RSS mark (Linux: `echo 5 > /proc/self/clear_refs`).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --release -- --ignored --nocapture mongo_dump_throughput"]
async fn mongo_dump_throughput() {
    let documents: u64 = std::env::var("BENCH_MONGO_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let server = TestServer::shared();
    println!("server: {}", server.describe());
    let db = TestServer::unique_name("bench_src");
    let started = Instant::now();
    server.create_sample(&db, documents).await.unwrap();
    println!(
        "loaded {documents} documents in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Dump: stream into a temporary file (so the archive is not held in
    // memory), sampling RSS along the way.
    let mut file = tempfile::tempfile().unwrap();
    let source = MongoSource::new(server.connection(&db));
    reset_peak();
    let base = status_kib("VmRSS:");
    let started = Instant::now();
    let mut dump = source.dump(&DumpOptions::default()).await.unwrap();
    let mut bytes = 0u64;
    let mut samples = Vec::new();
    let mut next_sample = 0u64;
    while let Some(chunk) = dump.stream.next().await {
        let chunk = chunk.unwrap();
        bytes += chunk.len() as u64;
        file.write_all(&chunk).unwrap();
        if bytes >= next_sample {
            samples.push((bytes, status_kib("VmRSS:")));
            next_sample += 32 * 1024 * 1024;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let peak = status_kib("VmHWM:");
    println!(
        "dump: {documents} documents, {:.1} MiB archive in {seconds:.2} s = {:.0} docs/s, {:.1} MB/s",
        bytes as f64 / 1048576.0,
        documents as f64 / seconds,
        bytes as f64 / 1e6 / seconds
    );
    println!(
        "dump memory: RSS before {:.1} MiB, peak {:.1} MiB (+{:.1} MiB)",
        mib(base),
        mib(peak),
        mib(peak.saturating_sub(base))
    );
    let shown: Vec<String> = samples
        .iter()
        .map(|(b, rss)| format!("{:.0} MiB→{:.1}", *b as f64 / 1048576.0, mib(*rss)))
        .collect();
    println!("RSS (MiB) as the dump advances: {}", shown.join(", "));

    // Restore the archive natively (staged) from the file.
    let target_db = format!("{db}_restored");
    let target = MongoTarget::new(server.connection(&target_db));
    use std::io::Seek;
    file.rewind().unwrap();
    reset_peak();
    let base = status_kib("VmRSS:");
    let started = Instant::now();
    let mut session = target.begin(&RestoreOptions::default()).await.unwrap();
    write_from_reader(&mut *session, &mut file, 1024 * 1024, |_| {}).await;
    session.commit().await.unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let peak = status_kib("VmHWM:");
    println!(
        "restore (staged, then renamed): {:.0} docs/s, {:.1} MB/s, RSS before {:.1} MiB, peak {:.1} MiB (+{:.1} MiB)",
        documents as f64 / seconds,
        bytes as f64 / 1e6 / seconds,
        mib(base),
        mib(peak),
        mib(peak.saturating_sub(base))
    );
    let source_summary = server.summary(&db).await.unwrap();
    assert_eq!(server.summary(&target_db).await.unwrap(), source_summary);
    assert_eq!(source_summary["items"].0, documents);

    server.drop_database(&db).await.unwrap();
    server.drop_database(&target_db).await.unwrap();
}
