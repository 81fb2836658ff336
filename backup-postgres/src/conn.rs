//! [`PgConnection`]: where a server is and how to log in, with the password
//! kept out of sight.

use std::fmt;
use std::path::PathBuf;

use backup_core::{Error, Result, Secret};

/// Connection parameters for PostgreSQL tools.
///
/// Parsed from a URL (`postgres://user:pass@host:5432/db?sslmode=require`,
/// `postgresql://user@/db?host=/run/postgresql`) or built field by field.
/// The password is a [`Secret`]: `Debug` and `Display` never show it, and
/// the tools receive it only through a 0600 password file.
///
/// ```
/// use backup_postgres::PgConnection;
/// let c = PgConnection::from_url("postgres://app:s3cret@db.internal:6543/sales").unwrap();
/// assert_eq!((c.host(), c.port(), c.user(), c.database()), ("db.internal", 6543, "app", "sales"));
/// assert!(!format!("{c:?} {c}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct PgConnection {
    host: String,
    port: u16,
    user: String,
    password: Option<Secret>,
    database: String,
    sslmode: Option<String>,
}

impl PgConnection {
    /// Parameters for `database` on `host:port` as `user`, no password.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        user: impl Into<String>,
        database: impl Into<String>,
    ) -> Self {
        PgConnection {
            host: host.into(),
            port,
            user: user.into(),
            password: None,
            database: database.into(),
            sslmode: None,
        }
    }

    /// Parses a `postgres://` or `postgresql://` URL. Percent-encoded user
    /// names and passwords are decoded. Errors never echo the password.
    pub fn from_url(input: &str) -> Result<Self> {
        let redacted = redact_url(input);
        let url = url::Url::parse(&with_default_host(input))
            .map_err(|e| Error::Config(format!("invalid PostgreSQL URL {redacted}: {e}")))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(Error::Config(format!(
                "invalid PostgreSQL URL {redacted}: scheme must be postgres:// or postgresql://"
            )));
        }
        let decode = |s: &str| -> Result<String> {
            percent_decode(s).ok_or_else(|| {
                Error::Config(format!(
                    "invalid PostgreSQL URL {redacted}: bad percent-encoding"
                ))
            })
        };
        let mut host = url.host_str().unwrap_or_default().to_string();
        let mut port = url.port().unwrap_or(5432);
        let mut user = decode(url.username())?;
        let password = url.password().map(decode).transpose()?.map(Secret::new);
        let mut database = decode(url.path().trim_start_matches('/'))?;
        let mut sslmode = None;
        for (k, v) in url.query_pairs() {
            match &*k {
                "host" => host = v.into_owned(),
                "port" => {
                    port = v.parse().map_err(|_| {
                        Error::Config(format!("invalid PostgreSQL URL {redacted}: bad port"))
                    })?
                }
                "user" => user = v.into_owned(),
                "dbname" => database = v.into_owned(),
                "sslmode" => sslmode = Some(v.into_owned()),
                "password" => {
                    return Err(Error::Config(format!(
                        "invalid PostgreSQL URL {redacted}: put the password in the user-info part or in PGPASSWORD, not in the query"
                    )));
                }
                other => tracing::debug!(parameter = other, "ignoring URL parameter"),
            }
        }
        if host.is_empty() {
            host = "localhost".into();
        }
        if user.is_empty() {
            user = std::env::var("PGUSER").unwrap_or_else(|_| "postgres".into());
        }
        if database.is_empty() {
            database = user.clone();
        }
        Ok(PgConnection {
            host,
            port,
            user,
            password,
            database,
            sslmode,
        })
    }

    /// Sets the password.
    pub fn with_password(mut self, password: Secret) -> Self {
        self.password = Some(password);
        self
    }

    /// Uses `PGPASSWORD` from this process's environment when no password
    /// was given. The value is read here and handed to tools through a
    /// password file; it is never forwarded in a child's environment or
    /// arguments.
    pub fn with_password_from_env(mut self) -> Self {
        if self.password.is_none()
            && let Ok(p) = std::env::var("PGPASSWORD")
        {
            self.password = Some(Secret::new(p));
        }
        self
    }

    /// Sets `sslmode` (`disable`, `prefer`, `require`, `verify-full`...).
    pub fn with_sslmode(mut self, mode: impl Into<String>) -> Self {
        self.sslmode = Some(mode.into());
        self
    }

    /// The same server and credentials, another database.
    pub fn with_database(&self, database: impl Into<String>) -> Self {
        PgConnection {
            database: database.into(),
            ..self.clone()
        }
    }

    /// Host name, IP address or socket directory.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// TCP port (also selects the socket file name).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Role name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Database name.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The password, if any.
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// `sslmode`, if set.
    pub fn sslmode(&self) -> Option<&str> {
        self.sslmode.as_deref()
    }

    /// Environment for a libpq tool: everything but the password, which goes
    /// into the file at `passfile`.
    pub(crate) fn child_env(&self, passfile: Option<&PathBuf>) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("PGHOST", self.host.clone()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", self.user.clone()),
            ("PGDATABASE", self.database.clone()),
            ("PGAPPNAME", "backup-postgres".to_string()),
            ("PGCONNECT_TIMEOUT", "10".to_string()),
        ];
        if let Some(mode) = &self.sslmode {
            env.push(("PGSSLMODE", mode.clone()));
        }
        if let Some(path) = passfile {
            env.push(("PGPASSFILE", path.display().to_string()));
        }
        env
    }
}

