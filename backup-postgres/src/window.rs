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
use crate::recovery::read_histories;
use crate::wal::{
    Leg, SegmentSet, TimelineHistory, WalArchive, WalFileName, WalPruneReport, timeline_path,
};

/// What one base backup makes restorable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PitrRange {
    /// The base backup.
    pub backup_id: String,
    /// The timeline of this range: the backup's own, or a later one that
    /// descends from it.
    pub timeline: u32,
    /// The earliest restorable point: where the backup's WAL ends (on a
    /// later timeline: where that timeline begins, if after it).
    pub from_lsn: Lsn,
    /// On the backup's own timeline: when the backup was committed (the
    /// earliest restorable time is at or before it). On a later timeline:
    /// when that timeline began, as far as the archive tells, never
    /// before the backup was committed: the earliest of when its history
    /// file and its first segment were archived (the server archives the
    /// history file as it promotes; the timeline began at or before).
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
    /// One range per base backup and timeline it reaches (its own first,
    /// then later ones by number), base backups oldest first.
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
/// WAL in `archive`, per timeline: a base backup's own, and each later
/// one whose history descends from it after the backup's start (a
/// restored copy promoted and archived into the same archive), from its
/// switch point on, as far as the archive holds every segment on the way
/// (see [`RecoveryTimeline`](crate::RecoveryTimeline)).
pub async fn pitr_window(
    engine: &Engine,
    archive: &WalArchive,
    tenant: &str,
    source_id: &str,
) -> Result<PitrWindow> {
    let mut window = PitrWindow::default();
    let mut segments = Segments {
        archive,
        of: BTreeMap::new(),
    };
    let backups = base_backups(engine, tenant, source_id).await?;
    let histories = if backups.is_empty() {
        BTreeMap::new()
    } else {
        read_histories(archive).await?
    };
    for (manifest, info) in backups {
        let size = info.wal_segment_size;
        let base = info.stop_timeline;
        let (_, first) = parse_segment_file_name(&info.wal_first_segment, size)?;
        for legs in paths(&info, &histories) {
            let tli = legs.last().map_or(base, |l| l.timeline);
            let from_lsn = legs
                .last()
                .and_then(|l| l.begin)
                .map_or(info.stop_lsn, |b| b.max(info.stop_lsn));
            let from_time = match legs.last() {
                Some(leg) if tli != base => timeline_began(archive, leg, first, size)
                    .await?
                    .map_or(manifest.finished_at, |t| t.max(manifest.finished_at)),
                _ => manifest.finished_at,
            };
            let mut range = PitrRange {
                backup_id: manifest.id.clone(),
                timeline: tli,
                from_lsn,
                from_time,
                to_lsn: from_lsn,
                to_segment: None,
                to_time: None,
                gap_at: None,
            };
            let mut reached = true;
            for leg in &legs {
                let Some((from, to)) = leg.segments(first, size)? else {
                    continue;
                };
                let set = segments.of(leg.timeline, size).await?;
                if let Some(to) = to {
                    if let Some(missing) = set.missing(from, to).next() {
                        range.gap_at = Some(segment_file_name(leg.timeline, missing, size)?);
                        reached = false;
                        break;
                    }
                    continue;
                }
                let run = set.run_from(from);
                range.gap_at = run
                    .gap
                    .map(|n| segment_file_name(tli, n, size))
                    .transpose()?;
                if let Some(n) = run.last {
                    let name = segment_file_name(tli, n, size)?;
                    let end = n
                        .checked_add(1)
                        .and_then(|e| e.checked_mul(size))
                        .ok_or_else(|| Error::Config("WAL position overflows".into()))?;
                    range.to_time = archive.archived_at(&name).await?;
                    range.to_lsn = Lsn(end).max(from_lsn);
                    range.to_segment = Some(name);
                }
            }
            // A later timeline the archive does not lead to is no range.
            if reached || tli == base {
                window.ranges.push(range);
            }
        }
    }
    Ok(window)
}

/// When the later timeline of `leg` began, as far as the archive tells:
/// the earliest of when its history file and its first segment (the one
/// holding its switch point) were archived; `None` when neither is.
async fn timeline_began(
    archive: &WalArchive,
    leg: &Leg,
    backup_first: u64,
    size: u64,
) -> Result<Option<DateTime<Utc>>> {
    let history = archive
        .archived_at(&format!("{:08X}.history", leg.timeline))
        .await?;
    let segment = match leg.segments(backup_first, size)? {
        Some((from, _)) => {
            archive
                .archived_at(&segment_file_name(leg.timeline, from, size)?)
                .await?
        }
        None => None,
    };
    Ok(history.into_iter().chain(segment).min())
}

