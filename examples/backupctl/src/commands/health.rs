//! `backupctl health`: health per source: healthy, stale (no success within the threshold)

use std::time::Duration;

use backup_core::{Filter, Result, catalog::HealthOptions, catalog::HealthStatus};

use crate::commands::{Context, Outcome, parse_duration_arg, print_json};

#[derive(Debug, clap::Args)]
pub(crate) struct HealthArgs {
    /// Store: a directory or s3://bucket/prefix (must exist; only `backup` and `init` create one).
    #[arg(long)]
    pub(crate) store: String,
    /// Threshold for "stale" (e.g. 24h, 2d).
    #[arg(long, value_parser = parse_duration_arg, default_value = "24h")]
    pub(crate) stale_after: Duration,
    /// Only this tenant (default: every tenant).
    #[arg(long)]
    pub(crate) tenant: Option<String>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn run(args: HealthArgs, ctx: &Context<'_>) -> Result<Outcome> {
    let HealthArgs {
        store,
        stale_after,
        tenant,
        json,
    } = args;
    let engine = ctx.engine(&store).await?;
    let mut filter = Filter::all();
    filter.tenant = tenant;
    let options = HealthOptions {
        stale_after,
        ..HealthOptions::default()
    };
    let health = engine
        .catalog()
        .health(&filter, &options, chrono::Utc::now())
        .await?;
    if json {
        print_json(&health);
    } else {
        for h in &health {
            println!(
                "{:<32} {:<8} last success {} ({}){}",
                format!("{}/{}", h.tenant, h.source_id),
                format!("{:?}", h.status).to_lowercase(),
                h.last_success.map_or("never".into(), |t| t
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string()),
                h.hours_since_success
                    .map_or("-".into(), |x| format!("{x:.1} h ago")),
                h.last_error
                    .as_ref()
                    .map_or(String::new(), |e| format!("; last error: {e}")),
            );
        }
    }
    if health.iter().any(|h| h.status == HealthStatus::Failing) {
        eprintln!(
            "backupctl: a failing source stays failing until a backup of it succeeds; \
             `backupctl forget-source <SOURCE> --tenant <TENANT> --store {store}` forgets one that \
             should not be there (a mistyped database); its backups are kept"
        );
    }
    if !health.iter().all(|h| h.status.is_ok()) {
        return Ok(Outcome::Unhealthy);
    }
    Ok(Outcome::Ok)
}
