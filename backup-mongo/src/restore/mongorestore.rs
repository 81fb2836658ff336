//! [`Method::Tools`](crate::Method::Tools) restores: `mongorestore
//! --archive` as a child process, fed through this crate's archive parser
//! (so CRC mismatches and truncation are caught), into the staging
//! database or the target as the plan says.

use std::fmt;
use std::process::Stdio;

use async_trait::async_trait;
use backup_core::child::cleared_command;
use backup_core::{Error, Result, source::RestoreReport, source::RestoreSession};
use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin};
use tokio::task::JoinHandle;

use super::promote::{Cleanup, PromoteError, promote};
use super::{Selection, SessionPlan, integrity_error, prepare_target, select};
use crate::archive::{ArchiveEvent, ArchiveReader};
use crate::tools::{ConfigFile, MongoTools, Tool, drain, last_lines};

/// Starts a restore session through `mongorestore`.
pub(super) async fn begin(
    tools: &MongoTools,
    plan: SessionPlan,
) -> Result<Box<dyn RestoreSession>> {
    let tool = tools.locate("mongorestore").await?;
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

/// Escapes `*` and `\` for a mongorestore namespace pattern.
fn ns_pattern(name: &str) -> String {
    name.replace('\\', "\\\\").replace('*', "\\*")
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
                Ok(Some(ArchiveEvent::Prelude(prelude))) => {
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

    #[test]
    fn namespace_patterns_are_escaped() {
        assert_eq!(ns_pattern(r"a*b\c"), r"a\*b\\c");
    }
}
