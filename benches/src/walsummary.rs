//! What the server's WAL summaries say changed between two LSNs, and what
//! a base backup archive is made of: the physical limit of a block-level
//! incremental backup, and where its bytes went.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// PostgreSQL's block size, as the server and `pg_walsummary` count.
pub const BLOCK_SIZE: u64 = 8192;

/// The WAL summary files in `dir` (a data directory's `pg_wal/summaries`)
/// whose range overlaps `from..to` (LSNs): those `pg_basebackup
/// --incremental` reads for a parent starting at `from` and a backup
/// starting at `to`. Sorted by name (timeline, then start LSN).
///
/// A summary file is named `TTTTTTTTSSSSSSSSSSSSSSSSEEEEEEEEEEEEEEEE.summary`:
/// timeline, start LSN and end LSN in hex.
pub fn summaries_covering(dir: &Path, from: u64, to: u64) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some((_, start, end)) = name.to_str().and_then(parse_summary_name) else {
            continue;
        };
        if start < to && end > from {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// `(timeline, start LSN, end LSN)` of a summary file's name.
pub fn parse_summary_name(name: &str) -> Option<(u32, u64, u64)> {
    let hex = name.strip_suffix(".summary")?;
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((
        u32::from_str_radix(&hex[..8], 16).ok()?,
        u64::from_str_radix(&hex[8..24], 16).ok()?,
        u64::from_str_radix(&hex[24..], 16).ok()?,
    ))
}

/// Distinct blocks (relation fork, block number) `pg_walsummary` lists
/// as modified in `files`: a block changed in two summaries counts once,
/// as `pg_basebackup` sends it once.
pub fn changed_blocks(pg_walsummary: &Path, files: &[PathBuf]) -> io::Result<u64> {
    if files.is_empty() {
        return Ok(0);
    }
    let out = Command::new(pg_walsummary)
        .arg("--individual")
        .args(files)
        .env("LC_MESSAGES", "C")
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{} {}: {}",
            pg_walsummary.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let mut blocks = HashSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((fork, first, last)) = parse_summary_line(line) else {
            continue;
        };
        for block in first..=last {
            blocks.insert((fork.to_string(), block));
        }
    }
    Ok(blocks.len() as u64)
}

/// One line of `pg_walsummary` output: the relation fork and the first
/// and last block it names (`block 7`, or `blocks 3..9` without
/// `--individual`); `None` for a `limit` line or anything else.
pub fn parse_summary_line(line: &str) -> Option<(&str, u32, u32)> {
    let (fork, what) = line.rsplit_once(": ")?;
    if !fork.starts_with("TS ") {
        return None;
    }
    if let Some(n) = what.strip_prefix("block ") {
        let n = n.trim().parse().ok()?;
        return Some((fork, n, n));
    }
    let (first, last) = what.strip_prefix("blocks ")?.trim().split_once("..")?;
    let (first, last) = (first.parse().ok()?, last.parse().ok()?);
    (first <= last).then_some((fork, first, last))
}

/// Where the bytes of a base backup's tar archive are, by member size
/// (tar headers and padding not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveParts {
    /// `pg_wal/` members: the WAL the backup carries (`-X fetch`).
    pub wal: u64,
    /// `INCREMENTAL.*` members: changed blocks of relation files, with
    /// their headers.
    pub incremental: u64,
    /// How many `INCREMENTAL.*` members.
    pub incremental_files: u64,
    /// Relation files sent whole (numeric names under `base/`, `global/`).
    pub whole_relations: u64,
    /// How many of those.
    pub whole_relation_files: u64,
    /// Everything else (`pg_xact`, `backup_manifest`, configuration...).
    pub other: u64,
}

impl ArchiveParts {
    /// Sorts the members of `tar -tv` output (GNU tar: mode, owner,
    /// size, date, time, name) into parts.
    pub fn from_listing(listing: &str) -> ArchiveParts {
        let mut parts = ArchiveParts::default();
        for line in listing.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [mode, _, size, _, _, name, ..] = fields[..] else {
                continue;
            };
            if !mode.starts_with('-') {
                continue;
            }
            let Ok(size) = size.parse::<u64>() else {
                continue;
            };
            let file = name.rsplit('/').next().unwrap_or(name);
            let in_relation_dir = name.starts_with("base/") || name.starts_with("global/");
            if name.starts_with("pg_wal/") {
                parts.wal += size;
            } else if file.starts_with("INCREMENTAL.") {
                parts.incremental += size;
                parts.incremental_files += 1;
            } else if in_relation_dir && file.starts_with(|c: char| c.is_ascii_digit()) {
                parts.whole_relations += size;
                parts.whole_relation_files += 1;
            } else {
                parts.other += size;
            }
        }
        parts
    }

    /// Lists the zstd-compressed tar archive `path` (`zstd -dc | tar -tv`).
    pub fn of_zstd_tar(path: &Path) -> io::Result<ArchiveParts> {
        let out = Command::new("bash")
            .args([
                "-o",
                "pipefail",
                "-c",
                "zstd -dc -- \"$1\" | tar -tvf -",
                "-",
            ])
            .arg(path)
            .env("LC_ALL", "C")
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "listing {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(ArchiveParts::from_listing(&String::from_utf8_lossy(
            &out.stdout,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_and_overlap() {
        let name = "0000000100000000010000280000000001A3F8C8.summary";
        assert_eq!(
            parse_summary_name(name),
            Some((1, 0x0100_0028, 0x01A3_F8C8))
        );
        assert_eq!(
            parse_summary_name("0000000100000000010000280.summary"),
            None
        );
        assert_eq!(parse_summary_name("temp.summary"), None);
        let dir = tempfile::tempdir().unwrap();
        for (start, end) in [(0x10, 0x20), (0x20, 0x30), (0x30, 0x40)] {
            let n = format!("00000001{start:016X}{end:016X}.summary");
            std::fs::write(dir.path().join(n), b"").unwrap();
        }
        let found = summaries_covering(dir.path(), 0x25, 0x30).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(summaries_covering(dir.path(), 0x18, 0x35).unwrap().len(), 3);
    }

    #[test]
    fn summary_lines() {
        assert_eq!(
            parse_summary_line("TS 1663, DB 5, REL 16388, FORK main: block 12"),
            Some(("TS 1663, DB 5, REL 16388, FORK main", 12, 12))
        );
        assert_eq!(
            parse_summary_line("TS 1663, DB 5, REL 16388, FORK vm: blocks 0..3"),
            Some(("TS 1663, DB 5, REL 16388, FORK vm", 0, 3))
        );
        assert_eq!(
            parse_summary_line("TS 1663, DB 5, REL 16388, FORK main: limit 0"),
            None
        );
    }

    #[test]
    fn archive_listing_parts() {
        let listing = "\
drwx------ postgres/postgres 0 2026-12-02 15:00 base/5/
-rw------- postgres/postgres 8192 2026-12-02 15:00 base/5/16390_vm
-rw------- postgres/postgres 40980 2026-12-02 15:00 base/5/INCREMENTAL.16388
-rw------- postgres/postgres 16777216 2026-12-02 15:00 pg_wal/000000010000000000000005
-rw------- postgres/postgres 230 2026-12-02 15:00 backup_label
";
        let p = ArchiveParts::from_listing(listing);
        assert_eq!(
            p,
            ArchiveParts {
                wal: 16 << 20,
                incremental: 40980,
                incremental_files: 1,
                whole_relations: 8192,
                whole_relation_files: 1,
                other: 230,
            }
        );
    }
}
