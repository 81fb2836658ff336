//! Database connections from the command line: `--pg` / `--mongo` /
//! `--mysql` strings, passwords from the environment or `--password-file` (never
//! argv), and the source or target they name.

use backup_core::{DumpSource, Error, RestoreTarget, Result, Secret};
use backup_mongo::{MongoConnection, MongoSource, MongoTarget};
use backup_mysql::{MysqlConnection, MysqlSource, MysqlTarget};
use backup_postgres::{
    BaseBackupSource, DataDirTarget, LibpqEnv, PgConnection, PgTools, PostgresSource,
    PostgresTarget,
};
use backup_sqlite::{SqliteSource, SqliteTarget};

/// Which engine a connection string is for, in messages.
#[derive(Clone, Copy)]
enum DbKind {
    Postgres,
    Mongo,
    Mysql,
}

impl DbKind {
    fn password_var(self) -> &'static str {
        match self {
            DbKind::Postgres => "PGPASSWORD",
            DbKind::Mongo => "MONGODB_PASSWORD",
            DbKind::Mysql => "MYSQL_PWD",
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

/// Where this run's PostgreSQL password came from (`None` inside: no
/// password anywhere), for the hint after an authentication error.
static PG_PASSWORD_ORIGIN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// What to add to an authentication error: where the password came from,
/// or that none was found (never the password).
pub(crate) fn auth_hint() -> Option<String> {
    PG_PASSWORD_ORIGIN.get().map(|origin| match origin {
        Some(origin) => format!("the password came from {origin}"),
        None => "no password was found (URL, --password-file, PGPASSWORD, the service file, PGPASSFILE or ~/.pgpass)".into(),
    })
}

/// The connection `pg_dump` would make with this URL and this process's
/// environment (`PGHOST`, `PGPORT`, `PGUSER`, `PGSERVICE`, `~/.pgpass`...,
/// see [`PgConnection::from_url_like_libpq`]); `--password-file` wins over
/// every other password source.
pub(crate) fn pg_connection(
    url: &str,
    password_file: Option<&std::path::Path>,
) -> Result<PgConnection> {
    warn_password_in_url(url, DbKind::Postgres);
    if url_has_password(url) && password_file.is_some() {
        return Err(Error::Config(
            "the password is both in the URL and in --password-file; give it once".into(),
        ));
    }
    let resolved = PgConnection::from_url_like_libpq(url, &LibpqEnv::from_process())?;
    for warning in &resolved.warnings {
        eprintln!("backupctl: warning: {warning}");
    }
    let (conn, origin) = match password_file {
        Some(path) => (
            resolved.connection.with_password(read_password_file(path)?),
            Some(format!("--password-file {}", path.display())),
        ),
        None => (
            resolved.connection,
            resolved.password_origin.map(|o| o.to_string()),
        ),
    };
    let _ = PG_PASSWORD_ORIGIN.set(origin);
    Ok(conn)
}

pub(crate) fn mongo_connection(
    uri: &str,
    password_file: Option<&std::path::Path>,
) -> Result<MongoConnection> {
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

/// The PostgreSQL tools of `--pg-bin DIR`, else discovery.
pub(crate) fn pg_tools(pg_bin: Option<&std::path::Path>) -> Result<PgTools> {
    match pg_bin {
        None => Ok(PgTools::auto().configured_by("--pg-bin DIR")),
        Some(dir) if dir.is_dir() => Ok(PgTools::in_dir(dir).configured_by("--pg-bin DIR")),
        Some(dir) => Err(Error::Config(format!(
            "--pg-bin {} is not a directory",
            dir.display()
        ))),
    }
}

/// The source named by `--pg` or `--mongo`, and its database name.
pub(crate) fn dump_source(
    pg: Option<String>,
    mongo: Option<String>,
    password_file: Option<&std::path::Path>,
    pg_bin: Option<&std::path::Path>,
    allow_system_db: bool,
    physical: bool,
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
            if physical {
                let source = BaseBackupSource::new(conn).with_tools(pg_tools(pg_bin)?);
                return Ok((Box::new(source), database));
            }
            let source = PostgresSource::new(conn).with_tools(pg_tools(pg_bin)?);
            Ok((Box::new(source), database))
        }
        (None, None) => Err(Error::Config("give --pg or --mongo".into())),
    }
}

/// The target restoring a base backup into the new data directory `dir`.
pub(crate) fn datadir_target(
    dir: &std::path::Path,
    pg_bin: Option<&std::path::Path>,
) -> Result<Box<dyn RestoreTarget>> {
    Ok(Box::new(
        DataDirTarget::new(dir).with_tools(pg_tools(pg_bin)?),
    ))
}

/// What `restore_target` needs besides the connection string.
pub(crate) struct TargetArgs<'a> {
    pub(crate) target_db: Option<String>,
    pub(crate) password_file: Option<&'a std::path::Path>,
    pub(crate) pg_bin: Option<&'a std::path::Path>,
    pub(crate) allow_system_db: bool,
}

