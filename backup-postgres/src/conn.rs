//! [`PgConnection`]: where a server is and how to log in, with the password
//! kept out of sight.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use backup_core::{Error, Result, Secret};

/// libpq connection parameters a [`PgConnection`] may carry besides host,
/// port, user and database, with the environment variable each is handed
/// to the tools in. None of them is a secret (`sslkey` is the key file's
/// path); the password has its own channel.
const PARAMS: &[(&str, &str)] = &[
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("sslcrl", "PGSSLCRL"),
    ("target_session_attrs", "PGTARGETSESSIONATTRS"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ("application_name", "PGAPPNAME"),
];

/// Connection parameters for PostgreSQL tools.
///
/// Parsed from a URL (`postgres://user:pass@host:5432/db?sslmode=require`,
/// `postgresql://user@/db?host=/run/postgresql`) or built field by field.
/// The password is a [`Secret`]: `Debug` and `Display` never show it, and
/// the tools receive it only through a password file in memory that only
/// they inherit.
///
/// Everything a tool needs is in this value and handed to it explicitly:
/// the tools start from a cleared environment, so `PGHOST`, `PGSSLMODE`,
/// `PGPASSWORD` and the like in this process's environment do not reach
/// them (resolve such settings here, in the parent, e.g. with
/// [`PgConnection::with_password_from_env`] or [`PgConnection::with_param`]).
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
    /// libpq keyword → value, keywords from [`PARAMS`] only.
    params: BTreeMap<&'static str, String>,
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
            params: BTreeMap::new(),
        }
    }

    /// Parses a `postgres://` or `postgresql://` URL. Percent-encoded user
    /// names and passwords are decoded. Query parameters: `host`, `port`,
    /// `user`, `dbname` and the libpq parameters [`PgConnection::with_param`]
    /// takes; any other is refused, and so is `password` (use the user-info
    /// part or `PGPASSWORD`). Errors never echo the password.
    pub fn from_url(input: &str) -> Result<Self> {
        let redacted = redact_url(input);
        let invalid =
            |why: &str| Error::Config(format!("invalid PostgreSQL URL {redacted}: {why}"));
        if backup_core::redact::ambiguous_userinfo(input) {
            return Err(invalid(
                "'@' after the host part; percent-encode '@', ':', '/', '?' and '#' in the user name, password and database name (e.g. '/' as %2F), or pass the password in PGPASSWORD",
            ));
        }
        let url =
            url::Url::parse(&with_default_host(input)).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(invalid("scheme must be postgres:// or postgresql://"));
        }
        let decode = |s: &str| -> Result<String> {
            percent_decode(s).ok_or_else(|| invalid("bad percent-encoding"))
        };
        let mut host = url.host_str().unwrap_or_default().to_string();
        let mut port = url.port().unwrap_or(5432);
        let mut user = decode(url.username())?;
        let password = url.password().map(decode).transpose()?.map(Secret::new);
        let mut database = decode(url.path().trim_start_matches('/'))?;
        let mut params = BTreeMap::new();
        for (k, v) in url.query_pairs() {
            match &*k {
                "host" => host = v.into_owned(),
                "port" => port = v.parse().map_err(|_| invalid("bad port"))?,
                "user" => user = v.into_owned(),
                "dbname" => database = v.into_owned(),
                "password" => {
                    return Err(invalid(
                        "put the password in the user-info part or in PGPASSWORD, not in the query",
                    ));
                }
                other => {
                    let keyword = param_keyword(other).ok_or_else(|| {
                        invalid(&format!(
                            "unsupported parameter {other:?} (supported: host, port, user, dbname, {})",
                            PARAMS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
                        ))
                    })?;
                    params.insert(keyword, v.into_owned());
                }
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
            params,
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
        self.params.insert("sslmode", mode.into());
        self
    }

    /// Sets a libpq connection parameter: `sslmode`, `sslrootcert`,
    /// `sslcert`, `sslkey` (paths), `sslcrl`, `target_session_attrs`,
    /// `connect_timeout` (seconds; 10 by default) or `application_name`
    /// (`backup-postgres` by default). Other keywords are refused: the
    /// password has its own channel, and the rest are not forwarded.
    pub fn with_param(mut self, keyword: &str, value: impl Into<String>) -> Result<Self> {
        let keyword = param_keyword(keyword).ok_or_else(|| {
            Error::Config(format!(
                "unsupported libpq parameter {keyword:?}; supported: {}",
                PARAMS
                    .iter()
                    .map(|(k, _)| *k)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        self.params.insert(keyword, value.into());
        Ok(self)
    }

    /// A libpq parameter set from the URL or [`PgConnection::with_param`].
    pub fn param(&self, keyword: &str) -> Option<&str> {
        self.params.get(keyword).map(String::as_str)
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
        self.param("sslmode")
    }

    /// The whole environment of a libpq tool besides the allow-list
    /// ([`backup_core::child::ENV_ALLOW_LIST`]): the connection, and the
    /// password file at `passfile` (always one, empty without a password, so
    /// libpq never falls back to a `~/.pgpass`).
    pub(crate) fn child_env(&self, passfile: &Path) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("PGHOST", self.host.clone()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", self.user.clone()),
            ("PGDATABASE", self.database.clone()),
        ];
        let defaults = [
            ("application_name", "backup-postgres"),
            ("connect_timeout", "10"),
        ];
        for (keyword, var) in PARAMS {
            let value = self
                .params
                .get(keyword)
                .map(String::as_str)
                .or_else(|| defaults.iter().find(|(k, _)| k == keyword).map(|(_, v)| *v));
            if let Some(value) = value {
                env.push((var, value.to_string()));
            }
        }
        env.push(("PGPASSFILE", passfile.display().to_string()));
        env
    }
}

/// The canonical keyword of a supported libpq parameter.
fn param_keyword(keyword: &str) -> Option<&'static str> {
    PARAMS.iter().map(|(k, _)| *k).find(|k| *k == keyword)
}

impl fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnection")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("database", &self.database)
            .field("params", &self.params)
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
/// replaced by `***`, for error messages and logs. The user-info is taken
/// to run to the *last* `@`, so a password with an unencoded `/`, `?`,
/// `#` or `@` is hidden whole; when that makes the user name unclear, the
/// whole user-info is hidden.
pub fn redact_url(input: &str) -> String {
    backup_core::redact::redact_url(input, |key| {
        percent_decode(key)
            .unwrap_or_else(|| key.to_string())
            .to_ascii_lowercase()
            .contains("password")
    })
    .unwrap_or_else(|| "<unparseable URL>".into())
}

/// Decodes `%XX` escapes strictly ([`backup_core::redact::percent_decode`]).
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    backup_core::redact::percent_decode(s)
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
    fn refuses_malformed_percent_escapes() {
        for bad in [
            "postgres://u:p%zzw@h/db",
            "postgres://u:p%+1w@h/db",
            "postgres://u:pw%@h/db",
            "postgres://u%4@h/db",
            "postgres://u:p%FFw@h/db",
        ] {
            let err = PgConnection::from_url(bad).unwrap_err().to_string();
            assert!(err.contains("bad percent-encoding"), "{bad}: {err}");
        }
        let c = PgConnection::from_url("postgres://%C3%A9:%25%2f@h/d%C3%A9").unwrap();
        assert_eq!(
            (c.user(), c.password().unwrap().expose(), c.database()),
            ("\u{e9}", "%/", "d\u{e9}")
        );
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
        assert_eq!(
            redact_url("postgres://u:p/a?s#s@w@h/db?Pass%77ord=x"),
            "postgres://***@h/db?Pass%77ord=***"
        );
    }

    #[test]
    fn hostile_passwords_never_show() {
        // Every password over an alphabet of URL metacharacters, up to 4
        // long: errors, Display, Debug and redaction never show it.
        for secret in backup_core::testing::hostile_secrets(3) {
            for url in [
                format!("postgres://u:{secret}@h:5432/db"),
                format!("postgres://u:{secret}@h/db?sslmode=require"),
                format!("postgres://u:{secret}@h:notaport/db"),
            ] {
                let shown = match PgConnection::from_url(&url) {
                    Ok(c) => {
                        assert!(c.password().is_some(), "{url}");
                        format!("{c} {c:?}")
                    }
                    Err(e) => format!("{e} {e:?}"),
                };
                assert!(!shown.contains(&secret), "{url} -> {shown}");
                assert!(!redact_url(&url).contains(&secret), "{url}");
            }
        }
    }

    #[test]
    fn parameters_are_explicit() {
        let c = PgConnection::from_url(
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(c.sslmode(), Some("verify-full"));
        let env = c.child_env(Path::new("/dev/fd/3"));
        assert!(env.contains(&("PGSSLROOTCERT", "/etc/ca.pem".into())));
        assert!(env.contains(&("PGAPPNAME", "x".into())));
        assert!(env.contains(&("PGCONNECT_TIMEOUT", "10".into())));
        assert!(env.contains(&("PGPASSFILE", "/dev/fd/3".into())));
        let err = PgConnection::from_url("postgres://u@h/db?sslpassword=x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsupported parameter"), "{err}");
        assert!(c.clone().with_param("service", "x").is_err());
        assert!(c.with_param("sslcert", "/c.pem").is_ok());
    }

    #[test]
    fn env_has_no_password() {
        let c = PgConnection::from_url("postgres://u:pw@h/db").unwrap();
        let env = c.child_env(Path::new("/dev/fd/3"));
        assert!(
            env.iter()
                .all(|(k, v)| *k != "PGPASSWORD" && !v.contains("pw"))
        );
    }
}
