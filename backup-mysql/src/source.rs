//! [`MysqlSource`]: `mariadb-dump`/`mysqldump` streamed from stdout.

use std::path::Path;
use std::process::Stdio;

use async_trait::async_trait;
use backup_core::fingerprint::Fingerprint;
use backup_core::source::{DumpOptions, DumpSource, DumpStream, SourceInfo, Versions};
use backup_core::store::ByteStream;
use backup_core::{Error, Result};
use futures::StreamExt;
use tokio::process::Child;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::io::ReaderStream;

use crate::client::{ENGINE, MysqlTools, Side, classify, command, drain_stderr, run_sql};
use crate::conn::MysqlConnection;
use crate::fingerprint::DumpScanner;

/// The dump format in manifests: a logical SQL script as `mariadb-dump`
/// or `mysqldump` writes it for one database (no `CREATE DATABASE`/`USE`,
/// so it restores into any database name).
pub const FORMAT: &str = "mysqldump";

/// The flags every dump runs with (recorded in the manifest as
/// `mysql.flags`): one consistent InnoDB snapshot
/// (`--single-transaction`, no table locks), rows streamed row by row
/// (`--quick`), stored procedures and functions, triggers and events,
/// binary columns as hex literals (so the script is plain UTF-8 text),
/// the connection in `utf8mb4`, and no tablespace statements (they need
/// the `PROCESS` privilege and do not belong in a per-database dump).
pub const DUMP_FLAGS: &[&str] = &[
    "--single-transaction",
    "--quick",
    "--routines",
    "--triggers",
    "--events",
    "--hex-blob",
    "--default-character-set=utf8mb4",
    "--no-tablespaces",
];

/// Size of reads from the dump tool's stdout.
const READ_CHUNK: usize = 256 * 1024;

/// Dumps one MySQL or MariaDB database with `mariadb-dump` (or
/// `mysqldump`) and [`DUMP_FLAGS`], streamed from the tool's stdout.
///
/// Before the dump a preflight with the command-line client connects and
/// asks the server's version, so a missing tool, a server that cannot be
/// reached, rejected credentials and a missing database each fail
/// [`DumpSource::dump`] with their own error
/// ([`Error::ToolNotFound`], [`Error::Connection`],
/// [`Error::Authentication`], [`Error::DatabaseMissing`]) before any byte.
/// MySQL's `mysqldump` is refused against a MariaDB server and against a
/// MySQL server of a newer major version (they dump what they do not
/// know wrongly); MariaDB's tool is taken for both.
///
/// Credentials reach the tools only through an option file in memory
/// (`--defaults-extra-file=/dev/fd/3`, mode `0600`, the first argument),
/// never argv, the environment or disk; the tools start from a cleared
/// environment plus [`backup_core::child::ENV_ALLOW_LIST`]. Their stderr
/// is drained concurrently (its end kept for errors) and the exit status
/// checked before the stream ends, so a dump that fails midway ends with
/// an error and is never committed.
///
/// The manifest records engine `mysql`, format [`FORMAT`], the tool's and
/// server's versions, and in its details (`mysql.*`) the flags, the tool,
/// the server and the tables asked for; unless
/// [`DumpOptions::skip_fingerprint`], also a content fingerprint counted
/// from the script as it streams (rows and an order-independent checksum
/// per table, see [`MysqlDrill`](crate::MysqlDrill)), for restore drills.
#[derive(Debug, Clone)]
pub struct MysqlSource {
    conn: MysqlConnection,
    tools: MysqlTools,
}

impl MysqlSource {
    /// A source dumping `conn.database()`.
    pub fn new(conn: MysqlConnection) -> Self {
        MysqlSource {
            conn,
            tools: MysqlTools::auto(),
        }
    }

    /// Chooses where the tools come from.
    pub fn with_tools(mut self, tools: MysqlTools) -> Self {
        self.tools = tools;
        self
    }

