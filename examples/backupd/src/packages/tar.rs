//! The `.tar.gz` writer's tar layer: `astral-tokio-tar`'s [`Builder`] with
//! GNU headers (long names as GNU `L` entries, sizes of 8 GiB and more in
//! base-256, both written by the crate); gzip is `async-compression`'s.
//!
//! Each entry is read through [`exact`], so a stream longer or shorter than
//! its recorded size fails the package with [`Error::Integrity`] instead of
//! closing an entry whose header says otherwise. Memory stays flat: the
//! 5 GiB check is in `tests.rs`.

use backup_core::{Error, Result};
use chrono::{DateTime, Utc};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_tar::{Builder, EntryType, Header};
use tokio_util::io::StreamReader;

use super::archive::{Archive, exact};

/// A streaming tar writer over an async sink.
pub(super) struct TarWriter<W: AsyncWrite + Unpin + Send + 'static> {
    builder: Builder<W>,
    mtime: u64,
}

impl<W: AsyncWrite + Unpin + Send + 'static> TarWriter<W> {
    pub(super) fn new(out: W, at: DateTime<Utc>) -> Self {
        TarWriter {
            builder: Builder::new(out),
            mtime: u64::try_from(at.timestamp()).unwrap_or(0),
        }
    }

    /// Writes the end-of-archive blocks, flushes and hands the sink back.
    pub(super) async fn finish(self) -> std::io::Result<W> {
        let mut out = self.builder.into_inner().await?;
        out.flush().await?;
        Ok(out)
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> Archive for TarWriter<W> {
    async fn add(
        &mut self,
        name: &str,
        size: u64,
        body: backup_core::store::ByteStream,
    ) -> Result<()> {
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Regular);
        header.set_size(size);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(self.mtime);
        let data = StreamReader::new(exact(name, size, body));
        self.builder
            .append_data(&mut header, name, data)
            .await
            .map_err(|e| Error::from_io("writing the package", e))
    }
}
