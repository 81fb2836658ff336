//! Finding and running the PostgreSQL client tools: version checks, the
//! password file, stderr capture and error classification.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use backup_core::child::{SecretFile, cleared_command};
use backup_core::{Error, Result};
use tokio::process::Command;

use crate::conn::PgConnection;

mod server_bin;

const ENGINE: &str = "postgres";
/// Bytes of a tool's stderr kept for error messages (the tail).
const STDERR_KEEP: usize = 16 * 1024;

/// Where to find `pg_dump`, `pg_restore` and `psql`.
///
/// By default the tools are picked to match the server: first
/// `/usr/lib/postgresql/<server major>/bin` (Debian and Ubuntu install each
/// major there), then the newest version found there that is at least the
/// server's, then `$PATH`. A `pg_dump` older than the server is refused
/// with [`Error::ToolTooOld`] instead of failing halfway through a dump.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PgTools {
    bin_dir: Option<PathBuf>,
    search_root: Option<PathBuf>,
    setting: Option<String>,
}

impl PgTools {
    /// Automatic discovery (see the type docs).
    pub fn auto() -> Self {
        PgTools::default()
    }

    /// Use the tools in `dir` only.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        PgTools {
            bin_dir: Some(dir.into()),
            ..PgTools::default()
        }
    }

    /// Names the setting through which the host's user chooses the bin
    /// directory (`--pg-bin DIR`, `the entry's pg_bin`): a tool older than
    /// the server is refused with a hint that says to set it.
    pub fn configured_by(mut self, setting: impl Into<String>) -> Self {
        self.setting = Some(setting.into());
        self
    }

    /// The directory given to [`PgTools::in_dir`]; `None` when the tools
    /// are discovered.
    pub fn bin_dir(&self) -> Option<&Path> {
        self.bin_dir.as_deref()
    }

    fn setting(&self) -> &str {
        self.setting.as_deref().unwrap_or("PgTools::in_dir")
    }

    fn versioned_root(&self) -> PathBuf {
        self.search_root
            .clone()
            .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql"))
    }

    /// Versioned install directories, newest first: `(major, bin dir)`.
    fn installed(&self) -> Vec<(u32, PathBuf)> {
        let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(self.versioned_root())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let major = e.file_name().to_str()?.parse::<u32>().ok()?;
                Some((major, e.path().join("bin")))
            })
            .collect();
        found.sort_by_key(|f| std::cmp::Reverse(f.0));
        found
    }

    /// Path of `tool` suitable for a server of major version
    /// `server_major` (`None`: any version, e.g. psql for a version query).
    pub(crate) async fn resolve(&self, tool: &str, server_major: Option<u32>) -> Result<ToolPath> {
        if let Some(dir) = &self.bin_dir {
            let path = dir.join(tool);
            if !path.is_file() {
                return Err(Error::ToolNotFound {
                    tool: tool.into(),
                    hint: format!("{} does not exist", path.display()),
                });
            }
            return ToolPath::checked(path, tool, server_major, self.setting()).await;
        }
        if let Some(major) = server_major {
            let exact = self
                .versioned_root()
                .join(major.to_string())
                .join("bin")
                .join(tool);
            if exact.is_file() {
                return ToolPath::checked(exact, tool, server_major, self.setting()).await;
            }
        }
        for (major, dir) in self.installed() {
            let path = dir.join(tool);
            if path.is_file() && server_major.is_none_or(|m| major >= m) {
                return ToolPath::checked(path, tool, server_major, self.setting()).await;
            }
        }
        match which(tool) {
            Some(path) => ToolPath::checked(path, tool, server_major, self.setting()).await,
            None => Err(Error::ToolNotFound {
                tool: tool.into(),
                hint: "install the PostgreSQL client tools (Debian: apt-get install postgresql-client) or configure their directory".into(),
            }),
        }
    }
}

/// A tool and its version.
#[derive(Debug, Clone)]
pub(crate) struct ToolPath {
    pub(crate) path: PathBuf,
    pub(crate) version: String,
}

