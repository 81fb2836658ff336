//! `backupctl wal-fetch %f %p`: PostgreSQL's `restore_command`, writing one
//! archived WAL file where recovery wants it.

use std::sync::Arc;

use backup_core::{Error, Result};
use backup_postgres::WalArchive;

use crate::commands::{Context, Outcome, WalSourceArgs};

#[derive(Debug, clap::Args)]
pub(crate) struct WalFetchArgs {
    /// The WAL file to fetch (`%f` in restore_command).
    pub(crate) name: String,
    /// Where to write it (`%p`: relative to the data directory, which
    /// PostgreSQL runs the command in). Written only once verified.
    pub(crate) path: std::path::PathBuf,
    /// The source's WAL archive.
    #[command(flatten)]
    pub(crate) wal: WalSourceArgs,
}

/// Exits 0 once the verified file is at `path`; 1 when the archive does
/// not hold it ("not in the archive": PostgreSQL then ends archive
/// recovery there, as for any archive); [`Outcome::Fatal`] (status 126,
/// which PostgreSQL treats as a failed command and stops recovery) for a
/// corrupt file or any other failure, so recovery never ends early on a
/// damaged archive. Nothing is left at `path` unless it succeeded.
pub(crate) async fn run(args: WalFetchArgs, ctx: &Context<'_>) -> Result<Outcome> {
    let fetched = async {
        let engine = ctx.engine(&args.wal.store).await?;
        let archive = WalArchive::new(Arc::new(engine), &args.wal.tenant, &args.wal.source_id)?;
        archive.fetch(&args.name, &args.path).await
    };
    match fetched.await {
        Ok(record) => {
            println!("{} restored (sha256 {})", record.name, record.sha256());
            Ok(Outcome::Ok)
        }
        Err(e @ Error::NotFound { .. }) => Err(e),
        Err(e) => {
            eprintln!("backupctl: error: {e}");
            Ok(Outcome::Fatal)
        }
    }
}
