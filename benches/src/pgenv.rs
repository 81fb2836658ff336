//! Connection settings for external PostgreSQL tools, by environment and
//! a password file — never a password on a command line.

use std::io::{self, Write};

use backup_core::Secret;
use backup_postgres::PgConnection;

use crate::shell::ShellCommand;

/// Inherited variables that could redirect a libpq tool or carry a
/// password past the password file; removed from every command.
const REMOVED: [&str; 7] = [
    "PGPASSWORD",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGHOSTADDR",
    "PGSSLMODE",
    "PGREQUIRESSL",
];

/// `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE` and, when the connection
/// has a password, `PGPASSFILE` naming a 0600 file that is deleted when
/// this value is dropped: how the benchmarks hand a server to `pg_dump`,
/// `pg_restore`, `createdb` and to their own isolated children.
#[derive(Debug)]
pub struct PgEnv {
    vars: Vec<(String, String)>,
    _passfile: Option<tempfile::NamedTempFile>,
}

impl PgEnv {
    /// The environment for `conn`.
    pub fn new(conn: &PgConnection) -> io::Result<PgEnv> {
        let mut vars = vec![
            ("PGHOST".to_string(), conn.host().to_string()),
            ("PGPORT".to_string(), conn.port().to_string()),
            ("PGUSER".to_string(), conn.user().to_string()),
            ("PGDATABASE".to_string(), conn.database().to_string()),
        ];
        let passfile = match conn.password() {
            Some(password) => {
                // NamedTempFile creates the file with mode 0600.
                let mut file = tempfile::Builder::new()
                    .prefix(".bench-pgpass-")
                    .tempfile()?;
                let escaped = password.expose().replace('\\', "\\\\").replace(':', "\\:");
                writeln!(file, "*:*:*:*:{escaped}")?;
                file.flush()?;
                vars.push(("PGPASSFILE".to_string(), file.path().display().to_string()));
                Some(file)
            }
            None => None,
        };
        Ok(PgEnv {
            vars,
            _passfile: passfile,
        })
    }

    /// The variables to set.
    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }

    /// A [`ShellCommand`] running `script` with this environment (and the
    /// inherited libpq variables that could interfere removed).
    pub fn shell(&self, script: impl Into<String>) -> ShellCommand {
        REMOVED
            .iter()
            .fold(ShellCommand::new(script), |cmd, var| cmd.env_remove(*var))
            .envs(self.vars.iter().cloned())
            .env("LC_MESSAGES", "C")
    }

    /// In a process started with these variables: the connection they
    /// describe, password read back from `PGPASSFILE`.
    pub fn connection_from_env() -> io::Result<PgConnection> {
        let var = |name: &str| {
            std::env::var(name).map_err(|_| io::Error::other(format!("{name} is not set")))
        };
        let port = var("PGPORT")?
            .parse()
            .map_err(|_| io::Error::other("PGPORT is not a port"))?;
        let conn = PgConnection::new(var("PGHOST")?, port, var("PGUSER")?, var("PGDATABASE")?);
        let Ok(path) = var("PGPASSFILE") else {
            return Ok(conn);
        };
        let text = std::fs::read_to_string(path)?;
        let line = text.lines().next().unwrap_or_default();
        let escaped = line
            .strip_prefix("*:*:*:*:")
            .ok_or_else(|| io::Error::other("unexpected PGPASSFILE content"))?;
        let mut password = String::with_capacity(escaped.len());
        let mut chars = escaped.chars();
        while let Some(c) = chars.next() {
            password.push(if c == '\\' {
                chars.next().unwrap_or('\\')
            } else {
                c
            });
        }
        Ok(conn.with_password(Secret::new(password)))
    }
}