impl ToolPath {
    async fn checked(
        path: PathBuf,
        tool: &str,
        server_major: Option<u32>,
        setting: &str,
    ) -> Result<ToolPath> {
        let out = cleared_command(&path)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| Error::ToolNotFound {
                tool: tool.into(),
                hint: format!("cannot run {}: {e}", path.display()),
            })?;
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let major = parse_major(&version);
        if let (Some(server), Some(found)) = (server_major, major)
            && found < server
        {
            return Err(Error::ToolTooOld {
                tool: tool.into(),
                found: version,
                server: server.to_string(),
                hint: format!(
                    "install the PostgreSQL {server} client tools (e.g. /usr/lib/postgresql/{server}/bin) or name a bin directory of {server} or newer ({setting})"
                ),
            });
        }
        Ok(ToolPath { path, version })
    }
}

/// `pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` → 15;
/// `9.6.24` → 9.
pub(crate) fn parse_major(version: &str) -> Option<u32> {
    let number = version
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    number.split('.').next()?.parse().ok()
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|p| p.is_file())
    })
}

/// The file descriptor a tool finds its password file on (`/dev/fd/3`).
const PASSFILE_FD: i32 = 3;

/// A password file for libpq (`PGPASSFILE`) in memory: a sealed 0600
/// `memfd` that only the one tool it is passed to inherits, as
/// `/dev/fd/3`. Nothing is written to disk, so a `kill -9` leaves nothing
/// behind. Holds `*:*:*:*:<password>` so it matches whatever the tool
/// connects to; without a password it is empty, so libpq never falls back
/// to the user's own `~/.pgpass`.
#[derive(Debug)]
pub(crate) struct PassFile(SecretFile);

impl PassFile {
    pub(crate) fn create(conn: &PgConnection) -> Result<PassFile> {
        let text = match conn.password() {
            Some(password) => {
                let escaped = password.expose().replace('\\', "\\\\").replace(':', "\\:");
                format!("*:*:*:*:{escaped}\n")
            }
            None => String::new(),
        };
        Ok(PassFile(SecretFile::new("pgpass", text.as_bytes())?))
    }
}

/// A command for a libpq tool, started from a cleared environment plus
/// the allow-list ([`backup_core::child::ENV_ALLOW_LIST`]): the connection
/// goes into `PG*` variables, the password file in as `/dev/fd/3`, nothing
/// secret into its arguments or environment. Messages are in English
/// (`LC_MESSAGES=C`) so they can be classified.
pub(crate) fn pg_command(tool: &Path, conn: &PgConnection, passfile: &PassFile) -> Result<Command> {
    let mut cmd = cleared_command(tool);
    let path = passfile.0.pass_to(&mut cmd, PASSFILE_FD)?;
    for (k, v) in conn.child_env(&path) {
        cmd.env(k, v);
    }
    cmd.env("LC_MESSAGES", "C");
    Ok(cmd)
}

/// Drains a child's stderr concurrently, keeping the last
/// [`STDERR_KEEP`] bytes.
pub(crate) fn drain_stderr(
    stderr: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> tokio::task::JoinHandle<String> {
    backup_core::child::drain_stderr(stderr, STDERR_KEEP)
}

/// Removes the password from a tool's message, in case a server or tool
/// ever echoes it, and libpq's note naming the in-memory password file
/// (`password retrieved from file "/dev/fd/3"`), a file the user never
/// created: the caller knows where the password came from.
pub(crate) fn redact(message: &str, conn: &PgConnection) -> String {
    let message = match conn.password() {
        Some(p) if !p.is_empty() => message.replace(p.expose(), "***"),
        _ => message.to_string(),
    };
    without_passfile_note(&message)
}

/// `message` without libpq's `password retrieved from file "..."` notes.
fn without_passfile_note(message: &str) -> String {
    const NOTE: &str = "password retrieved from file \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(NOTE) {
        out.push_str(&rest[..start]);
        let after = &rest[start + NOTE.len()..];
        out.push_str("(the password supplied was rejected)");
        rest = after.find('"').map_or("", |end| &after[end + 1..]);
    }
    out.push_str(rest);
    out
}

/// Which step failed, for [`classify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Connect,
    Dump,
    Restore,
}

