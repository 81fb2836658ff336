//! `backupctl forget-source`: forget a source's run record, so a failed
//! attempt no longer makes `health` report it failing. Backups stay.

use backup_core::Result;

use crate::commands::{Context, Outcome, print_json};

#[derive(Debug, clap::Args)]
pub(crate) struct ForgetSourceArgs {
    /// Source id, as `health` shows it after the tenant (`default/sales` -> `sales`).
    pub(crate) source: String,
    /// Store: a directory or s3://bucket/prefix (must exist; only `backup` and `init` create one).
    #[arg(long)]
    pub(crate) store: String,
    /// Tenant of the source.
    #[arg(long, default_value = backup_core::manifest::DEFAULT_TENANT)]
    pub(crate) tenant: String,
    /// Print the forgotten record as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn run(args: ForgetSourceArgs, ctx: &Context<'_>) -> Result<Outcome> {
    let ForgetSourceArgs {
        source,
        store,
        tenant,
        json,
    } = args;
    let engine = ctx.engine(&store).await?;
    let record = engine.catalog().forget_source(&tenant, &source).await?;
    if json {
        print_json(&record);
    } else {
        println!(
            "forgot the run record of {}/{} (last attempt {} {}); its backups were not touched",
            record.tenant,
            record.source_id,
            record.started_at.format("%Y-%m-%d %H:%M:%S"),
            match (&record.error, record.succeeded) {
                (_, true) => "succeeded".to_string(),
                (Some(e), false) => format!("failed: {e}"),
                (None, false) => "failed".to_string(),
            }
        );
    }
    Ok(Outcome::Ok)
}
