//! `backupctl restore`: restore a backup into the database named by --pg.

use backup_core::{RestoreOptions, Result};

use crate::commands::{Context, Outcome, print_json, resolve_id};
use crate::connect::{TargetArgs, restore_target};

#[derive(Debug, clap::Args)]
pub(crate) struct RestoreArgs {
    /// Backup id as `list` shows it (YYYYMMDDTHHMMSSZ-xxxxxxxx), `latest`, or a unique prefix of an id.
    pub(crate) id: String,
    /// Store: a directory or s3://bucket/prefix (must exist; only `backup` and `init` create one).
    #[arg(long)]
    pub(crate) store: String,
    /// PostgreSQL URL of the target database; PG* variables, the service file and ~/.pgpass fill in what it leaves out, as for pg_restore.
    #[arg(long, required_unless_present = "mongo", conflicts_with = "mongo")]
    pub(crate) pg: Option<String>,
    /// MongoDB connection string of the target deployment (password from
    /// MONGODB_PASSWORD or --password-file).
    #[arg(long)]
    pub(crate) mongo: Option<String>,
    /// Read the database password from this file (first line; not
    /// readable by other users) instead of PGPASSWORD / MONGODB_PASSWORD.
    #[arg(long)]
    pub(crate) password_file: Option<std::path::PathBuf>,
    /// Directory of the PostgreSQL client tools to run (pg_dump, pg_restore, psql), e.g.
    /// /usr/lib/postgresql/18/bin; by default the server's major version under
    /// /usr/lib/postgresql, then a newer one, then $PATH. Tools older than the server are refused.
    #[arg(long, value_name = "DIR", conflicts_with = "mongo")]
    pub(crate) pg_bin: Option<std::path::PathBuf>,
    /// Restore into this database instead of the one in the URL.
    #[arg(long)]
    pub(crate) target_db: Option<String>,
    /// Allow restoring into a system database (MongoDB admin, local,
    /// config; PostgreSQL template0, template1, or postgres with --clean).
    #[arg(long)]
    pub(crate) allow_system_db: bool,
    /// Create the target database if it does not exist.
    #[arg(long)]
    pub(crate) create: bool,
    /// Drop existing objects before restoring them.
    #[arg(long)]
    pub(crate) clean: bool,
    /// Do not restore ownership.
    #[arg(long)]
    pub(crate) no_owner: bool,
    /// Restore only this table (repeatable; indexes are not restored).
    #[arg(long = "table")]
    pub(crate) tables: Vec<String>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn run(args: RestoreArgs, ctx: &Context<'_>) -> Result<Outcome> {
    let RestoreArgs {
        id,
        store,
        pg,
        mongo,
        password_file,
        pg_bin,
        target_db,
        allow_system_db,
        create,
        clean,
        no_owner,
        tables,
        json,
    } = args;
    let (target, database) = restore_target(
        pg,
        mongo,
        TargetArgs {
            target_db,
            password_file: password_file.as_deref(),
            pg_bin: pg_bin.as_deref(),
            allow_system_db,
        },
    )?;
    let engine = ctx.engine(&store).await?;
    let mut options = RestoreOptions::default();
    options.database = database;
    let options = options
        .create(create)
        .clean(clean)
        .no_owner(no_owner)
        .only(tables);
    let id = resolve_id(&engine, &id).await?;
    let report = engine.restore(&id, target.as_ref(), &options).await?;
    if json {
        print_json(&report);
    } else {
        println!("backup {id} restored into database {}", report.database);
    }
    Ok(Outcome::Ok)
}
