//! `backupctl sweep`: remove what failed and crashed backups left: artifacts without a

use backup_core::{
    Result, catalog::SweepReport, duration::duration_from_minutes, format::human_bytes,
};

use std::time::Duration;

use crate::commands::{Context, Outcome, parse_duration_arg, print_json};

#[derive(Debug, clap::Args)]
pub(crate) struct SweepArgs {
    /// Store: a directory or s3://bucket/prefix (must exist; only `backup` and `init` create one).
    #[arg(long)]
    pub(crate) store: String,
    /// Leave leftovers younger than this alone (e.g. 90m, 2h; default 1h).
    /// Whatever the value, running backups keep their artifacts, and
    /// temporary files and markers younger than an hour are kept.
    #[arg(long, value_parser = parse_duration_arg, conflicts_with = "grace_minutes")]
    pub(crate) grace: Option<Duration>,
    /// The grace in minutes (older spelling of --grace, kept for a release).
    #[arg(long)]
    pub(crate) grace_minutes: Option<u64>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn run(args: SweepArgs, ctx: &Context<'_>) -> Result<Outcome> {
    let SweepArgs {
        store,
        grace,
        grace_minutes,
        json,
    } = args;
    let grace = match (grace, grace_minutes) {
        (Some(grace), _) => grace,
        (None, Some(minutes)) => {
            // Checked first, so an out-of-range value gets one error line.
            let grace = duration_from_minutes(minutes)?;
            eprintln!(
                "backupctl: warning: --grace-minutes is the older spelling of --grace (e.g. --grace {minutes}m); it will be removed in a future release"
            );
            grace
        }
        (None, None) => Duration::from_secs(3600),
    };
    let engine = ctx.engine(&store).await?;
    let report = engine.sweep(grace, chrono::Utc::now()).await?;
    if json {
        print_json(&report);
    } else {
        print_sweep(&report);
    }
    Ok(Outcome::Ok)
}

fn print_sweep(report: &SweepReport) {
    for key in &report.removed {
        println!("removed orphaned artifact {key}");
    }
    for key in &report.stale_markers {
        println!("removed stale in-progress marker {key}");
    }
    for t in &report.temporary_removed {
        println!(
            "removed temporary file {} ({})",
            t.location,
            human_bytes(t.size)
        );
    }
    let mut packs = 0;
    for c in &report.chunk_stores {
        packs += c.orphaned_packs.len();
        for pack in &c.orphaned_packs {
            println!("removed pack without index {pack} (tenant {})", c.tenant);
        }
        for marker in &c.expired_markers {
            println!("removed expired in-flight marker {marker}");
        }
        if let Some(why) = &c.skipped {
            println!("tenant {}: chunk store not swept ({why})", c.tenant);
        }
    }
    println!(
        "removed {} orphaned artifact(s), {} stale marker(s), {} temporary file(s), {} pack(s) without index: {} freed; kept {} too recent, {} of running backups, {} recent temporary file(s)",
        report.removed.len(),
        report.stale_markers.len()
            + report
                .chunk_stores
                .iter()
                .map(|c| c.expired_markers.len())
                .sum::<usize>(),
        report.temporary_removed.len(),
        packs,
        human_bytes(report.freed_bytes),
        report.too_recent.len(),
        report.in_progress.len(),
        report.temporary_too_recent.len()
    );
}
