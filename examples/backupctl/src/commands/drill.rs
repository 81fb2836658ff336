//! `backupctl drill`: restore a backup into a scratch database on the
//! server of `--pg` (PostgreSQL), `--mysql` (MySQL/MariaDB) or `--mongo`
//! (MongoDB), or a scratch directory under `--sqlite-dir` (SQLite),
//! compare row counts and content checksums with
//! those recorded at dump time, drop the scratch, store and print the
//! result. A physical base backup (`--physical-dir`) is restored with its
//! chain into a scratch data directory, started until consistent, and
//! every table read. Exit status 1 when the drill failed.

use std::sync::Arc;

use backup_core::drill::{DrillRecord, DrillTarget};
use backup_core::{Error, Result};
use backup_mongo::MongoDrill;
use backup_mysql::MysqlDrill;
use backup_postgres::{PgTools, PhysicalDrill, PostgresDrill};
use backup_sqlite::SqliteDrill;

use crate::commands::{Context, Outcome, print_json, resolve_id};
use crate::connect::{mongo_connection, mysql_connection, postgres};

#[derive(Debug, clap::Args)]
pub(crate) struct DrillArgs {
    /// Backup id as `list` shows it (YYYYMMDDTHHMMSSZ-xxxxxxxx), `latest`, or a unique prefix of an id.
    #[arg(required_unless_present = "latest", conflicts_with = "latest")]
    pub(crate) id: Option<String>,
    /// Drill the newest backup in the store (same as the id `latest`).
    #[arg(long)]
    pub(crate) latest: bool,
    /// Store: a directory or s3://bucket/prefix.
    #[arg(long)]
    pub(crate) store: String,
    /// PostgreSQL URL of the drill server's maintenance database (a role
    /// that may CREATE DATABASE); scratch databases `_backup_drill_<hex>`
    /// are created and dropped there. Password as for `restore`.
    #[arg(long, value_name = "URL", required_unless_present_any = ["sqlite_dir", "mysql", "mongo", "physical_dir"])]
    pub(crate) pg: Option<String>,
    /// MySQL/MariaDB URL of the drill server (an account that may create
    /// and drop databases; mysql://user@host:3306/); scratch databases
    /// `_backup_drill_<hex>` are created and dropped there. Password from
    /// the URL, `--password-file` or `MYSQL_PWD`.
    #[arg(long, value_name = "URL", conflicts_with_all = ["pg", "mongo", "sqlite_dir", "pg_bin", "physical_dir"])]
    pub(crate) mysql: Option<String>,
    /// For MongoDB backups: connection string of the drill deployment (a
    /// user that may create and drop any database); scratch databases
    /// `_backup_drill_<hex>` are created and dropped there. Password as
    /// for `restore` (MONGODB_PASSWORD or --password-file).
    #[arg(long, value_name = "URI", conflicts_with_all = ["pg", "sqlite_dir", "pg_bin", "physical_dir"])]
    pub(crate) mongo: Option<String>,
    /// For SQLite backups: the directory scratch files are restored into
    /// (each drill in a private `.backup-sqlite-drill-*` directory,
    /// removed afterwards); it needs room for the restored database.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["pg", "mysql", "mongo", "password_file", "pg_bin", "physical_dir"])]
    pub(crate) sqlite_dir: Option<std::path::PathBuf>,
    /// For physical PostgreSQL base backups: the directory scratch data
    /// directories are restored into (each drill in a private
    /// `.backup-pg-drill-*` directory, removed afterwards; room for the
    /// whole cluster; the postgres user must be able to enter it when
    /// backupctl runs as root). A server of the backup's version is
    /// started there on a private socket, and every table is read.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["pg", "password_file"])]
    pub(crate) physical_dir: Option<std::path::PathBuf>,
    /// The role of the restored cluster that reads every table (a
    /// superuser or a member of pg_read_all_data; default postgres).
    #[arg(long, value_name = "ROLE", requires = "physical_dir")]
    pub(crate) physical_user: Option<String>,
    /// File holding the drill server's password.
    #[arg(long, value_name = "PATH")]
    pub(crate) password_file: Option<std::path::PathBuf>,
    /// Directory of the PostgreSQL client tools.
    #[arg(long, value_name = "DIR")]
    pub(crate) pg_bin: Option<std::path::PathBuf>,
    /// Print the drill record as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn run(args: DrillArgs, ctx: &Context<'_>) -> Result<Outcome> {
    let engine = ctx.engine(&args.store).await?;
    let id = args.id.as_deref().unwrap_or("latest");
    let id = resolve_id(&engine, id).await?;
    let password_file = args.password_file.as_deref();
    let drill: Arc<dyn DrillTarget> = if let Some(pg) = &args.pg {
        let (conn, tools) = postgres(pg, password_file, args.pg_bin.as_deref())?;
        Arc::new(PostgresDrill::new(conn).with_tools(tools))
    } else if let Some(url) = &args.mysql {
        Arc::new(MysqlDrill::new(mysql_connection(url, password_file)?))
    } else if let Some(uri) = &args.mongo {
        Arc::new(MongoDrill::new(mongo_connection(uri, password_file)?))
    } else if let Some(dir) = &args.sqlite_dir {
        Arc::new(SqliteDrill::new(dir))
    } else if let Some(dir) = &args.physical_dir {
        let tools = match &args.pg_bin {
            Some(bin) => PgTools::in_dir(bin),
            None => PgTools::auto(),
        };
        let drill = PhysicalDrill::new(dir).with_tools(tools);
        Arc::new(match &args.physical_user {
            Some(user) => drill.user(user),
            None => drill,
        })
    } else {
        return Err(Error::Config(
            "a drill needs --pg URL, --mysql URL, --mongo URI, --sqlite-dir DIR or --physical-dir DIR".into(),
        ));
    };
    let record = engine.drill(id.as_str(), drill.as_ref()).await?;
    if args.json {
        print_json(&record);
    } else {
        print_record(&record);
    }
    if record.passed() {
        Ok(Outcome::Ok)
    } else {
        Err(Error::Restore {
            engine: "drill",
            detail: format!(
                "restore drill of {} failed: {}",
                record.backup_id,
                record.error.as_deref().unwrap_or("?")
            ),
        })
    }
}

fn print_record(r: &DrillRecord) {
    println!(
        "drill of backup {} ({}/{}): {} at {} in {} ms",
        r.backup_id,
        r.tenant,
        r.database,
        r.status.as_str(),
        r.verified_at.to_rfc3339(),
        r.duration_ms
    );
    for t in &r.tables {
        let restored = t
            .restored_rows
            .map_or_else(|| "missing".to_string(), |n| n.to_string());
        println!(
            "  {} {}: {} rows recorded, {} restored",
            if t.matches { "ok  " } else { "DIFF" },
            t.name,
            t.expected_rows,
            restored
        );
    }
    if let Some(note) = &r.note {
        println!("  note: {note}");
    }
    if let Some(error) = &r.error {
        println!("  error: {error}");
    }
}
