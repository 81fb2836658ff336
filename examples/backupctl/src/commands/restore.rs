//! `backupctl restore`: restore a backup into the database named by --pg
//! (or --mongo), or a base backup into a new data directory (--datadir).

use std::path::Path;

use backup_core::{Error, RestoreOptions, Result};

use crate::commands::{Context, Outcome, physical_line, print_json, resolve_id};
use crate::connect::{TargetArgs, datadir_target, restore_target};

#[derive(Debug, clap::Args)]
pub(crate) struct RestoreArgs {
    /// Backup id as `list` shows it (YYYYMMDDTHHMMSSZ-xxxxxxxx), `latest`, or a unique prefix of an id.
    #[arg(required_unless_present = "latest", conflicts_with = "latest")]
    pub(crate) id: Option<String>,
    /// Restore the newest backup in the store (same as the id `latest`).
    #[arg(long)]
    pub(crate) latest: bool,
    /// Restore a base backup (`backup --physical`) into this new data
    /// directory instead of a database: it must not exist or be empty;
    /// the archive is verified with pg_verifybackup before it is moved
    /// into place. Then give it to the server's user and start it.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["pg", "mongo", "target_db", "create", "clean", "no_owner", "tables", "allow_system_db"])]
    pub(crate) datadir: Option<std::path::PathBuf>,
    /// Store: a directory or s3://bucket/prefix (must exist; only `backup` and `init` create one).
    #[arg(long)]
    pub(crate) store: String,
    /// PostgreSQL URL of the target database; PG* variables, the service file and ~/.pgpass fill in what it leaves out, as for pg_restore.
    #[arg(long, required_unless_present_any = ["mongo", "datadir"], conflicts_with = "mongo")]
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
        latest,
        datadir,
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
    let id = match (id, latest) {
        (Some(id), false) => id,
        (None, true) => "latest".to_string(),
        _ => return Err(Error::Config("give a backup id or --latest".into())),
    };
    if let Some(dir) = datadir {
        return restore_datadir(ctx, &store, &id, &dir, pg_bin.as_deref(), json).await;
    }
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

/// Restores the base backup `id` into the new data directory `dir` and
/// says what to do next.
async fn restore_datadir(
    ctx: &Context<'_>,
    store: &str,
    id: &str,
    dir: &Path,
    pg_bin: Option<&Path>,
    json: bool,
) -> Result<Outcome> {
    // Checked here too, so a non-empty directory is refused before
    // anything is read from the store.
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(Error::Config(format!(
            "--datadir {} is not empty: a base backup restores only into a new or empty directory (a restore never writes over a cluster)",
            dir.display()
        )));
    }
    let target = datadir_target(dir, pg_bin)?;
    let engine = ctx.engine(store).await?;
    let id = resolve_id(&engine, id).await?;
    let manifest = engine.catalog().get(id.clone()).await?;
    if manifest.format != backup_postgres::BASEBACKUP_FORMAT {
        return Err(Error::Config(format!(
            "backup {id} is a {} {} backup, not a base backup: --datadir restores only backups taken with `backup --physical`; restore it with --pg",
            manifest.engine, manifest.format
        )));
    }
    let report = engine
        .restore(&id, target.as_ref(), &RestoreOptions::default())
        .await?;
    if json {
        print_json(&report);
        return Ok(Outcome::Ok);
    }
    let dir = dir.display();
    println!("base backup {id} restored into {dir} (checked with pg_verifybackup)");
    if let Some(line) = physical_line(&manifest) {
        println!("{line}");
    }
    println!(
        "next: give it to the server's user and start it (its WAL is inside, it starts consistent):\n  \
         chown -R postgres:postgres {dir} && chmod 700 {dir}\n  \
         sudo -u postgres pg_ctl -D {dir} -o '-p 5433' start   # its postgresql.conf is the original's: check port and paths first"
    );
    Ok(Outcome::Ok)
}
