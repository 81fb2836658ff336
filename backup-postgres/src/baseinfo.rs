//! [`BaseBackupInfo`]: what a base backup's manifest records about the
//! WAL it needs, read from `backup_label` and PostgreSQL's
//! `backup_manifest` as the archive streams past, stored as namespaced
//! manifest details (`postgres.start_lsn`, ...) and read back typed.

use backup_core::manifest::Manifest;
use backup_core::source::Details;
use backup_core::{Error, Result};

use crate::lsn::{Lsn, segment_file_name};
use crate::tarscan::Captured;

/// The format name recorded in manifests: a `pg_basebackup` tar archive
/// with WAL and `backup_manifest`.
pub const BASEBACKUP_FORMAT: &str = "basebackup";

const SYSTEM_IDENTIFIER: &str = "postgres.system_identifier";
const TIMELINE: &str = "postgres.timeline";
const START_LSN: &str = "postgres.start_lsn";
const CHECKPOINT_LSN: &str = "postgres.checkpoint_lsn";
const STOP_TIMELINE: &str = "postgres.stop_timeline";
const STOP_LSN: &str = "postgres.stop_lsn";
const WAL_SEGMENT_SIZE: &str = "postgres.wal_segment_size";
const WAL_FIRST_SEGMENT: &str = "postgres.wal_first_segment";
const WAL_LAST_SEGMENT: &str = "postgres.wal_last_segment";
const INCREMENTAL: &str = "postgres.incremental";
const PARENT: &str = "postgres.parent";

/// The physical facts of one base backup: where its WAL starts and ends
/// and which segment files restoring it needs (all of them are inside
/// the backup, fetched with `-X fetch`; point-in-time recovery continues
/// from `wal_last_segment` with archived WAL).
///
/// Read from a committed backup with [`BaseBackupInfo::from_manifest`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BaseBackupInfo {
    /// The cluster's system identifier (`pg_control_system()`): WAL of
    /// another cluster never applies to this backup.
    pub system_identifier: u64,
    /// Timeline the backup started on (`START TIMELINE`).
    pub timeline: u32,
    /// Where the backup's WAL starts (`START WAL LOCATION`).
    pub start_lsn: Lsn,
    /// The checkpoint the backup started from (`CHECKPOINT LOCATION`).
    pub checkpoint_lsn: Lsn,
    /// Timeline the backup ended on (differs from `timeline` only for a
    /// backup of a standby that was promoted meanwhile).
    pub stop_timeline: u32,
    /// Where the backup's WAL ends: recovery must replay at least up to
    /// here for the cluster to be consistent.
    pub stop_lsn: Lsn,
    /// The server's `wal_segment_size` in bytes.
    pub wal_segment_size: u64,
    /// The first WAL segment file the backup needs.
    pub wal_first_segment: String,
    /// The last WAL segment file the backup needs.
    pub wal_last_segment: String,
    /// For a block-level incremental base backup (PostgreSQL 17+,
    /// `postgres.incremental = true` in the details): the id of the
    /// backup it applies on top of (`postgres.parent`, also the
    /// manifest's [`parent`](Manifest::parent)). `None` for a full base
    /// backup, which restores on its own.
    pub parent: Option<String>,
}

/// What the preflight learned from the server, for the facts the archive
/// does not carry (or carries only from PostgreSQL 17 on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServerFacts {
    /// From `pg_control_system()` (servers before 17 only).
    pub(crate) system_identifier: Option<u64>,
    /// `wal_segment_size` in bytes.
    pub(crate) wal_segment_size: u64,
}

impl BaseBackupInfo {
    /// The facts of the base backup `manifest` commits; an error for a
    /// backup of another format or one whose facts are missing or do not
    /// parse.
    pub fn from_manifest(manifest: &Manifest) -> Result<BaseBackupInfo> {
        let bad = |detail: String| Error::Manifest {
            key: manifest.id.clone(),
            detail,
        };
        if manifest.engine != "postgres" || manifest.format != BASEBACKUP_FORMAT {
            return Err(bad(format!(
                "backup {} is a {} {} backup, not a PostgreSQL base backup",
                manifest.id, manifest.engine, manifest.format
            )));
        }
        let info = Self::from_details(&manifest.details).map_err(bad)?;
        if info.parent != manifest.parent {
            return Err(bad(format!(
                "the details name parent {:?}, the manifest {:?}",
                info.parent, manifest.parent
            )));
        }
        Ok(info)
    }

