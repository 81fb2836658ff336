//! `backupctl`: one-shot backup, list, verify, restore, delete and sweep
//! over the library, for operators and cron jobs.
//!
//! ```text
//! backupctl backup  --pg postgres://user@host/db --store ./backups [--compression zstd|gzip|none] [--tenant T] [--json]
//! backupctl backup  --mongo mongodb://user@host/db --store ./backups [...]
//! backupctl list    --store ./backups [--tenant T] [--json]
//! backupctl verify  <backup-id> --store ./backups
//! backupctl restore <backup-id> --store ./backups --pg postgres://user@host/target [--create] [--clean] [--no-owner] [--table T]...
//! backupctl backup  ... --encrypt-to age1...            # age encryption (repeatable); --passphrase-env VAR for humans
//! backupctl restore|verify ... --identity key.txt       # or --identity-env VAR
//! backupctl restore <backup-id> --store ./backups --mongo mongodb://user@host/ --target-db name [--clean] [--table C]...
//! backupctl delete  <backup-id> --store ./backups
//! backupctl sweep   --store ./backups [--grace-minutes 60]    # orphans, stale markers, temp files, packs without index
//! backupctl prune   --store ./backups [--keep-last N] [--max-age 30d] [--keep-daily N --keep-weekly N --keep-monthly N --keep-yearly N] [--include-manual] [--dry-run] [--json]
//! backupctl stats   --store ./backups [--json]
//! backupctl health  --store ./backups [--stale-after 24h] [--json]   # exit 0 only if every source is healthy
//! backupctl backup  ... --type incremental              # deduplicated: stores only chunks the tenant lacks
//! backupctl gc      --store ./backups [--tenant T] [--grace 1h] [--dry-run] [--json]
//! backupctl prune   ... --gc-grace 1h                   # then collect garbage as `gc` does
//! backupctl check   --store ./backups [--tenant T] [--json]        # exit 0 only if nothing is missing or corrupt
//! ```
//!
//! `--store` is a directory or `s3://bucket/prefix`. For S3, credentials come
//! from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (or the other AWS
//! sources), the endpoint and region from `--s3-endpoint` / `--s3-region` or
//! `AWS_ENDPOINT_URL` / `AWS_REGION` (see `--help`).
//!
//! The password comes from the URL or from `PGPASSWORD`; it is handed to
//! pg_dump/pg_restore through a 0600 password file, never on their command
//! line. A MongoDB password comes from the connection string and stays in
//! the driver. Exit status 0 on success; otherwise 1 and a one-line error on
//! stderr.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use backup_core::{
    BackupKind, BackupRequest, BackupType, Compression, DumpSource, Engine, Error, Filter,
    HealthOptions, HealthStatus, KeepGfs, KeepLast, KeepWithin, PlanOptions, RestoreOptions,
    RestoreTarget, Result, RetentionPolicy, Stats, SweepReport, duration_from_minutes, human_bytes,
    sanitize_name,
};
use backup_examples::{CryptoOptions, S3Options, backup_table, open_store_with};
use backup_mongo::{MongoConnection, MongoSource, MongoTarget};
use backup_postgres::{PgConnection, PostgresSource, PostgresTarget};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "backupctl",
    version,
    about = "Back up, verify and restore databases"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    s3: S3Options,
    #[command(flatten)]
    crypto: CryptoOptions,
}