    /// The connection parameters (password hidden in `Debug`).
    pub fn connection(&self) -> &MysqlConnection {
        &self.conn
    }
}

/// What the preflight learned about the server.
#[derive(Debug, Clone)]
pub(crate) struct ServerInfo {
    /// `SELECT VERSION()`, e.g. `10.11.6-MariaDB-0+deb12u1`.
    pub(crate) version: String,
    /// `@@version_comment`, e.g. `Debian 12`.
    pub(crate) comment: String,
}

impl ServerInfo {
    fn is_mariadb(&self) -> bool {
        self.version.contains("MariaDB") || self.comment.contains("MariaDB")
    }
}

/// Connects to `conn.database()` and asks the server's version: a cheap
/// check that the server is reachable, the credentials work and the
/// database exists, each with its own error.
pub(crate) async fn preflight(
    tools: &MysqlTools,
    conn: &MysqlConnection,
    side: Side,
) -> Result<ServerInfo> {
    let rows = run_sql(
        tools,
        conn,
        Some(conn.database()),
        "SELECT VERSION(), @@version_comment",
        side,
    )
    .await?;
    match rows.first().map(Vec::as_slice) {
        Some([Some(version), comment]) => Ok(ServerInfo {
            version: version.clone(),
            comment: comment.clone().unwrap_or_default(),
        }),
        _ => Err(Error::Dump {
            engine: ENGINE,
            detail: format!("unexpected answer to SELECT VERSION(): {rows:?}"),
        }),
    }
}

/// The leading number of the first `N.N` in `text` after `after`.
fn major_after(text: &str, after: &str) -> Option<u32> {
    let rest = &text[text.find(after)? + after.len()..];
    let start = rest.find(|c: char| c.is_ascii_digit())?;
    let digits: String = rest[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Refuses a MySQL `mysqldump` for a MariaDB server or a newer MySQL.
fn check_pairing(tool: &str, server: &ServerInfo) -> Result<()> {
    if tool.contains("MariaDB") {
        return Ok(());
    }
    if server.is_mariadb() {
        return Err(Error::ToolTooOld {
            tool: "mysqldump".into(),
            found: tool.to_string(),
            server: server.version.clone(),
            hint: "MySQL's mysqldump does not dump MariaDB faithfully: install mariadb-client (mariadb-dump)".into(),
        });
    }
    let tool_major = major_after(tool, "Distrib").or_else(|| major_after(tool, "Ver"));
    let server_major = major_after(&server.version, "");
    match (tool_major, server_major) {
        (Some(t), Some(s)) if t < s => Err(Error::ToolTooOld {
            tool: "mysqldump".into(),
            found: tool.to_string(),
            server: server.version.clone(),
            hint: "install a mysqldump of the server's version or newer".into(),
        }),
        _ => Ok(()),
    }
}

#[async_trait]
impl DumpSource for MysqlSource {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            engine: ENGINE.into(),
            database: self.conn.database().to_string(),
            format: FORMAT.into(),
            extension: "sql".into(),
            // Newer tools start with a sandbox comment, older ones with
            // `-- MariaDB dump` / `-- MySQL dump`: no common signature.
            magic: None,
        }
    }

    async fn dump(&self, opts: &DumpOptions) -> Result<DumpStream> {
        if self.conn.database().is_empty() {
            return Err(Error::Config(
                "no MySQL database to dump: name one in the URL (mysql://USER@HOST/DATABASE)"
                    .into(),
            ));
        }
        let tool = self.tools.dump_tool().await?;
        let server = preflight(&self.tools, &self.conn, Side::Dump).await?;
        check_pairing(&tool.version, &server)?;
        let child = spawn_dump(&tool.path, &self.conn, &opts.only, None)?;
        tracing::debug!(tool = %tool.path.display(), database = %self.conn.database(), "mysql dump started");

        let mut details = backup_core::source::Details::new();
        details.insert("mysql.flags".into(), DUMP_FLAGS.join(" "));
        details.insert("mysql.tool".into(), tool.version.clone());
        details.insert(
            "mysql.server".into(),
            format!("{} ({})", server.version, server.comment),
        );
        if !opts.only.is_empty() {
            details.insert("mysql.tables".into(), opts.only.join(","));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = tx.send(details);
        let versions = Versions {
            tool: Some(tool.version),
            server: Some(server.version),
        };
        if opts.skip_fingerprint {
            return Ok(
                DumpStream::new(child_stream(child, &self.conn, None), versions).with_details(rx),
            );
        }
        let (fingerprint_tx, fingerprint_rx) = tokio::sync::oneshot::channel();
        let stream = child_stream(child, &self.conn, Some(fingerprint_tx));
        Ok(DumpStream::new(stream, versions)
            .with_details(rx)
            .with_fingerprint(fingerprint_rx))
    }
}

/// Starts the dump tool on `conn.database()` with [`DUMP_FLAGS`], its
/// stdout piped: the tables `only` (all when empty), without `ignore`.
fn spawn_dump(
    tool: &Path,
    conn: &MysqlConnection,
    only: &[String],
    ignore: Option<&str>,
) -> Result<Child> {
    let (mut cmd, options) = command(tool, conn)?;
    cmd.args(DUMP_FLAGS);
    if let Some(table) = ignore {
        cmd.arg(format!("--ignore-table={}.{table}", conn.database()));
    }
    cmd.arg("--").arg(conn.database()).args(only);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("starting {}", tool.display()), e))?;
    drop(options);
    Ok(child)
}

