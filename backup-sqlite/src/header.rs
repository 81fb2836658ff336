//! The 100-byte header every SQLite database file starts with
//! (<https://www.sqlite.org/fileformat2.html#the_database_header>): what
//! the preflight and the restore check without opening the file through
//! SQLite.

use std::io::Read;
use std::path::Path;

use backup_core::Error;

/// The 16 bytes every SQLite 3 database file starts with.
pub const MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Bytes of the header.
pub(crate) const HEADER_LEN: usize = 100;

/// What the header of a database file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Bytes per page (512 to 65536, a power of two).
    pub(crate) page_size: u32,
    /// Whether the file is in WAL mode (read and write versions 2).
    pub(crate) wal: bool,
    /// `SQLITE_VERSION_NUMBER` of the library that last wrote the file.
    pub(crate) last_writer: u32,
}

impl Header {
    /// Parses `bytes`; `None` when they are no SQLite 3 header.
    pub(crate) fn parse(bytes: &[u8]) -> Option<Header> {
        if bytes.len() < HEADER_LEN || !bytes.starts_with(MAGIC) {
            return None;
        }
        let page_size = match u16::from_be_bytes([bytes[16], bytes[17]]) {
            1 => 65536,
            n if n >= 512 && n.is_power_of_two() => u32::from(n),
            _ => return None,
        };
        Some(Header {
            page_size,
            wal: bytes[18] == 2 && bytes[19] == 2,
            last_writer: u32::from_be_bytes([bytes[96], bytes[97], bytes[98], bytes[99]]),
        })
    }

    /// The last writer's version as `3.45.1`.
    pub(crate) fn last_writer_version(&self) -> String {
        let v = self.last_writer;
        format!("{}.{}.{}", v / 1_000_000, v / 1000 % 1000, v % 1000)
    }
}

/// Reads and checks the header of the database file at `path`, with clear
/// errors for what a preflight must catch: a missing file
/// ([`Error::DatabaseMissing`]), one that cannot be read ([`Error::Io`]),
/// a directory, an empty file or one that is no SQLite database
/// ([`Error::Dump`]).
pub(crate) fn preflight(path: &Path) -> Result<Header, Error> {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::DatabaseMissing {
                engine: "sqlite",
                database: shown.to_string(),
            });
        }
        Err(e) => return Err(Error::io(format!("cannot stat SQLite database {shown}"), e)),
    };
    let not_a_database = |why: String| Error::Dump {
        engine: "sqlite",
        detail: format!("{shown} is not a SQLite database: {why}"),
    };
    if !meta.is_file() {
        return Err(not_a_database("it is not a regular file".into()));
    }
    if meta.len() == 0 {
        return Err(not_a_database(
            "the file is empty (SQLite creates a database's first page on its first write)".into(),
        ));
    }
    let mut bytes = Vec::with_capacity(HEADER_LEN);
    std::fs::File::open(path)
        .and_then(|f| f.take(HEADER_LEN as u64).read_to_end(&mut bytes))
        .map_err(|e| Error::io(format!("cannot read SQLite database {shown}"), e))?;
    Header::parse(&bytes).ok_or_else(|| {
        not_a_database(format!(
            "its first {} bytes are not a SQLite 3 header",
            bytes.len()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(page_size: u16, version: u8, writer: u32) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        h[..16].copy_from_slice(MAGIC);
        h[16..18].copy_from_slice(&page_size.to_be_bytes());
        h[18] = version;
        h[19] = version;
        h[96..100].copy_from_slice(&writer.to_be_bytes());
        h
    }

    #[test]
    fn parses_page_size_mode_and_writer() {
        let h = Header::parse(&header(4096, 2, 3_045_001)).unwrap();
        assert_eq!(h.page_size, 4096);
        assert!(h.wal);
        assert_eq!(h.last_writer_version(), "3.45.1");
        assert_eq!(Header::parse(&header(1, 1, 0)).unwrap().page_size, 65536);
        assert!(!Header::parse(&header(1, 1, 0)).unwrap().wal);
    }

    #[test]
    fn refuses_what_is_no_header() {
        assert_eq!(Header::parse(&header(4096, 1, 0)[..99]), None);
        assert_eq!(Header::parse(&header(1000, 1, 0)), None);
        assert_eq!(Header::parse(&header(256, 1, 0)), None);
        let mut h = header(4096, 1, 0);
        h[0] = b's';
        assert_eq!(Header::parse(&h), None);
    }
}
