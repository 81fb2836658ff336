//! `backupctl`: one-shot backup, list, verify, restore, delete and sweep
//! over the library, for operators and cron jobs.
//!
//! ```text
//! backupctl backup  --pg postgres://user@host/db --store ./backups [--compression zstd|gzip|none] [--tenant T] [--json]
//! backupctl list    --store ./backups [--tenant T] [--json]
//! backupctl verify  <backup-id> --store ./backups
//! backupctl restore <backup-id> --store ./backups --pg postgres://user@host/target [--create] [--clean] [--no-owner] [--table T]...
//! backupctl delete  <backup-id> --store ./backups
//! backupctl sweep   --store ./backups [--grace-minutes 60]
//! ```
//!
//! The password comes from the URL or from `PGPASSWORD`; it is handed to
//! pg_dump/pg_restore through a 0600 password file, never on their command
//! line. Exit status 0 on success; otherwise 1 and a one-line error on
//! stderr.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use backup_core::{
    BackupKind, BackupRequest, Compression, Engine, Error, Filter, RestoreOptions, Result,
    human_bytes, sanitize_name,
};
use backup_examples::{backup_table, open_store};
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
}

#[derive(Subcommand)]
enum Command {
    /// Take a backup of a PostgreSQL database.
    Backup {
        /// Connection URL of the database to dump (password from the URL or PGPASSWORD).
        #[arg(long)]
        pg: String,
        /// Store: a directory.
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
        #[arg(long)]
        pg: String,
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
    /// Remove artifacts left without a manifest by failed backups.
    Sweep {
        #[arg(long)]
        store: String,
        /// Leave orphans younger than this alone (they may be in progress).
        #[arg(long, default_value_t = 60)]
        grace_minutes: u64,
        #[arg(long)]
        json: bool,
    },
}

fn pg_connection(url: &str) -> Result<PgConnection> {
    Ok(PgConnection::from_url(url)?.with_password_from_env())
}

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serialisable output")
    );
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Backup {
            pg,
            store,
            compression,
            tenant,
            source_id,
            kind,
            json,
        } => {
            let conn = pg_connection(&pg)?;
            let source_id = source_id.unwrap_or_else(|| sanitize_name(conn.database()));
            let engine = Engine::new(open_store(&store)?).with_compressor(Arc::new(compression));
            let request = BackupRequest::new(source_id)
                .tenant(tenant)
                .kind(kind)
                .created_by("backupctl");
            let m = engine.backup(&PostgresSource::new(conn), &request).await?;
            if json {
                print_json(&m);
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
            let engine = Engine::new(open_store(&store)?);
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
            let engine = Engine::new(open_store(&store)?);
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
            create,
            clean,
            no_owner,
            tables,
            json,
        } => {
            let conn = pg_connection(&pg)?;
            let engine = Engine::new(open_store(&store)?);
            let options = RestoreOptions::into_database(conn.database())
                .create(create)
                .clean(clean)
                .no_owner(no_owner)
                .only(tables);
            let report = engine
                .restore(&id, None, &PostgresTarget::new(conn), &options)
                .await?;
            if json {
                print_json(&report);
            } else {
                println!("backup {id} restored into database {}", report.database);
            }
        }
        Command::Delete { id, store } => {
            let engine = Engine::new(open_store(&store)?);
            let m = engine.catalog().delete(&id, None).await?;
            println!("backup {} deleted ({})", m.id, m.artifact);
        }
        Command::Sweep {
            store,
            grace_minutes,
            json,
        } => {
            let engine = Engine::new(open_store(&store)?);
            let report = engine
                .catalog()
                .sweep(Duration::from_secs(grace_minutes * 60), chrono::Utc::now())
                .await?;
            if json {
                print_json(&report);
            } else {
                println!(
                    "removed {} orphaned artifact(s); {} too recent to remove",
                    report.removed.len(),
                    report.too_recent.len()
                );
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BACKUP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
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
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let e: Error = e;
            eprintln!("backupctl: error: {e}");
            ExitCode::FAILURE
        }
    }
}
