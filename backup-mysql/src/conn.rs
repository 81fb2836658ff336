//! [`MysqlConnection`]: where a MySQL or MariaDB server is and how to log
//! in, with the password kept out of sight.

use std::fmt;
use std::path::{Path, PathBuf};

use backup_core::{Error, Result, Secret};

/// The default TCP port of MySQL and MariaDB.
pub const DEFAULT_PORT: u16 = 3306;

/// Connection parameters for the MySQL/MariaDB client tools.
///
/// Parsed from a URL (`mysql://user:pass@host:3306/db`, `mariadb://…`,
/// `mysql://user@localhost/db?socket=/run/mysqld/mysqld.sock`) or built
/// field by field. The password is a [`Secret`]: `Debug` and `Display`
/// never show it, and the tools receive it only in an option file in
/// memory (`--defaults-extra-file=/dev/fd/3`) that only they inherit.
///
/// ```
/// use backup_mysql::MysqlConnection;
/// let c = MysqlConnection::from_url("mysql://app:s3cret@db.internal:3307/sales").unwrap();
/// assert_eq!((c.host(), c.port(), c.user(), c.database()), ("db.internal", 3307, "app", "sales"));
/// assert!(!format!("{c:?} {c}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct MysqlConnection {
    host: String,
    port: u16,
    socket: Option<PathBuf>,
    user: String,
    password: Option<Secret>,
    database: String,
}

impl MysqlConnection {
    /// Parameters for `database` on `host:port` over TCP as `user`, no
    /// password.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        user: impl Into<String>,
        database: impl Into<String>,
    ) -> Self {
        MysqlConnection {
            host: host.into(),
            port,
            socket: None,
            user: user.into(),
            password: None,
            database: database.into(),
        }
    }

    /// Parses a `mysql://` or `mariadb://` URL:
    /// `mysql://user:password@host:port/database`. Percent-encoded parts
    /// are decoded. The only query parameter is `socket` (a Unix socket
    /// path, used instead of TCP); any other is refused, and so is a
    /// password in the query. The database may be left out
    /// (`mysql://user@host/`) for a target told another one per restore;
    /// a source refuses it. Errors never echo the password.
    pub fn from_url(input: &str) -> Result<Self> {
        let redacted = redact_url(input);
        let invalid = |why: &str| Error::Config(format!("invalid MySQL URL {redacted}: {why}"));
        if backup_core::redact::ambiguous_userinfo(input) {
            return Err(invalid(
                "'@' after the host part; percent-encode '@', ':', '/', '?' and '#' in the user name, password and database name",
            ));
        }
        let url = url::Url::parse(input).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "mysql" | "mariadb") {
            return Err(invalid("scheme must be mysql:// or mariadb://"));
        }
        let decode = |s: &str| -> Result<String> {
            percent_decode(s).ok_or_else(|| invalid("bad percent-encoding"))
        };
        let mut socket = None;
        for (k, v) in url.query_pairs() {
            match &*k {
                "socket" if !v.is_empty() => socket = Some(PathBuf::from(v.into_owned())),
                "password" => {
                    return Err(invalid(
                        "put the password in the user-info part or in an environment variable, not in the query",
                    ));
                }
                other => {
                    return Err(invalid(&format!(
                        "unsupported parameter {other:?} (supported: socket)"
                    )));
                }
            }
        }
        let host = match url.host_str() {
            Some(h) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']'),
            _ => "localhost",
        };
        let user = decode(url.username())?;
        if user.is_empty() {
            return Err(invalid(
                "no user name (mysql://USER:PASSWORD@HOST/DATABASE)",
            ));
        }
        let database = decode(url.path().trim_start_matches('/'))?;
        let conn = MysqlConnection {
            host: host.to_string(),
            port: url.port().unwrap_or(DEFAULT_PORT),
            socket,
            user,
            password: url.password().map(decode).transpose()?.map(Secret::new),
            database,
        };
        conn.check().map_err(|why| invalid(&why))?;
        Ok(conn)
    }

    /// Sets the password.
    pub fn with_password(mut self, password: Secret) -> Self {
        self.password = Some(password);
        self
    }

    /// Sets the password from environment variable `var` if it is set and
    /// no password was given otherwise.
    pub fn with_password_from_env(self, var: &str) -> Self {
        match (&self.password, std::env::var(var)) {
            (None, Ok(p)) if !p.is_empty() => self.with_password(Secret::new(p)),
            _ => self,
        }
    }

    /// Connects through the Unix socket at `path` instead of TCP.
    pub fn with_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.socket = Some(path.into());
        self
    }

    /// The same server and credentials, for `database`.
    pub fn with_database(&self, database: impl Into<String>) -> Self {
        MysqlConnection {
            database: database.into(),
            ..self.clone()
        }
    }

    /// Host name or address (unused when [`MysqlConnection::socket`] is set).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The Unix socket, when connecting through one.
    pub fn socket(&self) -> Option<&Path> {
        self.socket.as_deref()
    }

    /// User name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The password, if any.
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// Database name.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Refuses what an option file cannot carry exactly (line breaks and
    /// NUL in a value, which would end it or start another option).
    fn check(&self) -> std::result::Result<(), String> {
        let socket = self
            .socket
            .as_ref()
            .map(|s| s.to_string_lossy().into_owned());
        let fields = [
            ("host", Some(self.host.as_str())),
            ("user", Some(self.user.as_str())),
            ("socket", socket.as_deref()),
            ("password", self.password.as_ref().map(Secret::expose)),
        ];
        for (name, value) in fields {
            if value.is_some_and(|v| v.contains(['\n', '\r', '\0'])) {
                return Err(format!("the {name} holds a line break or NUL"));
            }
        }
        Ok(())
    }

    /// The `[client]` option file the tools read: user, password, and
    /// either the socket or host, port and `protocol=TCP`. Values are
    /// double-quoted with `\` and `"` escaped, as the option-file parser
    /// undoes.
    pub(crate) fn option_file(&self) -> Result<String> {
        self.check().map_err(|why| {
            Error::Config(format!(
                "cannot pass the MySQL connection to the tools: {why}"
            ))
        })?;
        let quote = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
        let mut text = String::from("[client]\n");
        text.push_str(&format!("user={}\n", quote(&self.user)));
        if let Some(p) = &self.password {
            text.push_str(&format!("password={}\n", quote(p.expose())));
        }
        match &self.socket {
            Some(socket) => {
                text.push_str(&format!("socket={}\n", quote(&socket.to_string_lossy())));
                text.push_str("protocol=SOCKET\n");
            }
            None => {
                text.push_str(&format!("host={}\n", quote(&self.host)));
                text.push_str(&format!("port={}\n", self.port));
                text.push_str("protocol=TCP\n");
            }
        }
        Ok(text)
    }
}

