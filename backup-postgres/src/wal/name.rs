//! WAL file names as PostgreSQL writes them, parsed strictly: complete
//! segments, timeline history files and backup history files. Anything
//! else (`.partial` files first of all) is refused.

use backup_core::{Error, Result};

/// What a WAL file name names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WalFileKind {
    /// A complete segment: 24 upper-case hex digits
    /// (`TTTTTTTTXXXXXXXXYYYYYYYY`: timeline, log, segment).
    Segment,
    /// A timeline history file: `TTTTTTTT.history`.
    History,
    /// A backup history file: `<segment>.XXXXXXXX.backup`.
    BackupHistory,
}

/// A WAL file name accepted by the archive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WalFileName {
    name: String,
    kind: WalFileKind,
    timeline: u32,
}

impl WalFileName {
    /// Parses `name`; refuses `.partial` files, lower-case hex, paths and
    /// anything that is not one of the three kinds, with an error that says
    /// which name and why.
    pub fn parse(name: &str) -> Result<WalFileName> {
        let refuse = |why: &str| {
            Error::Config(format!(
                "{name:?} is not a WAL file the archive accepts ({why}); expected a complete \
                 segment (24 upper-case hex digits), TTTTTTTT.history or <segment>.XXXXXXXX.backup"
            ))
        };
        if name.ends_with(".partial") {
            return Err(refuse(
                "a .partial segment is incomplete and never archived",
            ));
        }
        let (kind, timeline_hex) = if is_hex(name, 24) {
            (WalFileKind::Segment, &name[..8])
        } else if let Some(tli) = name.strip_suffix(".history")
            && is_hex(tli, 8)
        {
            (WalFileKind::History, tli)
        } else if let Some(rest) = name.strip_suffix(".backup")
            && let Some((segment, offset)) = rest.split_once('.')
            && is_hex(segment, 24)
            && is_hex(offset, 8)
        {
            (WalFileKind::BackupHistory, &name[..8])
        } else {
            return Err(refuse("unknown name"));
        };
        let timeline = u32::from_str_radix(timeline_hex, 16).map_err(|_| refuse("bad timeline"))?;
        if timeline == 0 {
            return Err(refuse("timeline 0 does not exist"));
        }
        Ok(WalFileName {
            name: name.to_string(),
            kind,
            timeline,
        })
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// Which kind of file it is.
    pub fn kind(&self) -> WalFileKind {
        self.kind
    }

    /// The timeline the file belongs to (a history file: the timeline it
    /// starts).
    pub fn timeline(&self) -> u32 {
        self.timeline
    }

    /// For a segment or a backup history file: the segment it is named
    /// for (24 hex digits).
    pub fn segment(&self) -> Option<&str> {
        match self.kind {
            WalFileKind::Segment | WalFileKind::BackupHistory => Some(&self.name[..24]),
            WalFileKind::History => None,
        }
    }
}

impl std::fmt::Display for WalFileName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// Whether `s` is exactly `len` upper-case hex digits.
fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// A segment name as (timeline, segment number), for a server with
/// `wal_segment_size`-byte segments.
pub(crate) fn segment_number(name: &str, wal_segment_size: u64) -> Result<(u32, u64)> {
    crate::lsn::parse_segment_file_name(name, wal_segment_size)
}

/// The segment name of segment `number` on `timeline`.
pub(crate) fn segment_name(timeline: u32, number: u64, wal_segment_size: u64) -> Result<String> {
    crate::lsn::segment_file_name(timeline, number, wal_segment_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_parsed_strictly() {
        let seg = WalFileName::parse("000000020000000A000000FF").unwrap();
        assert_eq!(seg.kind(), WalFileKind::Segment);
        assert_eq!(seg.timeline(), 2);
        let hist = WalFileName::parse("0000000A.history").unwrap();
        assert_eq!((hist.kind(), hist.timeline()), (WalFileKind::History, 10));
        let backup = WalFileName::parse("000000010000000000000002.00000028.backup").unwrap();
        assert_eq!(backup.kind(), WalFileKind::BackupHistory);
        assert_eq!(backup.segment(), Some("000000010000000000000002"));
        for bad in [
            "000000010000000000000002.partial",
            "00000001000000000000000a",
            "0000000100000000000000",
            "00000000.history",
            "../000000010000000000000002",
            "000000010000000000000002.backup",
            "000000010000000000000002.0000002.backup",
            "archive_status",
            "",
        ] {
            assert!(WalFileName::parse(bad).is_err(), "{bad} accepted");
        }
        let err = WalFileName::parse("000000010000000000000002.partial").unwrap_err();
        assert!(err.to_string().contains(".partial"), "{err}");
    }

    #[test]
    fn segment_numbers_follow_the_segment_size() {
        let mb16 = 16 << 20;
        assert_eq!(
            segment_number("0000000100000001000000FF", mb16).unwrap(),
            (1, 0x100 + 0xFF)
        );
        assert!(segment_number("000000010000000100000100", mb16).is_err());
        assert_eq!(
            segment_name(1, 0x1FF, mb16).unwrap(),
            "0000000100000001000000FF"
        );
        let gb = 1 << 30;
        assert_eq!(segment_name(3, 9, gb).unwrap(), "000000030000000200000001");
        assert_eq!(
            segment_number("000000030000000200000001", gb).unwrap(),
            (3, 9)
        );
        assert!(segment_number("000000030000000200000001", 3 << 20).is_err());
        assert!(segment_name(3, 9, 0).is_err());
    }
}
