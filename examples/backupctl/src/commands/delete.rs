//! `backupctl delete`: delete a backup (manifest first, then artifact).

use backup_core::Result;

use crate::commands::{Context, Outcome, resolve_id};

#[derive(Debug, clap::Args)]
pub(crate) struct DeleteArgs {
    /// Backup id as `list` shows it (YYYYMMDDTHHMMSSZ-xxxxxxxx), `latest`, or a unique prefix of an id.
    pub(crate) id: String,
    /// Store: a directory or s3://bucket/prefix (must exist; only `backup` and `init` create one).
    #[arg(long)]
    pub(crate) store: String,
}

pub(crate) async fn run(args: DeleteArgs, ctx: &Context<'_>) -> Result<Outcome> {
    let DeleteArgs { id, store } = args;
    let engine = ctx.engine(&store).await?;
    let id = resolve_id(&engine, &id).await?;
    let m = engine.catalog().delete(&id).await?;
    println!("backup {} deleted ({})", m.id, m.artifact);
    Ok(Outcome::Ok)
}
