//! Which timelines a point-in-time restore follows
//! ([`RecoveryTimeline`]), read from the archive's history files, and the
//! segments it stages from each, checked for gaps along the way.

use std::collections::BTreeMap;

use backup_core::{Error, Result};

use super::label::BackupLabel;
use super::target::RecoveryTimeline;
use super::wal::{Geometry, WalSource};
use crate::lsn::Lsn;
use crate::wal::{Leg, MAX_HISTORY_BYTES, SegmentSet, TimelineHistory, timeline_path};

/// Segments `first..=last` of one timeline, staged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) timeline: u32,
    pub(super) first: u64,
    pub(super) last: u64,
}

/// The timelines a restore follows.
#[derive(Debug)]
pub(super) struct TimelinePlan {
    /// The timeline recovery ends on.
    pub(super) target: u32,
    /// What is staged of each timeline on the way, in WAL order, without
    /// a gap: the segment after one span's last is the next span's first.
    pub(super) spans: Vec<Span>,
    /// Every history file of the archive (name, text), staged too: the
    /// server reads the target's, and picks the timeline it promotes to
    /// past all of them.
    pub(super) histories: Vec<(String, String)>,
}

impl TimelinePlan {
    /// The span's timeline holding segment `segno` (the last span's past
    /// the end).
    pub(super) fn timeline_of(&self, segno: u64) -> u32 {
        self.spans
            .iter()
            .find(|s| segno <= s.last)
            .or(self.spans.last())
            .map_or(self.target, |s| s.timeline)
    }

    /// The last staged segment.
    pub(super) fn last(&self) -> u64 {
        self.spans.last().map_or(0, |s| s.last)
    }
}

/// Reads the archive's history files (fetched and verified like
/// segments), picks the timelines to follow from the base backup's
/// (`label`, first segment `first`) per `wanted`, and checks the archive
/// holds every segment along them. Writes nothing but a temporary file
/// per history file.
pub(super) async fn plan_timelines(
    source: &dyn WalSource,
    wanted: RecoveryTimeline,
    label: &BackupLabel,
    first: u64,
    geometry: Geometry,
) -> Result<TimelinePlan> {
    let histories = read_histories_with_text(source).await?;
    let base = label.timeline;
    let start = Lsn(label.start_lsn);
    let own = || {
        vec![Leg {
            timeline: base,
            begin: None,
            end: None,
        }]
    };
    let legs = match wanted {
        RecoveryTimeline::Current => own(),
        RecoveryTimeline::Id(n) if n == base => own(),
        RecoveryTimeline::Id(n) => {
            let (_, history) = histories.get(&n).ok_or_else(|| Error::NotFound {
                what: format!(
                    "history file {n:08X}.history in the archive (recovery target timeline {n}); nothing was written"
                ),
            })?;
            timeline_path(base, start, history).ok_or_else(|| {
                Error::Config(format!(
                    "recovery target timeline {n} does not descend from the base backup's timeline {base} after the backup's start {start}; nothing was written"
                ))
            })?
        }
        RecoveryTimeline::Latest => histories
            .range(base + 1..)
            .rev()
            .find_map(|(_, (_, h))| timeline_path(base, start, h))
            .unwrap_or_else(own),
    };
    let target = legs.last().map_or(base, |l| l.timeline);
    let mut spans = Vec::with_capacity(legs.len());
    for (i, leg) in legs.iter().enumerate() {
        let Some((from, to)) = leg.segments(first, geometry.segment_size)? else {
            continue;
        };
        let present: SegmentSet = source
            .list(leg.timeline)
            .await?
            .iter()
            .filter_map(|n| geometry.parse(n))
            .filter(|&(t, _)| t == leg.timeline)
            .map(|(_, segno)| segno)
            .collect();
        let tli = leg.timeline;
        let last = match to {
            Some(to) => {
                if let Some(missing) = present.missing(from, to).next() {
                    let next = legs.get(i + 1).map_or(target, |l| l.timeline);
                    return Err(Error::NotFound {
                        what: format!(
                            "WAL segment {} in the archive (segments {} to {} of timeline {tli} must all be there to reach its switch to timeline {next} at {}); nothing was written",
                            geometry.name(tli, missing),
                            geometry.name(tli, from),
                            geometry.name(tli, to),
                            leg.end.unwrap_or_default(),
                        ),
                    });
                }
                to
            }
            None => open_run(&present, geometry, tli, from)?,
        };
        spans.push(Span {
            timeline: tli,
            first: from,
            last,
        });
    }
    Ok(TimelinePlan {
        target,
        spans,
        histories: histories
            .into_iter()
            .map(|(tli, (text, _))| (format!("{tli:08X}.history"), text))
            .collect(),
    })
}

/// The newest segment of the target timeline's run from `first`, which
/// must reach the archive's newest without a gap.
fn open_run(present: &SegmentSet, geometry: Geometry, tli: u32, first: u64) -> Result<u64> {
    let run = present.run_from(first);
    let Some(newest) = run.newest else {
        return Err(Error::NotFound {
            what: format!(
                "WAL segment {} in the archive (it holds none of timeline {tli} from there on: is archiving running?); nothing was written",
                geometry.name(tli, first)
            ),
        });
    };
    if let Some(missing) = run.gap {
        return Err(Error::NotFound {
            what: format!(
                "WAL segment {} in the archive (segments {} to {} must all be there to replay past it); nothing was written",
                geometry.name(tli, missing),
                geometry.name(tli, first),
                geometry.name(tli, newest)
            ),
        });
    }
    Ok(newest)
}

/// Every history file of `source` by timeline, fetched and parsed.
pub(crate) async fn read_histories(
    source: &dyn WalSource,
) -> Result<BTreeMap<u32, TimelineHistory>> {
    Ok(read_histories_with_text(source)
        .await?
        .into_iter()
        .map(|(tli, (_, history))| (tli, history))
        .collect())
}

/// Every history file of the archive, by timeline: its text and what it
/// says.
pub(crate) async fn read_histories_with_text(
    source: &dyn WalSource,
) -> Result<BTreeMap<u32, (String, TimelineHistory)>> {
    let mut out = BTreeMap::new();
    let timelines = source.histories().await?;
    if timelines.is_empty() {
        return Ok(out);
    }
    let dir = tempfile::tempdir()
        .map_err(|e| Error::io("creating a temporary directory for history files", e))?;
    for tli in timelines {
        let name = format!("{tli:08X}.history");
        let path = dir.path().join(&name);
        source.fetch(&name, &path).await?;
        let len = std::fs::metadata(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
            .len();
        if len > MAX_HISTORY_BYTES {
            return Err(Error::Integrity {
                what: format!("history file {name}"),
                detail: format!(
                    "{len} bytes, more than any history file has ({MAX_HISTORY_BYTES})"
                ),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Integrity {
            what: format!("history file {name}"),
            detail: format!("not text: {e}"),
        })?;
        let history = TimelineHistory::parse(tli, &text)?;
        out.insert(tli, (text, history));
    }
    Ok(out)
}
