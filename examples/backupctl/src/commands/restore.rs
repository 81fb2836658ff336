//! `backupctl restore`: restore a backup into the database named by --pg
//! (or --mongo), or a base backup into a new data directory (--datadir).

use std::path::Path;

use std::sync::Arc;

use backup_core::backup_ref::BackupRef;
use backup_core::{Error, RestoreOptions, Result};
use backup_postgres::{
    ChainRestore, PointInTimeRestore, RecoveryTarget, RecoveryTimeline, StartOptions, WalArchive,
    mark_unusable,
};

use crate::commands::{Context, Outcome, physical_line, print_json, resolve_id};
use crate::connect::{
    TargetArgs, datadir_target, mysql_target, pg_tools, restore_target, sqlite_target,
};
use crate::progress::Work;

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
    #[arg(long, value_name = "DIR", conflicts_with_all = ["pg", "mongo", "sqlite", "mysql", "target_db", "create", "clean", "no_owner", "tables", "allow_system_db"])]
    pub(crate) datadir: Option<std::path::PathBuf>,
    /// With --datadir: then replay the source's archived WAL (`wal-push`,
    /// `wal-archive`) up to this time (with a zone: 2026-12-02T07:17:29Z,
    /// or as PostgreSQL prints it with +00), on a server started for it
    /// and stopped once the target is confirmed reached.
    #[arg(long, value_name = "TIME", requires = "datadir", conflicts_with_all = ["target_lsn", "target_name", "target_latest"])]
    pub(crate) target_time: Option<String>,
    /// With --datadir: replay archived WAL up to this position (X/Y).
    #[arg(long, value_name = "LSN", requires = "datadir", conflicts_with_all = ["target_name", "target_latest"])]
    pub(crate) target_lsn: Option<String>,
    /// With --datadir: replay archived WAL up to this restore point
    /// (pg_create_restore_point).
    #[arg(
        long,
        value_name = "NAME",
        requires = "datadir",
        conflicts_with = "target_latest"
    )]
    pub(crate) target_name: Option<String>,
    /// With --datadir: replay all the archived WAL (every segment from the
    /// backup on must be there, without a gap).
    #[arg(long, requires = "datadir")]
    pub(crate) target_latest: bool,
    /// With a --target-*: the timeline to follow when the archive holds
    /// more than the base backup's (a restored copy promoted and archiving
    /// into the same archive): `latest` (default: the newest one that
    /// descends from the backup), `current` (the backup's own, to its
    /// end), or a timeline number, refused before anything is written if
    /// its history file is missing or it does not descend from the backup.
    #[arg(long, value_name = "latest|current|N", requires = "datadir")]
    pub(crate) timeline: Option<RecoveryTimeline>,
    /// Port of the server started to replay WAL (Unix socket only; default:
    /// a free port).
    #[arg(long, value_name = "PORT", requires = "datadir")]
    pub(crate) recovery_port: Option<u16>,
    /// Store: a directory or s3://bucket/prefix (must exist; only `backup` and `init` create one).
    #[arg(long)]
    pub(crate) store: String,
    /// PostgreSQL URL of the target database; PG* variables, the service file and ~/.pgpass fill in what it leaves out, as for pg_restore.
    #[arg(long, required_unless_present_any = ["mongo", "sqlite", "mysql", "datadir"], conflicts_with_all = ["mongo", "sqlite", "mysql"])]
    pub(crate) pg: Option<String>,
    /// MongoDB connection string of the target deployment (password from
    /// MONGODB_PASSWORD or --password-file).
    #[arg(long, conflicts_with_all = ["sqlite", "mysql"])]
    pub(crate) mongo: Option<String>,
    /// MySQL/MariaDB URL of the target server (mysql://user@host:3306/db or
    /// mariadb://...; password from MYSQL_PWD or --password-file). The dump
    /// loads into a hidden staging database; its tables move into the
    /// target (--target-db, else the URL's) with one RENAME TABLE once the
    /// backup verified, then views, triggers and routines are recreated.
    #[arg(long, value_name = "URL", conflicts_with_all = ["sqlite", "pg_bin", "allow_system_db", "no_owner"])]
    pub(crate) mysql: Option<String>,
    /// SQLite database file to restore into: created new (never replacing
    /// a file unless --clean), written beside it and renamed into place
    /// only once the backup verified and PRAGMA integrity_check says ok.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["password_file", "pg_bin", "target_db", "allow_system_db", "no_owner", "tables"])]
    pub(crate) sqlite: Option<std::path::PathBuf>,
    /// Read the database password from this file (first line; not
    /// readable by other users) instead of PGPASSWORD / MONGODB_PASSWORD / MYSQL_PWD.
    #[arg(long)]
    pub(crate) password_file: Option<std::path::PathBuf>,
    /// Directory of the PostgreSQL client tools to run (pg_dump, pg_restore, psql), e.g.
    /// /usr/lib/postgresql/18/bin; by default the server's major version under
    /// /usr/lib/postgresql, then a newer one, then $PATH. Tools older than the server are refused.
    /// With --datadir and a --target-*: also the server (postgres, pg_ctl) that replays the WAL,
    /// which must be of the backup's major version (by default /usr/lib/postgresql/<major>/bin, then $PATH).
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
        target_time,
        target_lsn,
        target_name,
        target_latest,
        timeline,
        recovery_port,
        store,
        pg,
        mongo,
        mysql,
        sqlite,
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
        let target = match (target_time, target_lsn, target_name, target_latest) {
            (Some(t), ..) => Some(RecoveryTarget::time(&t)?),
            (_, Some(l), ..) => Some(RecoveryTarget::lsn(&l)?),
            (_, _, Some(n), _) => Some(RecoveryTarget::name(&n)?),
            (.., true) => Some(RecoveryTarget::Latest),
            _ => None,
        };
        if target.is_none() && timeline.is_some() {
            return Err(Error::Config(
                "--timeline chooses the timeline WAL replay follows: give it with --target-time, --target-lsn, --target-name or --target-latest".into(),
            ));
        }
        let to = DataDir {
            dir: &dir,
            pg_bin: pg_bin.as_deref(),
            recovery: target.map(|target| Recovery {
                target,
                timeline: timeline.unwrap_or_default(),
                port: recovery_port,
            }),
        };
        return restore_datadir(ctx, &store, &id, to, json).await;
    }
    let (target, database) = match (&sqlite, &mysql) {
        (Some(path), _) => sqlite_target(path),
        (None, Some(url)) => mysql_target(url, target_db, password_file.as_deref())?,
        (None, None) => restore_target(
            pg,
            mongo,
            TargetArgs {
                target_db,
                password_file: password_file.as_deref(),
                pg_bin: pg_bin.as_deref(),
                allow_system_db,
            },
        )?,
    };
    let engine = ctx.engine(&store).await?;
    let mut options = RestoreOptions::default();
    options.database = database;
    let options = options
        .create(create)
        .clean(clean)
        .no_owner(no_owner)
        .only(tables);
    let id = resolve_id(&engine, &id).await?;
    let bar = ctx.progress("restore", Work::Read, json);
    let report = engine.restore(&id, target.as_ref(), &options).await?;
    bar.finish();
    if json {
        print_json(&report);
    } else if !ctx.quiet {
        println!("backup {id} restored into database {}", report.database);
    }
    Ok(Outcome::Ok)
}

