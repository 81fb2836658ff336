//! `backupctl prune`: apply retention: delete backups no policy keeps (manual ones are kept
//! unless `--include-manual`, and the output says how many were kept only for that).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
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
    /// Never delete the newest backup of a source with a passed restore
    /// drill (`backupctl drill`).
    #[arg(long)]
    pub(crate) keep_newest_verified: bool,
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
        keep_newest_verified,
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
    let before = wal_windows(&engine, &filter).await?;
    let report = engine
        .prune(
            &filter,
            &refs,
            match gc_grace {
                Some(grace) => PlanOptions::default()
                    .include_manual(include_manual)
                    .keep_newest_verified(keep_newest_verified)
                    .collect_garbage(grace),
                None => PlanOptions::default()
                    .include_manual(include_manual)
                    .keep_newest_verified(keep_newest_verified),
            },
            dry_run,
        )
        .await?;
    let wal = prune_wal_archives(&engine, &report, &before, dry_run).await?;
    if json {
        // The engine's report, plus what was pruned of WAL archives.
        let mut out = serde_json::to_value(&report).map_err(|e| Error::Config(e.to_string()))?;
        out["wal"] = serde_json::to_value(&wal).map_err(|e| Error::Config(e.to_string()))?;
        print_json(&out);
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
        for w in &wal {
            println!(
                "{}/{} WAL: {} {} file(s), {} (point-in-time window from {} before, {} after)",
                w.tenant,
                w.source_id,
                if dry_run { "would delete" } else { "deleted" },
                w.report.removed.len(),
                human_bytes(w.report.freed_bytes),
                w.from_before.as_deref().unwrap_or("nothing"),
                w.from_after.as_deref().unwrap_or("nothing"),
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

/// What pruning did to one source's WAL archive.
#[derive(Debug, serde::Serialize)]
struct WalPruned {
    tenant: String,
    source_id: String,
    /// Where the point-in-time window started before, and after.
    from_before: Option<String>,
    from_after: Option<String>,
    report: backup_postgres::WalPruneReport,
}

/// Sources with base backups and a WAL archive: (tenant, source), the
/// archive and its point-in-time window before pruning.
type Windows =
    BTreeMap<(String, String), (backup_postgres::WalArchive, backup_postgres::PitrWindow)>;

/// The windows of the sources `filter` selects that have base backups
/// and a WAL archive.
async fn wal_windows(engine: &backup_core::Engine, filter: &Filter) -> Result<Windows> {
    let engine = Arc::new(engine.clone());
    let mut sources = BTreeSet::new();
    for m in engine.catalog().list(filter).await? {
        if m.format == backup_postgres::BASEBACKUP_FORMAT {
            sources.insert((m.tenant.clone(), m.source_id.clone()));
        }
    }
    let mut out = Windows::new();
    for (tenant, source_id) in sources {
        let archive = backup_postgres::WalArchive::new(engine.clone(), &tenant, &source_id)?;
        if archive.timelines().await?.is_empty() {
            continue;
        }
        let window = backup_postgres::pitr_window(&engine, &archive, &tenant, &source_id).await?;
        out.insert((tenant, source_id), (archive, window));
    }
    Ok(out)
}

/// After the backups: each source with a WAL archive loses the WAL no
/// kept base backup needs (see [`backup_postgres::prune_wal`]).
async fn prune_wal_archives(
    engine: &backup_core::Engine,
    report: &backup_core::engine::PruneReport,
    windows: &Windows,
    dry_run: bool,
) -> Result<Vec<WalPruned>> {
    let mut out = Vec::new();
    for ((tenant, source_id), (archive, window)) in windows {
        let Some(plan) = report.sources.get(&format!("{tenant}/{source_id}")) else {
            continue;
        };
        let kept: Vec<String> = plan.keep.iter().map(|d| d.id.clone()).collect();
        let from = |keep: Option<&[String]>| {
            window
                .ranges
                .iter()
                .find(|r| keep.is_none_or(|k| k.contains(&r.backup_id)))
                .map(|r| {
                    format!(
                        "{} ({})",
                        r.from_lsn,
                        r.from_time.format("%Y-%m-%dT%H:%M:%SZ")
                    )
                })
        };
        let wal =
            backup_postgres::prune_wal(engine, archive, tenant, source_id, Some(&kept), dry_run)
                .await?;
        out.push(WalPruned {
            tenant: tenant.clone(),
            source_id: source_id.clone(),
            from_before: from(None),
            from_after: from(Some(&kept)),
            report: wal,
        });
    }
    Ok(out)
}
