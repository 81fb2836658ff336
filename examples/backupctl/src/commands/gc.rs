//! `backupctl gc`: remove chunks no incremental backup references any more (after

use std::time::Duration;

use backup_core::{Engine, Result, format::human_bytes};

use crate::commands::{Context, Outcome, parse_duration_arg, print_json};
use crate::progress::Work;

#[derive(Debug, clap::Args)]
pub(crate) struct GcArgs {
    /// Store: a directory or s3://bucket/prefix (must exist; only `backup` and `init` create one).
    #[arg(long)]
    pub(crate) store: String,
    /// Only this tenant (default: every tenant with a chunk store).
    #[arg(long)]
    pub(crate) tenant: Option<String>,
    /// Never delete packs younger than this (e.g. 1h, 2d).
    #[arg(long, value_parser = parse_duration_arg, default_value = "1h")]
    pub(crate) grace: Duration,
    /// Show what would be removed without removing anything.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn run(args: GcArgs, ctx: &Context<'_>) -> Result<Outcome> {
    let GcArgs {
        store,
        tenant,
        grace,
        dry_run,
        json,
    } = args;
    let engine = ctx.engine(&store).await?;
    let tenants = match tenant {
        Some(t) => vec![t],
        None => chunk_store_tenants(&engine).await?,
    };
    let bar = ctx.progress("gc", Work::Read, json);
    let mut reports = Vec::new();
    for t in &tenants {
        reports.push(engine.gc(t, grace, dry_run).await?);
    }
    bar.finish();
    if json {
        print_json(&reports);
    } else if !ctx.quiet {
        for r in &reports {
            match &r.skipped {
                Some(why) => println!("tenant {}: skipped ({why})", r.tenant),
                None => println!(
                    "tenant {}: {} {} pack(s), repacked {}, {} chunk(s), {} freed; {} pack(s) younger than the grace period kept",
                    r.tenant,
                    if dry_run { "would delete" } else { "deleted" },
                    r.deleted_packs.len() + r.orphaned_packs.len(),
                    r.repacked_packs.len(),
                    r.removed_chunks,
                    human_bytes(r.freed_bytes),
                    r.young_packs.len()
                ),
            }
        }
    }
    Ok(Outcome::Ok)
}

/// Tenants that have a chunk store (`{tenant}/_chunks/...`).
async fn chunk_store_tenants(engine: &Engine) -> Result<Vec<String>> {
    use backup_core::store::StoreExt;
    let mut tenants = std::collections::BTreeSet::new();
    for meta in engine.store().list_all(None).await? {
        let mut segments = meta.key.segments();
        if let (Some(tenant), Some("_chunks")) = (segments.next(), segments.next()) {
            tenants.insert(tenant.to_string());
        }
    }
    Ok(tenants.into_iter().collect())
}
