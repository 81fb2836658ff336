//! Where recovery's WAL comes from ([`WalSource`], [`DirWalSource`]), WAL
//! segment names and the header check every staged segment passes.

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use backup_core::{Error, Result};
use tokio::io::AsyncReadExt;

use crate::wal::{WalFileKind, WalFileName};

/// A WAL archive that a point-in-time restore reads segments from.
///
/// # Contract
///
/// - [`list`](WalSource::list) returns the names of the complete
///   segments of one timeline (24 hexadecimal digits, e.g.
///   `000000010000000000000003`; never `.partial`, `.history` or
///   `.backup` files), in any order.
/// - [`histories`](WalSource::histories) returns the timelines that have
///   a history file (`TTTTTTTT.history`) in the archive, in any order.
/// - [`fetch`](WalSource::fetch) writes one segment's or history file's
///   bytes to `dest` (a file path that does not exist yet) and returns
///   `Ok` only once they are all there and verified as far as the source
///   can (a store checks its digests). A file that is missing is
///   [`Error::NotFound`].
#[async_trait]
pub trait WalSource: Send + Sync + Debug {
    /// The complete segments of `timeline` in the archive.
    async fn list(&self, timeline: u32) -> Result<Vec<String>>;

    /// The timelines with a history file in the archive.
    async fn histories(&self) -> Result<Vec<u32>>;

    /// Writes segment or history file `name` to `dest`, verified.
    async fn fetch(&self, name: &str, dest: &Path) -> Result<()>;
}

#[async_trait]
impl<T: WalSource + ?Sized> WalSource for Arc<T> {
    async fn list(&self, timeline: u32) -> Result<Vec<String>> {
        (**self).list(timeline).await
    }

    async fn histories(&self) -> Result<Vec<u32>> {
        (**self).histories().await
    }

    async fn fetch(&self, name: &str, dest: &Path) -> Result<()> {
        (**self).fetch(name, dest).await
    }
}

#[async_trait]
impl<T: WalSource + ?Sized> WalSource for Box<T> {
    async fn list(&self, timeline: u32) -> Result<Vec<String>> {
        (**self).list(timeline).await
    }

    async fn histories(&self) -> Result<Vec<u32>> {
        (**self).histories().await
    }

    async fn fetch(&self, name: &str, dest: &Path) -> Result<()> {
        (**self).fetch(name, dest).await
    }
}

/// A local directory of WAL segments, as `archive_command = 'cp %p
/// /archive/%f'` writes it.
///
/// A plain directory has no digests: [`fetch`](WalSource::fetch) copies
/// the file, and what can be checked without them is checked by the
/// restore for every source (the segment's size, its first page header:
/// system identifier, segment size, position). A byte changed inside a
/// record is caught by PostgreSQL's own CRC when it replays the record;
/// the restore turns the early end of replay that follows into an error
/// (see [`PointInTimeRestore`](crate::PointInTimeRestore)).
#[derive(Debug, Clone)]
pub struct DirWalSource {
    dir: PathBuf,
}

impl DirWalSource {
    /// The archive in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirWalSource { dir: dir.into() }
    }
}

impl DirWalSource {
    /// The names of the directory's entries.
    async fn names(&self) -> Result<Vec<String>> {
        let listing = |e| Error::io(format!("listing the WAL archive {}", self.dir.display()), e);
        let mut entries = tokio::fs::read_dir(&self.dir).await.map_err(listing)?;
        let mut names = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(listing)? {
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        Ok(names)
    }
}

#[async_trait]
impl WalSource for DirWalSource {
    async fn list(&self, timeline: u32) -> Result<Vec<String>> {
        let prefix = format!("{timeline:08X}");
        let mut names = self.names().await?;
        names.retain(|name| is_segment_name(name) && name.starts_with(&prefix));
        Ok(names)
    }

    async fn histories(&self) -> Result<Vec<u32>> {
        Ok(self
            .names()
            .await?
            .iter()
            .filter_map(|name| history_timeline(name))
            .collect())
    }

    async fn fetch(&self, name: &str, dest: &Path) -> Result<()> {
        if !is_segment_name(name) && history_timeline(name).is_none() {
            return Err(Error::Config(format!(
                "{name:?} is neither a WAL segment nor a history file name"
            )));
        }
        let from = self.dir.join(name);
        match tokio::fs::copy(&from, dest).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound {
                what: format!("WAL file {name} in {}", self.dir.display()),
            }),
            Err(e) => Err(Error::io(format!("copying {}", from.display()), e)),
        }
    }
}

/// The timeline of a history file name (`TTTTTTTT.history`).
pub(crate) fn history_timeline(name: &str) -> Option<u32> {
    WalFileName::parse(name)
        .ok()
        .filter(|n| n.kind() == WalFileKind::History)
        .map(|n| n.timeline())
}

/// 24 upper-case hexadecimal digits.
fn is_segment_name(name: &str) -> bool {
    name.len() == 24
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// WAL geometry of one cluster: its segment size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) segment_size: u64,
}

impl Geometry {
    /// `(timeline, segment number)` of a segment name.
    pub(crate) fn parse(self, name: &str) -> Option<(u32, u64)> {
        crate::lsn::parse_segment_file_name(name, self.segment_size).ok()
    }

    /// The name of segment `segno` of `timeline`.
    pub(crate) fn name(self, timeline: u32, segno: u64) -> String {
        crate::lsn::segment_file_name(timeline, segno, self.segment_size)
            .expect("a segment of this cluster")
    }

