//! libpq's conventions, resolved in this process: [`LibpqEnv`] and
//! [`PgConnection::from_url_like_libpq`] turn a URL plus the caller's
//! environment (`PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`, `PGSSLMODE`...,
//! the service file and the password file) into a [`PgConnection`], the way
//! `pg_dump` with the same URL and environment would connect.
//!
//! The tools still start from a cleared environment and get the password
//! through an in-memory password file: the caller's passfile is read here,
//! by the parent, and only the one matching password goes on.

use std::path::PathBuf;

use backup_core::{Error, Result, Secret};

use crate::conn::{PgConnection, percent_decode, redact_url};

use passfile::passfile_password;
use service::load_service;

mod env;
mod passfile;
mod service;

pub use env::LibpqEnv;

/// Where libpq looks for a server when no host is given anywhere: the
/// Unix socket directory Debian's and most distributions' libpq are built
/// with.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// Connection keywords libpq takes from the environment (besides the
/// password, passfile and service), with their variables.
const ENV_PARAMS: &[(&str, &str)] = &[
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("sslcrl", "PGSSLCRL"),
    ("target_session_attrs", "PGTARGETSESSIONATTRS"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ("application_name", "PGAPPNAME"),
];

/// Variables libpq honours that this crate cannot forward faithfully:
/// refused rather than silently ignored.
const UNSUPPORTED_VARS: &[&str] = &["PGHOSTADDR", "PGREQUIRESSL", "PGGSSENCMODE", "PGOPTIONS"];

/// Which parts a URL names itself (the rest come from the service file,
/// the environment or libpq's defaults).
#[derive(Debug, Default)]
struct Given {
    host: bool,
    port: bool,
    user: bool,
    dbname: bool,
}

impl Given {
    fn of(url: &str) -> Given {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (u, h),
            None => ("", authority),
        };
        let user = !userinfo.split(':').next().unwrap_or_default().is_empty();
        let port_part = match hostport.rfind(']') {
            Some(close) => &hostport[close..],
            None => hostport,
        };
        let port = port_part.contains(':');
        let host =
            !hostport.split(':').next().unwrap_or_default().is_empty() || hostport.starts_with('[');
        let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
        let dbname = !path.trim_start_matches('/').is_empty();
        let mut given = Given {
            host,
            port,
            user,
            dbname,
        };
        for pair in query.split('&') {
            match pair.split_once('=').map_or(pair, |(k, _)| k) {
                "host" => given.host = true,
                "port" => given.port = true,
                "user" => given.user = true,
                "dbname" => given.dbname = true,
                _ => {}
            }
        }
        given
    }
}

/// Removes a `service=` query parameter (which [`PgConnection::from_url`]
/// does not take) and returns it.
fn take_service(url: &str) -> Result<(String, Option<String>)> {
    let Some((head, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    let mut service = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("service", value)) => {
                let value = percent_decode(value).ok_or_else(|| {
                    Error::Config(format!(
                        "invalid PostgreSQL URL {}: bad percent-encoding in service",
                        redact_url(url)
                    ))
                })?;
                service = Some(value);
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        head.to_string()
    } else {
        format!("{head}?{}", kept.join("&"))
    };
    Ok((url, service))
}

/// Where a resolved connection's password came from, for messages (never
/// the password itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordOrigin {
    /// The URL's user-info.
    Url,
    /// A `password=` line of this service.
    Service(String),
    /// `PGPASSWORD`.
    Environment,
    /// A line of this password file.
    PassFile(PathBuf),
}

impl std::fmt::Display for PasswordOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordOrigin::Url => write!(f, "the URL"),
            PasswordOrigin::Service(name) => write!(f, "service {name:?}"),
            PasswordOrigin::Environment => write!(f, "PGPASSWORD"),
            PasswordOrigin::PassFile(path) => write!(f, "password file {}", path.display()),
        }
    }
}

/// What [`PgConnection::from_url_like_libpq`] resolved.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Resolved {
    /// The connection, everything filled in.
    pub connection: PgConnection,
    /// Where its password came from; `None` without one.
    pub password_origin: Option<PasswordOrigin>,
    /// What libpq would have warned about (e.g. an ignored password file).
    pub warnings: Vec<String>,
}

