//! What both writers share: the entry-by-entry interface and the copy of
//! one entry's bytes, checked against its recorded size.

use backup_core::{Error, Result};
use futures::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// An archive being written entry by entry.
pub(super) trait Archive {
    /// Adds a file of known size from a stream.
    async fn add(
        &mut self,
        name: &str,
        size: u64,
        body: backup_core::store::ByteStream,
    ) -> Result<()>;
}

pub(super) async fn copy_exact<W: AsyncWrite + Unpin>(
    out: &mut W,
    name: &str,
    size: u64,
    mut body: backup_core::store::ByteStream,
    mut each: impl FnMut(&[u8]),
) -> Result<()> {
    let mut written = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        each(&chunk);
        written += chunk.len() as u64;
        if written > size {
            return Err(Error::Integrity {
                what: name.to_string(),
                detail: format!("longer than its recorded {size} bytes"),
            });
        }
        out.write_all(&chunk)
            .await
            .map_err(|e| Error::from_io("writing the package", e))?;
    }
    if written != size {
        return Err(Error::Integrity {
            what: name.to_string(),
            detail: format!("{written} bytes, recorded {size}"),
        });
    }
    Ok(())
}
