//! # backup-benches
//!
//! Helpers shared by the benchmarks of this workspace. The benchmarks
//! themselves are `harness = false` targets (see `benches/README.md`):
//!
//! - `pipeline`: a ≥ 1 GiB synthetic dump through [`backup_core::Engine`]
//!   into a directory store, against `zstd | sha256sum` shell pipelines;
//! - `postgres`: a real PostgreSQL with millions of random rows, our
//!   backup and restore against `pg_dump | zstd` and `zstd -dc |
//!   pg_restore`;
//! - `basebackup`: physical base backups of that cluster against
//!   `pg_basebackup | zstd`;
//! - `walarchive`: WAL archiving while pgbench writes, our archiver
//!   against `pg_receivewal`;
//! - `pitr`: a restore to a point in time against doing it by hand;
//! - `incremental`: block-level incremental base backups (PostgreSQL 18)
//!   against the full one, the changed blocks the WAL summaries report
//!   and logical dedup, and chain restores.
//!
//! What lives here:
//!
//! - [`peak_rss`], [`reset_peak_rss`], [`current_rss`]: this process's
//!   memory high-water mark (`VmHWM`), resettable through
//!   `/proc/self/clear_refs`, so one phase of a benchmark can be measured
//!   on its own;
//! - [`cpu_time`]: CPU seconds of this process and its waited-for children;
//! - [`ShellCommand`]: runs a shell pipeline under `/usr/bin/time` for its
//!   wall time, CPU time and the peak RSS of its largest process;
//! - [`DumpLikeGenerator`] and [`write_dump_like`]: fast, deterministic
//!   COPY-style text that compresses about as well as a real `pg_dump` of
//!   random text (2–3×);
//! - [`run_isolated`] / [`report_isolated`]: run one variant in a fresh
//!   process, so its peak RSS is not inflated by what the allocator kept
//!   from earlier variants;
//! - [`PgEnv`]: a server's connection for `pg_dump`, `pg_restore` and
//!   isolated children, by environment and a 0600 `PGPASSFILE`;
//! - [`BenchServer`], [`RandomTable`]: the server of the PostgreSQL
//!   benchmarks, its random-data table and its tools; [`Phase`]: wall,
//!   CPU and peak RSS of one phase of an isolated child; [`measure_shell`]:
//!   a shell pipeline's row;
//! - [`FileSource`]: a [`backup_core::DumpSource`] streaming a file, so every
//!   variant of a benchmark reads the same bytes;
//! - [`ReadAhead`] and [`WriteBehind`]: a task and a bounded queue between
//!   a dump or restore tool and the pipeline, an experiment measuring how
//!   long the tool waits on our hashing;
//! - [`Report`] and [`Measurement`]: the results table, printed and
//!   optionally written as JSON (`--json FILE`), plus [`BenchArgs`] and the
//!   `BENCH_*` environment helpers ([`env_bytes`], [`env_u64`],
//!   [`selected`]);
//! - [`human_bytes`], [`human_duration`], [`mb_per_s`]: formatting;
//! - [`summaries_covering`], [`changed_blocks`]: the blocks the server's
//!   WAL summaries list as changed between two LSNs (`pg_walsummary`);
//!   [`ArchiveParts`]: where a base backup archive's bytes are.
//!
//! Linux only (`/proc`).
#![warn(missing_docs, unreachable_pub)]
#![deny(rustdoc::broken_intra_doc_links)]

mod args;
mod cpu;
mod decouple;
mod generate;
mod human;
mod isolate;
mod pgenv;
mod report;
mod rss;
mod server;
mod shell;
mod source;
mod walsummary;

pub use args::{BenchArgs, env_bytes, env_u64, load_average, parse_bytes, selected};
pub use cpu::cpu_time;
pub use decouple::{ReadAhead, WriteBehind};
pub use generate::{DumpLikeGenerator, write_dump_like};
pub use human::{human_bytes, human_duration, mb_per_s};
pub use isolate::{report_isolated, run_isolated};
pub use pgenv::PgEnv;
pub use report::{Measurement, Report};
pub use rss::{current_rss, peak_rss, reset_peak_rss};
pub use server::{BenchServer, Phase, RandomTable, machine_meta, measure_shell, quoted};
pub use shell::{ShellCommand, ShellRun};
pub use source::FileSource;
pub use walsummary::{
    ArchiveParts, BLOCK_SIZE, changed_blocks, parse_summary_line, parse_summary_name,
    summaries_covering,
};
