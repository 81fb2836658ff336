//! Pipeline throughput and memory on a synthetic dump.
//!
//! ```text
//! cargo bench -p backup-benches --bench pipeline [-- --json results.json]
//! ```
//!
//! Generates `BENCH_PIPELINE_BYTES` (default 1 GiB) of COPY-style text into
//! a temporary file once, then backs it up through `Engine` into an
//! `FsStore` with several compressions — each variant in a fresh process,
//! so its peak RSS is its own — and times shell pipelines over the same
//! file for reference. See `benches/README.md`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use backup_benches::{
    BenchArgs, FileSource, Measurement, Report, ShellCommand, cpu_time, current_rss, env_bytes,
    env_u64, human_bytes, human_duration, load_average, machine_meta, mb_per_s, peak_rss,
    report_isolated, reset_peak_rss, run_isolated, selected, write_dump_like,
};
use backup_core::{
    BackupRequest, Compression, Engine, compression::Algorithm, pipeline::PipelineOptions,
};
use backup_store_fs::FsStore;
use serde::{Deserialize, Serialize};

const MIB: u64 = 1 << 20;

/// One run of our pipeline, as handed to the isolated child.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Variant {
    name: String,
    /// `zstd:3`, `gzip:6`, `none`.
    compression: String,
    /// zstd worker threads.
    workers: u32,
    /// zstd job size (0: zstd's choice, as the library does).
    job_size: u32,
    /// Pipeline chunk size and queue depth (0: library defaults).
    chunk_size: usize,
    queue_depth: usize,
    bytes: u64,
    input: PathBuf,
    store: PathBuf,
}

impl Variant {
    fn new(name: &str, compression: &str, workers: u32, bytes: u64, bench: &Bench) -> Self {
        Variant {
            name: name.into(),
            compression: compression.into(),
            workers,
            job_size: 0,
            chunk_size: 0,
            queue_depth: 0,
            bytes,
            input: bench.input.clone(),
            store: bench.work.join("store"),
        }
    }

    fn compression(&self) -> Compression {
        let c: Compression = self.compression.parse().expect("a compression spec");
        let c = c.with_workers(self.workers);
        if self.job_size > 0 && c.algorithm() == Algorithm::Zstd {
            c.with_job_size(self.job_size)
        } else {
            c
        }
    }

    /// In the child: the backup itself, measured.
    fn run(&self) -> Measurement {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let store = Arc::new(FsStore::new(&self.store).expect("opening the store"));
        let defaults = PipelineOptions::default();
        let chunk = if self.chunk_size > 0 {
            self.chunk_size
        } else {
            defaults.chunk_size
        };
        let depth = if self.queue_depth > 0 {
            self.queue_depth
        } else {
            defaults.queue_depth
        };
        let options = defaults.buffering(chunk, depth);
        let engine = Engine::new(store)
            .with_compression(self.compression())
            .with_options(options);
        let source = FileSource::new(&self.input).limit(self.bytes);
        let baseline = current_rss().expect("VmRSS");
        reset_peak_rss().expect("resetting VmHWM");
        let cpu = cpu_time().expect("cpu time");
        let started = Instant::now();
        let manifest = rt
            .block_on(engine.backup(&source, &BackupRequest::new("bench")))
            .unwrap_or_else(|e| panic!("{}: backup failed: {e}", self.name));
        let wall = started.elapsed();
        let cpu = cpu_time().expect("cpu time").saturating_sub(cpu);
        let peak = peak_rss().expect("VmHWM");
        assert_eq!(manifest.raw.size, self.bytes, "the source was cut short");
        Measurement::new(&self.name, self.bytes, wall)
            .output(manifest.stored.size)
            .peak_rss(peak)
            .cpu(cpu)
            .note(format!(
                "process, fresh (baseline {})",
                human_bytes(baseline)
            ))
    }
}

/// Where the variants run.
struct Bench {
    input: PathBuf,
    work: PathBuf,
}

/// A row of the table.
enum Row {
    /// Our pipeline, each run in a fresh process.
    Ours(Variant),
    /// A shell pipeline over the input; `output` names a file it writes,
    /// whose size is reported (and which is deleted afterwards).
    Shell {
        name: String,
        script: String,
        bytes: u64,
        output: Option<PathBuf>,
    },
    /// One hash function over the input, in this process, one thread.
    Hash { name: String, bytes: u64 },
}

impl Row {
    fn name(&self) -> &str {
        match self {
            Row::Ours(v) => &v.name,
            Row::Shell { name, .. } | Row::Hash { name, .. } => name,
        }
    }
}

