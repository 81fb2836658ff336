//! The `.zip` writer: entries stored, data descriptors, ZIP64 as needed.
//!
//! Hand-written on purpose (measured 2026-12-02): `async_zip` 0.0.19, the
//! maintained async writer that can stream to a non-seekable sink, passed
//! the 5 GiB test (`unzip -t`, flat memory) but writes a streamed ZIP64
//! entry's data descriptor with 4-byte sizes of `0xFFFFFFFF`
//! (`base/write/entry_stream.rs`, `close()`), where APPNOTE 4.3.9.2 requires
//! 8-byte sizes; readers that go by the data descriptor (streaming
//! unzippers) then misread every entry over 4 GiB. `zip`'s writer needs
//! `Seek` or buffers. Entries here have known sizes, so this writer puts the
//! real size in the local header's ZIP64 field and writes 8-byte sizes in
//! the descriptor. 5 GiB check: `cargo test -p backupd --lib
//! packages::tests -- --ignored --nocapture` (VmHWM 5236 -> 8004 KiB). The
//! tar layer is the `astral-tokio-tar` crate.

use backup_core::{Error, Result};
use chrono::{DateTime, Datelike, Timelike, Utc};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::archive::{Archive, copy_exact};

struct CentralEntry {
    name: Vec<u8>,
    crc: u32,
    size: u64,
    offset: u64,
}

/// A streaming zip writer: entries stored (no compression), CRC-32 in a
/// data descriptor after the data, ZIP64 fields when sizes, offsets or the
/// entry count need them.
pub(super) struct ZipWriter<W> {
    out: W,
    offset: u64,
    entries: Vec<CentralEntry>,
    dos_time: u16,
    dos_date: u16,
}

const ZIP64_LIMIT: u64 = 0xFFFF_FFFF;

impl<W: AsyncWrite + Unpin> ZipWriter<W> {
    pub(super) fn new(out: W, at: DateTime<Utc>) -> Self {
        let dos_time = ((at.hour() << 11) | (at.minute() << 5) | (at.second() / 2)) as u16;
        let dos_date = (((at.year().clamp(1980, 2107) - 1980) as u32) << 9
            | at.month() << 5
            | at.day()) as u16;
        ZipWriter {
            out,
            offset: 0,
            entries: Vec::new(),
            dos_time,
            dos_date,
        }
    }

    async fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.offset += bytes.len() as u64;
        self.out.write_all(bytes).await
    }

    pub(super) async fn finish(mut self) -> std::io::Result<()> {
        let cd_start = self.offset;
        let entries = std::mem::take(&mut self.entries);
        for e in &entries {
            let zip64_size = e.size >= ZIP64_LIMIT;
            let zip64_offset = e.offset >= ZIP64_LIMIT;
            let mut extra = Vec::new();
            if zip64_size || zip64_offset {
                let mut data = Vec::new();
                if zip64_size {
                    data.extend_from_slice(&e.size.to_le_bytes());
                    data.extend_from_slice(&e.size.to_le_bytes());
                }
                if zip64_offset {
                    data.extend_from_slice(&e.offset.to_le_bytes());
                }
                extra.extend_from_slice(&1u16.to_le_bytes());
                extra.extend_from_slice(&(data.len() as u16).to_le_bytes());
                extra.extend_from_slice(&data);
            }
            let mut h = Vec::with_capacity(46 + e.name.len() + extra.len());
            h.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            h.extend_from_slice(&(0x0300u16 | 45).to_le_bytes()); // made by: unix, 4.5
            h.extend_from_slice(&45u16.to_le_bytes());
            h.extend_from_slice(&(0x0008u16 | 0x0800).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes()); // stored
            h.extend_from_slice(&self.dos_time.to_le_bytes());
            h.extend_from_slice(&self.dos_date.to_le_bytes());
            h.extend_from_slice(&e.crc.to_le_bytes());
            let size32 = if zip64_size {
                ZIP64_LIMIT as u32
            } else {
                e.size as u32
            };
            h.extend_from_slice(&size32.to_le_bytes());
            h.extend_from_slice(&size32.to_le_bytes());
            h.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            h.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes()); // comment
            h.extend_from_slice(&0u16.to_le_bytes()); // disk
            h.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
            h.extend_from_slice(&((0o100644u32) << 16).to_le_bytes());
            let off32 = if zip64_offset {
                ZIP64_LIMIT as u32
            } else {
                e.offset as u32
            };
            h.extend_from_slice(&off32.to_le_bytes());
            h.extend_from_slice(&e.name);
            h.extend_from_slice(&extra);
            self.put(&h).await?;
        }
        let cd_size = self.offset - cd_start;
        let count = entries.len() as u64;
        let need64 = count >= 0xFFFF || cd_size >= ZIP64_LIMIT || cd_start >= ZIP64_LIMIT;
        if need64 {
            let eocd64_at = self.offset;
            let mut r = Vec::with_capacity(76);
            r.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
            r.extend_from_slice(&44u64.to_le_bytes());
            r.extend_from_slice(&45u16.to_le_bytes());
            r.extend_from_slice(&45u16.to_le_bytes());
            r.extend_from_slice(&0u32.to_le_bytes());
            r.extend_from_slice(&0u32.to_le_bytes());
            r.extend_from_slice(&count.to_le_bytes());
            r.extend_from_slice(&count.to_le_bytes());
            r.extend_from_slice(&cd_size.to_le_bytes());
            r.extend_from_slice(&cd_start.to_le_bytes());
            r.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
            r.extend_from_slice(&0u32.to_le_bytes());
            r.extend_from_slice(&eocd64_at.to_le_bytes());
            r.extend_from_slice(&1u32.to_le_bytes());
            self.put(&r).await?;
        }
        let mut r = Vec::with_capacity(22);
        r.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        r.extend_from_slice(&0u16.to_le_bytes());
        r.extend_from_slice(&0u16.to_le_bytes());
        let count16 = if need64 { 0xFFFF } else { count as u16 };
        r.extend_from_slice(&count16.to_le_bytes());
        r.extend_from_slice(&count16.to_le_bytes());
        let cd_size32 = if need64 {
            ZIP64_LIMIT as u32
        } else {
            cd_size as u32
        };
        let cd_start32 = if need64 {
            ZIP64_LIMIT as u32
        } else {
            cd_start as u32
        };
        r.extend_from_slice(&cd_size32.to_le_bytes());
        r.extend_from_slice(&cd_start32.to_le_bytes());
        r.extend_from_slice(&0u16.to_le_bytes());
        self.put(&r).await?;
        self.out.flush().await?;
        self.out.shutdown().await
    }
}

