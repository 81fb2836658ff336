//! Timelines: what a `TTTTTTTT.history` file says ([`TimelineHistory`]),
//! and the way from a base backup's timeline to a later one
//! ([`timeline_path`]) as the segments each timeline contributes
//! ([`Leg::segments`]), the way PostgreSQL's recovery follows it.

use backup_core::{Error, Result};

use crate::lsn::Lsn;

/// Largest history file read (one line per ancestor timeline: a few
/// dozen bytes each).
pub(crate) const MAX_HISTORY_BYTES: u64 = 1024 * 1024;

/// One line of a history file: timeline `parent` ended at `at`, where
/// the next timeline of the history begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Switch {
    pub(crate) parent: u32,
    pub(crate) at: Lsn,
}

/// A parsed `TTTTTTTT.history`: the ancestors of `timeline`, oldest first,
/// each with where it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TimelineHistory {
    pub(crate) timeline: u32,
    pub(crate) switches: Vec<Switch>,
}

impl TimelineHistory {
    /// Parses the history file of `timeline` as PostgreSQL writes it
    /// (`parent<TAB>X/Y<TAB>reason` per line; blank lines and `#`
    /// comments skipped). Refuses what PostgreSQL refuses (parents not
    /// increasing, a parent not older than the timeline) and switch
    /// points going backwards.
    pub(crate) fn parse(timeline: u32, text: &str) -> Result<TimelineHistory> {
        let bad = |why: String| {
            Error::Config(format!(
                "the history file {timeline:08X}.history does not parse: {why}"
            ))
        };
        let mut switches: Vec<Switch> = Vec::new();
        for line in text.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(parent), Some(at)) = (fields.next(), fields.next()) else {
                return Err(bad(format!("line {line:?} has no switch point")));
            };
            let parent: u32 = parent
                .parse()
                .map_err(|_| bad(format!("{parent:?} is not a timeline")))?;
            let at: Lsn = at.parse().map_err(|e: Error| bad(e.to_string()))?;
            if let Some(prev) = switches.last()
                && (parent <= prev.parent || at < prev.at)
            {
                return Err(bad(format!(
                    "timeline {parent} at {at} does not follow timeline {} at {}",
                    prev.parent, prev.at
                )));
            }
            if parent == 0 || parent >= timeline {
                return Err(bad(format!(
                    "parent timeline {parent} is not older than {timeline}"
                )));
            }
            switches.push(Switch { parent, at });
        }
        if timeline > 1 && switches.is_empty() {
            return Err(bad("it names no parent timeline".into()));
        }
        Ok(TimelineHistory { timeline, switches })
    }
}

/// One timeline on the way from a base backup to a target timeline:
/// its WAL from `begin` (where it branched off its parent; `None` for the
/// backup's own timeline) to `end` (where the next one branched off it;
/// `None` for the target timeline, which runs to the archive's end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Leg {
    pub(crate) timeline: u32,
    pub(crate) begin: Option<Lsn>,
    pub(crate) end: Option<Lsn>,
}

impl Leg {
    /// The segments this timeline contributes, as PostgreSQL reads them:
    /// from the one holding `begin` (the backup's first segment for the
    /// backup's own timeline) to the one before the segment holding `end`
    /// (that segment comes from the next timeline, whose copy holds this
    /// one's WAL up to the switch). `(first, None)`: to the archive's end.
    /// `None`: it contributes none (the next switch is in its first
    /// segment).
    pub(crate) fn segments(
        &self,
        backup_first: u64,
        segment_size: u64,
    ) -> Result<Option<(u64, Option<u64>)>> {
        let first = match self.begin {
            Some(begin) => begin.segment(segment_size)?,
            None => backup_first,
        };
        match self.end {
            None => Ok(Some((first, None))),
            Some(end) => {
                let next = end.segment(segment_size)?;
                Ok(next
                    .checked_sub(1)
                    .filter(|&last| last >= first)
                    .map(|last| (first, Some(last))))
            }
        }
    }
}