#[derive(Subcommand)]
enum Command {
    /// Take a backup of a PostgreSQL or MongoDB database.
    Backup {
        /// Connection URL of the database to dump (password from the URL or PGPASSWORD).
        #[arg(long, required_unless_present = "mongo", conflicts_with = "mongo")]
        pg: Option<String>,
        /// MongoDB connection string of the database to dump (mongodb://user:pass@host/db).
        #[arg(long)]
        mongo: Option<String>,
        /// Store: a directory or s3://bucket/prefix.
        #[arg(long)]
        store: String,
        /// none, gzip[:1-9] or zstd[:1-22].
        #[arg(long, default_value = "zstd")]
        compression: Compression,
        /// Tenant the backup belongs to.
        #[arg(long, default_value = backup_core::DEFAULT_TENANT)]
        tenant: String,
        /// Source id (default: the database name).
        #[arg(long)]
        source_id: Option<String>,
        /// manual or scheduled.
        #[arg(long, default_value = "manual")]
        kind: BackupKind,
        /// full (one self-contained artifact) or incremental (deduplicated
        /// into the tenant's chunk store; each backup still restores alone).
        #[arg(long = "type", default_value = "full")]
        backup_type: BackupType,
        /// Print the manifest as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List committed backups, newest first.
    List {
        #[arg(long)]
        store: String,
        /// Only this tenant's backups.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this source's backups.
        #[arg(long)]
        source_id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Re-read a backup and check its size, SHA-256 and MD5.
    Verify {
        id: String,
        #[arg(long)]
        store: String,
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup into the database named by --pg.
    Restore {
        id: String,
        #[arg(long)]
        store: String,
        /// Connection URL of the target database.
        #[arg(long, required_unless_present = "mongo", conflicts_with = "mongo")]
        pg: Option<String>,
        /// MongoDB connection string of the target deployment.
        #[arg(long)]
        mongo: Option<String>,
        /// Restore into this database instead of the one in the URL.
        #[arg(long)]
        target_db: Option<String>,
        /// Create the target database if it does not exist.
        #[arg(long)]
        create: bool,
        /// Drop existing objects before restoring them.
        #[arg(long)]
        clean: bool,
        /// Do not restore ownership.
        #[arg(long)]
        no_owner: bool,
        /// Restore only this table (repeatable; indexes are not restored).
        #[arg(long = "table")]
        tables: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Delete a backup (manifest first, then artifact).
    Delete {
        id: String,
        #[arg(long)]
        store: String,
    },
    /// Apply retention: delete backups no policy keeps (manual ones are kept
    /// unless --include-manual; the newest of each source always is).
    Prune {
        #[arg(long)]
        store: String,
        /// Keep the newest N backups of each source.
        #[arg(long)]
        keep_last: Option<usize>,
        /// Keep backups younger than this (e.g. 30d, 12h).
        #[arg(long, value_parser = parse_duration_arg)]
        max_age: Option<Duration>,
        /// Keep the newest backup of each of the last N days.
        #[arg(long, default_value_t = 0)]
        keep_daily: usize,
        /// Keep the newest backup of each of the last N ISO weeks.
        #[arg(long, default_value_t = 0)]
        keep_weekly: usize,
        /// Keep the newest backup of each of the last N months.
        #[arg(long, default_value_t = 0)]
        keep_monthly: usize,
        /// Keep the newest backup of each of the last N years.
        #[arg(long, default_value_t = 0)]
        keep_yearly: usize,
        /// Let policies delete manual backups too.
        #[arg(long)]
        include_manual: bool,
        /// Afterwards collect the garbage of incremental backups (as `gc`),
        /// sparing packs younger than this (e.g. 1h).
        #[arg(long, value_parser = parse_duration_arg)]
        gc_grace: Option<Duration>,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this source.
        #[arg(long)]
        source_id: Option<String>,
        /// Show the plan without deleting anything.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Count, total size, newest and oldest backup, per tenant and source.
    Stats {
        #[arg(long)]
        store: String,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Health per source: healthy, stale (no success within the threshold)
    /// or failing (last attempt failed). Exit status 1 unless all healthy.
    Health {
        #[arg(long)]
        store: String,
        /// Threshold for "stale" (e.g. 24h, 2d).
        #[arg(long, value_parser = parse_duration_arg, default_value = "24h")]
        stale_after: Duration,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Remove chunks no incremental backup references any more (after
    /// deleting or pruning backups). Backs off while a backup is running.
    Gc {
        #[arg(long)]
        store: String,
        /// Only this tenant (default: every tenant with a chunk store).
        #[arg(long)]
        tenant: Option<String>,
        /// Never delete packs younger than this (e.g. 1h, 2d).
        #[arg(long, value_parser = parse_duration_arg, default_value = "1h")]
        grace: Duration,
        /// Show what would be removed without removing anything.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Read everything and report missing, corrupt and orphaned objects.
    /// Exit status 1 if anything is missing or corrupt.
    Check {
        #[arg(long)]
        store: String,
        /// Only this tenant (default: the whole store).
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Remove what failed and crashed backups left: artifacts without a
    /// manifest, stale in-progress markers, temporary files of killed
    /// uploads, packs without index. Running backups are never touched.
    Sweep {
        #[arg(long)]
        store: String,
        /// Leave leftovers younger than this alone. Whatever the value,
        /// running backups keep their artifacts, and temporary files and
        /// markers younger than an hour are kept.
        #[arg(long, default_value_t = 60)]
        grace_minutes: u64,
        #[arg(long)]
        json: bool,
    },
}

fn parse_duration_arg(s: &str) -> std::result::Result<Duration, String> {
    backup_core::parse_duration(s).map_err(|e| e.to_string())
}

/// Warns an interactive user when a connection URL carries a password: it
/// is then visible in `ps` and shell history (the tools themselves never
/// get it on argv).
fn warn_password_in_url(url: &str) {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return; // scripts keep their one-line errors
    }
    let authority = url.split_once("://").map_or("", |(_, rest)| rest);
    let userinfo = authority.split(['/', '?']).next().unwrap_or("");
    if userinfo
        .rsplit_once('@')
        .is_some_and(|(u, _)| u.contains(':'))
    {
        eprintln!(
            "backupctl: warning: the URL carries a password, visible in `ps` and shell history; prefer PGPASSWORD or a URI without one"
        );
    }
}

fn pg_connection(url: &str) -> Result<PgConnection> {
    warn_password_in_url(url);
    Ok(PgConnection::from_url(url)?.with_password_from_env())
}

/// The source named by `--pg` or `--mongo`, and its database name.
fn dump_source(pg: Option<String>, mongo: Option<String>) -> Result<(Box<dyn DumpSource>, String)> {
    match (pg, mongo) {
        (_, Some(uri)) => {
            warn_password_in_url(&uri);
            let conn = MongoConnection::from_uri(&uri)?;
            let database = conn.database().unwrap_or_default().to_string();
            Ok((Box::new(MongoSource::new(conn)), database))
        }
        (Some(url), None) => {
            let conn = pg_connection(&url)?;
            let database = conn.database().to_string();
            Ok((Box::new(PostgresSource::new(conn)), database))
        }
        (None, None) => Err(Error::Config("give --pg or --mongo".into())),
    }
}

/// The target named by `--pg` or `--mongo`, and the database to restore into.
fn restore_target(
    pg: Option<String>,
    mongo: Option<String>,
    target_db: Option<String>,
) -> Result<(Box<dyn RestoreTarget>, Option<String>)> {
    match (pg, mongo) {
        (_, Some(uri)) => {
            warn_password_in_url(&uri);
            let conn = MongoConnection::from_uri(&uri)?;
            let database = target_db.or_else(|| conn.database().map(str::to_string));
            Ok((Box::new(MongoTarget::new(conn)), database))
        }
        (Some(url), None) => {
            let conn = pg_connection(&url)?;
            let database = target_db.unwrap_or_else(|| conn.database().to_string());
            Ok((Box::new(PostgresTarget::new(conn)), Some(database)))
        }
        (None, None) => Err(Error::Config("give --pg or --mongo".into())),
    }
}

/// Tenants that have a chunk store (`{tenant}/_chunks/...`).
async fn chunk_store_tenants(engine: &Engine) -> Result<Vec<String>> {
    use backup_core::StoreExt;
    let mut tenants = std::collections::BTreeSet::new();
    for meta in engine.store().list_all(None).await? {
        let mut segments = meta.key.segments();
        if let (Some(tenant), Some("_chunks")) = (segments.next(), segments.next()) {
            tenants.insert(tenant.to_string());
        }
    }
    Ok(tenants.into_iter().collect())
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

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serialisable output")
    );
}

/// What `run` wants the process to exit with.
enum Outcome {
    Ok,
    Unhealthy,
}

async fn run(cli: Cli) -> Result<Outcome> {
    let open_store = |spec: &str| open_store_with(spec, &cli.s3);
    let crypto = &cli.crypto;
    match cli.command {
        Command::Backup {
            pg,
            mongo,
            store,
            compression,
            tenant,
            source_id,
            kind,
            backup_type,
            json,
        } => {
            let (source, database) = dump_source(pg, mongo)?;
            let source_id = source_id.unwrap_or_else(|| sanitize_name(&database));
            let engine = crypto
                .apply(Engine::new(open_store(&store)?))?
                .with_compressor(Arc::new(compression));
            let request = BackupRequest::new(source_id)
                .tenant(tenant)
                .kind(kind)
                .backup_type(backup_type)
                .created_by("backupctl");
            let m = engine.backup(source.as_ref(), &request).await?;
            if json {
                print_json(&m);
            } else if let Some(d) = &m.dedup {
                println!(
                    "incremental backup {} committed: {} new of {} chunks, {} stored ({} raw) in {:.1} s -> {}",
                    m.id,
                    d.new_chunks,
                    d.chunks,
                    human_bytes(m.bytes_stored()),
                    human_bytes(m.raw.size),
                    m.duration().num_milliseconds() as f64 / 1000.0,
                    m.artifact
                );
            } else {
                println!(
                    "backup {} committed: {} ({} raw) in {:.1} s -> {}",
                    m.id,
                    human_bytes(m.stored.size),
                    human_bytes(m.raw.size),
                    m.duration().num_milliseconds() as f64 / 1000.0,
                    m.artifact
                );
            }
        }
        Command::List {
            store,
            tenant,
            source_id,
            json,
        } => {
            let engine = crypto.apply(Engine::new(open_store(&store)?))?;
            let mut filter = Filter::all();
            filter.tenant = tenant;
            filter.source_id = source_id;
            let backups = engine.catalog().list(&filter).await?;
            if json {
                let plain: Vec<_> = backups.iter().map(|m| m.as_ref()).collect();
                print_json(&plain);
            } else {
                print!("{}", backup_table(&backups));
            }
        }
        Command::Verify { id, store, json } => {
            let engine = crypto.apply(Engine::new(open_store(&store)?))?;
            let m = engine.verify(&id, None).await?;
            if json {
                print_json(
                    &serde_json::json!({"id": m.id, "verified": true, "sha256": m.stored.sha256, "md5": m.stored.md5, "size": m.stored.size}),
                );
            } else {
                println!(
                    "backup {} OK: {} bytes, sha256 {}, md5 {}",
                    m.id,
                    m.stored.size,
                    m.stored.sha256,
                    m.stored.md5.as_deref().unwrap_or("-")
                );
            }
        }
        Command::Restore {
            id,
            store,
            pg,
            mongo,
            target_db,
            create,
            clean,
            no_owner,
            tables,
            json,
        } => {
            let (target, database) = restore_target(pg, mongo, target_db)?;
            let engine = crypto.apply(Engine::new(open_store(&store)?))?;
            let mut options = RestoreOptions::default();
            options.database = database;
            let options = options
                .create(create)
                .clean(clean)
                .no_owner(no_owner)
                .only(tables);
            let report = engine.restore(&id, None, target.as_ref(), &options).await?;
            if json {
                print_json(&report);
            } else {
                println!("backup {id} restored into database {}", report.database);
            }
        }
        Command::Delete { id, store } => {
            let engine = crypto.apply(Engine::new(open_store(&store)?))?;
            let m = engine.catalog().delete(&id, None).await?;
            println!("backup {} deleted ({})", m.id, m.artifact);
        }
        Command::Prune {
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
        } => {
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
                    "prune needs a policy: --keep-last, --max-age or --keep-daily/weekly/monthly/yearly".into(),
                ));
            }
            let refs: Vec<&dyn RetentionPolicy> = policies.iter().map(|p| p.as_ref()).collect();
            let engine = crypto.apply(Engine::new(open_store(&store)?))?;
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
        }
        Command::Stats {
            store,
            tenant,
            json,
        } => {
            let engine = crypto.apply(Engine::new(open_store(&store)?))?;
            let mut filter = Filter::all();
            filter.tenant = tenant;
            let stats = engine.catalog().stats(&filter).await?;
            // Per backup: the dump's size and what the backup added to the
            // store (for incremental backups, only its new chunks).
            let backups: Vec<serde_json::Value> = engine
                .catalog()
                .list(&filter)
                .await?
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
            } else {
                let line = |name: &str, s: &Stats| {
                    println!(
                        "{name:<32} {:>6} backups {:>10}  last {}  oldest {}",
                        s.count,
                        human_bytes(s.total_bytes),
                        s.last
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
        }
        Command::Gc {
            store,
            tenant,
            grace,
            dry_run,
            json,
        } => {
            let engine = crypto.apply(Engine::new(open_store(&store)?))?;
            let tenants = match tenant {
                Some(t) => vec![t],
                None => chunk_store_tenants(&engine).await?,
            };
            let mut reports = Vec::new();
            for t in &tenants {
                reports.push(engine.gc(t, grace, dry_run).await?);
            }
            if json {
                print_json(&reports);
            } else {
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
        }
        Command::Check {
            store,
            tenant,
            json,
        } => {
            let engine = crypto.apply(Engine::new(open_store(&store)?))?;
            let report = engine.check(tenant.as_deref()).await?;
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
        }
        Command::Health {
            store,
            stale_after,
            tenant,
            json,
        } => {
            let engine = crypto.apply(Engine::new(open_store(&store)?))?;
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
            if health.iter().any(|h| h.status != HealthStatus::Healthy) {
                return Ok(Outcome::Unhealthy);
            }
        }
        Command::Sweep {
            store,
            grace_minutes,
            json,
        } => {
            let grace = duration_from_minutes(grace_minutes)?;
            let engine = crypto.apply(Engine::new(open_store(&store)?))?;
            let report = engine.sweep(grace, chrono::Utc::now()).await?;
            if json {
                print_json(&report);
            } else {
                print_sweep(&report);
            }
        }
    }
    Ok(Outcome::Ok)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BACKUP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("backupctl: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Unhealthy) => ExitCode::FAILURE,
        Err(e) => {
            let e: Error = e;
            eprintln!("backupctl: error: {e}");
            ExitCode::FAILURE
        }
    }
}
