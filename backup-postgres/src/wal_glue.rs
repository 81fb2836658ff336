//! [`WalArchive`] as the streaming archiver's sink
//! ([`SegmentSink`]) and as point-in-time recovery's source
//! ([`WalSource`]): one archive written by `pg_receivewal` or
//! `archive_command`, read by a restore.

use std::path::Path;

use async_trait::async_trait;
use backup_core::{Error, Result};

use crate::archiver::{SegmentSink, SinkOutcome};
use crate::recovery::WalSource;
use crate::wal::{PushOutcome, WalArchive, WalFileKind, WalFileName};

#[async_trait]
impl SegmentSink for WalArchive {
    async fn push(&self, name: &str, path: &Path) -> Result<SinkOutcome> {
        if path.file_name().and_then(|n| n.to_str()) != Some(name) {
            return Err(Error::Config(format!(
                "{} is not the WAL file {name}",
                path.display()
            )));
        }
        match WalArchive::push(self, path).await? {
            PushOutcome::Archived(_) => Ok(SinkOutcome::Stored),
            PushOutcome::AlreadyArchived(_) => Ok(SinkOutcome::AlreadyPresent),
            conflict @ PushOutcome::Conflict(_) => {
                Err(conflict.into_result().expect_err("a conflict is an error"))
            }
        }
    }
}

#[async_trait]
impl WalSource for WalArchive {
    /// The complete segments of `timeline` (history and backup history
    /// files are archived too, but are not segments to replay).
    async fn list(&self, timeline: u32) -> Result<Vec<String>> {
        let names = WalArchive::list(self, timeline).await?;
        Ok(names
            .into_iter()
            .filter(|n| WalFileName::parse(n).is_ok_and(|n| n.kind() == WalFileKind::Segment))
            .collect())
    }

    async fn histories(&self) -> Result<Vec<u32>> {
        self.history_timelines().await
    }

    async fn fetch(&self, name: &str, dest: &Path) -> Result<()> {
        WalArchive::fetch(self, name, dest).await.map(drop)
    }
}
