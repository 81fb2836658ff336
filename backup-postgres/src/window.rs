//! What the base backups and the WAL archive of one source make
//! restorable ([`pitr_window`]), and WAL retention that follows the base
//! backups ([`prune_wal`]).
//!
//! A base backup is restorable to any point from its end (`stop_lsn`: the
//! cluster is consistent only from there) to the end of the WAL archived
//! without a gap from its first segment on. The window of a source is the
//! union of those ranges, one per base backup.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use backup_core::manifest::Manifest;
use backup_core::{Engine, Error, Filter, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::baseinfo::BaseBackupInfo;
use crate::lsn::{Lsn, parse_segment_file_name, segment_file_name};
use crate::physical::BASEBACKUP_FORMAT;
use crate::wal::{SegmentSet, WalArchive, WalPruneReport};

/// What one base backup makes restorable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PitrRange {
    /// The base backup.
    pub backup_id: String,
    /// Its timeline.
    pub timeline: u32,
    /// The earliest restorable point: where the backup's WAL ends.
    pub from_lsn: Lsn,
    /// When the backup was committed (the earliest restorable time is
    /// at or before it).
    pub from_time: DateTime<Utc>,
    /// The latest restorable point: the end of the last segment archived
    /// without a gap after the backup's first (`from_lsn` when the archive
    /// does not continue the backup).
    pub to_lsn: Lsn,
    /// That last segment, if the archive continues the backup.
    pub to_segment: Option<String>,
    /// When that segment was archived (the latest restorable time is
    /// before it).
    pub to_time: Option<DateTime<Utc>>,
    /// The first segment missing after the run, if the archive holds
    /// later segments of the timeline (a gap: points after it are out of
    /// reach from this backup).
    pub gap_at: Option<String>,
}

/// The point-in-time recovery window of one source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PitrWindow {
    /// One range per base backup, oldest first.
    pub ranges: Vec<PitrRange>,
}

impl PitrWindow {
    /// The earliest restorable point (the oldest base backup's end).
    pub fn earliest(&self) -> Option<&PitrRange> {
        self.ranges.first()
    }

    /// The range reaching furthest.
    pub fn latest(&self) -> Option<&PitrRange> {
        self.ranges.iter().max_by_key(|r| (r.timeline, r.to_lsn))
    }
}

/// The base backups of `source_id` in `tenant`, oldest first, with their
/// facts. A base backup whose facts do not parse is an error: its window
/// cannot be told, and retention must not guess.
pub async fn base_backups(
    engine: &Engine,
    tenant: &str,
    source_id: &str,
) -> Result<Vec<(std::sync::Arc<Manifest>, BaseBackupInfo)>> {
    let mut filter = Filter::all();
    filter.tenant = Some(tenant.to_string());
    filter.source_id = Some(source_id.to_string());
    let mut out = Vec::new();
    for m in engine.catalog().list(&filter).await? {
        if m.format == BASEBACKUP_FORMAT {
            let info = BaseBackupInfo::from_manifest(&m)?;
            out.push((m, info));
        }
    }
    out.sort_by(|a, b| {
        a.0.started_at
            .cmp(&b.0.started_at)
            .then(a.0.id.cmp(&b.0.id))
    });
    Ok(out)
}

/// The window of `source_id`: its base backups in the catalog and the
/// WAL in `archive`.
pub async fn pitr_window(
    engine: &Engine,
    archive: &WalArchive,
    tenant: &str,
    source_id: &str,
) -> Result<PitrWindow> {
    let mut window = PitrWindow::default();
    let mut segments_of: BTreeMap<u32, SegmentSet> = BTreeMap::new();
    for (manifest, info) in base_backups(engine, tenant, source_id).await? {
        let size = info.wal_segment_size;
        let tli = info.stop_timeline;
        let numbers = match segments_of.entry(tli) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(archive.segment_set(tli, size).await?),
        };
        let (_, first) = parse_segment_file_name(&info.wal_first_segment, size)?;
        let run = numbers.run_from(first);
        let last = run.last;
        let gap_at = run
            .gap
            .map(|n| segment_file_name(tli, n, size))
            .transpose()?;
        let (to_lsn, to_segment, to_time) = match last {
            Some(n) => {
                let name = segment_file_name(tli, n, size)?;
                let end = n
                    .checked_add(1)
                    .and_then(|e| e.checked_mul(size))
                    .ok_or_else(|| Error::Config("WAL position overflows".into()))?;
                let at = archive.archived_at(&name).await?;
                (Lsn(end).max(info.stop_lsn), Some(name), at)
            }
            None => (info.stop_lsn, None, None),
        };
        window.ranges.push(PitrRange {
            backup_id: manifest.id.clone(),
            timeline: tli,
            from_lsn: info.stop_lsn,
            from_time: manifest.finished_at,
            to_lsn,
            to_segment,
            to_time,
            gap_at,
        });
    }
    Ok(window)
}

/// Deletes the WAL no kept base backup of `source_id` needs: the segments
/// of the oldest base backup's timeline before its first segment. Other
/// timelines and history files stay (conservative: a restore across a
/// timeline switch may need them). `kept` limits the base backups that
/// count to those ids (a retention plan's keep list, so a dry run shows
/// what pruning would do); `None`: every listed one. Without any base
/// backup nothing is deleted: WAL alone restores nothing, but deleting it
/// because backups are missing would turn one mistake into two. Run it
/// after pruning the backups themselves; `dry_run` only reports.
pub async fn prune_wal(
    engine: &Engine,
    archive: &WalArchive,
    tenant: &str,
    source_id: &str,
    kept: Option<&[String]>,
    dry_run: bool,
) -> Result<WalPruneReport> {
    let backups: Vec<_> = base_backups(engine, tenant, source_id)
        .await?
        .into_iter()
        .filter(|(m, _)| kept.is_none_or(|k| k.contains(&m.id)))
        .collect();
    let Some((_, oldest)) = backups.first() else {
        return Ok(WalPruneReport {
            dry_run,
            ..WalPruneReport::default()
        });
    };
    archive
        .prune_before(oldest.timeline, &oldest.wal_first_segment, dry_run)
        .await
}
