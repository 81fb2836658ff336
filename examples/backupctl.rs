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
//! Passwords: keep them out of the URL (it is visible in `ps` and shell
//! history). PostgreSQL: `PGPASSWORD` or `--password-file`; MongoDB:
//! `MONGODB_PASSWORD` or `--password-file` (with the user name in the
//! connection string). pg_dump/pg_restore/psql get the password through a
//! password file that exists only in memory, never on their command line
//! or in their environment; a MongoDB password stays in the driver. System
//! databases (MongoDB `admin`, `local`, `config`; PostgreSQL `template0`,
//! `template1`, and `postgres` with `--clean`) are refused unless
//! `--allow-system-db`. Exit status 0 on success; otherwise 1 and a one-line
//! error on stderr.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use backup_core::{
    BackupKind, BackupRequest, BackupType, Compression, DumpSource, Engine, Error, Filter,
    HealthOptions, HealthStatus, KeepGfs, KeepLast, KeepWithin, PlanOptions, RestoreOptions,
    RestoreTarget, Result, RetentionPolicy, Secret, Stats, SweepReport, duration_from_minutes,
    human_bytes, sanitize_name,
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
        /// MongoDB connection string of the database to dump (mongodb://user@host/db;
        /// password from MONGODB_PASSWORD or --password-file).
        #[arg(long)]
        mongo: Option<String>,
        /// Read the database password from this file (first line; not
        /// readable by other users) instead of PGPASSWORD / MONGODB_PASSWORD.
        #[arg(long)]
        password_file: Option<std::path::PathBuf>,
        /// Allow dumping a MongoDB system database (admin, local, config).
        #[arg(long)]
        allow_system_db: bool,
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
        /// MongoDB connection string of the target deployment (password from
        /// MONGODB_PASSWORD or --password-file).
        #[arg(long)]
        mongo: Option<String>,
        /// Read the database password from this file (first line; not
        /// readable by other users) instead of PGPASSWORD / MONGODB_PASSWORD.
        #[arg(long)]
        password_file: Option<std::path::PathBuf>,
        /// Restore into this database instead of the one in the URL.
        #[arg(long)]
        target_db: Option<String>,
        /// Allow restoring into a system database (MongoDB admin, local,
        /// config; PostgreSQL template0, template1, or postgres with --clean).
        #[arg(long)]
        allow_system_db: bool,
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

/// Which engine a connection string is for, in messages.
#[derive(Clone, Copy)]
enum DbKind {
    Postgres,
    Mongo,
}

impl DbKind {
    fn password_var(self) -> &'static str {
        match self {
            DbKind::Postgres => "PGPASSWORD",
            DbKind::Mongo => "MONGODB_PASSWORD",
        }
    }
}

/// Whether a connection URL carries a password in its user-info (which
/// runs to the last `@`).
fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or("", |(_, rest)| rest);
    rest.rsplit_once('@').is_some_and(|(u, _)| u.contains(':'))
}

/// Warns an interactive user when a connection URL carries a password: it
/// is then visible in `ps` and shell history (the tools themselves never
/// get it on argv).
fn warn_password_in_url(url: &str, engine: DbKind) {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return; // scripts keep their one-line errors
    }
    if url_has_password(url) {
        eprintln!(
            "backupctl: warning: the URL carries a password, visible in `ps` and shell history; prefer {} or --password-file",
            engine.password_var()
        );
    }
}

/// The password from `--password-file`: its first line, from a file
/// other users cannot read.
fn read_password_file(path: &std::path::Path) -> Result<Secret> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::Config(format!("--password-file {shown}: {e}")))?;
    if meta.permissions().mode() & 0o007 != 0 {
        return Err(Error::Config(format!(
            "--password-file {shown} is accessible to other users; chmod o-rwx it (or 600)"
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("--password-file {shown}: {e}")))?;
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        return Err(Error::Config(format!(
            "--password-file {shown} is empty; put the password on its first line"
        )));
    }
    Ok(Secret::new(line))
}