/// Turns a failed tool's stderr into the most specific error.
pub(crate) fn classify(step: Step, stderr: &str, status: &str, conn: &PgConnection) -> Error {
    let text = redact(stderr, conn);
    let lower = text.to_ascii_lowercase();
    let detail = || {
        let last: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = last[last.len().saturating_sub(6)..].join(" | ");
        if tail.is_empty() {
            status.to_string()
        } else {
            format!("{status}: {tail}")
        }
    };
    if lower.contains("password authentication failed")
        || lower.contains("no password supplied")
        || lower.contains("authentication failed")
        || lower.contains("role \"") && lower.contains("\" does not exist")
    {
        return Error::Authentication {
            engine: ENGINE,
            detail: detail(),
        };
    }
    if let Some(db) = missing_database(&text) {
        return Error::DatabaseMissing {
            engine: ENGINE,
            database: db,
        };
    }
    if lower.contains("connection refused")
        || lower.contains("could not connect")
        || lower.contains("could not translate host name")
        || lower.contains("timeout expired")
        || lower.contains("no route to host")
        || lower.contains("connection to server") && lower.contains("failed")
        || lower.contains("server closed the connection unexpectedly")
        || lower.contains("terminating connection due to administrator command")
    {
        return Error::Connection {
            engine: ENGINE,
            detail: detail(),
        };
    }
    if step == Step::Restore
        && let Some(conflict) = already_exists(&text)
    {
        return Error::Restore {
            engine: ENGINE,
            detail: format!(
                "{conflict} in database {:?}; restore with clean (--clean) to replace what is there, or into a new database (--create)",
                conn.database()
            ),
        };
    }
    match step {
        Step::Connect | Step::Dump => Error::Dump {
            engine: ENGINE,
            detail: detail(),
        },
        Step::Restore => Error::Restore {
            engine: ENGINE,
            detail: detail(),
        },
    }
}

/// The server's complaint when a restored object exists already
/// (`ERROR:  relation "t" already exists`), without pg_restore's echo of
/// the statement (`Command was: CREATE TABLE ...`), which is cut off and
/// says nothing to an operator.
fn already_exists(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (_, message) = line.split_once("ERROR:")?;
        let message = message.trim();
        message
            .ends_with("already exists")
            .then(|| message.to_string())
    })
}

fn missing_database(text: &str) -> Option<String> {
    // FATAL:  database "nope" does not exist
    let start = text.find("database \"")? + "database \"".len();
    let rest = &text[start..];
    let end = rest.find("\" does not exist")?;
    Some(rest[..end].to_string())
}

/// What the preflight learned about the server.
#[derive(Debug, Clone)]
pub(crate) struct ServerInfo {
    pub(crate) major: u32,
    pub(crate) version: String,
}

/// Connects with `psql` and asks the server's version: a cheap check that
/// the server is reachable, the credentials work and the database exists,
/// with a specific error when they do not.
pub(crate) async fn preflight(tools: &PgTools, conn: &PgConnection) -> Result<ServerInfo> {
    let out = psql(
        tools,
        conn,
        "SELECT current_setting('server_version_num') || ' ' || current_setting('server_version')",
    )
    .await?;
    let (num, version) = out.split_once(' ').ok_or_else(|| Error::Dump {
        engine: ENGINE,
        detail: format!("unexpected server version answer {out:?}"),
    })?;
    let num: u32 = num.trim().parse().map_err(|_| Error::Dump {
        engine: ENGINE,
        detail: format!("unexpected server_version_num {num:?}"),
    })?;
    Ok(ServerInfo {
        major: if num >= 100_000 {
            num / 10_000
        } else {
            num / 100
        },
        version: version.trim().to_string(),
    })
}

/// Why the server cannot stream WAL to the role of `conn` over a
/// replication connection (`pg_basebackup`, `pg_receivewal`), as a
/// sentence that says what to change: a role without the `REPLICATION`
/// attribute, `max_wal_senders = 0`, `wal_level = minimal`. `None` when
/// it can (`pg_hba.conf` is only known when the tool connects).
pub(crate) async fn replication_refusal(
    tools: &PgTools,
    conn: &PgConnection,
) -> Result<Option<String>> {
    let answer = psql(
        tools,
        conn,
        "SELECT (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user) \
         || '|' || current_setting('max_wal_senders') \
         || '|' || current_setting('wal_level')",
    )
    .await?;
    let parts: Vec<&str> = answer.trim().split('|').collect();
    let [replication, senders, wal_level] = parts[..] else {
        return Ok(Some(format!("unexpected preflight answer {answer:?}")));
    };
    if replication != "true" {
        return Ok(Some(format!(
            "role {:?} may not open replication connections; ALTER ROLE {} REPLICATION (and allow it in pg_hba.conf: host replication ...)",
            conn.user(),
            quote_ident(conn.user())
        )));
    }
    if senders.trim() == "0" {
        return Ok(Some(
            "max_wal_senders is 0; set it to at least 2 and restart the server".into(),
        ));
    }
    if wal_level.trim() == "minimal" {
        return Ok(Some(
            "wal_level is minimal; set it to replica and restart the server".into(),
        ));
    }
    Ok(None)
}

