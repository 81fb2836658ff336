//! WAL positions ([`Lsn`]) and WAL segment file names, as PostgreSQL
//! prints and names them.
//!
//! A segment file name is `TTTTTTTTXXXXXXXXYYYYYYYY`: the timeline, then
//! the segment number split into "log id" and "segment within the log id"
//! (each 8 upper-case hex digits), where a log id covers 4 GiB of WAL
//! whatever the segment size.

use std::fmt;
use std::str::FromStr;

use backup_core::{Error, Result};

/// Smallest and largest `wal_segment_size` PostgreSQL allows (a power of
/// two in between).
const MIN_SEGMENT_SIZE: u64 = 1024 * 1024;
const MAX_SEGMENT_SIZE: u64 = 1024 * 1024 * 1024;

/// WAL bytes covered by one "log id" (the middle 8 digits of a segment
/// file name).
const LOG_ID_BYTES: u64 = 0x1_0000_0000;

/// A WAL position (log sequence number), printed `X/Y` as PostgreSQL does
/// (`0/2000028`). Ordered as positions in the WAL are.
///
/// ```
/// use backup_postgres::Lsn;
/// let lsn: Lsn = "16/B374D848".parse().unwrap();
/// assert_eq!(lsn.to_string(), "16/B374D848");
/// assert_eq!(lsn.segment_file_name(1, 16 * 1024 * 1024).unwrap(), "0000000100000016000000B3");
/// assert!(lsn > "16/B374D847".parse().unwrap());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The number of the segment holding this position.
    pub fn segment(self, segment_size: u64) -> Result<u64> {
        check_segment_size(segment_size)?;
        Ok(self.0 / segment_size)
    }

    /// The number of the segment holding the byte just before this
    /// position: the last segment WAL ending here needs (a backup whose
    /// stop LSN is the very start of a segment does not need that one).
    /// Position 0 has no byte before it: segment 0.
    pub fn prev_segment(self, segment_size: u64) -> Result<u64> {
        check_segment_size(segment_size)?;
        Ok(self.0.saturating_sub(1) / segment_size)
    }

    /// The name of the segment file holding this position on `timeline`.
    pub fn segment_file_name(self, timeline: u32, segment_size: u64) -> Result<String> {
        segment_file_name(timeline, self.segment(segment_size)?, segment_size)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = Error;

    /// Parses `X/Y`, each part 1 to 8 hex digits (either case).
    fn from_str(s: &str) -> Result<Lsn> {
        let bad = || {
            Error::Config(format!(
                "{s:?} is not a WAL position: write it as PostgreSQL prints it, e.g. 0/16B3748"
            ))
        };
        let (hi, lo) = s.split_once('/').ok_or_else(bad)?;
        let part = |p: &str| -> Result<u64> {
            if p.is_empty() || p.len() > 8 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            u64::from_str_radix(p, 16).map_err(|_| bad())
        };
        Ok(Lsn((part(hi)? << 32) | part(lo)?))
    }
}

/// Checks `segment_size` is one PostgreSQL allows: a power of two from
/// 1 MiB to 1 GiB.
pub fn check_segment_size(segment_size: u64) -> Result<()> {
    if !segment_size.is_power_of_two()
        || !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&segment_size)
    {
        return Err(Error::Config(format!(
            "{segment_size} bytes is not a WAL segment size (a power of two from 1 MiB to 1 GiB)"
        )));
    }
    Ok(())
}

/// The file name of segment `segment` on `timeline`
/// (`000000010000000000000002`).
pub fn segment_file_name(timeline: u32, segment: u64, segment_size: u64) -> Result<String> {
    check_segment_size(segment_size)?;
    let per_log_id = LOG_ID_BYTES / segment_size;
    let log_id = segment / per_log_id;
    if log_id > u64::from(u32::MAX) {
        return Err(Error::Config(format!(
            "segment number {segment} is past the end of the WAL"
        )));
    }
    Ok(format!(
        "{timeline:08X}{log_id:08X}{:08X}",
        segment % per_log_id
    ))
}

