//! The one contiguity rule of the WAL archive: which segments of a
//! timeline are there, which are missing, and how far a gap-free run
//! from a given segment reaches. Listing ranges
//! ([`WalArchive::missing_between`](super::WalArchive::missing_between)),
//! point-in-time restore and the PITR window all ask it.

use std::collections::BTreeSet;

use backup_core::{Error, Result};

use super::archive::WalArchive;
use super::name::{segment_name, segment_number};

/// The segment numbers of one timeline that an archive holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SegmentSet(BTreeSet<u64>);

/// How far the archive continues without a gap from a first segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    /// The last segment of the gap-free run, `None` when the first one is
    /// missing.
    pub(crate) last: Option<u64>,
    /// The first missing segment after (or at) the first, when the archive
    /// holds a later segment: the run stops short of the archive's end.
    pub(crate) gap: Option<u64>,
    /// The newest segment at or after the first.
    pub(crate) newest: Option<u64>,
}

impl FromIterator<u64> for SegmentSet {
    fn from_iter<I: IntoIterator<Item = u64>>(iter: I) -> Self {
        SegmentSet(iter.into_iter().collect())
    }
}

impl SegmentSet {
    /// The segments from `from` to `to` (inclusive) that are missing, in
    /// order; lazily, so asking for the first costs no more than the run
    /// before it.
    pub(crate) fn missing(&self, from: u64, to: u64) -> impl Iterator<Item = u64> + '_ {
        (from..=to).filter(move |n| !self.0.contains(n))
    }

    /// The gap-free run from `first` (see [`Run`]).
    pub(crate) fn run_from(&self, first: u64) -> Run {
        let newest = self.0.range(first..).next_back().copied();
        let gap = newest.and_then(|newest| self.missing(first, newest).next());
        let last = match (gap, newest) {
            (Some(g), _) if g == first => None,
            (Some(g), _) => Some(g - 1),
            (None, newest) => newest,
        };
        Run { last, gap, newest }
    }
}

impl WalArchive {
    /// Names of the segments from `first` to `last` (inclusive, one
    /// timeline) that are not archived, for a server with
    /// `wal_segment_size`-byte segments.
    pub async fn missing_between(
        &self,
        first: &str,
        last: &str,
        wal_segment_size: u64,
    ) -> Result<Vec<String>> {
        let (tli, from) = segment_number(first, wal_segment_size)?;
        let (last_tli, to) = segment_number(last, wal_segment_size)?;
        if tli != last_tli {
            return Err(Error::Config(format!(
                "{first} and {last} are on different timelines; ask per timeline"
            )));
        }
        if to < from {
            return Err(Error::Config(format!("{last} comes before {first}")));
        }
        if to - from >= MAX_RANGE {
            return Err(Error::Config(format!(
                "{first}..{last} spans more than {MAX_RANGE} segments; give a narrower range"
            )));
        }
        let have = self.segment_set(tli, wal_segment_size).await?;
        have.missing(from, to)
            .map(|n| segment_name(tli, n, wal_segment_size))
            .collect()
    }

    /// The segment numbers of `timeline` in the archive, for a server with
    /// `wal_segment_size`-byte segments (names that are not segments of
    /// that size are not counted).
    pub(crate) async fn segment_set(
        &self,
        timeline: u32,
        wal_segment_size: u64,
    ) -> Result<SegmentSet> {
        Ok(self
            .list(timeline)
            .await?
            .iter()
            .filter_map(|n| segment_number(n, wal_segment_size).ok())
            .filter(|&(t, _)| t == timeline)
            .map(|(_, n)| n)
            .collect())
    }
}

/// Longest range [`WalArchive::missing_between`] walks (2^24 segments,
/// 256 TiB of 16 MiB segments).
const MAX_RANGE: u64 = 1 << 24;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_gaps() {
        let set: SegmentSet = [3, 4, 5, 7, 8].into_iter().collect();
        let cases = [
            // first, last, gap, newest
            (3, Some(5), Some(6), Some(8)),
            (4, Some(5), Some(6), Some(8)),
            (6, None, Some(6), Some(8)),
            (7, Some(8), None, Some(8)),
            (2, None, Some(2), Some(8)),
            (9, None, None, None),
        ];
        for (first, last, gap, newest) in cases {
            assert_eq!(
                set.run_from(first),
                Run { last, gap, newest },
                "from {first}"
            );
        }
        assert_eq!(set.missing(2, 9).collect::<Vec<_>>(), [2, 6, 9]);
        assert_eq!(set.missing(3, 5).count(), 0);
        let empty = SegmentSet::default();
        assert_eq!(
            empty.run_from(0),
            Run {
                last: None,
                gap: None,
                newest: None
            }
        );
    }
}
