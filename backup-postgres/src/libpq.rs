//! libpq's conventions, resolved in this process: [`LibpqEnv`] and
//! [`PgConnection::from_url_like_libpq`] turn a URL plus the caller's
//! environment (`PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`, `PGSSLMODE`...,
//! the service file and the password file) into a [`PgConnection`], the way
//! `pg_dump` with the same URL and environment would connect.
//!
//! The tools still start from a cleared environment and get the password
//! through an in-memory password file: the caller's passfile is read here,
//! by the parent, and only the one matching password goes on.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use backup_core::{Error, Result, Secret};

use crate::conn::{PgConnection, redact_url};

/// Where libpq looks for a server when no host is given anywhere: the
/// Unix socket directory Debian's and most distributions' libpq are built
/// with.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// The default system configuration directory of Debian's libpq, where a
/// system-wide `pg_service.conf` lives (`PGSYSCONFDIR` overrides it).
const DEFAULT_SYSCONFDIR: &str = "/etc/postgresql-common";

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

/// The part of a process's environment libpq reads: `PG*` variables, the
/// home directory (for `~/.pgpass` and `~/.pg_service.conf`) and the
/// operating-system user name (the default role). Captured once, so tests
/// can build one without touching the process environment.
#[derive(Clone, Default)]
pub struct LibpqEnv {
    vars: BTreeMap<String, String>,
    home: Option<PathBuf>,
    os_user: Option<String>,
}

impl std::fmt::Debug for LibpqEnv {
    /// Names only: `PGPASSWORD`'s value never shows.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibpqEnv")
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .field("home", &self.home)
            .field("os_user", &self.os_user)
            .finish()
    }
}

impl LibpqEnv {
    /// This process's environment: every `PG*` variable, `HOME` and the
    /// name of the user it runs as.
    pub fn from_process() -> LibpqEnv {
        let vars = std::env::vars()
            .filter(|(k, _)| k.starts_with("PG"))
            .collect();
        let os_user = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .or_else(|| std::env::var("USER").ok());
        LibpqEnv {
            vars,
            home: std::env::var_os("HOME").map(PathBuf::from),
            os_user,
        }
    }

    /// An empty environment: no variables, no home, no user name.
    pub fn empty() -> LibpqEnv {
        LibpqEnv::default()
    }

    /// Sets a variable.
    pub fn var(mut self, name: &str, value: impl Into<String>) -> LibpqEnv {
        self.vars.insert(name.to_string(), value.into());
        self
    }

    /// Sets the home directory.
    pub fn home(mut self, home: impl Into<PathBuf>) -> LibpqEnv {
        self.home = Some(home.into());
        self
    }

    /// Sets the operating-system user name (libpq's default role).
    pub fn os_user(mut self, user: impl Into<String>) -> LibpqEnv {
        self.os_user = Some(user.into());
        self
    }

    /// A variable's value; an empty value counts as unset, as in libpq.
    fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

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
                let value = percent_encoding::percent_decode_str(value)
                    .decode_utf8()
                    .map_err(|_| {
                        Error::Config(format!(
                            "invalid PostgreSQL URL {}: bad percent-encoding in service",
                            redact_url(url)
                        ))
                    })?;
                service = Some(value.into_owned());
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

/// One `[service]` section of a `pg_service.conf`.
#[derive(Default)]
struct Service {
    name: String,
    file: PathBuf,
    values: BTreeMap<String, String>,
}

impl Service {
    fn get(&self, keyword: &str) -> Option<&str> {
        self.values.get(keyword).map(String::as_str)
    }
}

/// Keywords a service file may set here.
const SERVICE_KEYWORDS: &[&str] = &[
    "host",
    "port",
    "user",
    "dbname",
    "password",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "target_session_attrs",
    "connect_timeout",
    "application_name",
];

/// Finds service `name` the way libpq does: `PGSERVICEFILE` (else
/// `~/.pg_service.conf`), then `PGSYSCONFDIR/pg_service.conf`. A service
/// named but defined nowhere is an error, as in libpq.
fn load_service(name: &str, env: &LibpqEnv) -> Result<Service> {
    let user_file = env
        .get("PGSERVICEFILE")
        .map(PathBuf::from)
        .or_else(|| env.home.as_ref().map(|h| h.join(".pg_service.conf")));
    let system_file =
        Path::new(env.get("PGSYSCONFDIR").unwrap_or(DEFAULT_SYSCONFDIR)).join("pg_service.conf");
    for file in user_file.into_iter().chain([system_file]) {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("reading {}", file.display()), e)),
        };
        if let Some(service) = parse_service(&text, name, &file)? {
            return Ok(service);
        }
    }
    Err(Error::Config(format!(
        "definition of PostgreSQL service {name:?} not found (looked in PGSERVICEFILE or ~/.pg_service.conf, then PGSYSCONFDIR/pg_service.conf)"
    )))
}

