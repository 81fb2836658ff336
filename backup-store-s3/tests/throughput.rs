//! Throughput and memory of streamed uploads to S3 (ignored by default):
//!
//! ```text
//! cargo test -p backup-store-s3 --release -- --ignored --nocapture s3_throughput
//! ```
//!
//! Sends the same 1 GiB stream five ways, to the loopback S3 server (a
//! local `s3s-fs`, or `BACKUP_TEST_S3_ENDPOINT`) unless said otherwise,
//! and prints MB/s, the CPU time of the test process and the peak RSS of
//! each phase (VmHWM, reset between phases through
//! `/proc/self/clear_refs`):
//!
//! 1. raw `object_store`: `WriteMultipart` with the same part size and
//!    concurrency as the store, no pipeline;
//! 2. `S3Store` alone: `put_stream` and `write`, no pipeline;
//! 3. the pipeline: `Engine::backup` with compression none (hashing,
//!    bounded queues, `S3Store`'s multipart upload) from a source that
//!    generates its bytes lazily;
//! 4. the pipeline into an `InMemoryStore`, for what the pipeline alone
//!    costs;
//! 5. the pipeline to S3 from `backup_core::testing::ScriptedSource`,
//!    which holds its whole content in memory (so its RSS includes the
//!    1 GiB source).
//!
//! Env: `S3_BENCH_MIB` (default 1024) changes the size, `S3_BENCH_ROUNDS`
//! (default 2) how often raw and pipeline runs alternate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backup_core::testing::{ScriptedSource, pattern};
use backup_core::{
    BackupRequest, Compression, DumpSource, Engine, Store, key::Key, memory::InMemoryStore,
    source::DumpOptions, source::DumpStream, source::SourceInfo, source::Versions,
};
use backup_store_s3::{DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE, S3TestServer};
use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStoreExt, WriteMultipart};

const CHUNK: usize = 1 << 20;

/// 1 MiB chunks cut cyclically from 16 MiB of pseudo-random bytes: no
/// allocation per chunk, nothing to compress.
struct Chunks {
    block: Bytes,
}

impl Chunks {
    fn new() -> Chunks {
        Chunks {
            block: Bytes::from(pattern(16 * CHUNK, 42)),
        }
    }

    fn get(&self, i: usize) -> Bytes {
        let start = (i * CHUNK) % self.block.len();
        self.block.slice(start..start + CHUNK)
    }
}

#[derive(Debug)]
struct LazySource {
    chunks: usize,
    block: Bytes,
}