    /// Whether this is a block-level incremental base backup (it restores
    /// only as part of its chain).
    pub fn is_incremental(&self) -> bool {
        self.parent.is_some()
    }

    fn from_details(d: &Details) -> std::result::Result<BaseBackupInfo, String> {
        fn get<T: std::str::FromStr>(d: &Details, key: &str) -> std::result::Result<T, String> {
            let value = d
                .get(key)
                .ok_or_else(|| format!("the base backup's manifest lacks {key}"))?;
            value
                .parse()
                .map_err(|_| format!("{key} = {value:?} in the manifest does not parse"))
        }
        let info = BaseBackupInfo {
            system_identifier: get(d, SYSTEM_IDENTIFIER)?,
            timeline: get(d, TIMELINE)?,
            start_lsn: get(d, START_LSN)?,
            checkpoint_lsn: get(d, CHECKPOINT_LSN)?,
            stop_timeline: get(d, STOP_TIMELINE)?,
            stop_lsn: get(d, STOP_LSN)?,
            wal_segment_size: get(d, WAL_SEGMENT_SIZE)?,
            wal_first_segment: get(d, WAL_FIRST_SEGMENT)?,
            wal_last_segment: get(d, WAL_LAST_SEGMENT)?,
            parent: match d.get(INCREMENTAL).map(String::as_str) {
                None | Some("false") => None,
                Some("true") => Some(
                    d.get(PARENT)
                        .cloned()
                        .ok_or_else(|| format!("an incremental base backup without {PARENT}"))?,
                ),
                Some(other) => return Err(format!("{INCREMENTAL} = {other:?} does not parse")),
            },
        };
        // The names must be the ones the positions imply.
        let (first, last) = info.segments().map_err(|e| e.to_string())?;
        if (first.as_str(), last.as_str())
            != (
                info.wal_first_segment.as_str(),
                info.wal_last_segment.as_str(),
            )
        {
            return Err(format!(
                "the WAL range {}..{} in the manifest does not match its LSNs ({first}..{last})",
                info.wal_first_segment, info.wal_last_segment
            ));
        }
        if info.start_lsn > info.stop_lsn {
            return Err(format!(
                "start LSN {} is after stop LSN {}",
                info.start_lsn, info.stop_lsn
            ));
        }
        Ok(info)
    }