fn parse_service(text: &str, name: &str, file: &Path) -> Result<Option<Service>> {
    let mut current: Option<Service> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let syntax = |why: &str| {
            Error::Config(format!(
                "syntax error in service file {} line {}: {why}",
                file.display(),
                n + 1
            ))
        };
        if let Some(section) = line.strip_prefix('[') {
            if current.is_some() {
                break; // the section we wanted has ended
            }
            let section = section
                .strip_suffix(']')
                .ok_or_else(|| syntax("a section header ends with ']'"))?;
            if section == name {
                current = Some(Service {
                    name: name.to_string(),
                    file: file.to_path_buf(),
                    values: BTreeMap::new(),
                });
            }
            continue;
        }
        let Some(service) = current.as_mut() else {
            continue;
        };
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| syntax("expected keyword=value"))?;
        let key = key.trim();
        if !SERVICE_KEYWORDS.contains(&key) {
            return Err(syntax(&format!(
                "unsupported keyword {key:?} (supported: {})",
                SERVICE_KEYWORDS.join(", ")
            )));
        }
        service
            .values
            .insert(key.to_string(), value.trim().to_string());
    }
    Ok(current)
}

/// Splits one passfile field off `line` (up to an unescaped `:`), with
/// `\:` and `\\` unescaped; the rest after the colon.
fn passfile_field(line: &str) -> (String, Option<&str>) {
    let mut out = String::new();
    let mut chars = line.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped)) => out.push(escaped),
                None => out.push('\\'),
            },
            ':' => return (out, Some(&line[i + 1..])),
            c => out.push(c),
        }
    }
    (out, None)
}

/// The password a libpq passfile line gives for this connection, if the
/// line matches (`*` matches anything).
fn passfile_match(line: &str, wanted: [&str; 4]) -> Option<String> {
    let mut rest = line;
    for want in wanted {
        let (field, next) = passfile_field(rest);
        let next = next?;
        // libpq compares the raw field: an escaped `\*` is a literal star.
        let wildcard = rest.starts_with("*:");
        if !wildcard && field != want {
            return None;
        }
        rest = next;
    }
    Some(passfile_field(rest).0)
}

