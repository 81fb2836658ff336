//! What a run measured, printed at its end.

use std::collections::BTreeMap;
use std::fmt;

use super::victim::{KillMode, Outcome};

/// Counts of one operation kind.
#[derive(Debug, Default)]
pub(crate) struct OpFigures {
    /// Rounds of this kind.
    pub(crate) rounds: usize,
    /// Victims killed (the rest exited before their kill was due).
    pub(crate) killed: usize,
    /// Kills of the whole process group (the others: the victim only).
    pub(crate) group_kills: usize,
    /// Where the kills landed (`before writing`, `mid-stream`, ...).
    pub(crate) phases: BTreeMap<&'static str, usize>,
    /// Kill delays, for the range shown.
    pub(crate) delays_ms: Vec<u128>,
    /// The measured typical duration (ms).
    pub(crate) typical_ms: u128,
}

/// Everything a run counted.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    /// The seed.
    pub(crate) seed: u64,
    /// Per operation kind.
    pub(crate) ops: BTreeMap<String, OpFigures>,
    /// `backupctl verify` runs that succeeded.
    pub(crate) verified: usize,
    /// Restores whose content was compared with the source's.
    pub(crate) restores_compared: usize,
    /// `backupctl check` runs that found every backup intact.
    pub(crate) checks: usize,
    /// Leftovers the kills produced, found before the sweep: temporary
    /// files, in-progress markers, artifacts without manifest, packs
    /// without index, GC markers.
    pub(crate) leftovers: BTreeMap<&'static str, usize>,
    /// Incomplete multipart uploads left in `s3s-fs` by killed victims
    /// (invisible to listings; a bucket lifecycle rule removes them).
    pub(crate) s3_upload_leftovers: usize,
    /// PostgreSQL staging databases found after kills and dropped by
    /// `remove_leftovers`.
    pub(crate) pg_staging_dropped: usize,
    /// MongoDB staging databases found after kills and dropped by
    /// `remove_leftovers`.
    pub(crate) mongo_staging_dropped: usize,
    /// MongoDB restores killed while moving collections into the target:
    /// some collections already replaced, the rest still staged.
    pub(crate) mongo_mid_commit: usize,
    /// Broken backups found (a run stops at the first, so 0 on success).
    pub(crate) broken_backups: usize,
}

impl Figures {
    /// Records a victim's outcome and where it landed.
    pub(crate) fn record(&mut self, op: &str, outcome: &Outcome, phase: &'static str) {
        let f = self.ops.entry(op.to_string()).or_default();
        f.rounds += 1;
        f.killed += usize::from(outcome.killed);
        f.group_kills += usize::from(outcome.killed && outcome.mode == KillMode::Group);
        *f.phases.entry(phase).or_default() += 1;
        f.delays_ms.push(outcome.delay.as_millis());
    }

    /// Records the typical duration measured for `op`.
    pub(crate) fn typical(&mut self, op: &str, ms: u128) {
        self.ops.entry(op.to_string()).or_default().typical_ms = ms;
    }

    /// Adds `n` leftovers of kind `what`.
    pub(crate) fn leftover(&mut self, what: &'static str, n: usize) {
        if n > 0 {
            *self.leftovers.entry(what).or_default() += n;
        }
    }

    /// Rounds over all kinds.
    pub(crate) fn rounds(&self) -> usize {
        self.ops.values().map(|f| f.rounds).sum()
    }

    /// Kills that landed while the victim was writing.
    pub(crate) fn mid_stream(&self) -> usize {
        self.ops
            .values()
            .flat_map(|f| f.phases.iter())
            .filter(|(p, _)| p.starts_with("mid"))
            .map(|(_, n)| n)
            .sum()
    }
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "crash harness: seed {}, {} rounds, {} kills, {} mid-stream/mid-way, {} broken backups",
            self.seed,
            self.rounds(),
            self.ops.values().map(|o| o.killed).sum::<usize>(),
            self.mid_stream(),
            self.broken_backups
        )?;
        for (name, o) in &self.ops {
            let (lo, hi) = (
                o.delays_ms.iter().min().copied().unwrap_or(0),
                o.delays_ms.iter().max().copied().unwrap_or(0),
            );
            let phases: Vec<String> = o.phases.iter().map(|(p, n)| format!("{p} {n}")).collect();
            writeln!(
                f,
                "  {name:<28} rounds {:>3}, killed {:>3} ({} group), typical {} ms, delays {lo}-{hi} ms: {}",
                o.rounds,
                o.killed,
                o.group_kills,
                o.typical_ms,
                phases.join(", ")
            )?;
        }
        let leftovers: Vec<String> = self
            .leftovers
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        writeln!(
            f,
            "  leftovers found and swept: {}; s3 multipart uploads left: {}",
            if leftovers.is_empty() {
                "none".to_string()
            } else {
                leftovers.join(", ")
            },
            self.s3_upload_leftovers
        )?;
        write!(
            f,
            "  staging databases dropped: postgres {}, mongodb {}; mongodb restores killed mid-commit: {}; verified {}, restores compared {}, clean checks {}",
            self.pg_staging_dropped,
            self.mongo_staging_dropped,
            self.mongo_mid_commit,
            self.verified,
            self.restores_compared,
            self.checks
        )
    }
}