#[async_trait]
impl DumpSource for LazySource {
    fn info(&self) -> SourceInfo {
        ScriptedSource::ok(0).info()
    }
    async fn dump(&self, _: &DumpOptions) -> backup_core::Result<DumpStream> {
        let chunks = Chunks {
            block: self.block.clone(),
        };
        let stream = futures::stream::iter(0..self.chunks)
            .map(move |i| Ok(chunks.get(i)))
            .boxed();
        Ok(DumpStream::new(stream, Versions::default()))
    }
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// CPU seconds (user + system) this process has used so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses: utime
    // and stime (fields 14 and 15 of stat) are the 12th and 13th here.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

struct Phase {
    name: String,
    seconds: f64,
    cpu_seconds: f64,
    peak_mib: f64,
}

async fn measure<F: std::future::Future<Output = ()>>(name: String, run: F) -> Phase {
    tokio::time::sleep(Duration::from_millis(500)).await;
    reset_peak();
    let cpu = cpu_seconds();
    let start = Instant::now();
    run.await;
    let seconds = start.elapsed().as_secs_f64();
    Phase {
        name,
        seconds,
        cpu_seconds: cpu_seconds() - cpu,
        peak_mib: status_kib("VmHWM:") as f64 / 1024.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --release -- --ignored --nocapture s3_throughput"]
async fn s3_throughput() {
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let mib = env("S3_BENCH_MIB", 1024);
    let rounds = env("S3_BENCH_ROUNDS", 2);
    let bytes = (mib * CHUNK) as u64;
    let server = S3TestServer::from_env_or_start().expect("S3 server");
    let store = server.store_builder().build().unwrap();
    let prefix = store.prefix().unwrap().to_string();
    let chunks = Chunks::new();
    let raw = AmazonS3Builder::new()
        .with_bucket_name(server.bucket())
        .with_endpoint(server.endpoint())
        .with_access_key_id(server.access_key_id())
        .with_secret_access_key(server.secret_access_key().expose())
        .with_client_options(ClientOptions::new().with_allow_http(true))
        .build()
        .unwrap();
    let raw_path = Path::parse(format!("{prefix}/raw.bin")).unwrap();
    let engine = Engine::new(Arc::new(store.clone()) as Arc<dyn Store>)
        .with_compressor(Arc::new(Compression::none()));
    let engine_no_md5 = engine
        .clone()
        .with_options(backup_core::pipeline::PipelineOptions::default().md5(false));
    let lazy = LazySource {
        chunks: mib,
        block: chunks.block.clone(),
    };

    let mut phases = Vec::new();
    // Raw and pipeline runs alternate, so that load from other processes
    // on the machine hits both alike.
    for round in 1..=rounds {
        // 1. Raw object_store: same part size and concurrency, no pipeline.
        phases.push(
            measure(format!("raw object_store WriteMultipart #{round}"), async {
                let upload = raw.put_multipart(&raw_path).await.unwrap();
                let mut writer = WriteMultipart::new_with_chunk_size(upload, DEFAULT_PART_SIZE);
                for i in 0..mib {
                    writer.wait_for_capacity(DEFAULT_CONCURRENCY).await.unwrap();
                    writer.put(chunks.get(i));
                }
                writer.finish().await.unwrap();
            })
            .await,
        );
        assert_eq!(raw.head(&raw_path).await.unwrap().size, bytes);
        raw.delete(&raw_path).await.unwrap();

        // 2. S3Store alone: put_stream and write, no pipeline.
        phases.push(
            measure(format!("S3Store::put_stream alone #{round}"), async {
                let key = Key::new("alone/blob.bin").unwrap();
                let mut upload = store.put_stream(&key).await.unwrap();
                for i in 0..mib {
                    upload.write(chunks.get(i)).await.unwrap();
                }
                assert_eq!(upload.complete().await.unwrap().size, bytes);
                store.delete(&key).await.unwrap();
            })
            .await,
        );

        // 3. The pipeline from a lazy source.
        phases.push(
            measure(format!("Engine::backup, lazy source #{round}"), async {
                let m = engine
                    .backup(&lazy, &BackupRequest::new("lazy"))
                    .await
                    .unwrap();
                assert_eq!(m.stored.size, bytes);
                engine.catalog().delete(&m.id).await.unwrap();
            })
            .await,
        );

        // 3b. The same without MD5 (SHA-256 only).
        phases.push(
            measure(
                format!("Engine::backup, lazy source, no MD5 #{round}"),
                async {
                    let m = engine_no_md5
                        .backup(&lazy, &BackupRequest::new("lazy"))
                        .await
                        .unwrap();
                    assert_eq!(m.stored.size, bytes);
                    engine_no_md5.catalog().delete(&m.id).await.unwrap();
                },
            )
            .await,
        );
    }

    // 4. The pipeline alone, into memory: what the pipeline costs without
    // any S3 in the way.
    let memory = Engine::new(Arc::new(InMemoryStore::new()) as Arc<dyn Store>)
        .with_compressor(Arc::new(Compression::none()));
    phases.push(
        measure("Engine::backup to InMemoryStore".into(), async {
            let m = memory
                .backup(&lazy, &BackupRequest::new("memory"))
                .await
                .unwrap();
            assert_eq!(m.stored.size, bytes);
            memory.catalog().delete(&m.id).await.unwrap();
        })
        .await,
    );

    // 5. The pipeline from ScriptedSource, whose dump() generates and holds
    // the whole content in memory, inside the measured time.
    let scripted = ScriptedSource {
        chunk: CHUNK,
        ..ScriptedSource::ok(mib * CHUNK)
    };
    phases.push(
        measure("Engine::backup, ScriptedSource".into(), async {
            let m = engine
                .backup(&scripted, &BackupRequest::new("scripted"))
                .await
                .unwrap();
            assert_eq!(m.stored.size, bytes);
            engine.catalog().delete(&m.id).await.unwrap();
        })
        .await,
    );

    println!(
        "\n{mib} MiB to {} (part size {} MiB, concurrency {}; store memory bound {} MiB)",
        server.endpoint(),
        DEFAULT_PART_SIZE >> 20,
        DEFAULT_CONCURRENCY,
        ((DEFAULT_CONCURRENCY as u64 + 1) * DEFAULT_PART_SIZE as u64) >> 20,
    );
    println!(
        "{:<40} {:>8} {:>8} {:>8} {:>13}",
        "phase", "seconds", "MB/s", "CPU s", "peak RSS MiB"
    );
    for phase in &phases {
        println!(
            "{:<40} {:>8.2} {:>8.1} {:>8.2} {:>13.0}",
            phase.name,
            phase.seconds,
            bytes as f64 / 1e6 / phase.seconds,
            phase.cpu_seconds,
            phase.peak_mib
        );
    }
    let best = |prefix: &str| {
        phases
            .iter()
            .filter(|p| p.name.starts_with(prefix) && !p.name.contains("no MD5"))
            .map(|p| p.seconds)
            .fold(f64::INFINITY, f64::min)
    };
    let mbps = |seconds: f64| bytes as f64 / 1e6 / seconds;
    let raw_best = best("raw");
    let (store_best, pipeline_best) = (best("S3Store"), best("Engine::backup, lazy"));
    let no_md5_best = phases
        .iter()
        .filter(|p| p.name.contains("no MD5"))
        .map(|p| p.seconds)
        .fold(f64::INFINITY, f64::min);
    println!(
        "best of {rounds}: raw {:.1} MB/s; S3Store alone {:.1} MB/s ({:.0}% of raw); pipeline {:.1} MB/s ({:.0}% of raw); pipeline without MD5 {:.1} MB/s ({:.0}% of raw)",
        mbps(raw_best),
        mbps(store_best),
        100.0 * raw_best / store_best,
        mbps(pipeline_best),
        100.0 * raw_best / pipeline_best,
        mbps(no_md5_best),
        100.0 * raw_best / no_md5_best
    );
    println!(
        "load average after the run: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}