/// Parses a segment file name into its timeline and segment number;
/// refuses anything else (`.partial`, `.history`, lower case, a segment
/// part out of range for `segment_size`).
pub fn parse_segment_file_name(name: &str, segment_size: u64) -> Result<(u32, u64)> {
    check_segment_size(segment_size)?;
    let bad = |why: &str| Error::Config(format!("{name:?} is not a WAL segment file name: {why}"));
    if name.len() != 24
        || !name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    {
        return Err(bad("expected 24 upper-case hex digits"));
    }
    let hex = |range: std::ops::Range<usize>| {
        u32::from_str_radix(&name[range], 16).map_err(|_| bad("not hex"))
    };
    let (timeline, log_id, seg) = (hex(0..8)?, hex(8..16)?, hex(16..24)?);
    let per_log_id = LOG_ID_BYTES / segment_size;
    if u64::from(seg) >= per_log_id {
        return Err(bad("its last 8 digits are too large for the segment size"));
    }
    if timeline == 0 {
        return Err(bad("timeline 0 does not exist"));
    }
    Ok((timeline, u64::from(log_id) * per_log_id + u64::from(seg)))
}

impl serde::Serialize for Lsn {
    /// As PostgreSQL prints it (`0/3000028`).
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB16: u64 = 16 * 1024 * 1024;

    #[test]
    fn lsns_parse_print_and_order() {
        for (text, value, printed) in [
            ("0/0", 0u64, "0/0"),
            ("0/2000028", 0x0200_0028, "0/2000028"),
            ("16/b374d848", 0x16_B374_D848, "16/B374D848"),
            ("FFFFFFFF/FFFFFFFF", u64::MAX, "FFFFFFFF/FFFFFFFF"),
        ] {
            let lsn: Lsn = text.parse().unwrap();
            assert_eq!(lsn, Lsn(value), "{text}");
            assert_eq!(lsn.to_string(), printed);
            assert_eq!(printed.parse::<Lsn>().unwrap(), lsn);
        }
        for bad in [
            "",
            "0",
            "/1",
            "1/",
            "0/123456789",
            "g/1",
            "0/-1",
            " 0/1",
            "0/1/2",
        ] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?}");
        }
        assert!(Lsn(1) < Lsn(2));
        assert!("1/0".parse::<Lsn>().unwrap() > "0/FFFFFFFF".parse().unwrap());
    }

    #[test]
    fn segment_names_follow_postgres() {
        // (lsn, timeline, segment size, segment holding it, the one before)
        for (lsn, tli, size, name, prev) in [
            (
                "0/2000028",
                1,
                MB16,
                "000000010000000000000002",
                "000000010000000000000002",
            ),
            (
                "0/3000000",
                1,
                MB16,
                "000000010000000000000003",
                "000000010000000000000002",
            ),
            (
                "16/B374D848",
                2,
                MB16,
                "0000000200000016000000B3",
                "0000000200000016000000B3",
            ),
            (
                "1/0",
                1,
                MB16,
                "000000010000000100000000",
                "0000000100000000000000FF",
            ),
            (
                "0/4500000",
                3,
                1024 * 1024,
                "000000030000000000000045",
                "000000030000000000000044",
            ),
            (
                "2/40000001",
                1,
                1 << 30,
                "000000010000000200000001",
                "000000010000000200000001",
            ),
        ] {
            let lsn: Lsn = lsn.parse().unwrap();
            assert_eq!(lsn.segment_file_name(tli, size).unwrap(), name, "{lsn}");
            let p = segment_file_name(tli, lsn.prev_segment(size).unwrap(), size).unwrap();
            assert_eq!(p, prev, "{lsn}");
            let (t, seg) = parse_segment_file_name(name, size).unwrap();
            assert_eq!((t, seg), (tli, lsn.segment(size).unwrap()));
        }
        assert_eq!(Lsn(0).prev_segment(MB16).unwrap(), 0);
    }

    #[test]
    fn bad_sizes_and_names_are_refused() {
        for size in [0, 1, 3 * 1024 * 1024, 512 * 1024, 2 << 30] {
            assert!(check_segment_size(size).is_err(), "{size}");
            assert!(Lsn(1).segment(size).is_err());
        }
        for name in [
            "00000001000000000000000",
            "000000010000000000000002.partial",
            "00000002.history",
            "00000001000000000000000a",
            "000000010000000000000100",
            "000000000000000000000001",
        ] {
            assert!(parse_segment_file_name(name, MB16).is_err(), "{name}");
        }
    }
}
