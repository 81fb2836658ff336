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

/// `body` as an I/O stream that ends with an [`Error::Integrity`] (carried
/// in the `io::Error`, see [`Error::from_io`]) instead of yielding a byte
/// past `size`, or instead of ending short of it: a crate writer fed from
/// it fails rather than closing an entry whose header says otherwise.
pub(super) fn exact(
    name: &str,
    size: u64,
    body: backup_core::store::ByteStream,
) -> futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>> {
    let name = name.to_string();
    futures::stream::unfold(Some((body, 0u64)), move |state| {
        let name = name.clone();
        async move {
            let (mut body, written) = state?;
            let integrity = |detail: String| Error::Integrity {
                what: name.clone(),
                detail,
            };
            match body.next().await {
                Some(Ok(chunk)) => {
                    let written = written + chunk.len() as u64;
                    if written > size {
                        let e = integrity(format!("longer than its recorded {size} bytes"));
                        return Some((Err(e.into_io()), None));
                    }
                    Some((Ok(chunk), Some((body, written))))
                }
                Some(Err(e)) => Some((Err(e.into_io()), None)),
                None if written != size => {
                    let e = integrity(format!("{written} bytes, recorded {size}"));
                    Some((Err(e.into_io()), None))
                }
                None => None,
            }
        }
    })
    .boxed()
}
