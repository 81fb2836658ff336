//! [`Method::Tools`]: `mongodump --archive` / `mongorestore --archive` as
//! child processes, with credentials in an in-memory `--config` file.

use std::fmt;
use std::path::PathBuf;
use std::process::Stdio;

use async_trait::async_trait;
use backup_core::child::{SecretFile, cleared_command};
use backup_core::{DumpStream, Error, RestoreReport, RestoreSession, Result, Versions};
use bytes::Bytes;
use bytes::BytesMut;
use futures::StreamExt;
use futures::stream::BoxStream;
use mongodb::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::MongoConnection;
use crate::archive::{ArchiveReader, Event};
use crate::dump::{DEFAULT_QUEUE_DEPTH, Message, ProducerStream};
use crate::restore::promote::{Cleanup, PromoteError, promote};
use crate::restore::{Selection, SessionPlan, integrity_error, prepare_target, select};
use crate::server::ServerInfo;

/// How a [`crate::MongoSource`] dumps and a [`crate::MongoTarget`]
/// restores.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum Method {
    /// Natively, through the official driver (no external tools).
    #[default]
    Driver,
    /// With MongoDB's Database Tools, `mongodump --archive` and
    /// `mongorestore --archive`, streamed through stdout / stdin.
    Tools(MongoTools),
}

/// Where to find `mongodump` and `mongorestore`, for [`Method::Tools`].
///
/// The tools start from a cleared environment plus an allow-list
/// ([`backup_core::child`]). The connection string and any explicit
/// password reach them only through a `--config` YAML file that exists in
/// memory alone (a sealed 0600 `memfd` the one tool inherits as
/// `/dev/fd/3`); never their command line, their environment or a file a
/// crash could leave behind. A restore still goes through the staging database (or
/// not) as [`crate::RestoreStrategy`] says, with `--nsFrom`/`--nsTo`
/// mapping the archive's database onto it, and the archive is read by
/// this crate's own parser on the way, so CRC mismatches and truncation
/// are caught even though the tool does the inserts.
#[derive(Debug, Clone, Default)]
pub struct MongoTools {
    bin_dir: Option<PathBuf>,
}

/// A located tool.
#[derive(Debug, Clone)]
pub struct Tool {
    /// Full path.
    pub path: PathBuf,
    /// First line of `--version`, e.g. `mongodump version: 100.10.0`.
    pub version: String,
}

impl MongoTools {
    /// Tools found on `$PATH`.
    pub fn from_path() -> Self {
        MongoTools { bin_dir: None }
    }

