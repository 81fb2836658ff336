//! `backupctl wal-archive`: continuous WAL archiving of a cluster into
//! the store (`pg_receivewal` from a replication slot, supervised), until
//! Ctrl-C or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use backup_core::{Compression, Result};
use backup_postgres::{ArchiverOptions, WalArchive, WalArchiver};

use crate::commands::{Context, Outcome, WalSourceArgs, print_json};

#[derive(Debug, clap::Args)]
pub(crate) struct WalArchiveArgs {
    /// PostgreSQL URL of the cluster (a role with REPLICATION); PG*
    /// variables, the service file and ~/.pgpass fill in what it leaves out.
    #[arg(long)]
    pub(crate) pg: String,
    /// Read the password from this file (first line; not readable by
    /// other users) instead of PGPASSWORD.
    #[arg(long)]
    pub(crate) password_file: Option<std::path::PathBuf>,
    /// Directory of the PostgreSQL client tools (pg_receivewal, psql).
    #[arg(long, value_name = "DIR")]
    pub(crate) pg_bin: Option<std::path::PathBuf>,
    /// The source's WAL archive.
    #[command(flatten)]
    pub(crate) wal: WalSourceArgs,
    /// Physical replication slot to stream from (created if missing):
    /// 1 to 63 lower-case letters, digits and underscores.
    #[arg(long)]
    pub(crate) slot: String,
    /// Spool directory where pg_receivewal writes (created 0700; keep it
    /// between runs: a restart resumes from it with no gap).
    #[arg(long, value_name = "DIR")]
    pub(crate) spool: std::path::PathBuf,
    /// none, gzip[:1-9] or zstd[:1-22].
    #[arg(long, default_value = "zstd")]
    pub(crate) compression: Compression,
    /// Print the final status as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Runs until Ctrl-C or SIGTERM, then stops after handing over the
/// segments already complete; a `.partial` segment stays in the spool for
/// the next run.
pub(crate) async fn run(args: WalArchiveArgs, ctx: &Context<'_>) -> Result<Outcome> {
    let (conn, tools) = crate::connect::postgres(
        &args.pg,
        args.password_file.as_deref(),
        args.pg_bin.as_deref(),
    )?;
    let engine = ctx
        .engine(&args.wal.store)
        .await?
        .with_compression(args.compression);
    let archive = Arc::new(WalArchive::new(
        Arc::new(engine),
        &args.wal.tenant,
        &args.wal.source_id,
    )?);
    let options = ArchiverOptions::new(&args.slot, &args.spool)
        .tools(tools)
        .source(&args.wal.tenant, &args.wal.source_id);
    let archiver = WalArchiver::new(conn, archive, options)?.start();
    eprintln!(
        "backupctl: archiving WAL of {} from slot {} (Ctrl-C stops after the current segment)",
        args.wal.source_id, args.slot
    );
    let mut reported = None;
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {
                let status = archiver.status();
                if status.last_segment != reported {
                    if let Some(segment) = &status.last_segment {
                        eprintln!("backupctl: archived up to {segment} ({} this run)", status.archived);
                    }
                    reported = status.last_segment.clone();
                }
                if let (Some(error), Some(at)) = (&status.last_error, status.last_error_at) {
                    eprintln!("backupctl: warning: {at}: {error}");
                }
            }
        }
    }
    let status = archiver.stop().await;
    if args.json {
        print_json(&serde_json::json!({
            "last_segment": status.last_segment,
            "archived": status.archived,
            "restarts": status.restarts,
            "last_error": status.last_error,
        }));
    } else {
        println!(
            "stopped: {} file(s) archived this run, newest {}",
            status.archived,
            status.last_segment.as_deref().unwrap_or("none")
        );
    }
    Ok(Outcome::Ok)
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
