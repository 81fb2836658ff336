//! `backupctl prune`: apply retention: delete backups no policy keeps (manual ones are kept
//! unless `--include-manual`, and the output says how many were kept only for that).

use std::time::Duration;

use backup_core::{
    Error, Filter, Result, RetentionPolicy, format::human_bytes, retention::KeepGfs,
    retention::KeepLast, retention::KeepWithin, retention::PlanOptions,
};

use crate::commands::{Context, Outcome, parse_duration_arg, print_json};

#[derive(Debug, clap::Args)]
pub(crate) struct PruneArgs {
    /// Store: a directory or s3://bucket/prefix (must exist; only `backup` and `init` create one).
    #[arg(long)]
    pub(crate) store: String,
    /// Keep the newest N backups of each source.
    #[arg(long)]
    pub(crate) keep_last: Option<usize>,
    /// Keep backups younger than this (e.g. 30d, 12h).
    #[arg(long, value_parser = parse_duration_arg)]
    pub(crate) max_age: Option<Duration>,
    /// Keep the newest backup of each of the last N days.
    #[arg(long, default_value_t = 0)]
    pub(crate) keep_daily: usize,
    /// Keep the newest backup of each of the last N ISO weeks.
    #[arg(long, default_value_t = 0)]
    pub(crate) keep_weekly: usize,
    /// Keep the newest backup of each of the last N months.
    #[arg(long, default_value_t = 0)]
    pub(crate) keep_monthly: usize,
    /// Keep the newest backup of each of the last N years.
    #[arg(long, default_value_t = 0)]
    pub(crate) keep_yearly: usize,
    /// Let policies delete manual backups too.
    #[arg(long)]
    pub(crate) include_manual: bool,
    /// Afterwards collect the garbage of incremental backups (as `gc`),
    /// sparing packs younger than this (e.g. 1h).
    #[arg(long, value_parser = parse_duration_arg)]
    pub(crate) gc_grace: Option<Duration>,
    /// Only this tenant.
    #[arg(long)]
    pub(crate) tenant: Option<String>,
    /// Only this source.
    #[arg(long)]
    pub(crate) source_id: Option<String>,
    /// Show the plan without deleting anything.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn run(args: PruneArgs, ctx: &Context<'_>) -> Result<Outcome> {
    let PruneArgs {
        store,
        keep_last,
        max_age,
        keep_daily,
        keep_weekly,
        keep_monthly,
        keep_yearly,
        include_manual,
        gc_grace,
        tenant,
        source_id,
        dry_run,
        json,
    } = args;
    let mut policies: Vec<Box<dyn RetentionPolicy>> = Vec::new();
    if let Some(n) = keep_last {
        policies.push(Box::new(KeepLast(n)));
    }
    if let Some(age) = max_age {
        policies.push(Box::new(KeepWithin(age)));
    }
    let gfs = KeepGfs {
        daily: keep_daily,
        weekly: keep_weekly,
        monthly: keep_monthly,
        yearly: keep_yearly,
    };
    if gfs != KeepGfs::default() {
        policies.push(Box::new(gfs));
    }
    if policies.is_empty() {
        return Err(Error::Config(
            "prune needs a policy: --keep-last, --max-age or --keep-daily/weekly/monthly/yearly"
                .into(),
        ));
    }
    let refs: Vec<&dyn RetentionPolicy> = policies.iter().map(|p| p.as_ref()).collect();
    let engine = ctx.engine(&store).await?;
    let mut filter = Filter::all();
    filter.tenant = tenant;
    filter.source_id = source_id;
    let report = engine
        .prune(
            &filter,
            &refs,
            match gc_grace {
                Some(grace) => PlanOptions::default()
                    .include_manual(include_manual)
                    .collect_garbage(grace),
                None => PlanOptions::default().include_manual(include_manual),
            },
            dry_run,
        )
        .await?;
    if json {
        print_json(&report);
    } else {
        for (source, plan) in &report.sources {
            println!(
                "{source}: keep {}, {} {}",
                plan.keep.len(),
                if dry_run { "would delete" } else { "deleted" },
                plan.delete.len()
            );
            for d in &plan.keep {
                println!("  keep   {}  ({})", d.id, d.reasons.join(", "));
            }
            for d in &plan.delete {
                println!("  delete {}", d.id);
            }
        }
        let kept_as_manual = report
            .sources
            .values()
            .flat_map(|plan| &plan.keep)
            .filter(|d| d.reasons.iter().all(|r| r == "manual"))
            .count();
        if kept_as_manual > 0 {
            println!(
                "note: {kept_as_manual} backup(s) kept only because they are manual; policies never delete manual backups unless --include-manual (take cron backups with `backupctl backup --kind scheduled`)"
            );
        }
        for (tenant, gc) in &report.gc {
            println!(
                "gc {tenant}: {} pack(s) deleted, {} repacked, {} freed{}",
                gc.deleted_packs.len() + gc.orphaned_packs.len(),
                gc.repacked_packs.len(),
                human_bytes(gc.freed_bytes),
                gc.skipped
                    .as_ref()
                    .map_or(String::new(), |why| format!(" (skipped: {why})"))
            );
        }
    }
    Ok(Outcome::Ok)
}