impl fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnection")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("database", &self.database)
            .field("sslmode", &self.sslmode)
            .finish()
    }
}

impl fmt::Display for PgConnection {
    /// `postgres://user@host:port/database`, without the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "postgres://{}@{}:{}/{}",
            self.user, self.host, self.port, self.database
        )
    }
}

/// `postgres://user@/db?host=/run/postgresql` has an empty host, which the
/// URL parser rejects: fill in `localhost` (the `host` query parameter
/// still wins).
fn with_default_host(input: &str) -> String {
    let Some((scheme, rest)) = input.split_once("://") else {
        return input.to_string();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if !hostport.is_empty() {
        return input.to_string();
    }
    match userinfo {
        Some(u) => format!("{scheme}://{u}@localhost{tail}"),
        None => format!("{scheme}://localhost{tail}"),
    }
}

/// The URL with any password (user-info or `password=` parameter)
/// replaced by `***`, for error messages.
pub fn redact_url(input: &str) -> String {
    let Some((scheme, rest)) = input.split_once("://") else {
        return "<unparseable URL>".into();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{hostport}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let c = PgConnection::from_url("postgresql://u%40x:p%3Aw%2F@h/db?sslmode=require").unwrap();
        assert_eq!(c.user(), "u@x");
        assert_eq!(c.password().unwrap().expose(), "p:w/");
        assert_eq!(c.port(), 5432);
        assert_eq!(c.sslmode(), Some("require"));
        let c = PgConnection::from_url("postgres://u@/db?host=/tmp/sock&port=5555").unwrap();
        assert_eq!((c.host(), c.port()), ("/tmp/sock", 5555));
    }

    #[test]
    fn errors_never_show_the_password() {
        for bad in [
            "mysql://u:topsecret@h/db",
            "postgres://u:topsecret@h:notaport/db",
            "postgres://u:topsecret@h/db?password=topsecret",
        ] {
            let err = PgConnection::from_url(bad).unwrap_err().to_string();
            assert!(!err.contains("topsecret"), "{err}");
        }
    }

    #[test]
    fn redacts() {
        assert_eq!(
            redact_url("postgres://u:pw@h:1/db?x=y"),
            "postgres://u:***@h:1/db?x=y"
        );
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
    }

    #[test]
    fn env_has_no_password() {
        let c = PgConnection::from_url("postgres://u:pw@h/db").unwrap();
        let env = c.child_env(None);
        assert!(
            env.iter()
                .all(|(k, v)| *k != "PGPASSWORD" && !v.contains("pw"))
        );
    }
}