/// The password for a connection without one in its URL: `--password-file`,
/// else the engine's environment variable. A password given twice (URL and
/// file) is refused rather than one silently winning.
fn extra_password(
    url: &str,
    password_file: Option<&std::path::Path>,
    engine: DbKind,
) -> Result<Option<Secret>> {
    if url_has_password(url) {
        if password_file.is_some() {
            return Err(Error::Config(
                "the password is both in the URL and in --password-file; give it once".into(),
            ));
        }
        return Ok(None);
    }
    if let Some(path) = password_file {
        return read_password_file(path).map(Some);
    }
    Ok(std::env::var(engine.password_var())
        .ok()
        .filter(|p| !p.is_empty())
        .map(Secret::new))
}

fn pg_connection(url: &str, password_file: Option<&std::path::Path>) -> Result<PgConnection> {
    warn_password_in_url(url, DbKind::Postgres);
    let conn = PgConnection::from_url(url)?;
    Ok(
        match extra_password(url, password_file, DbKind::Postgres)? {
            Some(password) => conn.with_password(password),
            None => conn,
        },
    )
}

fn mongo_connection(uri: &str, password_file: Option<&std::path::Path>) -> Result<MongoConnection> {
    warn_password_in_url(uri, DbKind::Mongo);
    let conn = MongoConnection::from_uri(uri)?;
    match extra_password(uri, password_file, DbKind::Mongo)? {
        Some(password) => {
            if conn.username().is_none() {
                return Err(Error::Config(format!(
                    "a MongoDB password was given but {} names no user; put it in the connection string (mongodb://USER@host/...)",
                    conn.redacted_uri()
                )));
            }
            Ok(conn.with_password(password))
        }
        None => Ok(conn),
    }
}

/// The source named by `--pg` or `--mongo`, and its database name.
fn dump_source(
    pg: Option<String>,
    mongo: Option<String>,
    password_file: Option<&std::path::Path>,
    allow_system_db: bool,
) -> Result<(Box<dyn DumpSource>, String)> {
    match (pg, mongo) {
        (_, Some(uri)) => {
            let conn = mongo_connection(&uri, password_file)?;
            let database = conn.database().unwrap_or_default().to_string();
            let source = MongoSource::new(conn).allow_system_databases(allow_system_db);
            Ok((Box::new(source), database))
        }
        (Some(url), None) => {
            let conn = pg_connection(&url, password_file)?;
            let database = conn.database().to_string();
            Ok((Box::new(PostgresSource::new(conn)), database))
        }
        (None, None) => Err(Error::Config("give --pg or --mongo".into())),
    }
}

/// What `restore_target` needs besides the connection string.
struct TargetArgs<'a> {
    target_db: Option<String>,
    password_file: Option<&'a std::path::Path>,
    allow_system_db: bool,
}

/// The target named by `--pg` or `--mongo`, and the database to restore into.
fn restore_target(
    pg: Option<String>,
    mongo: Option<String>,
    args: TargetArgs<'_>,
) -> Result<(Box<dyn RestoreTarget>, Option<String>)> {
    match (pg, mongo) {
        (_, Some(uri)) => {
            let conn = mongo_connection(&uri, args.password_file)?;
            let database = args
                .target_db
                .or_else(|| conn.database().map(str::to_string));
            if let Some(db) = database.as_deref()
                && backup_mongo::is_system_database(db)
                && !args.allow_system_db
            {
                return Err(Error::Config(format!(
                    "refusing to restore into the MongoDB system database {db:?}; give --allow-system-db if that is really meant"
                )));
            }
            let target = MongoTarget::new(conn).allow_system_databases(args.allow_system_db);
            Ok((Box::new(target), database))
        }
        (Some(url), None) => {
            let conn = pg_connection(&url, args.password_file)?;
            let database = args
                .target_db
                .unwrap_or_else(|| conn.database().to_string());
            let target = PostgresTarget::new(conn).allow_system_databases(args.allow_system_db);
            Ok((Box::new(target), Some(database)))
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
            password_file,
            allow_system_db,
            store,
            compression,
            tenant,
            source_id,
            kind,
            backup_type,
            json,
        } => {
            let (source, database) =
                dump_source(pg, mongo, password_file.as_deref(), allow_system_db)?;
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
            password_file,
            target_db,
            allow_system_db,
            create,
            clean,
            no_owner,
            tables,
            json,
        } => {
            let (target, database) = restore_target(
                pg,
                mongo,
                TargetArgs {
                    target_db,
                    password_file: password_file.as_deref(),
                    allow_system_db,
                },
            )?;
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