    /// Tools in `dir`.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        MongoTools {
            bin_dir: Some(dir.into()),
        }
    }

    /// Finds `name` (`mongodump`, `mongorestore`) and reads its version.
    pub async fn locate(&self, name: &str) -> Result<Tool> {
        let path = match &self.bin_dir {
            Some(dir) => Some(dir.join(name)).filter(|p| p.is_file()),
            None => std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            }),
        };
        let Some(path) = path else {
            return Err(Error::ToolNotFound {
                tool: name.to_string(),
                hint: format!(
                    "install the MongoDB Database Tools (mongodump/mongorestore 100.x){}, or use Method::Driver",
                    self.bin_dir
                        .as_ref()
                        .map(|d| format!(" into {}", d.display()))
                        .unwrap_or_else(|| " on PATH".to_string())
                ),
            });
        };
        let out = cleared_command(&path)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| Error::io(format!("running {} --version", path.display()), e))?;
        let version = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or(name)
            .trim()
            .to_string();
        Ok(Tool { path, version })
    }

    pub(crate) async fn dump(
        &self,
        client: &Client,
        conn: &MongoConnection,
        database: &str,
        only: &[String],
        server: &ServerInfo,
    ) -> Result<DumpStream> {
        let tool = self.locate("mongodump").await?;
        let config = ConfigFile::create(conn)?;
        let mut cmd = cleared_command(&tool.path);
        let path = config.pass_to(&mut cmd)?;
        cmd.arg(format!("--config={}", path.display()))
            .args(config.args())
            .arg("--archive")
            .arg(format!("--db={database}"));
        match only {
            [] => {}
            [one] => {
                cmd.arg(format!("--collection={one}"));
            }
            several => {
                // mongodump takes one --collection; exclude the others.
                let listed = crate::server::list_collections(
                    &client.database(database),
                    conn,
                    crate::error::Side::Dump,
                )
                .await?;
                for name in listed.iter().filter_map(|c| c.get_str("name").ok()) {
                    if !several.iter().any(|s| s == name) {
                        cmd.arg(format!("--excludeCollection={name}"));
                    }
                }
            }
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("starting {}", tool.path.display()), e))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = drain(child.stderr.take().expect("stderr is piped"));
        let (tx, rx) = mpsc::channel(DEFAULT_QUEUE_DEPTH);
        let conn = conn.clone();
        drop(config);
        let task = tokio::spawn(async move {
            let mut reader = chunks(stdout);
            while let Some(chunk) = reader.next().await {
                match chunk {
                    Ok(bytes) => {
                        if tx.send(Message::Data(bytes)).await.is_err() {
                            return; // dropped: the child is killed on drop
                        }
                    }
                    Err(e) => {
                        let _ = child.start_kill();
                        let _ = tx
                            .send(Message::Failed(Error::Dump {
                                engine: "mongodb",
                                detail: format!("reading mongodump output: {e}"),
                            }))
                            .await;
                        return;
                    }
                }
            }
            let status = child.wait().await;
            let stderr = stderr.await.unwrap_or_default();
            let message = match status {
                Ok(s) if s.success() => Message::Done,
                Ok(s) => Message::Failed(Error::Dump {
                    engine: "mongodb",
                    detail: format!("mongodump {s}: {}", last_lines(&conn.redact(&stderr))),
                }),
                Err(e) => Message::Failed(Error::io("waiting for mongodump", e)),
            };
            let _ = tx.send(message).await;
        });
        Ok(DumpStream {
            stream: Box::pin(ProducerStream {
                rx,
                task,
                done: false,
            }),
            versions: Versions {
                tool: Some(tool.version),
                server: Some(server.version.clone()),
            },
        })
    }

    pub(crate) async fn begin_restore(&self, plan: SessionPlan) -> Result<Box<dyn RestoreSession>> {
        let tool = self.locate("mongorestore").await?;
        let config = ConfigFile::create(&plan.conn)?;
        let cleanup = match &plan.staging {
            Some(staging) => Cleanup::DropDatabase(staging.clone()),
            None => Cleanup::DropCollections(plan.target.clone(), Vec::new()),
        };
        Ok(Box::new(ToolsSession {
            plan,
            tool,
            config,
            reader: ArchiveReader::new(),
            pending: Vec::new(),
            selection: None,
            child: None,
            stdin: None,
            stderr: None,
            cleanup: Some(cleanup),
            failed: false,
        }))
    }
}

/// Reads a child's stdout in chunks of up to 256 KiB.
fn chunks(stdout: ChildStdout) -> BoxStream<'static, std::io::Result<Bytes>> {
    futures::stream::unfold(Some(stdout), |state| async move {
        let mut stdout = state?;
        let mut buf = BytesMut::with_capacity(256 * 1024);
        match stdout.read_buf(&mut buf).await {
            Ok(0) => None,
            Ok(_) => Some((Ok(buf.freeze()), Some(stdout))),
            Err(e) => Some((Err(e), None)),
        }
    })
    .boxed()
}

/// Collects a child's stderr concurrently (so it never blocks on a full
/// pipe).
fn drain(mut stderr: ChildStderr) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text).await;
        String::from_utf8_lossy(&text).into_owned()
    })
}

/// The last few lines of a tool's stderr, for an error message.
fn last_lines(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(5);
    lines[start..].join(" | ")
}

/// Escapes `*` and `\` for a mongorestore namespace pattern.
fn ns_pattern(name: &str) -> String {
    name.replace('\\', "\\\\").replace('*', "\\*")
}

/// A YAML string literal (double-quoted, escaped).
fn yaml_string(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The connection string handed to a tool: the database path removed
/// (the tools take `--db` / `--nsTo`), keeping the authentication
/// database it implied, and the user-info removed when explicit
/// credentials replace it.
fn tool_uri(conn: &MongoConnection) -> String {
    let uri = conn.uri().expose();
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (mut authority, tail) = rest.split_at(end);
    if conn.explicit_password().is_some()
        && let Some((_, hosts)) = authority.rsplit_once('@')
    {
        authority = hosts;
    }
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, q),
        None => (tail, ""),
    };
    let path_db = path.trim_start_matches('/');
    let mut params: Vec<String> = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(str::to_string)
        .collect();
    let has_auth_source = params
        .iter()
        .any(|kv| kv.to_ascii_lowercase().starts_with("authsource="));
    if let Some(source) = conn.auth_source().filter(|_| !has_auth_source) {
        params.push(format!("authSource={source}"));
    } else if !path_db.is_empty() && !has_auth_source {
        params.push(format!("authSource={path_db}"));
    }
    if params.is_empty() {
        format!("{scheme}://{authority}/")
    } else {
        format!("{scheme}://{authority}/?{}", params.join("&"))
    }
}