/// Where a base backup goes, and the point-in-time target if any.
struct DataDir<'a> {
    dir: &'a Path,
    pg_bin: Option<&'a Path>,
    recovery: Option<Recovery>,
}

/// Restores the base backup `id` into the new data directory `dir`, then
/// (with a target) replays the archived WAL up to it; says what to do
/// next.
async fn restore_datadir(
    ctx: &Context<'_>,
    store: &str,
    id: &str,
    to: DataDir<'_>,
    json: bool,
) -> Result<Outcome> {
    let DataDir {
        dir,
        pg_bin,
        recovery,
    } = to;
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
    // Found and checked before anything is restored: without a server
    // of the backup's version there is no recovery, and a target, a
    // timeline or WAL the archive cannot give is refused now, not after
    // the base backup is unpacked.
    let engine = Arc::new(engine);
    let recovery = match recovery {
        Some(to) => {
            let bin = server_bin(pg_bin, &manifest).await?;
            let pitr = point_in_time(&engine, &manifest, dir, bin, &to)?;
            pitr.check_backup(&manifest).await?;
            Some((pitr, to.target))
        }
        None => None,
    };
    // An incremental base backup restores with the chain it depends on,
    // combined by pg_combinebackup; a full one as it is.
    let bar = ctx.progress("restore", Work::Read, json);
    let report = if manifest.parent.is_some() {
        let chain = ChainRestore::new(dir)
            .with_tools(pg_tools(pg_bin)?)
            .run(&engine, BackupRef::in_tenant(&manifest.tenant, &id))
            .await?;
        bar.finish();
        if !json && !ctx.quiet {
            println!(
                "combined the chain {} (pg_combinebackup)",
                chain.links.join(" <- ")
            );
        }
        serde_json::json!({"backup_id": id, "chain": chain.links, "data_dir": dir})
    } else {
        let report = engine
            .restore(&id, target.as_ref(), &RestoreOptions::default())
            .await?;
        bar.finish();
        serde_json::to_value(&report).expect("a serialisable report")
    };
    if let Some((pitr, target)) = recovery {
        // The base backup is in place: whatever fails now leaves it
        // marked unusable (it would start at the backup's end, not at
        // the target).
        let output = Output {
            json,
            quiet: ctx.quiet,
        };
        return match recover(pitr, &manifest, dir, &target, output).await {
            Ok(outcome) => Ok(outcome),
            Err(e) => Err(mark_unusable(dir, &target, e).await),
        };
    }
    if json {
        print_json(&report);
        return Ok(Outcome::Ok);
    }
    if ctx.quiet {
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

/// What a physical restore prints: JSON, nothing (`--quiet`), or lines.
#[derive(Debug, Clone, Copy)]
struct Output {
    json: bool,
    quiet: bool,
}

/// How a restored base backup is recovered: the target, the timeline to
/// follow, and the port of the server started for it.
struct Recovery {
    target: RecoveryTarget,
    timeline: RecoveryTimeline,
    port: Option<u16>,
}

/// The point-in-time restore of the base backup `manifest` into `dir`
/// from the source's archived WAL, up to its target along its timeline,
/// on a server of the binaries in `bin` started for it (as `postgres`
/// when run as root), stopped once the target is confirmed.
fn point_in_time(
    engine: &Arc<backup_core::Engine>,
    manifest: &backup_core::manifest::Manifest,
    dir: &Path,
    bin: std::path::PathBuf,
    to: &Recovery,
) -> Result<PointInTimeRestore> {
    let archive = WalArchive::new(Arc::clone(engine), &manifest.tenant, &manifest.source_id)?;
    let port = match to.port {
        Some(p) => p,
        None => std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| Error::io("finding a free port for the recovery server", e))?,
    };
    Ok(
        PointInTimeRestore::new(dir, Arc::new(archive), to.target.clone(), bin)
            .timeline(to.timeline)
            .start_server(StartOptions::on_port(port)),
    )
}

/// Replays the archived WAL over the base backup just restored into
/// `dir` (see [`point_in_time`]) and says what it did.
async fn recover(
    pitr: PointInTimeRestore,
    manifest: &backup_core::manifest::Manifest,
    dir: &Path,
    target: &RecoveryTarget,
    output: Output,
) -> Result<Outcome> {
    let report = pitr.run().await?;
    let server = report.server.as_ref();
    if output.quiet && !output.json {
        return Ok(Outcome::Ok);
    }
    if output.json {
        print_json(&serde_json::json!({
            "backup_id": manifest.id,
            "data_dir": dir,
            "target": target.to_string(),
            "timeline": report.timeline,
            "target_timeline": report.target_timeline,
            "segments": [report.segments.0, report.segments.1],
            "staged_segments": report.staged_segments,
            "end_lsn": server.and_then(|s| s.end_lsn.clone()),
            "stopped_at": server.and_then(|s| s.stopped_at.clone()),
            "last_transaction": server.and_then(|s| s.last_transaction.clone()),
        }));
        return Ok(Outcome::Ok);
    }
    println!(
        "recovered {} to {target} on timeline {}: replayed {} segment(s) {}..{}{}{}",
        dir.display(),
        report.target_timeline,
        report.staged_segments,
        report.segments.0,
        report.segments.1,
        server
            .and_then(|s| s.end_lsn.as_deref())
            .map(|l| format!(", up to {l}"))
            .unwrap_or_default(),
        server
            .and_then(|s| s.last_transaction.as_deref())
            .map(|t| format!(", last transaction {t}"))
            .unwrap_or_default()
    );
    let dir = dir.display();
    println!(
        "next: it is promoted and stopped; check postgresql.conf (port, paths), then start it:\n  \
         sudo -u postgres pg_ctl -D {dir} start"
    );
    Ok(Outcome::Ok)
}

/// The PostgreSQL server binaries for a recovery of the base backup
/// `manifest`: those of its major version in `--pg-bin`, else found the
/// way the client tools are ([`backup_postgres::PgTools::server_bin_dir`]).
async fn server_bin(
    pg_bin: Option<&Path>,
    manifest: &backup_core::manifest::Manifest,
) -> Result<std::path::PathBuf> {
    let version = manifest.versions.server.as_deref().ok_or_else(|| {
        Error::Config(format!(
            "backup {} does not record its server version: name the server binaries of its major version with --pg-bin DIR",
            manifest.id
        ))
    })?;
    pg_tools(pg_bin)?.server_bin_dir(version).await
}