    /// The segment holding `lsn`.
    pub(crate) fn segment_of(self, lsn: u64) -> u64 {
        lsn / self.segment_size
    }
}

/// The first page header fields of a segment this check reads.
const LONG_HEADER_BYTES: usize = 40;
const XLP_LONG_HEADER: u16 = 0x0002;

/// Checks a staged segment against its cluster without digests: its size
/// is the cluster's segment size, and its first (long) page header names
/// the cluster's system identifier, segment size and this segment's
/// position. Catches a truncated copy, a segment of another cluster, and
/// a file stored under another segment's name.
pub(crate) async fn check_header(
    path: &Path,
    name: &str,
    segno: u64,
    geometry: Geometry,
    system_id: u64,
) -> Result<()> {
    let bad = |detail: String| Error::Integrity {
        what: format!("WAL segment {name}"),
        detail,
    };
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let len = file
        .metadata()
        .await
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
        .len();
    if len != geometry.segment_size {
        return Err(bad(format!(
            "{len} bytes, the cluster's segments have {}",
            geometry.segment_size
        )));
    }
    let mut head = [0u8; LONG_HEADER_BYTES];
    file.read_exact(&mut head)
        .await
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let u16_at = |o: usize| u16::from_ne_bytes([head[o], head[o + 1]]);
    let u32_at = |o: usize| u32::from_ne_bytes(head[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_ne_bytes(head[o..o + 8].try_into().expect("8 bytes"));
    if u16_at(2) & XLP_LONG_HEADER == 0 {
        return Err(bad("its first page has no long header".into()));
    }
    let (page_addr, sys_id, seg_size) = (u64_at(8), u64_at(24), u32_at(32));
    if sys_id != system_id {
        return Err(bad(format!(
            "it belongs to database system {sys_id}, the restored cluster is {system_id}"
        )));
    }
    if u64::from(seg_size) != geometry.segment_size {
        return Err(bad(format!("its header says {seg_size}-byte segments")));
    }
    let expected = segno.checked_mul(geometry.segment_size);
    if Some(page_addr) != expected {
        return Err(bad(format!(
            "it starts at WAL position {page_addr:#x}, not where its name says"
        )));
    }
    Ok(())
}

/// Bytes compared at a time by [`first_difference`].
const COMPARE_CHUNK: usize = 64 * 1024;

/// The first offset below `limit` at which the files `a` and `b` differ
/// (a file ending before `limit` differs where it ends); `None` when
/// their first `limit` bytes are the same. Streamed, flat memory.
pub(crate) async fn first_difference(a: &Path, b: &Path, limit: u64) -> Result<Option<u64>> {
    let open = |p: &Path| {
        let p = p.to_path_buf();
        async move {
            tokio::fs::File::open(&p)
                .await
                .map_err(|e| Error::io(format!("opening {}", p.display()), e))
        }
    };
    let (mut fa, mut fb) = (open(a).await?, open(b).await?);
    let (mut ba, mut bb) = (vec![0u8; COMPARE_CHUNK], vec![0u8; COMPARE_CHUNK]);
    let mut offset = 0u64;
    while offset < limit {
        let want = usize::try_from((limit - offset).min(COMPARE_CHUNK as u64)).expect("chunk");
        let (ra, rb) = (
            read_up_to(&mut fa, &mut ba[..want], a).await?,
            read_up_to(&mut fb, &mut bb[..want], b).await?,
        );
        let same = ra.min(rb);
        if let Some(i) = (0..same).find(|&i| ba[i] != bb[i]) {
            return Ok(Some(offset + i as u64));
        }
        if ra < want || rb < want {
            return Ok(Some(offset + same as u64));
        }
        offset += want as u64;
    }
    Ok(None)
}

/// Fills `buf` from `file` as far as it goes; the bytes read.
async fn read_up_to(file: &mut tokio::fs::File, buf: &mut [u8], path: &Path) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = file
            .read(&mut buf[filled..])
            .await
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn differences_are_found_where_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, &data).unwrap();
        let mut other = data.clone();
        other[150_000] ^= 1;
        std::fs::write(&b, &other).unwrap();
        assert_eq!(first_difference(&a, &b, 150_000).await.unwrap(), None);
        assert_eq!(
            first_difference(&a, &b, 200_000).await.unwrap(),
            Some(150_000)
        );
        std::fs::write(&b, &data[..70_000]).unwrap();
        assert_eq!(
            first_difference(&a, &b, 100_000).await.unwrap(),
            Some(70_000)
        );
        assert_eq!(first_difference(&a, &b, 70_000).await.unwrap(), None);
    }

    #[test]
    fn segment_names_round_trip() {
        let g = Geometry {
            segment_size: 16 * 1024 * 1024,
        };
        assert_eq!(g.parse("000000010000000000000003"), Some((1, 3)));
        assert_eq!(g.parse("0000000200000001000000FF"), Some((2, 256 + 255)));
        assert_eq!(
            g.parse("000000010000000000000100"),
            None,
            "past the last of an id"
        );
        assert_eq!(g.parse("00000001000000000000000a"), None, "lower case");
        assert_eq!(g.name(1, 256 + 255), "0000000100000001000000FF");
        assert_eq!(g.name(1, 256), "000000010000000100000000");
        assert_eq!(g.segment_of(0x1_0300_0060), 256 + 3);
        let big = Geometry {
            segment_size: 1024 * 1024 * 1024,
        };
        assert_eq!(big.name(1, 5), "000000010000000100000001");
    }
}