/// The legs from `base` (the backup's timeline, the backup starting at
/// `start`) to `target`'s timeline, following `target`'s history; `None`
/// when `target` does not descend from `base` at a switch point after the
/// backup's start (PostgreSQL would refuse it: the backup's data is not
/// on that timeline's history).
pub(crate) fn timeline_path(base: u32, start: Lsn, target: &TimelineHistory) -> Option<Vec<Leg>> {
    if target.timeline == base {
        return Some(vec![Leg {
            timeline: base,
            begin: None,
            end: None,
        }]);
    }
    let from = target.switches.iter().position(|s| s.parent == base)?;
    let switches = &target.switches[from..];
    if switches[0].at <= start {
        return None;
    }
    let mut legs = Vec::with_capacity(switches.len() + 1);
    let mut begin = None;
    for (i, s) in switches.iter().enumerate() {
        legs.push(Leg {
            timeline: s.parent,
            begin,
            end: Some(s.at),
        });
        begin = Some(switches[i].at);
    }
    legs.push(Leg {
        timeline: target.timeline,
        begin,
        end: None,
    });
    Some(legs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 16 << 20;

    fn lsn(s: &str) -> Lsn {
        s.parse().unwrap()
    }

    #[test]
    fn history_files_parse_as_postgres_writes_them() {
        let h = TimelineHistory::parse(
            3,
            "1\t0/5000A28\tno recovery target specified\n\n# c\n2\t0/9000000\tat restore point \"x\"\n",
        )
        .unwrap();
        assert_eq!(
            h.switches,
            [
                Switch {
                    parent: 1,
                    at: lsn("0/5000A28")
                },
                Switch {
                    parent: 2,
                    at: lsn("0/9000000")
                }
            ]
        );
        assert!(TimelineHistory::parse(1, "").unwrap().switches.is_empty());
        for bad in [
            "",
            "1",
            "x\t0/1\tr",
            "1\tzz\tr",
            "2\t0/1\tr\n1\t0/2\tr",
            "1\t0/2\tr\n2\t0/1\tr",
            "3\t0/1\tr",
            "0\t0/1\tr",
        ] {
            assert!(TimelineHistory::parse(3, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths_follow_the_history_after_the_backup() {
        let h3 = TimelineHistory::parse(3, "1\t0/5000A28\tx\n2\t0/9000000\ty\n").unwrap();
        let legs = timeline_path(1, lsn("0/2000028"), &h3).unwrap();
        assert_eq!(
            legs,
            [
                Leg {
                    timeline: 1,
                    begin: None,
                    end: Some(lsn("0/5000A28"))
                },
                Leg {
                    timeline: 2,
                    begin: Some(lsn("0/5000A28")),
                    end: Some(lsn("0/9000000"))
                },
                Leg {
                    timeline: 3,
                    begin: Some(lsn("0/9000000")),
                    end: None
                },
            ]
        );
        // Segments: TL1 2..=4, TL2 5..=8 (the switch to 3 is on a segment
        // boundary: segment 9 is timeline 3's), TL3 9 on.
        let spans: Vec<_> = legs.iter().map(|l| l.segments(2, SEG).unwrap()).collect();
        assert_eq!(
            spans,
            [Some((2, Some(4))), Some((5, Some(8))), Some((9, None))]
        );
        // A backup on timeline 2 follows the rest.
        assert_eq!(timeline_path(2, lsn("0/6000000"), &h3).unwrap().len(), 2);
        // Forked before the backup started, or from another branch: no.
        assert!(timeline_path(1, lsn("0/6000000"), &h3).is_none());
        assert!(timeline_path(4, lsn("0/1000000"), &h3).is_none());
        // Its own timeline: itself to the end.
        assert_eq!(
            timeline_path(3, lsn("0/A000000"), &h3).unwrap(),
            [Leg {
                timeline: 3,
                begin: None,
                end: None
            }]
        );
        // A timeline whose successor forks in its first segment adds none.
        let leg = Leg {
            timeline: 2,
            begin: Some(lsn("0/5000A28")),
            end: Some(lsn("0/5FFFFFF")),
        };
        assert_eq!(leg.segments(2, SEG).unwrap(), None);
    }
}
