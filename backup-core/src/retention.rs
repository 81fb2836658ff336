//! Retention: which backups of a source to keep.
//!
//! A [`RetentionPolicy`] is a pure function of the backups and `now`: it
//! names the backups it wants to keep and why. Policies combine by union
//! (a backup survives if any policy keeps it), and [`plan`] adds the
//! invariants no policy can override: the newest backup of a source is
//! always kept, and manual backups are kept unless the caller opts in.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::manifest::{BackupKind, Manifest};

/// Decides which backups of one source to keep.
///
/// `backups` holds every committed backup of one source, newest first.
/// The result lists indices into `backups` with a short reason
/// (`"last 7"`); everything not kept by any policy (and not protected by
/// [`plan`]'s invariants) is deleted.
pub trait RetentionPolicy: fmt::Debug + Send + Sync {
    /// Indices of backups to keep, each with a reason.
    fn keep(&self, backups: &[Arc<Manifest>], now: DateTime<Utc>) -> Vec<(usize, String)>;
}

impl<T: RetentionPolicy + ?Sized> RetentionPolicy for Arc<T> {
    fn keep(&self, backups: &[Arc<Manifest>], now: DateTime<Utc>) -> Vec<(usize, String)> {
        (**self).keep(backups, now)
    }
}

impl<T: RetentionPolicy + ?Sized> RetentionPolicy for Box<T> {
    fn keep(&self, backups: &[Arc<Manifest>], now: DateTime<Utc>) -> Vec<(usize, String)> {
        (**self).keep(backups, now)
    }
}

/// Keeps the newest `n` backups (`max_backups`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepLast(pub usize);

impl RetentionPolicy for KeepLast {
    fn keep(&self, backups: &[Arc<Manifest>], _now: DateTime<Utc>) -> Vec<(usize, String)> {
        (0..backups.len().min(self.0))
            .map(|i| (i, format!("last {}", self.0)))
            .collect()
    }
}

/// Options of [`plan`] that are not policies.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct PlanOptions {
    /// Let policies delete manual backups too (by default a person made
    /// them and a person deletes them).
    pub include_manual: bool,
}

impl PlanOptions {
    /// Sets [`PlanOptions::include_manual`].
    pub fn include_manual(mut self, yes: bool) -> Self {
        self.include_manual = yes;
        self
    }
}

/// One backup's fate in a [`RetentionPlan`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Backup id.
    pub id: String,
    /// Source it belongs to.
    pub source_id: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Why it is kept; empty when it is deleted.
    pub reasons: Vec<String>,
}

/// What retention would do for one source: nothing is deleted by planning.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RetentionPlan {
    /// Backups that stay, with the reasons.
    pub keep: Vec<Decision>,
    /// Backups to delete.
    pub delete: Vec<Decision>,
}