    /// The details recorded in the manifest.
    pub(crate) fn details(&self) -> Details {
        let mut details: Details = [
            (SYSTEM_IDENTIFIER, self.system_identifier.to_string()),
            (TIMELINE, self.timeline.to_string()),
            (START_LSN, self.start_lsn.to_string()),
            (CHECKPOINT_LSN, self.checkpoint_lsn.to_string()),
            (STOP_TIMELINE, self.stop_timeline.to_string()),
            (STOP_LSN, self.stop_lsn.to_string()),
            (WAL_SEGMENT_SIZE, self.wal_segment_size.to_string()),
            (WAL_FIRST_SEGMENT, self.wal_first_segment.clone()),
            (WAL_LAST_SEGMENT, self.wal_last_segment.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(parent) = &self.parent {
            details.insert(INCREMENTAL.into(), "true".into());
            details.insert(PARENT.into(), parent.clone());
        }
        details
    }

    /// First and last segment file names the positions imply.
    fn segments(&self) -> Result<(String, String)> {
        let size = self.wal_segment_size;
        Ok((
            self.start_lsn.segment_file_name(self.timeline, size)?,
            segment_file_name(self.stop_timeline, self.stop_lsn.prev_segment(size)?, size)?,
        ))
    }

    /// The facts of the archive `captured` was taken from, checked
    /// against each other and against what the server said; `parent` is
    /// the backup an incremental archive was asked for on top of (its
    /// `backup_label` must say it is incremental, and only then).
    pub(crate) fn from_archive(
        captured: &Captured,
        server: ServerFacts,
        parent: Option<&str>,
    ) -> std::result::Result<BaseBackupInfo, String> {
        let label = Label::parse(&captured.label)?;
        match (label.incremental, parent) {
            (true, None) => {
                return Err("backup_label says the archive is an incremental backup; a full one was asked for".into());
            }
            (false, Some(parent)) => {
                return Err(format!(
                    "backup_label says the archive is a full backup; an incremental one on top of {parent} was asked for"
                ));
            }
            _ => {}
        }
        let ranges = wal_ranges(&captured.manifest_tail)?;
        let (Some(first), Some(last)) = (ranges.first(), ranges.last()) else {
            return Err("backup_manifest lists no WAL range".into());
        };
        let lsn = |text: &str| {
            text.parse::<Lsn>()
                .map_err(|_| format!("backup_manifest has a WAL range LSN {text:?}"))
        };
        let (range_start, stop_lsn) = (lsn(&first.start_lsn)?, lsn(&last.end_lsn)?);
        if range_start != label.start_lsn || first.timeline != label.timeline {
            return Err(format!(
                "backup_label starts at {} on timeline {}, backup_manifest at {range_start} on {}",
                label.start_lsn, label.timeline, first.timeline
            ));
        }
        let system_identifier = match (
            system_identifier(&captured.manifest_head)?,
            server.system_identifier,
        ) {
            (Some(a), Some(b)) if a != b => {
                return Err(format!(
                    "backup_manifest names system {a}, the server said {b}"
                ));
            }
            (Some(id), _) | (None, Some(id)) => id,
            (None, None) => {
                return Err(
                    "neither backup_manifest nor the server named the system identifier".into(),
                );
            }
        };
        let mut info = BaseBackupInfo {
            system_identifier,
            timeline: label.timeline,
            start_lsn: label.start_lsn,
            checkpoint_lsn: label.checkpoint_lsn,
            stop_timeline: last.timeline,
            stop_lsn,
            wal_segment_size: server.wal_segment_size,
            wal_first_segment: String::new(),
            wal_last_segment: String::new(),
            parent: parent.map(str::to_string),
        };
        let (first, last) = info.segments().map_err(|e| e.to_string())?;
        if first != label.start_file {
            return Err(format!(
                "backup_label names segment {} for {}, expected {first} (wal_segment_size {})",
                label.start_file, label.start_lsn, info.wal_segment_size
            ));
        }
        (info.wal_first_segment, info.wal_last_segment) = (first, last);
        // Through the same checks a reader applies.
        Self::from_details(&info.details())
    }
}

/// The lines of `backup_label` that matter here.
struct Label {
    start_lsn: Lsn,
    start_file: String,
    checkpoint_lsn: Lsn,
    timeline: u32,
    /// `INCREMENTAL FROM LSN:` present (PostgreSQL 17+).
    incremental: bool,
}

/// Whether `label` (a `backup_label`) is that of an incremental backup.
pub(crate) fn label_is_incremental(label: &[u8]) -> bool {
    String::from_utf8_lossy(label)
        .lines()
        .any(|l| l.starts_with("INCREMENTAL FROM LSN:"))
}

impl Label {
    /// Parses `START WAL LOCATION: 0/2000028 (file 0000...02)`,
    /// `CHECKPOINT LOCATION: 0/2000060` and `START TIMELINE: 1`.
    fn parse(bytes: &[u8]) -> std::result::Result<Label, String> {
        let text =
            std::str::from_utf8(bytes).map_err(|_| "backup_label is not UTF-8".to_string())?;
        let line = |prefix: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .map(str::trim)
                .ok_or_else(|| format!("backup_label has no {prefix:?} line"))
        };
        let bad =
            |what: &str, value: &str| format!("backup_label: {what} {value:?} does not parse");
        let start = line("START WAL LOCATION:")?;
        let (lsn, file) = start
            .strip_suffix(')')
            .and_then(|s| s.split_once(" (file "))
            .ok_or_else(|| bad("START WAL LOCATION", start))?;
        let checkpoint = line("CHECKPOINT LOCATION:")?;
        let timeline = line("START TIMELINE:")?;
        Ok(Label {
            start_lsn: lsn.parse().map_err(|_| bad("START WAL LOCATION", start))?,
            start_file: file.to_string(),
            checkpoint_lsn: checkpoint
                .parse()
                .map_err(|_| bad("CHECKPOINT LOCATION", checkpoint))?,
            timeline: timeline
                .parse()
                .map_err(|_| bad("START TIMELINE", timeline))?,
            incremental: label_is_incremental(bytes),
        })
    }
}

/// One entry of the manifest's `WAL-Ranges`.
#[derive(Debug)]
struct WalRange {
    timeline: u32,
    start_lsn: String,
    end_lsn: String,
}

impl WalRange {
    /// `{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" }`.
    fn from_json(value: &serde_json::Value) -> Option<WalRange> {
        let text = |key: &str| value.get(key)?.as_str().map(str::to_string);
        Some(WalRange {
            timeline: u32::try_from(value.get("Timeline")?.as_u64()?).ok()?,
            start_lsn: text("Start-LSN")?,
            end_lsn: text("End-LSN")?,
        })
    }
}

/// The JSON value after the last `"key":` in `text`, if the key occurs.
fn value_after(text: &[u8], key: &str) -> std::result::Result<Option<serde_json::Value>, String> {
    let needle = format!("\"{key}\"");
    let Some(at) = text
        .windows(needle.len())
        .rposition(|w| w == needle.as_bytes())
    else {
        return Ok(None);
    };
    let rest = &text[at + needle.len()..];
    let rest = rest.trim_ascii_start();
    let rest = rest
        .strip_prefix(b":")
        .ok_or_else(|| format!("backup_manifest: no ':' after {needle}"))?;
    serde_json::Deserializer::from_slice(rest)
        .into_iter::<serde_json::Value>()
        .next()
        .transpose()
        .map_err(|e| format!("backup_manifest: {needle} does not parse: {e}"))
}

/// `WAL-Ranges` from the end of the manifest.
fn wal_ranges(tail: &[u8]) -> std::result::Result<Vec<WalRange>, String> {
    let ranges = value_after(tail, "WAL-Ranges")?
        .ok_or_else(|| "backup_manifest has no WAL-Ranges (is it complete?)".to_string())?;
    ranges
        .as_array()
        .ok_or("backup_manifest: \"WAL-Ranges\" is no list")?
        .iter()
        .map(|r| {
            WalRange::from_json(r)
                .ok_or_else(|| format!("backup_manifest: WAL range {r} does not parse"))
        })
        .collect()
}

/// Where the WAL a base backup needs ends on `timeline`, from the last
/// bytes of its `backup_manifest` (`WAL-Ranges`); `None` when no range is
/// of that timeline.
pub(crate) fn wal_end_in_manifest(
    tail: &[u8],
    timeline: u32,
) -> std::result::Result<Option<Lsn>, String> {
    wal_ranges(tail)?
        .iter()
        .filter(|r| r.timeline == timeline)
        .map(|r| r.end_lsn.parse::<Lsn>().map_err(|e| e.to_string()))
        .next_back()
        .transpose()
}

/// `System-Identifier` from the start of a version 2 manifest (PostgreSQL
/// 17 on); `None` for version 1.
fn system_identifier(head: &[u8]) -> std::result::Result<Option<u64>, String> {
    match value_after(head, "System-Identifier")? {
        None => Ok(None),
        Some(id) => id
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("backup_manifest: System-Identifier {id} is no number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABEL: &str = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
        CHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n\
        START TIME: 2026-12-02 07:00:00 UTC\nLABEL: backup-postgres\nSTART TIMELINE: 1\n";
    const HEAD_V2: &str = "{ \"PostgreSQL-Backup-Manifest-Version\": 2,\n\"System-Identifier\": 7441234567890123456,\n\"Files\": [\n";
    const TAIL: &str = "{ \"Path\": \"global/pg_control\", \"Size\": 8192 }\n],\n\
        \"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"0/3000000\" }\n],\n\
        \"Manifest-Checksum\": \"abc\"}\n";

    fn captured(label: &str, head: &str, tail: &str) -> Captured {
        Captured {
            label: label.as_bytes().to_vec(),
            manifest_head: head.as_bytes().to_vec(),
            manifest_tail: tail.as_bytes().to_vec(),
        }
    }

    const MB16: u64 = 16 * 1024 * 1024;

    #[test]
    fn facts_from_a_version_2_manifest() {
        let server = ServerFacts {
            system_identifier: None,
            wal_segment_size: MB16,
        };
        let info =
            BaseBackupInfo::from_archive(&captured(LABEL, HEAD_V2, TAIL), server, None).unwrap();
        assert_eq!(info.system_identifier, 7441234567890123456);
        assert_eq!((info.timeline, info.stop_timeline), (1, 1));
        assert_eq!(info.start_lsn.to_string(), "0/2000028");
        assert_eq!(info.checkpoint_lsn.to_string(), "0/2000060");
        assert_eq!(info.stop_lsn.to_string(), "0/3000000");
        // The stop LSN starts segment 3: the backup needs only 2.
        assert_eq!(info.wal_first_segment, "000000010000000000000002");
        assert_eq!(info.wal_last_segment, "000000010000000000000002");
        let back = BaseBackupInfo::from_details(&info.details()).unwrap();
        assert_eq!(back, info);
    }

    #[test]
    fn version_1_takes_the_system_identifier_from_the_server() {
        let head = "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n";
        let c = captured(LABEL, head, TAIL);
        let with = |id| ServerFacts {
            system_identifier: id,
            wal_segment_size: MB16,
        };
        assert_eq!(
            BaseBackupInfo::from_archive(&c, with(Some(42)), None)
                .unwrap()
                .system_identifier,
            42
        );
        assert!(
            BaseBackupInfo::from_archive(&c, with(None), None)
                .unwrap_err()
                .contains("system identifier")
        );
        let v2 = captured(LABEL, HEAD_V2, TAIL);
        assert!(
            BaseBackupInfo::from_archive(&v2, with(Some(42)), None)
                .unwrap_err()
                .contains("server said 42")
        );
    }

    #[test]
    fn inconsistent_or_missing_facts_are_refused() {
        let server = ServerFacts {
            system_identifier: None,
            wal_segment_size: MB16,
        };
        let cases = [
            ("", HEAD_V2, TAIL, "START WAL LOCATION"),
            (
                &LABEL.replace("START TIMELINE: 1\n", ""),
                HEAD_V2,
                TAIL,
                "START TIMELINE",
            ),
            (
                &LABEL.replace("0/2000028 (", "0/2000030 ("),
                HEAD_V2,
                TAIL,
                "backup_label starts at",
            ),
            (
                &LABEL.replace(
                    "(file 000000010000000000000002)",
                    "(file 000000010000000000000003)",
                ),
                HEAD_V2,
                TAIL,
                "names segment",
            ),
            (
                LABEL,
                HEAD_V2,
                "\"Manifest-Checksum\": \"abc\"}",
                "no WAL-Ranges",
            ),
            (
                LABEL,
                HEAD_V2,
                "\"WAL-Ranges\": [ { \"Timeline\": 1 } ]",
                "does not parse",
            ),
            (LABEL, HEAD_V2, "\"WAL-Ranges\": [ ]", "no WAL range"),
            (
                LABEL,
                HEAD_V2,
                &TAIL.replace("0/3000000", "0/1000000"),
                "after stop LSN",
            ),
        ];
        for (label, head, tail, expected) in cases {
            let err = BaseBackupInfo::from_archive(&captured(label, head, tail), server, None)
                .unwrap_err();
            assert!(err.contains(expected), "{expected}: {err}");
        }
        let info =
            BaseBackupInfo::from_archive(&captured(LABEL, HEAD_V2, TAIL), server, None).unwrap();
        let mut d = info.details();
        d.insert(WAL_LAST_SEGMENT.into(), "000000010000000000000009".into());
        assert!(
            BaseBackupInfo::from_details(&d)
                .unwrap_err()
                .contains("does not match")
        );
        d.remove(START_LSN);
        assert!(
            BaseBackupInfo::from_details(&d)
                .unwrap_err()
                .contains("lacks postgres.start_lsn")
        );
    }
}
