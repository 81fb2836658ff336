//! The client tools (`mariadb-dump`/`mysqldump`, `mariadb`/`mysql`):
//! finding them, starting them with the credentials in an in-memory
//! option file, running SQL, and turning their messages into errors.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use backup_core::child::{SecretFile, cleared_command};
use backup_core::{Error, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::conn::MysqlConnection;

/// The engine name in manifests and errors.
pub const ENGINE: &str = "mysql";

/// The descriptor the option file is mapped to in the child.
const OPTIONS_FD: i32 = 3;

/// Most bytes of a tool's stderr kept for an error message.
const STDERR_KEEP: usize = 16 * 1024;

/// Most bytes of output [`run_sql`] accepts (catalog queries, object
/// definitions): more is refused, never cut.
const MAX_SQL_OUTPUT: usize = 64 * 1024 * 1024;

/// Which client tools to run.
///
/// [`MysqlTools::auto`] looks each tool up in `PATH` (MariaDB's names
/// first: `mariadb-dump`, then `mysqldump`; `mariadb`, then `mysql`);
/// [`MysqlTools::in_dir`] takes them from one directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MysqlTools {
    dir: Option<PathBuf>,
}

/// A tool found, with its `--version` line.
#[derive(Debug, Clone)]
pub(crate) struct Tool {
    pub(crate) path: PathBuf,
    pub(crate) version: String,
}

impl MysqlTools {
    /// Tools from `PATH`.
    pub fn auto() -> Self {
        MysqlTools { dir: None }
    }

    /// Tools from `dir` only.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        MysqlTools {
            dir: Some(dir.into()),
        }
    }

    /// The dump tool: `mariadb-dump` or `mysqldump`.
    pub(crate) async fn dump_tool(&self) -> Result<Tool> {
        self.find(&["mariadb-dump", "mysqldump"]).await
    }

    /// The command-line client: `mariadb` or `mysql`.
    pub(crate) async fn client(&self) -> Result<Tool> {
        self.find(&["mariadb", "mysql"]).await
    }

    async fn find(&self, names: &[&str]) -> Result<Tool> {
        let dirs: Vec<PathBuf> = match &self.dir {
            Some(d) => vec![d.clone()],
            None => std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect())
                .unwrap_or_default(),
        };
        let found = names
            .iter()
            .flat_map(|name| dirs.iter().map(move |d| d.join(name)))
            .find(|p| is_executable(p));
        let Some(path) = found else {
            return Err(Error::ToolNotFound {
                tool: names.join(" or "),
                hint: match &self.dir {
                    Some(d) => format!("not in {}", d.display()),
                    None => "install the MariaDB or MySQL client (Debian: apt-get install mariadb-client)".into(),
                },
            });
        };
        let out = cleared_command(&path)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| Error::io(format!("running {} --version", path.display()), e))?;
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || version.is_empty() {
            return Err(Error::ToolNotFound {
                tool: path.display().to_string(),
                hint: format!("`--version` failed ({})", out.status),
            });
        }
        Ok(Tool { path, version })
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The connection's option file in memory: it lives as long as the
/// command it was passed to needs it (until the child started).
#[derive(Debug)]
pub(crate) struct OptionFile(#[allow(dead_code)] SecretFile);

/// A command for `tool` from a cleared environment plus the allow-list,
/// with `--defaults-extra-file=/dev/fd/3` as its first argument (the
/// tools take it only there): the credentials reach it in an in-memory
/// `0600` file only this child inherits, never argv or the environment.
/// The option file must live until the child has started.
pub(crate) fn command(tool: &Path, conn: &MysqlConnection) -> Result<(Command, OptionFile)> {
    let file = SecretFile::new("mysql-options", conn.option_file()?.as_bytes())?;
    let mut cmd = cleared_command(tool);
    let path = file.pass_to(&mut cmd, OPTIONS_FD)?;
    cmd.arg(format!("--defaults-extra-file={}", path.display()));
    Ok((cmd, OptionFile(file)))
}

/// Drains a child's stderr concurrently, keeping the last
/// [`STDERR_KEEP`] bytes.
pub(crate) fn drain_stderr(
    stderr: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> tokio::task::JoinHandle<String> {
    backup_core::child::drain_stderr(stderr, STDERR_KEEP)
}

/// Which side failed, for [`classify`] (shared with every engine).
pub(crate) use backup_core::Side;

/// `message` without the password, in case a tool ever echoes it.
pub(crate) fn redact(message: &str, conn: &MysqlConnection) -> String {
    match conn.password() {
        Some(p) if !p.is_empty() => message.replace(p.expose(), "***"),
        _ => message.to_string(),
    }
}

/// Turns a failed tool's stderr into the most specific error: access
/// denied at login ([`Error::Authentication`]), an unknown database
/// ([`Error::DatabaseMissing`]), a server that cannot be reached or went
/// away ([`Error::Connection`]), else [`Error::Dump`] or
/// [`Error::Restore`] with the end of the message.
pub(crate) fn classify(side: Side, stderr: &str, status: &str, conn: &MysqlConnection) -> Error {
    let text = redact(stderr, conn);
    let lower = text.to_ascii_lowercase();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(6)..].join(" | ");
    let detail = if tail.is_empty() {
        status.to_string()
    } else {
        format!("{status}: {tail}")
    };
    if lower.contains("access denied for user") && !lower.contains("to database") {
        return Error::Authentication {
            engine: ENGINE,
            detail,
        };
    }
    if let Some(database) = unknown_database(&text) {
        return Error::DatabaseMissing {
            engine: ENGINE,
            database,
        };
    }
    if [
        "can't connect",
        "lost connection",
        "server has gone away",
        "unknown server host",
        "unknown mysql server host",
        "connection refused",
        "connection was killed",
    ]
    .iter()
    .any(|s| lower.contains(s))
    {
        return Error::Connection {
            engine: ENGINE,
            detail,
        };
    }
    side.error(ENGINE, detail)
}

/// The name in `Unknown database 'NAME'`.
fn unknown_database(text: &str) -> Option<String> {
    const NEEDLE: &str = "Unknown database '";
    let start = text.find(NEEDLE)? + NEEDLE.len();
    let rest = &text[start..];
    Some(rest[..rest.rfind('\'')?].to_string()).filter(|_| !rest.is_empty())
}

/// Runs `sql` with the command-line client in `database` (none: no
/// default database) and returns its rows, tab-separated columns with
/// the client's batch escapes undone (`NULL` as `None`).
pub(crate) async fn run_sql(
    tools: &MysqlTools,
    conn: &MysqlConnection,
    database: Option<&str>,
    sql: &str,
    side: Side,
) -> Result<Vec<Vec<Option<String>>>> {
    let out = run_sql_raw(tools, conn, database, sql, side).await?;
    let text = String::from_utf8(out).map_err(|_| Error::Restore {
        engine: ENGINE,
        detail: "the mysql client answered with bytes that are not UTF-8".into(),
    })?;
    Ok(text
        .lines()
        .map(|line| line.split('\t').map(unescape).collect())
        .collect())
}

/// [`run_sql`]'s output as the client printed it (batch mode, escaped).
pub(crate) async fn run_sql_raw(
    tools: &MysqlTools,
    conn: &MysqlConnection,
    database: Option<&str>,
    sql: &str,
    side: Side,
) -> Result<Vec<u8>> {
    let client = tools.client().await?;
    let (mut cmd, _options) = command(&client.path, conn)?;
    cmd.args([
        "--batch",
        "--skip-column-names",
        "--default-character-set=utf8mb4",
        "--binary-mode",
    ]);
    if let Some(db) = database {
        cmd.arg(format!("--database={db}"));
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("starting {}", client.path.display()), e))?;
    let stderr = drain_stderr(child.stderr.take().expect("stderr is piped"));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = sql.as_bytes().to_vec();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
        let _ = stdin.shutdown().await;
    });
    let mut out = Vec::new();
    let stdout = child.stdout.take().expect("stdout is piped");
    let read = stdout
        .take(MAX_SQL_OUTPUT as u64 + 1)
        .read_to_end(&mut out)
        .await;
    let status = child
        .wait()
        .await
        .map_err(|e| Error::io("waiting for the mysql client", e))?;
    let _ = writer.await;
    let stderr = stderr.await.unwrap_or_default();
    if !status.success() {
        return Err(classify(
            side,
            &stderr,
            &format!("mysql client {status}"),
            conn,
        ));
    }
    read.map_err(|e| Error::io("reading the mysql client's output", e))?;
    if out.len() > MAX_SQL_OUTPUT {
        return Err(Error::TooLarge {
            what: "a MySQL catalog answer".into(),
            size: out.len() as u64,
            limit: MAX_SQL_OUTPUT as u64,
        });
    }
    Ok(out)
}