/// The segment sets of the archive's timelines, each listed once.
struct Segments<'a> {
    archive: &'a WalArchive,
    of: BTreeMap<u32, SegmentSet>,
}

impl Segments<'_> {
    async fn of(&mut self, timeline: u32, size: u64) -> Result<&SegmentSet> {
        Ok(match self.of.entry(timeline) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(self.archive.segment_set(timeline, size).await?),
        })
    }
}

/// The timelines a base backup reaches, each as the legs to it: its own
/// first, then each later one whose history descends from it after the
/// backup's start, by number.
fn paths<'a>(
    info: &'a BaseBackupInfo,
    histories: &'a BTreeMap<u32, TimelineHistory>,
) -> impl Iterator<Item = Vec<Leg>> + 'a {
    let base = info.stop_timeline;
    let own = vec![Leg {
        timeline: base,
        begin: None,
        end: None,
    }];
    let later = histories
        .range(base.saturating_add(1)..)
        .filter_map(move |(_, h)| timeline_path(base, info.start_lsn, h));
    std::iter::once(own).chain(later)
}

/// Deletes the WAL no kept base backup of `source_id` needs, per
/// timeline:
///
/// - a timeline some kept base backup reaches (its own, or a later one
///   whose history descends from it after its start: see
///   [`pitr_window`]) keeps every segment from the first any of them
///   needs on it (the backup's first segment on its own timeline, the
///   segment holding the switch point on a later one); older segments go;
/// - a timeline none reaches whose history is known (timeline 1, or one
///   with a history file) loses the segments archived before the oldest
///   kept base backup started: no kept backup restores through them, and
///   a backup started since needs only WAL archived after it started
///   (the newer segments stay: a server may be archiving on that timeline
///   with a base backup of it under way);
/// - a timeline without a history file (other than 1) is left whole: where
///   it branched off, and so which backup it continues, is unknown;
/// - history files are never deleted: they are tiny, every restore stages
///   them, and PostgreSQL picks a promoted copy's new timeline past the
///   newest of them.
///
/// `kept` limits the base backups that count to those ids (a retention
/// plan's keep list, so a dry run shows what pruning would do); `None`:
/// every listed one. Without any base backup nothing is deleted: WAL alone
/// restores nothing, but deleting it because backups are missing would
/// turn one mistake into two. Run it after pruning the backups
/// themselves; `dry_run` only reports (files in timeline order).
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
    let mut report = WalPruneReport {
        dry_run,
        ..WalPruneReport::default()
    };
    let Some(oldest_start) = backups.iter().map(|(m, _)| m.started_at).min() else {
        return Ok(report);
    };
    let histories = read_histories(archive).await?;
    // The first segment each reached timeline keeps.
    let mut keep_from: BTreeMap<u32, WalFileName> = BTreeMap::new();
    for (_, info) in &backups {
        let size = info.wal_segment_size;
        let (_, first) = parse_segment_file_name(&info.wal_first_segment, size)?;
        // A backup of a standby promoted meanwhile starts on `timeline`.
        let start = WalFileName::parse(&info.wal_first_segment)?;
        keep_earliest(&mut keep_from, start);
        for legs in paths(info, &histories) {
            for leg in legs {
                if let Some((from, _)) = leg.segments(first, size)? {
                    let name = segment_file_name(leg.timeline, from, size)?;
                    keep_earliest(&mut keep_from, WalFileName::parse(&name)?);
                }
            }
        }
    }
    for timeline in archive.timelines().await? {
        let pruned = match keep_from.get(&timeline) {
            Some(cut) => {
                archive
                    .prune_timeline(timeline, None, Some(cut), dry_run)
                    .await?
            }
            None if timeline == 1 || histories.contains_key(&timeline) => {
                archive
                    .prune_timeline(timeline, Some(oldest_start), None, dry_run)
                    .await?
            }
            None => continue,
        };
        report.removed.extend(pruned.removed);
        report.freed_bytes = report.freed_bytes.saturating_add(pruned.freed_bytes);
    }
    Ok(report)
}

/// Records `name` as where its timeline's kept WAL starts, unless an
/// earlier segment of it is already kept.
fn keep_earliest(keep_from: &mut BTreeMap<u32, WalFileName>, name: WalFileName) {
    match keep_from.entry(name.timeline()) {
        Entry::Vacant(e) => {
            e.insert(name);
        }
        Entry::Occupied(mut e) => {
            if name.as_str() < e.get().as_str() {
                e.insert(name);
            }
        }
    }
}