impl PgConnection {
    /// Parses `url` and fills in what it leaves out the way libpq (and so
    /// `pg_dump`/`psql`) would with the same environment: each of host,
    /// port, user, database and the SSL and timeout parameters comes from
    /// the URL, else the service (`?service=` or `PGSERVICE`, from
    /// `PGSERVICEFILE`/`~/.pg_service.conf` or `PGSYSCONFDIR`), else its
    /// `PG*` variable, else libpq's default (the socket directory
    /// [`DEFAULT_SOCKET_DIR`], port 5432, the operating-system user, a
    /// database named after the user). The password: URL, service,
    /// `PGPASSWORD`, then the password file (`PGPASSFILE` or `~/.pgpass`,
    /// ignored when other users can read it). Returns where the password
    /// came from, for messages, and warnings libpq would have printed (a
    /// password file others can read, which is then ignored).
    ///
    /// Variables libpq honours that cannot be forwarded faithfully
    /// (`PGHOSTADDR`, `PGOPTIONS`, `PGGSSENCMODE`, `PGREQUIRESSL`) and
    /// multi-host lists are refused, not ignored.
    ///
    /// ```
    /// use backup_postgres::{LibpqEnv, PgConnection};
    /// let env = LibpqEnv::empty().var("PGPORT", "6543").var("PGUSER", "app");
    /// let c = PgConnection::from_url_like_libpq("postgres://db.internal/sales", &env)
    ///     .unwrap()
    ///     .connection;
    /// assert_eq!((c.host(), c.port(), c.user()), ("db.internal", 6543, "app"));
    /// ```
    pub fn from_url_like_libpq(url: &str, env: &LibpqEnv) -> Result<Resolved> {
        if let Some(var) = UNSUPPORTED_VARS.iter().find(|v| env.get(v).is_some()) {
            return Err(Error::Config(format!(
                "{var} is set, which libpq honours but backup-postgres cannot forward; unset it (use PGHOST / URL parameters instead)"
            )));
        }
        let (stripped, url_service) = take_service(url)?;
        let parsed = PgConnection::from_url(&stripped)?;
        let given = Given::of(&stripped);
        let service = match url_service.as_deref().or(env.get("PGSERVICE")) {
            Some(name) => Some(load_service(name, env)?),
            None => None,
        };
        let from_service = |key: &str| service.as_ref().and_then(|s| s.get(key));
        let pick = |given: bool, explicit: &str, key: &str, var: &str| -> Option<String> {
            if given {
                Some(explicit.to_string())
            } else {
                from_service(key)
                    .or_else(|| env.get(var))
                    .map(str::to_string)
            }
        };
        let host = pick(given.host, parsed.host(), "host", "PGHOST")
            .unwrap_or_else(|| DEFAULT_SOCKET_DIR.to_string());
        if host.contains(',') {
            return Err(Error::Config(format!(
                "host list {host:?}: several hosts are not supported; name one server"
            )));
        }
        let port = match pick(given.port, &parsed.port().to_string(), "port", "PGPORT") {
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                Error::Config(format!(
                    "port {p:?} (from the service or PGPORT) is not a TCP port"
                ))
            })?,
            None => 5432,
        };
        let user = pick(given.user, parsed.user(), "user", "PGUSER")
            .or_else(|| env.os_user.clone())
            .ok_or_else(|| {
                Error::Config(
                    "no PostgreSQL user: name one in the URL or PGUSER (the operating-system user name is unknown)".into(),
                )
            })?;
        let database = pick(given.dbname, parsed.database(), "dbname", "PGDATABASE")
            .unwrap_or_else(|| user.clone());
        let mut conn = PgConnection::new(host, port, user, database);
        for (keyword, var) in ENV_PARAMS {
            let value = parsed
                .param(keyword)
                .or_else(|| from_service(keyword))
                .or_else(|| env.get(var));
            if let Some(value) = value {
                conn = conn.with_param(keyword, value)?;
            }
        }
        let mut warnings = Vec::new();
        let (password, origin) = if let Some(p) = parsed.password() {
            (Some(p.clone()), Some(PasswordOrigin::Url))
        } else if let Some(p) = from_service("password") {
            let name = service.as_ref().map(|s| s.name.clone()).unwrap_or_default();
            (Some(Secret::new(p)), Some(PasswordOrigin::Service(name)))
        } else if let Some(p) = env.get("PGPASSWORD") {
            (Some(Secret::new(p)), Some(PasswordOrigin::Environment))
        } else {
            match passfile_password(&conn, env, &mut warnings)? {
                Some((p, path)) => (Some(p), Some(PasswordOrigin::PassFile(path))),
                None => (None, None),
            }
        };
        if let Some(service) = &service {
            tracing::debug!(service = %service.name, file = %service.file.display(), "PostgreSQL service used");
        }
        if let Some(password) = password {
            conn = conn.with_password(password);
        }
        Ok(Resolved {
            connection: conn,
            password_origin: origin,
            warnings,
        })
    }
}
#[cfg(test)]
mod tests;
