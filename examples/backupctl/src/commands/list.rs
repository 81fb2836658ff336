//! `backupctl list`: list committed backups, newest first.

use backup_core::{Filter, Result};
use backup_examples::backup_table;

use crate::commands::{Context, Outcome, physical_line, print_json};
use crate::table::{self, stdout_is_terminal};

#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// Store: a directory or s3://bucket/prefix (must exist; only `backup` and `init` create one).
    #[arg(long)]
    pub(crate) store: String,
    /// Only this tenant's backups.
    #[arg(long)]
    pub(crate) tenant: Option<String>,
    /// Only this source's backups.
    #[arg(long)]
    pub(crate) source_id: Option<String>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn run(args: ListArgs, ctx: &Context<'_>) -> Result<Outcome> {
    let ListArgs {
        store,
        tenant,
        source_id,
        json,
    } = args;
    let engine = ctx.engine(&store).await?;
    let mut filter = Filter::all();
    filter.tenant = tenant;
    filter.source_id = source_id;
    let backups = engine.catalog().list(&filter).await?;
    if json {
        let plain: Vec<_> = backups.iter().map(|m| m.as_ref()).collect();
        print_json(&plain);
    } else if stdout_is_terminal() {
        print!("{}", table::backups(&backups, chrono::Utc::now()));
        for line in backups.iter().filter_map(|m| physical_line(m)) {
            println!("{line}");
        }
    } else {
        print!("{}", backup_table(&backups));
        for line in backups.iter().filter_map(|m| physical_line(m)) {
            println!("{line}");
        }
    }
    Ok(Outcome::Ok)
}