/// One batch-mode column: `NULL` is `None`; `\n`, `\t`, `\0`, `\\` undone.
fn unescape(field: &str) -> Option<String> {
    if field == "NULL" {
        return None;
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('0') => out.push('\0'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Some(out)
}

/// `name` as a backquoted identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `value` as a single-quoted string literal (backslashes escaped too, as
/// the default `sql_mode` reads them).
pub(crate) fn quote_literal(value: &str) -> String {
    format!(
        "'{}'",
        value
            .replace('\\', "\\\\")
            .replace('\'', "''")
            .replace('\0', "\\0")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_classified() {
        let conn = MysqlConnection::from_url("mysql://u:hunter22@h/db").unwrap();
        let e = classify(
            Side::Dump,
            "mariadb-dump: Got error: 1045: \"Access denied for user 'u'@'localhost' (using password: YES)\" when trying to connect",
            "exit 2",
            &conn,
        );
        assert!(matches!(e, Error::Authentication { .. }), "{e:?}");
        let e = classify(
            Side::Dump,
            "ERROR 1049 (42000): Unknown database 'nope'",
            "exit 1",
            &conn,
        );
        assert!(
            matches!(&e, Error::DatabaseMissing { database, .. } if database == "nope"),
            "{e:?}"
        );
        let e = classify(
            Side::Restore,
            "ERROR 2003 (HY000): Can't connect to server on '127.0.0.1' (111) hunter22",
            "exit 1",
            &conn,
        );
        assert!(matches!(e, Error::Connection { .. }), "{e:?}");
        assert!(!e.to_string().contains("hunter22"));
    }

    #[test]
    fn batch_fields_are_unescaped() {
        assert_eq!(unescape("NULL"), None);
        assert_eq!(unescape(r"a\nb\tc\\d").as_deref(), Some("a\nb\tc\\d"));
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(quote_literal("it's\\"), "'it''s\\\\'");
    }
}
