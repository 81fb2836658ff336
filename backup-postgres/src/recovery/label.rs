//! What a restored data directory says about itself: `backup_label` (where
//! its WAL starts), `PG_VERSION`, and `pg_controldata` (system identifier,
//! segment size).

use std::path::Path;
use std::process::Stdio;

use backup_core::child::cleared_command;
use backup_core::{Error, Result};
use chrono::{DateTime, NaiveDateTime, Utc};

use crate::tools::{PgTools, parse_major};

/// The facts of `backup_label` a restore needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BackupLabel {
    /// `START WAL LOCATION`'s segment file name.
    pub(crate) start_segment: String,
    /// `START WAL LOCATION` itself.
    pub(crate) start_lsn: u64,
    /// `START TIMELINE`.
    pub(crate) timeline: u32,
    /// `START TIME`, when its zone is UTC or GMT (others are abbreviations
    /// that cannot be read back exactly).
    pub(crate) start_time: Option<DateTime<Utc>>,
}

impl BackupLabel {
    pub(crate) fn read(data_dir: &Path) -> Result<BackupLabel> {
        let path = data_dir.join("backup_label");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::Config(format!(
                "{} has no readable backup_label ({e}): point-in-time restore starts from a data directory just restored from a base backup",
                data_dir.display()
            ))
        })?;
        BackupLabel::parse(&text).ok_or_else(|| {
            Error::Config(format!(
                "{} lacks START WAL LOCATION or START TIMELINE",
                path.display()
            ))
        })
    }

    fn parse(text: &str) -> Option<BackupLabel> {
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(str::trim))
        };
        let location = field("START WAL LOCATION")?;
        let start_lsn = crate::recovery::target::parse_lsn(location.split_whitespace().next()?)?;
        let start_segment = location
            .split_once("(file ")?
            .1
            .strip_suffix(')')?
            .to_string();
        let timeline = field("START TIMELINE")?.parse().ok()?;
        let start_time = field("START TIME").and_then(|t| {
            let t = t.strip_suffix(" UTC").or_else(|| t.strip_suffix(" GMT"))?;
            NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S")
                .ok()
                .map(|n| n.and_utc())
        });
        Some(BackupLabel {
            start_segment,
            start_lsn,
            timeline,
            start_time,
        })
    }
}

/// The major version in `PG_VERSION`.
pub(crate) fn major_version(data_dir: &Path) -> Result<u32> {
    let text = std::fs::read_to_string(data_dir.join("PG_VERSION"))
        .map_err(|e| Error::Config(format!("{} has no PG_VERSION ({e})", data_dir.display())))?;
    parse_major(text.trim())
        .ok_or_else(|| Error::Config(format!("unexpected PG_VERSION {:?}", text.trim())))
}

/// The facts of `pg_controldata` a restore needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ControlData {
    pub(crate) system_id: u64,
    pub(crate) segment_size: u64,
}

impl ControlData {
    pub(crate) async fn read(tools: &PgTools, major: u32, data_dir: &Path) -> Result<ControlData> {
        let tool = tools.resolve("pg_controldata", Some(major)).await?;
        let out = cleared_command(&tool.path)
            .arg("-D")
            .arg(data_dir)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| Error::io(format!("running {}", tool.path.display()), e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let parsed = out
            .status
            .success()
            .then(|| ControlData::parse(&text))
            .flatten();
        parsed.ok_or_else(|| Error::Restore {
            engine: "postgres",
            detail: format!(
                "pg_controldata of {} failed: {}",
                data_dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }

    fn parse(text: &str) -> Option<ControlData> {
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(str::trim))
        };
        let segment_size: u64 = field("Bytes per WAL segment")?.parse().ok()?;
        // PostgreSQL allows powers of two from 1 MiB to 1 GiB.
        if !segment_size.is_power_of_two() || !(1 << 20..=1 << 30).contains(&segment_size) {
            return None;
        }
        Some(ControlData {
            system_id: field("Database system identifier")?.parse().ok()?,
            segment_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_label_fields() {
        let text = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
                    CHECKPOINT LOCATION: 0/2000080\nBACKUP METHOD: streamed\n\
                    BACKUP FROM: primary\nSTART TIME: 2026-12-02 07:17:29 UTC\n\
                    LABEL: pg_basebackup base backup\nSTART TIMELINE: 1\n";
        let label = BackupLabel::parse(text).unwrap();
        assert_eq!(label.start_segment, "000000010000000000000002");
        assert_eq!(label.timeline, 1);
        assert_eq!(label.start_lsn, 0x200_0028);
        assert_eq!(
            label.start_time.unwrap().to_rfc3339(),
            "2026-12-02T07:17:29+00:00"
        );
        let cet = text.replace("UTC", "CET");
        assert_eq!(BackupLabel::parse(&cet).unwrap().start_time, None);
        assert_eq!(BackupLabel::parse("START TIMELINE: 1\n"), None);
    }

    #[test]
    fn control_data_fields() {
        let text = "pg_control version number:            1300\n\
                    Database system identifier:           7443512345678901234\n\
                    Bytes per WAL segment:                16777216\n";
        assert_eq!(
            ControlData::parse(text),
            Some(ControlData {
                system_id: 7443512345678901234,
                segment_size: 16777216
            })
        );
        assert_eq!(ControlData::parse(&text.replace("16777216", "1000")), None);
    }
}
