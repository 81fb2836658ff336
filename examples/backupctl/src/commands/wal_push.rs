//! `backupctl wal-push %p`: PostgreSQL's `archive_command`, storing one
//! WAL file in the source's WAL archive.

use std::sync::Arc;

use backup_core::{Compression, Result};
use backup_postgres::{PushOutcome, WalArchive};

use crate::commands::{Context, Outcome, WalSourceArgs};

#[derive(Debug, clap::Args)]
pub(crate) struct WalPushArgs {
    /// The WAL file (`%p` in archive_command: relative to the data
    /// directory, which PostgreSQL runs the command in). Complete
    /// segments, TTTTTTTT.history and backup history files; a .partial
    /// segment is refused.
    pub(crate) path: std::path::PathBuf,
    /// The source's WAL archive.
    #[command(flatten)]
    pub(crate) wal: WalSourceArgs,
    /// none, gzip[:1-9] or zstd[:1-22].
    #[arg(long, default_value = "zstd")]
    pub(crate) compression: Compression,
}

/// Exits 0 only once the file's record is stored (or the archive already
/// holds the same content); 1 with the file named when it holds other
/// content (never overwritten) or anything fails.
pub(crate) async fn run(args: WalPushArgs, ctx: &Context<'_>) -> Result<Outcome> {
    let engine = ctx
        .engine(&args.wal.store)
        .await?
        .with_compression(args.compression);
    let archive = WalArchive::new(Arc::new(engine), &args.wal.tenant, &args.wal.source_id)?;
    let outcome = archive.push(&args.path).await?;
    let said = match &outcome {
        PushOutcome::Archived(_) => "archived",
        PushOutcome::AlreadyArchived(_) => "already archived (same content)",
        PushOutcome::Conflict(_) => "",
    };
    let record = outcome.into_result()?;
    println!("{} {said} (sha256 {})", record.name, record.sha256());
    Ok(Outcome::Ok)
}
