//! [`Method::Tools`]: where `mongodump` / `mongorestore` are, and what
//! both need to run them as child processes with credentials in an
//! in-memory `--config` file. The dump and the restore through them live
//! with the other dumps and restores (`dump/mongodump.rs`,
//! `restore/mongorestore.rs`).

use std::fmt;
use std::path::PathBuf;
use std::process::Stdio;

use backup_core::child::{SecretFile, cleared_command};
use backup_core::{Error, Result};
use bytes::Bytes;
use bytes::BytesMut;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::io::AsyncReadExt;
use tokio::process::{ChildStderr, ChildStdout};
use tokio::task::JoinHandle;

use crate::conn::MongoConnection;

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
}

/// Reads a child's stdout in chunks of up to 256 KiB.
pub(crate) fn chunks(stdout: ChildStdout) -> BoxStream<'static, std::io::Result<Bytes>> {
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
pub(crate) fn drain(mut stderr: ChildStderr) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text).await;
        String::from_utf8_lossy(&text).into_owned()
    })
}

/// The last few lines of a tool's stderr, for an error message.
pub(crate) fn last_lines(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(5);
    lines[start..].join(" | ")
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
pub(crate) struct ConfigFile {
    file: SecretFile,
    username: Option<String>,
}

impl ConfigFile {
    pub(crate) fn create(conn: &MongoConnection) -> Result<Self> {
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
    pub(crate) fn pass_to(&self, cmd: &mut tokio::process::Command) -> Result<PathBuf> {
        self.file.pass_to(cmd, CONFIG_FD)
    }

    /// Arguments besides `--config` (the user name is not a secret).
    pub(crate) fn args(&self) -> Vec<String> {
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
}
