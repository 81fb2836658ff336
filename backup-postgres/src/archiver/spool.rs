//! The spool directory `pg_receivewal` writes into: which of its files
//! are complete, in which order they are handed over, and the marker that
//! remembers what was archived across restarts.
//!
//! `pg_receivewal` writes the segment it is receiving as
//! `<segment>.partial` and renames it to `<segment>` once it is complete
//! and flushed; timeline history files are written as `.tmp` and renamed.
//! So a file named exactly like a segment (24 upper-case hex digits) or a
//! history file (`<8 hex>.history`) is complete, and nothing else is.
//!
//! After a file is archived it is deleted, except the newest archived
//! segment: it stays, named in the marker file, so that a restarted
//! `pg_receivewal` resumes right after it (it starts from the newest
//! segment in its directory) rather than from the slot's position, which
//! it reports only every few seconds and may lie a segment behind. That
//! way no segment is received, or handed to the sink, twice.

use std::io::Write;
use std::path::{Path, PathBuf};

use backup_core::{Error, Result};

/// The marker file: the name of the newest archived segment.
pub(crate) const MARKER: &str = "archived-through";

/// What kind of complete WAL file a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WalFile {
    /// A 16 MB (or `wal_segment_size`) segment: `000000010000000000000003`.
    Segment,
    /// A timeline history file: `00000002.history`.
    History,
}

fn upper_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// The kind of a complete WAL file, `None` for anything else
/// (`.partial`, `.tmp`, the marker, stray files).
pub(crate) fn wal_file_kind(name: &str) -> Option<WalFile> {
    if name.len() == 24 && upper_hex(name) {
        return Some(WalFile::Segment);
    }
    match name.strip_suffix(".history") {
        Some(tli) if tli.len() == 8 && upper_hex(tli) => Some(WalFile::History),
        _ => None,
    }
}

/// The WAL position just past the end of segment `name` (24 hex digits:
/// timeline, then the segment number as two 32-bit halves), for segments
/// of `segment_size` bytes. `None` if the name or size is not valid.
pub(crate) fn segment_end(name: &str, segment_size: u64) -> Option<u64> {
    let (_, number) = crate::lsn::parse_segment_file_name(name, segment_size).ok()?;
    number.checked_add(1)?.checked_mul(segment_size)
}

/// `0/3000060` → its 64-bit position.
pub(crate) fn parse_lsn(text: &str) -> Option<u64> {
    text.trim().parse::<crate::lsn::Lsn>().ok().map(|l| l.0)
}

/// The spool directory.
#[derive(Debug, Clone)]
pub(crate) struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// Creates the directory (0700) if missing; an existing one is used as
    /// it is (it may hold what an earlier run received).
    pub(crate) fn open(dir: &Path) -> Result<Spool> {
        use std::os::unix::fs::DirBuilderExt;
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(Error::Config(format!(
                    "WAL spool {} exists and is not a directory; choose a directory",
                    dir.display()
                )));
            }
            Err(_) => std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::io(format!("creating WAL spool {}", dir.display()), e))?,
        }
        Ok(Spool {
            dir: dir.to_path_buf(),
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The complete WAL files in the spool, in name order (the order they
    /// were written: a timeline's history file sorts before its segments).
    pub(crate) fn complete_files(&self) -> Result<Vec<String>> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| Error::io(format!("listing WAL spool {}", self.dir.display()), e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry
                .map_err(|e| Error::io(format!("listing WAL spool {}", self.dir.display()), e))?;
            if let Some(name) = entry.file_name().to_str()
                && wal_file_kind(name).is_some()
            {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// The newest archived segment, from the marker.
    pub(crate) fn marker(&self) -> Result<Option<String>> {
        match std::fs::read_to_string(self.dir.join(MARKER)) {
            Ok(text) => {
                let name = text.trim();
                if wal_file_kind(name) != Some(WalFile::Segment) {
                    return Err(Error::Config(format!(
                        "{} holds {name:?}, not a WAL segment name; delete it to archive everything in the spool again",
                        self.dir.join(MARKER).display()
                    )));
                }
                Ok(Some(name.to_string()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(
                format!("reading {}", self.dir.join(MARKER).display()),
                e,
            )),
        }
    }

    /// Records `segment` as the newest archived one, durably (temporary
    /// file, fsync, rename, fsync of the directory).
    pub(crate) fn set_marker(&self, segment: &str) -> Result<()> {
        let tmp = self.dir.join(format!("{MARKER}.tmp"));
        let io = |e| Error::io(format!("writing {}", self.dir.join(MARKER).display()), e);
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(format!("{segment}\n").as_bytes())
            .map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, self.dir.join(MARKER)).map_err(io)?;
        sync_dir(&self.dir)
    }

    /// Deletes a file of the spool (gone already is fine).
    pub(crate) fn remove(&self, name: &str) -> Result<()> {
        match std::fs::remove_file(self.dir.join(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(
                format!("deleting {} from the WAL spool", name),
                e,
            )),
        }
    }
}

/// Makes a rename or a new file in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let cases = [
            ("000000010000000000000003", Some(WalFile::Segment)),
            ("00000002.history", Some(WalFile::History)),
            ("000000010000000000000003.partial", None),
            ("00000002.history.tmp", None),
            ("00000001000000000000000a", None),
            ("0000000100000000000003", None),
            ("0000002.history", None),
            (MARKER, None),
        ];
        for (name, kind) in cases {
            assert_eq!(wal_file_kind(name), kind, "{name}");
        }
    }

    #[test]
    fn segment_ends() {
        const MB16: u64 = 16 << 20;
        assert_eq!(
            segment_end("000000010000000000000003", MB16),
            Some(0x400_0000)
        );
        // Segment 0xFF of log 0 ends where log 1 begins.
        assert_eq!(segment_end("0000000100000000000000FF", MB16), Some(1 << 32));
        assert_eq!(
            segment_end("000000010000000100000000", MB16),
            Some((1 << 32) + MB16)
        );
        assert_eq!(segment_end("000000010000000000000003", 3), None);
        assert_eq!(segment_end("nope", MB16), None);
        assert_eq!(parse_lsn("0/3000060"), Some(0x300_0060));
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
        assert_eq!(parse_lsn("1/100000000"), None);
        assert_eq!(parse_lsn("x"), None);
    }
}