/// The file descriptor a tool reads its `--config` from (`/dev/fd/3`).
const CONFIG_FD: i32 = 3;

/// A YAML `--config` with `uri` (and `password`) for a tool, in memory
/// only ([`SecretFile`]).
struct ConfigFile {
    file: SecretFile,
    username: Option<String>,
}

impl ConfigFile {
    fn create(conn: &MongoConnection) -> Result<Self> {
        let mut text = format!("uri: {}\n", yaml_string(&tool_uri(conn)));
        let explicit = conn.explicit_password();
        if let Some(password) = explicit {
            text.push_str(&format!("password: {}\n", yaml_string(password.expose())));
        }
        Ok(ConfigFile {
            file: SecretFile::new("mongo-tool-config", text.as_bytes())?,
            username: explicit.and(conn.username().map(str::to_string)),
        })
    }

    /// Hands the file to the child `cmd` starts; returns its path there.
    fn pass_to(&self, cmd: &mut tokio::process::Command) -> Result<PathBuf> {
        self.file.pass_to(cmd, CONFIG_FD)
    }

    /// Arguments besides `--config` (the user name is not a secret).
    fn args(&self) -> Vec<String> {
        self.username
            .iter()
            .map(|u| format!("--username={u}"))
            .collect()
    }
}

impl fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigFile")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A restore through `mongorestore --archive`, started once the prelude
/// has named the archive's database.
struct ToolsSession {
    plan: SessionPlan,
    tool: Tool,
    config: ConfigFile,
    reader: ArchiveReader,
    /// Bytes received before mongorestore was started.
    pending: Vec<u8>,
    selection: Option<Selection>,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    stderr: Option<JoinHandle<String>>,
    cleanup: Option<Cleanup>,
    failed: bool,
}

impl fmt::Debug for ToolsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolsSession")
            .field("tool", &self.tool.path)
            .field("target", &self.plan.target)
            .field("staging", &self.plan.staging)
            .finish_non_exhaustive()
    }
}

impl ToolsSession {
    async fn start(&mut self, selection: Selection) -> Result<()> {
        let selected: Vec<String> = selection
            .items
            .iter()
            .filter(|i| i.selected)
            .map(|i| i.name.clone())
            .collect();
        let target = self.plan.target.clone();
        prepare_target(&self.plan.client, &self.plan, &target, &selected).await?;
        if let Some(Cleanup::DropCollections(_, names)) = &mut self.cleanup {
            names.extend(selected.iter().cloned());
        }
        let src = ns_pattern(&selection.source_db);
        let mut cmd = cleared_command(&self.tool.path);
        let config = self.config.pass_to(&mut cmd)?;
        cmd.arg(format!("--config={}", config.display()))
            .args(self.config.args())
            .arg("--archive")
            .arg(format!("--nsFrom={src}.*"))
            .arg(format!("--nsTo={}.*", ns_pattern(self.plan.data_db())))
            .arg("--bypassDocumentValidation");
        if !self.plan.only.is_empty() {
            for name in &selected {
                cmd.arg(format!("--nsInclude={src}.{}", ns_pattern(name)));
            }
        }
        if self.plan.staging.is_none() && self.plan.clean {
            cmd.arg("--drop");
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("starting {}", self.tool.path.display()), e))?;
        self.stdin = child.stdin.take();
        self.stderr = Some(drain(child.stderr.take().expect("stderr is piped")));
        self.child = Some(child);
        self.selection = Some(selection);
        Ok(())
    }

    async fn feed(&mut self, data: &[u8]) -> Result<()> {
        self.reader.feed(data);
        if self.child.is_none() {
            self.pending.extend_from_slice(data);
        }
        loop {
            match self.reader.next_event() {
                Ok(Some(Event::Prelude(prelude))) => {
                    let selection = select(&self.plan, &prelude)?;
                    self.start(selection).await?;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Err(integrity_error(e, &self.plan)),
            }
        }
        if self.child.is_some() {
            let bytes = if self.pending.is_empty() {
                data.to_vec()
            } else {
                std::mem::take(&mut self.pending)
            };
            self.send(&bytes).await?;
        }
        Ok(())
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(Error::Cancelled);
        };
        if let Err(e) = stdin.write_all(bytes).await {
            self.stdin = None;
            return Err(match self.wait().await {
                Err(tool) => tool,
                Ok(()) => Error::Restore {
                    engine: "mongodb",
                    detail: format!("mongorestore stopped reading its input: {e}"),
                },
            });
        }
        Ok(())
    }

    async fn wait(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        let status = child
            .wait()
            .await
            .map_err(|e| Error::io("waiting for mongorestore", e))?;
        let stderr = match self.stderr.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => String::new(),
        };
        if status.success() {
            return Ok(());
        }
        Err(Error::Restore {
            engine: "mongodb",
            detail: format!(
                "mongorestore {status}: {}",
                last_lines(&self.plan.conn.redact(&stderr))
            ),
        })
    }

    async fn finish(&mut self) -> std::result::Result<RestoreReport, PromoteError> {
        if let Err(e) = self.reader.finish() {
            return Err(PromoteError::NothingMoved(integrity_error(e, &self.plan)));
        }
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.shutdown().await;
        }
        self.wait().await.map_err(PromoteError::NothingMoved)?;
        if let (Some(staging), Some(selection)) = (&self.plan.staging, &self.selection) {
            promote(
                &self.plan.client,
                &self.plan.conn,
                staging,
                self.plan.token.as_deref().unwrap_or_default(),
                &self.plan.target,
                self.plan.clean,
                &selection.staged_items(),
            )
            .await?;
        }
        Ok(RestoreReport {
            database: self.plan.target.clone(),
            warnings: Vec::new(),
        })
    }

    async fn undo(&mut self) {
        // Kill before closing stdin: mongorestore must not see a clean end
        // of input.
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        self.stdin = None;
        if let Some(task) = self.stderr.take() {
            task.abort();
        }
        if let Some(cleanup) = self.cleanup.take() {
            cleanup.run(&self.plan.client).await;
        }
    }
}

