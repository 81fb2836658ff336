//! `backupctl sweep`: remove what failed and crashed backups left: artifacts without a

use backup_core::{
    Result, catalog::SweepReport, duration::duration_from_minutes, format::human_bytes,
};

use crate::commands::{Context, Outcome, print_json};

#[derive(Debug, clap::Args)]
pub(crate) struct SweepArgs {
    #[arg(long)]
    pub(crate) store: String,
    /// Leave leftovers younger than this alone. Whatever the value,
    /// running backups keep their artifacts, and temporary files and
    /// markers younger than an hour are kept.
    #[arg(long, default_value_t = 60)]
    pub(crate) grace_minutes: u64,
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn run(args: SweepArgs, ctx: &Context<'_>) -> Result<Outcome> {
    let SweepArgs {
        store,
        grace_minutes,
        json,
    } = args;
    let grace = duration_from_minutes(grace_minutes)?;
    let engine = ctx.engine(&store)?;
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