/// The fingerprint of `conn.database()` as a dump of it reads now (all
/// tables but `ignore`): what a drill compares with the one recorded at
/// dump time. Dumps with the same tool and flags as [`MysqlSource`],
/// reading the script and keeping nothing of it.
pub(crate) async fn fingerprint_of(
    tools: &MysqlTools,
    conn: &MysqlConnection,
    ignore: Option<&str>,
) -> Result<Fingerprint> {
    let tool = tools.dump_tool().await?;
    let child = spawn_dump(&tool.path, conn, &[], ignore)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut stream = child_stream(child, conn, Some(tx));
    while let Some(chunk) = stream.next().await {
        chunk?;
    }
    drop(stream);
    rx.await.map_err(|_| Error::Restore {
        engine: ENGINE,
        detail: "the dump of the restored database could not be fingerprinted (see the log)".into(),
    })
}

/// The dump tool's stdout as a stream that ends with an error, never
/// quietly, when reading fails or the tool exits unsuccessfully.
/// Dropping the stream kills the child (`kill_on_drop`).
///
/// With `fingerprint`, the script is read by a [`DumpScanner`] as it
/// passes, and the fingerprint sent once the tool exited successfully
/// (nothing is sent when the scanner could not read the script: the
/// backup is then recorded without one).
fn child_stream(
    mut child: Child,
    conn: &MysqlConnection,
    fingerprint: Option<oneshot::Sender<Fingerprint>>,
) -> ByteStream {
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = drain_stderr(child.stderr.take().expect("stderr is piped"));
    let state = Running {
        reader: ReaderStream::with_capacity(stdout, READ_CHUNK),
        child,
        stderr: Some(stderr),
        conn: conn.clone(),
        scanner: fingerprint.map(Scanning::start),
    };
    futures::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        match state.reader.next().await {
            Some(Ok(bytes)) => {
                if let Some(scanning) = &state.scanner
                    && scanning.chunks.send(bytes.clone()).await.is_err()
                {
                    tracing::warn!("the dump scanner stopped early; no content fingerprint");
                }
                Some((Ok(bytes), Some(state)))
            }
            Some(Err(e)) => {
                let _ = state.child.start_kill();
                let err = Error::Dump {
                    engine: ENGINE,
                    detail: format!("reading the dump tool's output: {e}"),
                };
                Some((Err(err), None))
            }
            None => state.finish().await.err().map(|e| (Err(e), None)),
        }
    })
    .boxed()
}