#[async_trait]
impl RestoreSession for ToolsSession {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        if self.failed {
            return Err(Error::Cancelled);
        }
        let result = self.feed(&data).await;
        self.failed = result.is_err();
        result
    }

    async fn commit(mut self: Box<Self>) -> Result<RestoreReport> {
        match self.finish().await {
            Ok(report) => {
                self.cleanup = None;
                Ok(report)
            }
            Err(PromoteError::Partial(e)) => {
                self.cleanup = None;
                Err(e)
            }
            Err(failure) => {
                self.undo().await;
                Err(failure.into_error())
            }
        }
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.undo().await;
        Ok(())
    }
}

impl Drop for ToolsSession {
    fn drop(&mut self) {
        if let Some(cleanup) = self.cleanup.take() {
            if let Some(child) = self.child.as_mut() {
                let _ = child.start_kill();
            }
            let client = self.plan.client.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move { cleanup.run(&client).await });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_core::Secret;

    #[test]
    fn yaml_strings_are_quoted_and_escaped() {
        assert_eq!(yaml_string(r#"a"b\c: d"#), r#""a\"b\\c: d""#);
        assert_eq!(yaml_string("x\ny"), r#""x\x0ay""#);
    }

    #[test]
    fn tool_uris_drop_the_database_but_keep_its_auth_source() {
        let conn = MongoConnection::from_uri("mongodb://u:p@h1,h2/sales?replicaSet=rs").unwrap();
        assert_eq!(
            tool_uri(&conn),
            "mongodb://u:p@h1,h2/?replicaSet=rs&authSource=sales"
        );
        let conn = MongoConnection::from_uri("mongodb://h/?authSource=admin").unwrap();
        assert_eq!(tool_uri(&conn), "mongodb://h/?authSource=admin");
        let conn = MongoConnection::from_uri("mongodb://old:pw@h/db")
            .unwrap()
            .with_credentials("new", Secret::new("s3cret"));
        assert_eq!(tool_uri(&conn), "mongodb://h/?authSource=db");
    }

    #[tokio::test]
    async fn config_file_is_private_in_memory_and_holds_the_secrets() {
        let conn = MongoConnection::from_uri("mongodb://h/db")
            .unwrap()
            .with_credentials("backup", Secret::new("pa\"ss"));
        let config = ConfigFile::create(&conn).unwrap();
        let mut cmd = cleared_command("sh");
        let path = config.pass_to(&mut cmd).unwrap();
        cmd.arg("-c").arg(format!(
            "stat -L -c %a {0}; readlink {0}; cat {0}",
            path.display()
        ));
        let out = cmd.output().await.unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("600"));
        assert!(lines.next().unwrap().starts_with("/memfd:"), "{text}");
        assert!(text.contains(r#"password: "pa\"ss""#), "{text}");
        assert_eq!(config.args(), ["--username=backup"]);
        assert!(!format!("{config:?}").contains("pa\"ss"));
    }

    #[test]
    fn namespace_patterns_are_escaped() {
        assert_eq!(ns_pattern(r"a*b\c"), r"a\*b\\c");
    }
}