impl Bench {
    fn run(&self, row: &Row) -> Measurement {
        match row {
            Row::Ours(variant) => {
                let spec = serde_json::to_string(variant).expect("a variant serializes");
                let m =
                    run_isolated(&spec, &[]).unwrap_or_else(|e| panic!("{}: {e}", variant.name));
                let _ = std::fs::remove_dir_all(&variant.store);
                m
            }
            Row::Shell {
                name,
                script,
                bytes,
                output,
            } => {
                let run = ShellCommand::new(script.as_str())
                    .run()
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                let mut m = Measurement::new(name, *bytes, run.wall)
                    .peak_rss(run.peak_rss)
                    .cpu(run.cpu)
                    .note("largest process");
                if let Some(path) = output {
                    m = m.output(std::fs::metadata(path).expect("pipeline output").len());
                    std::fs::remove_file(path).expect("removing the output");
                }
                m
            }
            Row::Hash { name, bytes } => self.hash_only(name, *bytes),
        }
    }

    /// Reads the input in 1 MiB chunks and feeds one hash: what each of the
    /// pipeline's digests costs per byte (it computes SHA-256 and MD5 of the
    /// raw dump and again of the stored bytes).
    fn hash_only(&self, name: &str, bytes: u64) -> Measurement {
        use md5::Md5;
        use sha2::{Digest, Sha256};
        use std::io::Read;
        let mut file = std::fs::File::open(&self.input)
            .expect("the input")
            .take(bytes);
        let mut buf = vec![0u8; 1 << 20];
        let (mut sha, mut md5) = (Sha256::new(), Md5::new());
        let use_md5 = name.contains("MD5");
        let cpu = cpu_time().expect("cpu time");
        let started = Instant::now();
        loop {
            let n = file.read(&mut buf).expect("reading the input");
            if n == 0 {
                break;
            }
            if use_md5 {
                md5.update(&buf[..n]);
            } else {
                sha.update(&buf[..n]);
            }
        }
        std::hint::black_box((sha.finalize(), md5.finalize()));
        let wall = started.elapsed();
        let cpu = cpu_time().expect("cpu time").saturating_sub(cpu);
        Measurement::new(name, bytes, wall)
            .cpu(cpu)
            .note("one thread, including reads from the page cache")
    }
}

