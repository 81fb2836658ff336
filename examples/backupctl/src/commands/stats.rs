//! `backupctl stats`: count, total size, newest and oldest backup, per tenant and source.

use backup_core::{Filter, Result, catalog::Stats, format::human_bytes};

use crate::commands::{Context, Outcome, print_json};
use crate::table::{self, stdout_is_terminal};

#[derive(Debug, clap::Args)]
pub(crate) struct StatsArgs {
    /// Store: a directory or s3://bucket/prefix (must exist; only `backup` and `init` create one).
    #[arg(long)]
    pub(crate) store: String,
    /// Only this tenant (default: every tenant).
    #[arg(long)]
    pub(crate) tenant: Option<String>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn run(args: StatsArgs, ctx: &Context<'_>) -> Result<Outcome> {
    let StatsArgs {
        store,
        tenant,
        json,
    } = args;
    let engine = ctx.engine(&store).await?;
    let mut filter = Filter::all();
    filter.tenant = tenant;
    let stats = engine.catalog().stats(&filter).await?;
    // Per backup: the dump's size and what the backup added to the
    // store (for incremental backups, only its new chunks).
    let listed = engine.catalog().list(&filter).await?;
    let backups: Vec<serde_json::Value> = listed
        .iter()
        .map(|m| {
            serde_json::json!({
                "id": m.id,
                "tenant": m.tenant,
                "source_id": m.source_id,
                "type": m.backup_type,
                "started_at": m.started_at,
                "logical_size": m.raw.size,
                "bytes_stored": m.bytes_stored(),
                "chunks": m.dedup.as_ref().map(|d| d.chunks),
                "new_chunks": m.dedup.as_ref().map(|d| d.new_chunks),
            })
        })
        .collect();
    if json {
        let mut out = serde_json::to_value(&stats).expect("stats serialise");
        out["backups"] = serde_json::Value::Array(backups);
        print_json(&out);
    } else if stdout_is_terminal() {
        print!("{}", table::stats(&stats, &listed, chrono::Utc::now()));
    } else {
        let line = |name: &str, s: &Stats| {
            println!(
                "{name:<32} {:>6} backups {:>10}  last {}  oldest {}",
                s.count,
                human_bytes(s.total_bytes),
                s.last_success
                    .map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
                s.oldest
                    .map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
            )
        };
        line("TOTAL", &stats.total);
        for (tenant, s) in &stats.tenants {
            line(&format!("tenant {tenant}"), s);
        }
        for (source, s) in &stats.sources {
            line(&format!("source {source}"), s);
        }
        for b in &backups {
            println!(
                "backup {} {:<11} {:>10} logical {:>10} stored",
                b["id"].as_str().unwrap_or_default(),
                b["type"].as_str().unwrap_or_default(),
                human_bytes(b["logical_size"].as_u64().unwrap_or_default()),
                human_bytes(b["bytes_stored"].as_u64().unwrap_or_default()),
            );
        }
    }
    Ok(Outcome::Ok)
}
