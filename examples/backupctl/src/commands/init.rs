//! `backupctl init`: create and mark a store before the first backup, so
//! every other command accepts it (`backup` does the same implicitly).

use backup_core::Result;

use crate::commands::{Context, Outcome, print_json};

#[derive(Debug, clap::Args)]
pub(crate) struct InitArgs {
    /// The store: a directory (created if missing) or s3://bucket/prefix.
    #[arg(long)]
    pub(crate) store: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn run(args: InitArgs, ctx: &Context<'_>) -> Result<Outcome> {
    let InitArgs { store, json } = args;
    let created = ctx.s3.init(&store).await?;
    if json {
        print_json(&serde_json::json!({"store": store, "created": created}));
    } else if created {
        println!("created store {store}");
    } else {
        println!("store {store} already exists; nothing to do");
    }
    Ok(Outcome::Ok)
}