fn main() {
    let args = BenchArgs::from_env();
    if let Some(spec) = &args.isolated {
        let variant: Variant = serde_json::from_str(spec).expect("a variant spec");
        report_isolated(&variant.run());
        return;
    }
    let size = env_bytes("BENCH_PIPELINE_BYTES", 1 << 30);
    let small = env_bytes("BENCH_PIPELINE_SMALL_BYTES", 16 * MIB);
    let slice = env_bytes("BENCH_PIPELINE_SLICE_BYTES", 256 * MIB);
    let repeat = env_u64("BENCH_REPEAT", 1).max(1);
    let work = match std::env::var_os("BENCH_TMPDIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .expect("creating the work directory");

    let mut report = Report::new("pipeline: synthetic dump -> Engine::backup -> FsStore");
    machine_meta(&mut report);
    report.meta(
        "repetitions",
        format!(
            "{repeat} per variant, interleaved: fastest wall time (with its CPU time), largest RSS"
        ),
    );

    // BENCH_INPUT: a file to use as is (a real dump, say), or where to
    // generate the input and keep it for later runs.
    let (input, keep) = match std::env::var_os("BENCH_INPUT") {
        Some(path) => (PathBuf::from(path), true),
        None => (work.path().join("input.copy"), false),
    };
    let existing = if keep {
        std::fs::metadata(&input).ok().map(|m| m.len())
    } else {
        None
    };
    let size = match existing {
        Some(len) => {
            report.meta(
                "generator",
                format!("none: BENCH_INPUT {} used as is", input.display()),
            );
            len
        }
        None => {
            eprintln!(
                "generating {} into {} ...",
                human_bytes(size),
                input.display()
            );
            let started = Instant::now();
            write_dump_like(&input, size, 42).expect("writing the input");
            let took = started.elapsed();
            report.meta(
                "generator",
                format!(
                    "{} in {} ({:.0} MB/s, including write and fsync)",
                    human_bytes(size),
                    human_duration(took),
                    mb_per_s(size, took)
                ),
            );
            size
        }
    };
    let (small, slice) = (small.min(size), slice.min(size));
    report.meta(
        "input",
        format!(
            "{} of {}; small run {}; slice (gzip, memory check) {}",
            human_bytes(size),
            if existing.is_some() {
                "BENCH_INPUT"
            } else {
                "generated COPY-style text (ids, 3 random md5 hex columns, timestamps)"
            },
            human_bytes(small),
            human_bytes(slice)
        ),
    );
    let bench = Bench {
        input: input.clone(),
        work: work.path().to_path_buf(),
    };
    let file = input.display().to_string();
    let out = work.path().join("shell.out");
    let out_s = out.display().to_string();
    let ours = |name: &str, compression: &str, workers: u32, bytes: u64| {
        Row::Ours(Variant::new(name, compression, workers, bytes, &bench))
    };
    let tuned = |name: &str, job_size: u32| {
        Row::Ours(Variant {
            job_size,
            ..Variant::new(name, "zstd:3", 2, size, &bench)
        })
    };
    let shell = |name: &str, script: String, bytes: u64, output: Option<&Path>| Row::Shell {
        name: name.into(),
        script,
        bytes,
        output: output.map(Path::to_path_buf),
    };
    let rows: Vec<Row> = [
        ours("ours zstd:1 w2 (default), small", "zstd:1", 2, small),
        ours("ours zstd:1 w2 (default), slice", "zstd:1", 2, slice),
        ours("ours zstd:1 w2 (default)", "zstd:1", 2, size),
        ours("ours zstd:1 w0", "zstd:1", 0, size),
        ours("ours zstd:3 w2", "zstd:3", 2, size),
        ours("ours zstd:3 w0", "zstd:3", 0, size),
        ours("ours none (hash + store only)", "none", 0, size),
        ours("ours gzip:6, slice", "gzip:6", 0, slice),
        tuned("experiment: ours zstd:3 w2, 1 MiB zstd jobs", 1 << 20),
        tuned("experiment: ours zstd:3 w2, 2 MiB zstd jobs", 2 << 20),
        shell("sha256sum file", format!("sha256sum '{file}'"), size, None),
        shell(
            "zstd -3 -T0 -c file | sha256sum",
            format!("zstd -q -3 -T0 -c '{file}' | sha256sum"),
            size,
            None,
        ),
        shell(
            "zstd -3 -T0 | tee out | sha256sum; sync out",
            format!("zstd -q -3 -T0 -c '{file}' | tee '{out_s}' | sha256sum && sync '{out_s}'"),
            size,
            Some(&out),
        ),
        shell(
            "zstd -3 --single-thread | sha256sum",
            format!("zstd -q -3 --single-thread -c '{file}' | sha256sum"),
            size,
            None,
        ),
        shell(
            "zstd -1 -T0 -c file | sha256sum",
            format!("zstd -q -1 -T0 -c '{file}' | sha256sum"),
            size,
            None,
        ),
        shell(
            "gzip -6 | sha256sum, slice",
            format!("head -c {slice} '{file}' | gzip -6 | sha256sum"),
            slice,
            None,
        ),
        Row::Hash {
            name: "hash only: SHA-256 (sha2 crate)".into(),
            bytes: size,
        },
        Row::Hash {
            name: "hash only: MD5 (md-5 crate)".into(),
            bytes: size,
        },
    ]
    .into_iter()
    .filter(|r| selected(r.name()))
    .collect();

    // Repetitions are interleaved, so a burst of load from elsewhere hits
    // one run of several variants rather than every run of one.
    eprintln!("running ...");
    let mut runs: Vec<Vec<Measurement>> = rows.iter().map(|_| Vec::new()).collect();
    for _ in 0..repeat {
        for (row, runs) in rows.iter().zip(&mut runs) {
            let m = bench.run(row);
            eprintln!("  {}", m.summary());
            runs.push(m);
        }
    }
    for m in runs.into_iter().filter_map(Measurement::best_of) {
        report.push(m);
    }

    let get = |name: &str| report.row(name).cloned();
    let mut lines = Vec::new();
    if let (Some(ours), Some(zstd)) = (
        get("ours zstd:1 w2 (default)"),
        get("zstd -1 -T0 -c file | sha256sum"),
    ) {
        lines.push(format!(
            "default pipeline: {:.0} MB/s, {:.2}x the wall time of `zstd -1 -T0 | sha256sum`",
            ours.mb_per_s(),
            ours.wall.as_secs_f64() / zstd.wall.as_secs_f64(),
        ));
    }
    let sizes: Vec<String> = ["small", "slice", ""]
        .iter()
        .filter_map(|suffix| {
            let name = match *suffix {
                "" => "ours zstd:1 w2 (default)".to_string(),
                s => format!("ours zstd:1 w2 (default), {s}"),
            };
            get(&name).map(|m| {
                format!(
                    "{} for {}",
                    human_bytes(m.peak_rss.unwrap_or(0)),
                    human_bytes(m.input)
                )
            })
        })
        .collect();
    if !sizes.is_empty() {
        lines.push(format!(
            "default pipeline peak RSS: {} (target <= 64 MiB whatever the size)",
            sizes.join(", ")
        ));
    }
    for line in lines {
        report.line(line);
    }
    report.meta("load average at end", load_average());
    println!("{report}");
    if let Some(path) = &args.json {
        report.write_json(path).expect("writing the JSON report");
        eprintln!("wrote {}", path.display());
    }
}