/// Applies `policies` (union) and the invariants to one source's backups.
///
/// With no policies at all, everything is kept: an empty configuration
/// never deletes data.
pub fn plan(
    backups: &[Arc<Manifest>],
    policies: &[&dyn RetentionPolicy],
    now: DateTime<Utc>,
    opts: PlanOptions,
) -> RetentionPlan {
    let mut sorted: Vec<Arc<Manifest>> = backups.to_vec();
    sorted.sort_by(|a, b| {
        b.started_at
            .cmp(&a.started_at)
            .then_with(|| b.id.cmp(&a.id))
    });
    // Policies see only the backups they may delete: manual backups are
    // out of their reach (and do not use up a "last N" slot) unless the
    // caller opts in.
    let candidates: Vec<usize> = (0..sorted.len())
        .filter(|&i| opts.include_manual || sorted[i].kind != BackupKind::Manual)
        .collect();
    let visible: Vec<Arc<Manifest>> = candidates.iter().map(|&i| Arc::clone(&sorted[i])).collect();
    let mut reasons: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (i, m) in sorted.iter().enumerate() {
        if !opts.include_manual && m.kind == BackupKind::Manual {
            reasons.entry(i).or_default().push("manual".into());
        }
    }
    if policies.is_empty() {
        for &i in &candidates {
            reasons
                .entry(i)
                .or_default()
                .push("no retention policy".into());
        }
    }
    for policy in policies {
        for (j, why) in policy.keep(&visible, now) {
            if let Some(&i) = candidates.get(j) {
                reasons.entry(i).or_default().push(why);
            }
        }
    }
    if !sorted.is_empty() {
        reasons.entry(0).or_default().push("newest backup".into());
    }
    let mut out = RetentionPlan::default();
    for (i, m) in sorted.iter().enumerate() {
        let decision = Decision {
            id: m.id.clone(),
            source_id: m.source_id.clone(),
            started_at: m.started_at,
            reasons: reasons.remove(&i).unwrap_or_default(),
        };
        if decision.reasons.is_empty() {
            out.delete.push(decision);
        } else {
            out.keep.push(decision);
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::manifest::{BackupType, CompressionInfo, Digests, MANIFEST_VERSION};
    use crate::source::Versions;
    use chrono::TimeZone;

    pub(crate) fn manifest(day: u32, kind: BackupKind) -> Arc<Manifest> {
        let at = Utc.with_ymd_and_hms(2025, 1, day, 3, 0, 0).unwrap();
        let digests = Digests {
            size: 1,
            sha256: String::new(),
            md5: None,
        };
        Arc::new(Manifest {
            manifest_version: MANIFEST_VERSION,
            id: crate::manifest::new_backup_id(at),
            tenant: "t".into(),
            source_id: "s".into(),
            engine: "postgres".into(),
            database: "d".into(),
            kind,
            backup_type: BackupType::Full,
            format: "pgdump".into(),
            compression: CompressionInfo {
                algorithm: "none".into(),
                level: None,
            },
            encryption: None,
            started_at: at,
            finished_at: at,
            artifact: "t/s/x".into(),
            stored: digests.clone(),
            raw: digests,
            versions: Versions::default(),
            parent: None,
            created_by: None,
            labels: Default::default(),
        })
    }

    fn days(plan: &[Decision]) -> Vec<u32> {
        use chrono::Datelike;
        plan.iter().map(|d| d.started_at.day()).collect()
    }

    #[test]
    fn keep_last_cases() {
        let now = Utc.with_ymd_and_hms(2025, 2, 1, 0, 0, 0).unwrap();
        let scheduled: Vec<_> = (1..=5)
            .map(|d| manifest(d, BackupKind::Scheduled))
            .collect();
        // (n, kept days, deleted days)
        let cases: [(usize, &[u32], &[u32]); 4] = [
            (0, &[5], &[4, 3, 2, 1]), // newest survives even keep-last 0
            (1, &[5], &[4, 3, 2, 1]),
            (3, &[5, 4, 3], &[2, 1]),
            (10, &[5, 4, 3, 2, 1], &[]),
        ];
        for (n, keep, delete) in cases {
            let p = plan(&scheduled, &[&KeepLast(n)], now, PlanOptions::default());
            assert_eq!(days(&p.keep), keep, "keep-last {n}");
            assert_eq!(days(&p.delete), delete, "keep-last {n}");
        }
    }

    #[test]
    fn manual_backups_survive_unless_included() {
        let now = Utc.with_ymd_and_hms(2025, 2, 1, 0, 0, 0).unwrap();
        let backups = vec![
            manifest(3, BackupKind::Scheduled),
            manifest(2, BackupKind::Manual),
            manifest(1, BackupKind::Scheduled),
        ];
        let p = plan(&backups, &[&KeepLast(1)], now, PlanOptions::default());
        assert_eq!(days(&p.keep), [3, 2]);
        assert_eq!(p.keep[1].reasons, ["manual"]);
        assert_eq!(days(&p.delete), [1]);
        // A manual backup does not use up a "last N" slot.
        let newest_manual = vec![
            manifest(3, BackupKind::Manual),
            manifest(2, BackupKind::Scheduled),
            manifest(1, BackupKind::Scheduled),
        ];
        let p = plan(&newest_manual, &[&KeepLast(1)], now, PlanOptions::default());
        assert_eq!(days(&p.keep), [3, 2]);
        let p = plan(
            &backups,
            &[&KeepLast(1)],
            now,
            PlanOptions::default().include_manual(true),
        );
        assert_eq!(days(&p.delete), [2, 1]);
    }

    #[test]
    fn no_policy_keeps_everything() {
        let now = Utc.with_ymd_and_hms(2025, 2, 1, 0, 0, 0).unwrap();
        let backups = vec![
            manifest(2, BackupKind::Scheduled),
            manifest(1, BackupKind::Scheduled),
        ];
        let p = plan(&backups, &[], now, PlanOptions::default());
        assert!(p.delete.is_empty());
    }
}