impl<W: AsyncWrite + Unpin> Archive for ZipWriter<W> {
    async fn add(
        &mut self,
        name: &str,
        size: u64,
        body: backup_core::store::ByteStream,
    ) -> Result<()> {
        let io = |e: std::io::Error| Error::from_io("writing the package", e);
        let offset = self.offset;
        let zip64 = size >= ZIP64_LIMIT;
        let name_bytes = name.as_bytes().to_vec();
        let mut extra = Vec::new();
        if zip64 {
            extra.extend_from_slice(&1u16.to_le_bytes());
            extra.extend_from_slice(&16u16.to_le_bytes());
            extra.extend_from_slice(&size.to_le_bytes());
            extra.extend_from_slice(&size.to_le_bytes());
        }
        let mut h = Vec::with_capacity(30 + name_bytes.len() + extra.len());
        h.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        h.extend_from_slice(&45u16.to_le_bytes());
        h.extend_from_slice(&(0x0008u16 | 0x0800).to_le_bytes()); // descriptor, UTF-8
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(&self.dos_time.to_le_bytes());
        h.extend_from_slice(&self.dos_date.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes()); // CRC in the descriptor
        let size32 = if zip64 {
            ZIP64_LIMIT as u32
        } else {
            size as u32
        };
        h.extend_from_slice(&size32.to_le_bytes());
        h.extend_from_slice(&size32.to_le_bytes());
        h.extend_from_slice(&(name_bytes.len() as u16).to_le_bytes());
        h.extend_from_slice(&(extra.len() as u16).to_le_bytes());
        h.extend_from_slice(&name_bytes);
        h.extend_from_slice(&extra);
        self.put(&h).await.map_err(io)?;
        let mut crc = crc32fast::Hasher::new();
        copy_exact(&mut self.out, name, size, body, |c| crc.update(c)).await?;
        self.offset += size;
        let crc = crc.finalize();
        let mut d = Vec::with_capacity(24);
        d.extend_from_slice(&0x0807_4b50u32.to_le_bytes());
        d.extend_from_slice(&crc.to_le_bytes());
        if zip64 {
            d.extend_from_slice(&size.to_le_bytes());
            d.extend_from_slice(&size.to_le_bytes());
        } else {
            d.extend_from_slice(&(size as u32).to_le_bytes());
            d.extend_from_slice(&(size as u32).to_le_bytes());
        }
        self.put(&d).await.map_err(io)?;
        self.entries.push(CentralEntry {
            name: name_bytes,
            crc,
            size,
            offset,
        });
        Ok(())
    }
}
