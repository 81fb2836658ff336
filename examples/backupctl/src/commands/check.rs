//! `backupctl check`: read everything and report missing, corrupt and orphaned objects.

use backup_core::{Result, format::human_bytes};

use crate::commands::{Context, Outcome, print_json};
use crate::progress::Work;

#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {
    /// Store: a directory or s3://bucket/prefix (must exist; only `backup` and `init` create one).
    #[arg(long)]
    pub(crate) store: String,
    /// Only this tenant (default: the whole store).
    #[arg(long)]
    pub(crate) tenant: Option<String>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn run(args: CheckArgs, ctx: &Context<'_>) -> Result<Outcome> {
    let CheckArgs {
        store,
        tenant,
        json,
    } = args;
    let engine = ctx.engine(&store).await?;
    let bar = ctx.progress("check", Work::Read, json);
    let report = engine.check(tenant.as_deref()).await?;
    bar.finish();
    if json {
        print_json(&report);
    } else {
        println!(
            "checked {} backup(s) in {} tenant(s): {} chunk(s), {} read",
            report.backups,
            report.tenants.len(),
            report.chunks_checked,
            human_bytes(report.bytes_checked)
        );
        for m in &report.missing_chunks {
            println!("missing chunk {} (tenant {})", m.chunk, m.tenant);
        }
        for c in &report.corrupt_chunks {
            println!("corrupt chunk {} in pack {}: {}", c.chunk, c.pack, c.detail);
        }
        for p in &report.corrupt_objects {
            println!("damaged {}: {}", p.key, p.detail);
        }
        for i in &report.dangling_indexes {
            println!("index without its pack: {i}");
        }
        for c in &report.broken_chains {
            println!("broken chain: {c}");
        }
        for b in &report.damaged_backups {
            println!("backup {b} cannot be restored");
        }
        for key in &report.orphaned_artifacts {
            println!("artifact without manifest: {key}");
        }
        for key in &report.in_progress {
            println!("backup in progress (no manifest yet): {key}");
        }
        for key in &report.stale_markers {
            println!("stale in-progress marker: {key}");
        }
        for t in &report.temporary_objects {
            println!(
                "temporary file: {} ({}, last written {})",
                t.location,
                human_bytes(t.size),
                t.last_modified.format("%Y-%m-%d %H:%M:%S")
            );
        }
        println!(
            "garbage: {} unreferenced chunk(s) ({}), {} pack(s) without index, {} artifact(s) without manifest, {} stale marker(s), {} temporary file(s) ({}){}",
            report.unreferenced_chunks,
            human_bytes(report.unreferenced_bytes),
            report.orphaned_packs.len(),
            report.orphaned_artifacts.len(),
            report.stale_markers.len(),
            report.temporary_objects.len(),
            human_bytes(report.temporary_objects.iter().map(|t| t.size).sum()),
            if report.unverified_chunks > 0 {
                format!(
                    "; {} encrypted chunk(s) not verified (no --identity)",
                    report.unverified_chunks
                )
            } else {
                String::new()
            }
        );
    }
    if !report.is_ok() {
        return Ok(Outcome::Unhealthy);
    }
    Ok(Outcome::Ok)
}