impl fmt::Debug for MysqlConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlConnection")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("socket", &self.socket)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("database", &self.database)
            .finish()
    }
}

impl fmt::Display for MysqlConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.socket {
            Some(s) => write!(
                f,
                "mysql://{}@localhost/{}?socket={}",
                self.user,
                self.database,
                s.display()
            ),
            None => write!(
                f,
                "mysql://{}@{}:{}/{}",
                self.user, self.host, self.port, self.database
            ),
        }
    }
}

/// `url` with its password (and any `password` query value) replaced by
/// `***`, for errors and logs.
pub fn redact_url(url: &str) -> String {
    backup_core::redact::redact_url(url, |key| key.to_ascii_lowercase().contains("password"))
        .unwrap_or_else(|| "<unparseable URL>".into())
}

/// Decodes `%XX` escapes strictly ([`backup_core::redact::percent_decode`]).
fn percent_decode(s: &str) -> Option<String> {
    backup_core::redact::percent_decode(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_never_show_the_password() {
        let c = MysqlConnection::from_url("mariadb://u%40x:p%22w%5C@127.0.0.1:3310/d%2Fb").unwrap();
        assert_eq!(c.user(), "u@x");
        assert_eq!(c.password().unwrap().expose(), "p\"w\\");
        assert_eq!(
            (c.host(), c.port(), c.database()),
            ("127.0.0.1", 3310, "d/b")
        );
        assert!(!format!("{c:?}{c}").contains("p\"w"));
        let file = c.option_file().unwrap();
        assert!(file.contains("password=\"p\\\"w\\\\\"\n"), "{file}");
        assert!(file.contains("protocol=TCP"), "{file}");

        let s = MysqlConnection::from_url("mysql://root@localhost/x?socket=/tmp/s.sock").unwrap();
        assert_eq!(s.socket(), Some(Path::new("/tmp/s.sock")));
        assert!(s.option_file().unwrap().contains("protocol=SOCKET"));
        assert_eq!(s.port(), DEFAULT_PORT);

        for bad in [
            "postgres://u:p@h/db",
            "mysql://:p@h/db",
            "mysql://u@h/db?password=x",
            "mysql://u@h/db?ssl=1",
            "mysql://u:p%0Aq@h/db",
            "mysql://u:p%zz@h/db",
        ] {
            let e = MysqlConnection::from_url(bad).unwrap_err().to_string();
            assert!(!e.contains(":p@"), "{e}");
        }
    }
}