/// The target named by `--pg` or `--mongo`, and the database to restore into.
pub(crate) fn restore_target(
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
            let target = PostgresTarget::new(conn)
                .with_tools(pg_tools(args.pg_bin)?)
                .allow_system_databases(args.allow_system_db);
            Ok((Box::new(target), Some(database)))
        }
        (None, None) => Err(Error::Config("give --pg or --mongo".into())),
    }
}

/// The PostgreSQL connection of `--pg URL` (libpq's rules, as for
/// `backup`) and the tools of `--pg-bin`: for the physical commands.
pub(crate) fn postgres(
    url: &str,
    password_file: Option<&std::path::Path>,
    pg_bin: Option<&std::path::Path>,
) -> Result<(PgConnection, PgTools)> {
    Ok((pg_connection(url, password_file)?, pg_tools(pg_bin)?))
}

/// The source of `--sqlite PATH`, and its database name (the file name).
pub(crate) fn sqlite_source(path: &std::path::Path) -> (Box<dyn DumpSource>, String) {
    let source = SqliteSource::new(path);
    let database = source.info().database;
    (Box::new(source), database)
}

/// The target of `--sqlite PATH`: the file a restore creates (replaced
/// only with `--clean`), and that path as the database.
pub(crate) fn sqlite_target(path: &std::path::Path) -> (Box<dyn RestoreTarget>, Option<String>) {
    (
        Box::new(SqliteTarget::new(path)),
        Some(path.display().to_string()),
    )
}

/// The connection of `--mysql URL`: the password from the URL, else
/// `--password-file`, else `MYSQL_PWD` (read here, never passed on: the
/// tools get it in an in-memory option file).
pub(crate) fn mysql_connection(
    url: &str,
    password_file: Option<&std::path::Path>,
) -> Result<MysqlConnection> {
    warn_password_in_url(url, DbKind::Mysql);
    let conn = MysqlConnection::from_url(url)?;
    Ok(match extra_password(url, password_file, DbKind::Mysql)? {
        Some(password) => conn.with_password(password),
        None => conn,
    })
}

/// The source of `--mysql URL`, and its database name.
pub(crate) fn mysql_source(
    url: &str,
    password_file: Option<&std::path::Path>,
) -> Result<(Box<dyn DumpSource>, String)> {
    let conn = mysql_connection(url, password_file)?;
    let database = conn.database().to_string();
    Ok((Box::new(MysqlSource::new(conn)), database))
}

/// The target of `--mysql URL`, and the database to restore into
/// (`--target-db`, else the URL's).
pub(crate) fn mysql_target(
    url: &str,
    target_db: Option<String>,
    password_file: Option<&std::path::Path>,
) -> Result<(Box<dyn RestoreTarget>, Option<String>)> {
    let conn = mysql_connection(url, password_file)?;
    let database = target_db.unwrap_or_else(|| conn.database().to_string());
    Ok((Box::new(MysqlTarget::new(conn)), Some(database)))
}
