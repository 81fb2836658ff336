//! `backupctl pitr-window`: from when to when a PostgreSQL source can be
//! restored, by its base backups and the WAL archived after them.

use std::sync::Arc;

use backup_core::Result;
use backup_postgres::{WalArchive, pitr_window};

use crate::commands::{Context, Outcome, WalSourceArgs, print_json};

#[derive(Debug, clap::Args)]
pub(crate) struct PitrWindowArgs {
    /// The source's WAL archive.
    #[command(flatten)]
    pub(crate) wal: WalSourceArgs,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Prints one range per base backup; exit 1 when the source has no base
/// backup (nothing is restorable).
pub(crate) async fn run(args: PitrWindowArgs, ctx: &Context<'_>) -> Result<Outcome> {
    let engine = Arc::new(ctx.engine(&args.wal.store).await?);
    let archive = WalArchive::new(Arc::clone(&engine), &args.wal.tenant, &args.wal.source_id)?;
    let window = pitr_window(&engine, &archive, &args.wal.tenant, &args.wal.source_id).await?;
    if args.json {
        print_json(&window);
    } else if window.ranges.is_empty() {
        println!(
            "no base backup of {} in tenant {}: nothing is restorable",
            args.wal.source_id, args.wal.tenant
        );
    } else {
        for r in &window.ranges {
            let to = match (&r.to_segment, r.to_time) {
                (Some(segment), Some(at)) => format!(
                    "{} (end of {segment}, archived {})",
                    r.to_lsn,
                    at.format("%Y-%m-%dT%H:%M:%SZ")
                ),
                (Some(segment), None) => format!("{} (end of {segment})", r.to_lsn),
                (None, _) => format!("{} (no archived WAL continues it)", r.to_lsn),
            };
            println!(
                "{}: timeline {}, from {} ({}) to {to}{}",
                r.backup_id,
                r.timeline,
                r.from_lsn,
                r.from_time.format("%Y-%m-%dT%H:%M:%SZ"),
                r.gap_at
                    .as_ref()
                    .map(|g| format!("; gap: {g} is missing"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(if window.ranges.is_empty() {
        Outcome::Unhealthy
    } else {
        Outcome::Ok
    })
}