/// A running dump tool. Dropping it kills the child (`kill_on_drop`).
struct Running {
    reader: ReaderStream<tokio::process::ChildStdout>,
    child: Child,
    stderr: Option<JoinHandle<String>>,
    conn: MysqlConnection,
    scanner: Option<Scanning>,
}

/// A [`DumpScanner`] on a blocking thread of its own, fed the chunks as
/// they pass (cheap `Bytes` clones, at most [`SCAN_QUEUE`] waiting), so
/// its work overlaps compression and upload instead of adding to them.
struct Scanning {
    chunks: tokio::sync::mpsc::Sender<bytes::Bytes>,
    scanner: JoinHandle<DumpScanner>,
    fingerprint: oneshot::Sender<Fingerprint>,
}

/// Chunks waiting for the scanner (of [`READ_CHUNK`] bytes at most).
const SCAN_QUEUE: usize = 16;

impl Scanning {
    fn start(fingerprint: oneshot::Sender<Fingerprint>) -> Scanning {
        let (chunks, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(SCAN_QUEUE);
        let scanner = tokio::task::spawn_blocking(move || {
            let mut scanner = DumpScanner::new();
            while let Some(chunk) = rx.blocking_recv() {
                scanner.feed(&chunk);
            }
            scanner
        });
        Scanning {
            chunks,
            scanner,
            fingerprint,
        }
    }

    /// After the whole script passed: its fingerprint, sent when the
    /// scanner could read it.
    async fn finish(self) {
        drop(self.chunks);
        match self.scanner.await.map(DumpScanner::finish) {
            Ok(Ok(fingerprint)) => {
                let _ = self.fingerprint.send(fingerprint);
            }
            Ok(Err(why)) => {
                tracing::warn!(%why, "no content fingerprint: the dump script could not be read");
            }
            Err(e) => {
                tracing::warn!(error = %e, "no content fingerprint: the dump scanner failed");
            }
        }
    }
}

impl Running {
    /// After stdout ended: the exit status decides whether the output is good.
    async fn finish(&mut self) -> Result<()> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| Error::io("waiting for the dump tool", e))?;
        let stderr = match self.stderr.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => String::new(),
        };
        if status.success() {
            if !stderr.is_empty() {
                tracing::warn!(stderr = %crate::client::redact(&stderr, &self.conn), "mysql dump succeeded with messages");
            }
            if let Some(scanning) = self.scanner.take() {
                scanning.finish().await;
            }
            return Ok(());
        }
        Err(classify(
            Side::Dump,
            &stderr,
            &format!("dump tool {status}"),
            &self.conn,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysqldump_is_paired_with_its_servers_only() {
        let maria = ServerInfo {
            version: "10.11.6-MariaDB-0+deb12u1".into(),
            comment: "Debian 12".into(),
        };
        let mysql8 = ServerInfo {
            version: "8.0.36".into(),
            comment: "MySQL Community Server - GPL".into(),
        };
        let mariadb_dump = "mariadb-dump  Ver 10.19 Distrib 10.11.6-MariaDB, for debian-linux-gnu";
        let mysqldump57 = "mysqldump  Ver 10.13 Distrib 5.7.44, for Linux (x86_64)";
        let mysqldump8 = "mysqldump  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)";
        assert!(check_pairing(mariadb_dump, &maria).is_ok());
        assert!(check_pairing(mariadb_dump, &mysql8).is_ok());
        assert!(check_pairing(mysqldump8, &maria).is_err());
        assert!(check_pairing(mysqldump57, &mysql8).is_err());
        assert!(check_pairing(mysqldump8, &mysql8).is_ok());
    }
}