/// The password for `conn` from the caller's password file
/// (`PGPASSFILE`, else `~/.pgpass`), following libpq: a file other users
/// can read is ignored with a warning, a Unix-socket host matches
/// `localhost`, the first matching line wins.
fn passfile_password(
    conn: &PgConnection,
    env: &LibpqEnv,
    warnings: &mut Vec<String>,
) -> Result<Option<(Secret, PathBuf)>> {
    let Some(path) = env
        .get("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| env.home.as_ref().map(|h| h.join(".pgpass")))
    else {
        return Ok(None);
    };
    let meta = match std::fs::metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    if !meta.is_file() && !meta.file_type().is_fifo() {
        warnings.push(format!(
            "password file {} is not a plain file; ignored (as libpq does)",
            path.display()
        ));
        return Ok(None);
    }
    if meta.permissions().mode() & 0o077 != 0 {
        warnings.push(format!(
            "password file {} has group or world access; permissions should be u=rw (0600) or less; ignored (as libpq does)",
            path.display()
        ));
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let host = if conn.host().is_empty() || conn.host().starts_with('/') {
        "localhost"
    } else {
        conn.host()
    };
    let port = conn.port().to_string();
    let wanted = [host, port.as_str(), conn.database(), conn.user()];
    let found = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .find_map(|l| passfile_match(l, wanted))
        .filter(|p| !p.is_empty());
    Ok(found.map(|p| (Secret::new(p), path)))
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
mod tests {
    use super::*;

    fn resolve(url: &str, env: &LibpqEnv) -> Result<(PgConnection, Option<PasswordOrigin>)> {
        PgConnection::from_url_like_libpq(url, env).map(|r| (r.connection, r.password_origin))
    }

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn environment_fills_what_the_url_leaves_out() {
        let env = LibpqEnv::empty()
            .var("PGPORT", "57175")
            .var("PGHOST", "db.example")
            .var("PGUSER", "envuser")
            .var("PGDATABASE", "envdb")
            .var("PGSSLMODE", "require");
        let (c, origin) = resolve("postgres://app@localhost/sales", &env).unwrap();
        assert_eq!(
            (c.host(), c.port(), c.user(), c.database()),
            ("localhost", 57175, "app", "sales")
        );
        assert_eq!(c.sslmode(), Some("require"));
        assert_eq!(origin, None);
        let (c, _) = resolve("postgres://", &env).unwrap();
        assert_eq!(
            (c.host(), c.port(), c.user(), c.database()),
            ("db.example", 57175, "envuser", "envdb")
        );
        // The URL's explicit port and parameters win.
        let (c, _) = resolve("postgresql://u@h:6000/d?sslmode=disable", &env).unwrap();
        assert_eq!((c.port(), c.sslmode()), (6000, Some("disable")));
    }

    #[test]
    fn libpq_defaults_without_anything() {
        let env = LibpqEnv::empty().os_user("alice");
        let (c, _) = resolve("postgres:///", &env).unwrap();
        assert_eq!(
            (c.host(), c.port(), c.user(), c.database()),
            (DEFAULT_SOCKET_DIR, 5432, "alice", "alice")
        );
        let err = resolve("postgres:///", &LibpqEnv::empty())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no PostgreSQL user"), "{err}");
    }

    #[test]
    fn refuses_what_it_cannot_forward() {
        for (var, value) in [("PGHOSTADDR", "10.0.0.1"), ("PGOPTIONS", "-c x=y")] {
            let env = LibpqEnv::empty().os_user("a").var(var, value);
            let err = resolve("postgres://h/d", &env).unwrap_err().to_string();
            assert!(err.contains(var), "{err}");
        }
        let env = LibpqEnv::empty().os_user("a").var("PGHOST", "a,b");
        assert!(resolve("postgres:///d", &env).is_err());
        let env = LibpqEnv::empty().os_user("a").var("PGPORT", "http");
        let err = resolve("postgres://h/d", &env).unwrap_err().to_string();
        assert!(err.contains("not a TCP port"), "{err}");
    }

    #[test]
    fn passfile_follows_libpq() {
        let dir = tempfile::tempdir().unwrap();
        let text = "# comment\n\
                    other:*:*:*:nope\n\
                    localhost:5433:sales:app:wrongport\n\
                    localhost:5432:sales:app:pa\\:ss\\\\w\n\
                    *:*:*:*:fallback\n";
        let pass = write(dir.path(), "pgpass", text, 0o600);
        let env = LibpqEnv::empty().var("PGPASSFILE", pass.display().to_string());
        let (c, origin) = resolve("postgres://app@localhost/sales", &env).unwrap();
        assert_eq!(c.password().unwrap().expose(), "pa:ss\\w");
        assert_eq!(origin, Some(PasswordOrigin::PassFile(pass.clone())));
        // A socket host matches "localhost".
        let (c, _) = resolve("postgres://app@/sales?host=/var/run/postgresql", &env).unwrap();
        assert_eq!(c.password().unwrap().expose(), "pa:ss\\w");
        let (c, _) = resolve("postgres://bob@elsewhere/x", &env).unwrap();
        assert_eq!(c.password().unwrap().expose(), "fallback");
        // PGPASSWORD comes before the file, the URL before both.
        let env2 = env.clone().var("PGPASSWORD", "fromenv");
        let (c, origin) = resolve("postgres://app@h/sales", &env2).unwrap();
        assert_eq!(
            (c.password().unwrap().expose(), origin),
            ("fromenv", Some(PasswordOrigin::Environment))
        );
        let (c, origin) = resolve("postgres://app:url@h/sales", &env2).unwrap();
        assert_eq!(
            (c.password().unwrap().expose(), origin),
            ("url", Some(PasswordOrigin::Url))
        );
        // ~/.pgpass when PGPASSFILE is unset; ignored when others can read it.
        write(dir.path(), ".pgpass", "*:*:*:*:home\n", 0o644);
        let env = LibpqEnv::empty().home(dir.path());
        let r = PgConnection::from_url_like_libpq("postgres://app@h/d", &env).unwrap();
        assert!(r.connection.password().is_none() && r.password_origin.is_none());
        assert!(
            r.warnings[0].contains("group or world access"),
            "{:?}",
            r.warnings
        );
        std::fs::set_permissions(
            dir.path().join(".pgpass"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let (c, _) = resolve("postgres://app@h/d", &env).unwrap();
        assert_eq!(c.password().unwrap().expose(), "home");
        assert!(!format!("{env:?} {c:?}").contains("home\""));
    }

    #[test]
    fn service_file_sits_between_url_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "services.conf",
            "[other]\nhost=wrong\n\n[sales]\n# the sales primary\nhost=db.sales\nport=6000\ndbname=sales\nuser=svc\npassword=svcpw\nsslmode=verify-full\n",
            0o600,
        );
        let env = LibpqEnv::empty()
            .var("PGSERVICEFILE", file.display().to_string())
            .var("PGHOST", "envhost")
            .var("PGPORT", "7000");
        let (c, origin) = resolve("postgres://?service=sales", &env).unwrap();
        assert_eq!(
            (c.host(), c.port(), c.user(), c.database(), c.sslmode()),
            ("db.sales", 6000, "svc", "sales", Some("verify-full"))
        );
        assert_eq!(origin, Some(PasswordOrigin::Service("sales".into())));
        let env = env.var("PGSERVICE", "sales");
        let (c, _) = resolve("postgres://app@h2/x", &env).unwrap();
        assert_eq!((c.host(), c.port(), c.user()), ("h2", 6000, "app"));
        let err = resolve("postgres://h/d?service=nope", &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"nope\" not found"), "{err}");
        let bad = write(dir.path(), "bad.conf", "[s]\nfoo=bar\n", 0o600);
        let env = LibpqEnv::empty()
            .os_user("a")
            .var("PGSERVICEFILE", bad.display().to_string());
        let err = resolve("postgres://h/d?service=s", &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsupported keyword \"foo\""), "{err}");
    }

    #[test]
    fn given_parts() {
        let g = Given::of("postgres://u@[::1]:5/d");
        assert!(g.host && g.port && g.user && g.dbname);
        let g = Given::of("postgres://[::1]/");
        assert!(g.host && !g.port && !g.user && !g.dbname);
        let g = Given::of("postgres://:pw@/?port=1&dbname=x");
        assert!(!g.host && g.port && !g.user && g.dbname);
    }
}
