//! `backupctl backup`: take a backup of a PostgreSQL, MongoDB or
//! MySQL/MariaDB database or a SQLite file.

use std::sync::Arc;

use backup_core::{
    BackupRequest, BackupType, Compression, Engine, Error, Filter, Result, catalog::RunRecord,
    format::human_bytes, format::sanitize_name, manifest::BackupKind, manifest::Manifest,
    meter::MeteredSource,
};
use backup_postgres::{BaseBackupSource, ParentManifest};

use crate::commands::{Context, Outcome, physical_line, print_json, resolve_id};
use crate::connect::{dump_source, mysql_source, pg_connection, pg_tools, sqlite_source};
use crate::progress::Work;

#[derive(Debug, clap::Args)]
pub(crate) struct BackupArgs {
    /// PostgreSQL URL of the database to dump; what it leaves out (host, port, user, password...) comes from PG* variables, the service file and ~/.pgpass, as for pg_dump.
    #[arg(long, required_unless_present_any = ["mongo", "sqlite", "mysql"], conflicts_with_all = ["mongo", "sqlite", "mysql"])]
    pub(crate) pg: Option<String>,
    /// MongoDB connection string of the database to dump (mongodb://user@host/db;
    /// password from MONGODB_PASSWORD or --password-file).
    #[arg(long, conflicts_with_all = ["sqlite", "mysql"])]
    pub(crate) mongo: Option<String>,
    /// MySQL/MariaDB URL of the database to dump (mysql://user@host:3306/db
    /// or mariadb://...; password from MYSQL_PWD or --password-file), dumped
    /// with mariadb-dump (or mysqldump) in one consistent snapshot.
    #[arg(long, value_name = "URL", conflicts_with_all = ["sqlite", "pg_bin", "physical", "allow_system_db"])]
    pub(crate) mysql: Option<String>,
    /// SQLite database file to back up: a consistent snapshot taken while
    /// the application keeps writing (spooled privately in $TMPDIR).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["password_file", "pg_bin", "physical", "allow_system_db"])]
    pub(crate) sqlite: Option<std::path::PathBuf>,
    /// Read the database password from this file (first line; not
    /// readable by other users) instead of PGPASSWORD / MONGODB_PASSWORD / MYSQL_PWD.
    #[arg(long)]
    pub(crate) password_file: Option<std::path::PathBuf>,
    /// Directory of the PostgreSQL client tools to run (pg_dump, pg_restore, psql), e.g.
    /// /usr/lib/postgresql/18/bin; by default the server's major version under
    /// /usr/lib/postgresql, then a newer one, then $PATH. Tools older than the server are refused.
    #[arg(long, value_name = "DIR", conflicts_with = "mongo")]
    pub(crate) pg_bin: Option<std::path::PathBuf>,
    /// Take a physical base backup of the whole cluster --pg points at
    /// (pg_basebackup, WAL included, so it restores on its own with
    /// `restore --datadir`) instead of a pg_dump of one database. The role
    /// needs the REPLICATION attribute and a pg_hba.conf replication line.
    #[arg(long, conflicts_with = "mongo")]
    pub(crate) physical: bool,
    /// With --physical: a block-level incremental base backup (PostgreSQL
    /// 17+, `summarize_wal = on`) holding only the blocks changed since
    /// this base backup of the same tenant and source (an id, or latest:
    /// the source's newest base backup). It restores with its chain:
    /// `restore --datadir` combines them (pg_combinebackup).
    #[arg(long, value_name = "ID|latest", requires = "physical")]
    pub(crate) parent: Option<String>,
    /// Allow dumping a MongoDB system database (admin, local, config).
    #[arg(long)]
    pub(crate) allow_system_db: bool,
    /// Store: a directory or s3://bucket/prefix.
    #[arg(long)]
    pub(crate) store: String,
    /// none, gzip[:1-9] or zstd[:1-22].
    #[arg(long, default_value = "zstd")]
    pub(crate) compression: Compression,
    /// Tenant the backup belongs to.
    #[arg(long, default_value = backup_core::manifest::DEFAULT_TENANT)]
    pub(crate) tenant: String,
    /// Source id (default: the database name).
    #[arg(long)]
    pub(crate) source_id: Option<String>,
    /// manual or scheduled.
    #[arg(long, default_value = "manual")]
    pub(crate) kind: BackupKind,
    /// full (one self-contained artifact) or incremental (deduplicated
    /// into the tenant's chunk store; each backup still restores alone).
    #[arg(long = "type", default_value = "full")]
    pub(crate) backup_type: BackupType,
    /// Print the manifest as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn run(args: BackupArgs, ctx: &Context<'_>) -> Result<Outcome> {
    let BackupArgs {
        pg,
        mongo,
        mysql,
        sqlite,
        password_file,
        pg_bin,
        physical,
        parent,
        allow_system_db,
        store,
        compression,
        tenant,
        source_id,
        kind,
        backup_type,
        json,
    } = args;
    let pg_url = pg.clone();
    let (source, database) = match (&sqlite, &mysql) {
        (Some(path), _) => sqlite_source(path),
        (None, Some(url)) => mysql_source(url, password_file.as_deref())?,
        (None, None) => dump_source(
            pg,
            mongo,
            password_file.as_deref(),
            pg_bin.as_deref(),
            allow_system_db,
            physical,
        )?,
    };
    let source_id = source_id.unwrap_or_else(|| sanitize_name(&database));
    let engine = ctx
        .engine_creating_store(&store)
        .await?
        .with_compressor(Arc::new(compression));
    let source = match (&parent, pg_url) {
        (Some(parent), Some(url)) => {
            let parent = parent_base_backup(&engine, &tenant, &source_id, parent).await?;
            let parent = ParentManifest::fetch(&engine, &parent).await?;
            let conn = pg_connection(&url, password_file.as_deref())?;
            Box::new(
                BaseBackupSource::new(conn)
                    .with_tools(pg_tools(pg_bin.as_deref())?)
                    .incremental(parent),
            )
        }
        _ => source,
    };
    // Counted for the progress bar (dump bytes read).
    let source = MeteredSource::new(source, Arc::clone(&ctx.meter));
    let request = BackupRequest::new(&source_id)
        .tenant(&tenant)
        .kind(kind)
        .backup_type(backup_type)
        .created_by("backupctl");
    let bar = ctx.progress("backup", Work::Backup, json);
    let m = match engine.backup(&source, &request).await {
        Ok(m) => m,
        Err(e) => {
            drop(bar);
            note_failed_record(&engine, &tenant, &source_id, &store).await;
            return Err(e);
        }
    };
    bar.finish();
    if json {
        print_json(&m);
        return Ok(Outcome::Ok);
    }
    if ctx.quiet {
        return Ok(Outcome::Ok);
    }
    if let Some(d) = &m.dedup {
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
    if let Some(line) = physical_line(&m) {
        println!("{line}");
    }
    Ok(Outcome::Ok)
}

/// The base backup `arg` (an id, an id prefix, or `latest`: the newest
/// base backup) of `tenant` and `source_id`, the parent of an incremental
/// base backup.
async fn parent_base_backup(
    engine: &Engine,
    tenant: &str,
    source_id: &str,
    arg: &str,
) -> Result<Arc<Manifest>> {
    let found = if arg == "latest" {
        backup_postgres::latest_base_backup(engine, tenant, source_id).await?
    } else {
        let id = resolve_id(engine, arg).await?;
        engine
            .catalog()
            .list(&Filter::tenant(tenant).source(source_id))
            .await?
            .into_iter()
            .find(|m| m.id == id)
    };
    match found {
        Some(m) if m.format == backup_postgres::BASEBACKUP_FORMAT => Ok(m),
        Some(m) => Err(Error::Config(format!(
            "--parent {}: a {} {} backup, not a base backup",
            m.id, m.engine, m.format
        ))),
        None => Err(Error::not_found(format!(
            "--parent {arg}: no base backup of tenant {tenant}, source {source_id}"
        ))),
    }
}

/// Where the failure of this process's backup was recorded, for the error
/// line (set by [`note_failed_record`]).
static FAILED_RECORD: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// What to add to a failed backup's error: which source the failed attempt
/// was recorded for and how to forget it, when it was recorded.
pub(crate) fn failed_record_hint() -> Option<&'static str> {
    FAILED_RECORD.get().map(String::as_str)
}

/// After a failed backup, notes which source the failure was recorded for
/// (when it was) and how to forget it: one mistyped database must not
/// leave `health` failing with no way out.
async fn note_failed_record(engine: &Engine, tenant: &str, source_id: &str, store: &str) {
    if let Ok(Some(r)) = RunRecord::load(engine.store().as_ref(), tenant, source_id).await
        && !r.succeeded
    {
        let _ = FAILED_RECORD.set(format!(
            "recorded as a failed attempt of source {tenant}/{source_id}: `health` reports it \
             failing until a backup of it succeeds, or \
             `backupctl forget-source {source_id} --tenant {tenant} --store {store}` forgets it"
        ));
    }
}
