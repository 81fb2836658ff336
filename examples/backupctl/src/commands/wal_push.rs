//! `backupctl wal-push %p`: PostgreSQL's `archive_command`, storing one
//! WAL file in the source's WAL archive.

use std::sync::Arc;

use backup_core::{Compression, Result};
use backup_postgres::{PushOutcome, WalArchive};

use crate::commands::{Context, Outcome};

#[derive(Debug, clap::Args)]
pub(crate) struct WalPushArgs {
    /// The WAL file (`%p` in archive_command: relative to the data
    /// directory, which PostgreSQL runs the command in). Complete
    /// segments, TTTTTTTT.history and backup history files; a .partial
    /// segment is refused.
    pub(crate) path: std::path::PathBuf,
    /// Store: a directory or s3://bucket/prefix (must exist: `backupctl init` creates one).
    #[arg(long)]
    pub(crate) store: String,
    /// Tenant the archive belongs to.
    #[arg(long, default_value = backup_core::manifest::DEFAULT_TENANT)]
    pub(crate) tenant: String,
    /// Source id of the cluster (the same for its base backups).
    #[arg(long = "source")]
    pub(crate) source_id: String,
    /// none, gzip[:1-9] or zstd[:1-22].
    #[arg(long, default_value = "zstd")]
    pub(crate) compression: Compression,
}

/// Exits 0 only once the file's record is stored (or the archive already
/// holds the same content); 1 with the file named when it holds other
/// content (never overwritten) or anything fails.
pub(crate) async fn run(args: WalPushArgs, ctx: &Context<'_>) -> Result<Outcome> {
    let engine = ctx
        .engine(&args.store)
        .await?
        .with_compression(args.compression);
    let archive = WalArchive::new(Arc::new(engine), &args.tenant, &args.source_id)?;
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