/// Runs one SQL command with `psql` and returns its unaligned output.
pub(crate) async fn psql(tools: &PgTools, conn: &PgConnection, sql: &str) -> Result<String> {
    psql_all(tools, conn, &[sql]).await
}

/// Runs SQL commands with one `psql`, each in its own transaction (so
/// `CREATE DATABASE` can be one of them), stopping at the first error.
pub(crate) async fn psql_all(
    tools: &PgTools,
    conn: &PgConnection,
    sqls: &[&str],
) -> Result<String> {
    let psql = tools.resolve("psql", None).await?;
    let passfile = PassFile::create(conn)?;
    let mut cmd = pg_command(&psql.path, conn, &passfile)?;
    cmd.args(["-X", "-A", "-t", "-q", "-w", "-v", "ON_ERROR_STOP=1"]);
    for sql in sqls {
        cmd.args(["-c", sql]);
    }
    cmd.stdin(Stdio::null());
    let out = cmd
        .output()
        .await
        .map_err(|e| Error::io(format!("running {}", psql.path.display()), e))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(classify(
            Step::Connect,
            &stderr,
            &out.status.to_string(),
            conn,
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Quotes an identifier for SQL (`"my ""db"""`).
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// An SQL string literal, valid whatever `standard_conforming_strings`
/// says (`E'it''s'`).
pub(crate) fn quote_literal(value: &str) -> String {
    format!("E'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// A libpq connection string naming only a database, quoted so that names
/// with spaces, `=` or a URL shape are taken literally by `-d`.
pub(crate) fn dbname_conninfo(name: &str) -> String {
    format!(
        "dbname='{}'",
        name.replace('\\', "\\\\").replace('\'', "\\'")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> PgConnection {
        PgConnection::from_url("postgres://u:sekret@h/db").unwrap()
    }

    #[test]
    fn majors() {
        assert_eq!(
            parse_major("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(parse_major("psql (PostgreSQL) 9.6.24"), Some(9));
    }

    #[test]
    fn restore_conflicts_say_what_to_do() {
        let conn = PgConnection::new("h", 5432, "u", "sales_copy");
        let stderr = "pg_restore: error: could not execute query: ERROR:  relation \"t\" already exists\nCommand was: CREATE TABLE public.t (\n    x integer\n) WITH (fillfactor='100');";
        let err = classify(Step::Restore, stderr, "exit status: 1", &conn).to_string();
        assert!(
            err.contains("relation \"t\" already exists in database \"sales_copy\"")
                && err.contains("--clean")
                && !err.contains("fillfactor"),
            "{err}"
        );
    }

    #[test]
    fn passfile_note_is_not_shown() {
        let text = "FATAL:  password authentication failed for user \"app\"\npassword retrieved from file \"/dev/fd/3\"";
        assert_eq!(
            without_passfile_note(text),
            "FATAL:  password authentication failed for user \"app\"\n(the password supplied was rejected)"
        );
        assert_eq!(parse_major("garbage"), None);
    }

    #[test]
    fn classifies_common_failures() {
        let c = conn();
        type Check = fn(&Error) -> bool;
        let cases: [(&str, Check); 4] = [
            (
                "pg_dump: error: connection to server at \"127.0.0.1\", port 1 failed: Connection refused",
                |e| matches!(e, Error::Connection { .. }),
            ),
            (
                "FATAL:  password authentication failed for user \"u\"",
                |e| matches!(e, Error::Authentication { .. }),
            ),
            (
                "FATAL:  database \"nope\" does not exist",
                |e| matches!(e, Error::DatabaseMissing { database, .. } if database == "nope"),
            ),
            (
                "ERROR: relation foo is weird sekret",
                |e| matches!(e, Error::Dump { detail, .. } if !detail.contains("sekret")),
            ),
        ];
        for (stderr, check) in cases {
            let e = classify(Step::Dump, stderr, "exit status: 1", &c);
            assert!(check(&e), "{stderr} -> {e:?}");
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(dbname_conninfo("it's"), "dbname='it\\'s'");
        assert_eq!(quote_literal(r"a'b\c"), r"E'a''b\\c'");
    }
}
