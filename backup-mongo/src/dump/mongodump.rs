//! [`Method::Tools`](crate::Method::Tools) dumps: `mongodump --archive`
//! as a child process, its stdout streamed as the dump.

use std::process::Stdio;

use backup_core::child::cleared_command;
use backup_core::{Error, Result, source::DumpStream, source::Versions};
use futures::StreamExt;
use mongodb::Client;
use tokio::sync::mpsc;

use super::{DEFAULT_QUEUE_DEPTH, Message, ProducerStream};
use crate::conn::MongoConnection;
use crate::server::{ServerInfo, list_collections};
use crate::tools::{ConfigFile, MongoTools, chunks, drain, last_lines};
use backup_core::Side;

/// Starts `mongodump --archive` of `database` (only the collections in
/// `only` when it is not empty).
pub(super) async fn dump(
    tools: &MongoTools,
    client: &Client,
    conn: &MongoConnection,
    database: &str,
    only: &[String],
    server: &ServerInfo,
) -> Result<DumpStream> {
    let tool = tools.locate("mongodump").await?;
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
            let listed = list_collections(&client.database(database), conn, Side::Dump).await?;
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
    Ok(DumpStream::new(
        Box::pin(ProducerStream {
            rx,
            task,
            done: false,
        }),
        Versions {
            tool: Some(tool.version),
            server: Some(server.version.clone()),
        },
    ))
}
