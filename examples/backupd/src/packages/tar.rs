//! The `.tar.gz` writer's tar layer (gzip is `async-compression`'s).
//!
//! Kept hand-written for now: the `tar` crate writes synchronously from a
//! `Read` per entry, while entries here are async store streams, so it
//! would need a blocking bridge; this writer streams with constant memory
//! (the 5 GiB check is in `tests.rs`). Replacing it is still open.

use backup_core::{Error, Result};
use chrono::{DateTime, Utc};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::archive::{Archive, copy_exact};

/// A streaming POSIX (ustar) tar writer; long names use the GNU `L` entry,
/// sizes of 8 GiB and more the GNU base-256 encoding.
pub(super) struct TarWriter<W> {
    out: W,
    mtime: u64,
}

impl<W: AsyncWrite + Unpin> TarWriter<W> {
    pub(super) fn new(out: W, at: DateTime<Utc>) -> Self {
        TarWriter {
            out,
            mtime: at.timestamp().max(0) as u64,
        }
    }

    fn header(&self, name: &[u8], size: u64, kind: u8) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        if size < 0o77777777777 {
            h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        } else {
            h[124] = 0x80;
            h[128..136].copy_from_slice(&size.to_be_bytes());
        }
        h[136..148].copy_from_slice(format!("{:011o}\0", self.mtime).as_bytes());
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }

    async fn pad(&mut self, size: u64) -> std::io::Result<()> {
        let rest = (512 - size % 512) % 512;
        self.out.write_all(&vec![0u8; rest as usize]).await
    }

    pub(super) async fn finish(mut self) -> std::io::Result<W> {
        self.out.write_all(&[0u8; 1024]).await?;
        self.out.flush().await?;
        Ok(self.out)
    }
}

impl<W: AsyncWrite + Unpin> Archive for TarWriter<W> {
    async fn add(
        &mut self,
        name: &str,
        size: u64,
        body: backup_core::store::ByteStream,
    ) -> Result<()> {
        let io = |e: std::io::Error| Error::from_io("writing the package", e);
        let bytes = name.as_bytes();
        if bytes.len() > 100 {
            let mut long = bytes.to_vec();
            long.push(0);
            let h = self.header(b"././@LongLink", long.len() as u64, b'L');
            self.out.write_all(&h).await.map_err(io)?;
            self.out.write_all(&long).await.map_err(io)?;
            self.pad(long.len() as u64).await.map_err(io)?;
        }
        let h = self.header(bytes, size, b'0');
        self.out.write_all(&h).await.map_err(io)?;
        copy_exact(&mut self.out, name, size, body, |_| {}).await?;
        self.pad(size).await.map_err(io)
    }
}
