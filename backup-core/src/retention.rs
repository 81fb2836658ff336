//! Retention: which backups of a source to keep.
//!
//! A [`RetentionPolicy`] is a pure function of the backups and `now`: it
//! names the backups it wants to keep and why. Policies combine by union
//! (a backup survives if any policy keeps it), and [`plan`] adds the
//! invariants no policy can override: the newest backup of a source is
//! always kept, manual backups are kept unless the caller opts in, and a
//! backup another kept backup depends on ([`Manifest::parent`], followed
//! transitively: the links of an incremental chain) is kept with it. So
//! "keep the last 7" keeps 7 restorable points, whatever their chains.

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

/// Keeps every backup started within `self.0` of `now` (`retention_days`,
/// restic's `--keep-within`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepWithin(pub std::time::Duration);

impl KeepWithin {
    /// Backups younger than `days` days.
    pub fn days(days: u32) -> Self {
        KeepWithin(std::time::Duration::from_secs(u64::from(days) * 86_400))
    }
}

impl RetentionPolicy for KeepWithin {
    fn keep(&self, backups: &[Arc<Manifest>], now: DateTime<Utc>) -> Vec<(usize, String)> {
        // A window too long for `chrono` keeps everything: it covers every
        // backup that can exist (parse_duration never yields one).
        let window = crate::duration::to_chrono(self.0, "retention window").ok();
        let label = format_duration(self.0);
        backups
            .iter()
            .enumerate()
            .filter(|(_, m)| window.is_none_or(|w| now - m.started_at <= w))
            .map(|(i, _)| (i, format!("within {label}")))
            .collect()
    }
}

/// Grandfather-father-son retention: the newest backup of each of the last
/// `daily` days, `weekly` ISO weeks, `monthly` months and `yearly` years
/// that have backups (calendar periods in UTC, as restic and rustic count
/// them: periods without backups do not use up a slot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeepGfs {
    /// Days to keep one backup of.
    pub daily: usize,
    /// ISO weeks to keep one backup of.
    pub weekly: usize,
    /// Months to keep one backup of.
    pub monthly: usize,
    /// Years to keep one backup of.
    pub yearly: usize,
}

impl RetentionPolicy for KeepGfs {
    fn keep(&self, backups: &[Arc<Manifest>], _now: DateTime<Utc>) -> Vec<(usize, String)> {
        use chrono::Datelike;
        type Period = fn(&DateTime<Utc>) -> (i32, u32);
        let buckets: [(usize, &str, Period); 4] = [
            (self.daily, "daily", |t| (t.year(), t.ordinal())),
            (self.weekly, "weekly", |t| {
                let w = t.iso_week();
                (w.year(), w.week())
            }),
            (self.monthly, "monthly", |t| (t.year(), t.month())),
            (self.yearly, "yearly", |t| (t.year(), 0)),
        ];
        let mut out = Vec::new();
        for (count, name, period) in buckets {
            if count == 0 {
                continue;
            }
            let mut last: Option<(i32, u32)> = None;
            let mut kept = 0;
            // Newest first: the first backup seen in a period is its newest.
            for (i, m) in backups.iter().enumerate() {
                let p = period(&m.started_at);
                if last == Some(p) {
                    continue;
                }
                last = Some(p);
                out.push((i, format!("{name} {}", kept + 1)));
                kept += 1;
                if kept == count {
                    break;
                }
            }
        }
        out
    }
}

pub(crate) fn format_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if secs.is_multiple_of(86_400) {
        format!("{}d", secs / 86_400)
    } else if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else {
        format!("{secs}s")
    }
}

/// Keeps the newest backup whose id is in the set: the newest backup with
/// a passed restore drill, when the set holds those
/// ([`PlanOptions::keep_newest_verified`] builds it from the drill
/// records).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeepNewestVerified(pub std::collections::BTreeSet<String>);

impl RetentionPolicy for KeepNewestVerified {
    fn keep(&self, backups: &[Arc<Manifest>], _now: DateTime<Utc>) -> Vec<(usize, String)> {
        backups
            .iter()
            .position(|m| self.0.contains(&m.id))
            .map(|i| (i, "newest verified".to_string()))
            .into_iter()
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
    /// For [`Engine::prune`](crate::Engine::prune) (not [`plan`]): after
    /// deleting, collect the garbage of every tenant pruned, leaving packs
    /// younger than this grace period alone. Off by default; skipped in a
    /// dry run.
    pub collect_garbage: Option<std::time::Duration>,
    /// For [`Engine::prune`](crate::Engine::prune): never delete the
    /// newest backup of a source with a passed restore drill
    /// ([`KeepNewestVerified`]).
    pub keep_newest_verified: bool,
}

impl PlanOptions {
    /// Sets [`PlanOptions::keep_newest_verified`].
    pub fn keep_newest_verified(mut self, yes: bool) -> Self {
        self.keep_newest_verified = yes;
        self
    }

    /// Sets [`PlanOptions::collect_garbage`].
    pub fn collect_garbage(mut self, grace: std::time::Duration) -> Self {
        self.collect_garbage = Some(grace);
        self
    }

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
    /// The backup it depends on (its chain's previous link), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
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
    keep_parents(&sorted, &mut reasons);
    let mut out = RetentionPlan::default();
    for (i, m) in sorted.iter().enumerate() {
        let decision = Decision {
            id: m.id.clone(),
            source_id: m.source_id.clone(),
            started_at: m.started_at,
            reasons: reasons.remove(&i).unwrap_or_default(),
            parent: m.parent.clone(),
        };
        if decision.reasons.is_empty() {
            out.delete.push(decision);
        } else {
            out.keep.push(decision);
        }
    }
    out
}

/// Keeps every link a kept backup depends on, transitively: each parent
/// gets the reason `parent of <child id>`. A parent outside `sorted` (of
/// another source, or gone) adds nothing; a cycle in corrupt manifests
/// ends the walk.
fn keep_parents(sorted: &[Arc<Manifest>], reasons: &mut BTreeMap<usize, Vec<String>>) {
    let index: BTreeMap<&str, usize> = sorted
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id.as_str(), i))
        .collect();
    let kept: Vec<usize> = reasons.keys().copied().collect();
    for start in kept {
        let mut seen = std::collections::BTreeSet::from([start]);
        let mut child = start;
        while let Some(&p) = sorted[child].parent.as_deref().and_then(|id| index.get(id)) {
            if !seen.insert(p) {
                break;
            }
            let why = format!("parent of {}", sorted[child].id);
            let entry = reasons.entry(p).or_default();
            if !entry.contains(&why) {
                entry.push(why);
            }
            child = p;
        }
    }
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
                algorithm: crate::compression::Algorithm::None,
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
            dedup: None,
            details: Default::default(),
            fingerprint: None,
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

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn manifest_at(when: &str) -> Arc<Manifest> {
        let mut m = (*manifest(1, BackupKind::Scheduled)).clone();
        m.started_at = at(when);
        m.id = crate::manifest::new_backup_id(m.started_at);
        Arc::new(m)
    }

    #[test]
    fn keep_within_cases() {
        let now = at("2025-02-01T00:00:00Z");
        let backups: Vec<_> = (1..=31u32)
            .rev()
            .map(|d| manifest(d, BackupKind::Scheduled))
            .collect();
        // (days, kept count); Jan d 03:00 is within N days of Feb 1 00:00
        // when 31 - d + 0.875 <= N.
        for (days, kept) in [(0u32, 1usize), (1, 1), (7, 7), (15, 15), (40, 31)] {
            let p = plan(
                &backups,
                &[&KeepWithin::days(days)],
                now,
                PlanOptions::default(),
            );
            assert_eq!(p.keep.len(), kept, "within {days}d");
        }
    }

    #[test]
    fn gfs_keeps_newest_per_period() {
        let now = at("2025-03-01T00:00:00Z");
        // Two backups a day for 60 days.
        let mut backups = Vec::new();
        let start = at("2025-01-01T01:00:00Z");
        for day in 0..59i64 {
            for hour in [1i64, 13] {
                let t = start + chrono::Duration::days(day) + chrono::Duration::hours(hour - 1);
                backups.push(manifest_at(&t.to_rfc3339()));
            }
        }
        let policy = KeepGfs {
            daily: 3,
            weekly: 2,
            monthly: 2,
            yearly: 1,
        };
        let p = plan(&backups, &[&policy], now, PlanOptions::default());
        let kept: Vec<String> = p
            .keep
            .iter()
            .map(|d| d.started_at.format("%m-%d %H").to_string())
            .collect();
        // Daily: Feb 28, 27, 26 (13:00 each); weekly: Sun Feb 23 is the end
        // of ISO week 8 -> newest of week 9 is Feb 28, of week 8 Feb 23;
        // monthly: Feb 28, Jan 31; yearly: Feb 28.
        assert_eq!(
            kept,
            ["02-28 13", "02-27 13", "02-26 13", "02-23 13", "01-31 13"]
        );
        let reasons = &p.keep[0].reasons;
        assert!(
            reasons.contains(&"daily 1".to_string()) && reasons.contains(&"yearly 1".to_string())
        );
    }

    #[test]
    fn policies_combine_by_union() {
        let now = at("2025-02-01T00:00:00Z");
        let backups: Vec<_> = (1..=31u32)
            .rev()
            .map(|d| manifest(d, BackupKind::Scheduled))
            .collect();
        let p = plan(
            &backups,
            &[&KeepLast(10), &KeepWithin::days(3)],
            now,
            PlanOptions::default(),
        );
        assert_eq!(p.keep.len(), 10);
        let p = plan(
            &backups,
            &[&KeepLast(2), &KeepWithin::days(5)],
            now,
            PlanOptions::default(),
        );
        assert_eq!(p.keep.len(), 5);
        assert!(p.keep[0].reasons.contains(&"last 2".to_string()));
        assert!(p.keep[0].reasons.contains(&"within 5d".to_string()));
    }

    #[test]
    fn a_window_beyond_any_age_keeps_everything() {
        let now = Utc.with_ymd_and_hms(2025, 2, 1, 0, 0, 0).unwrap();
        let backups = vec![
            manifest(2, BackupKind::Scheduled),
            manifest(1, BackupKind::Scheduled),
        ];
        for window in [std::time::Duration::MAX, crate::duration::MAX_DURATION] {
            let kept = KeepWithin(window).keep(&backups, now);
            assert_eq!(kept.len(), 2, "{window:?}");
        }
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

    /// A chain full ← inc1 ← inc2 (and a second full): keeping the newest
    /// point keeps its whole chain, whatever the policy says of the links.
    #[test]
    fn a_kept_incremental_keeps_its_chain() {
        let now = at("2025-02-01T00:00:00Z");
        let with_parent = |day: u32, parent: Option<&Arc<Manifest>>| {
            let mut m = (*manifest(day, BackupKind::Scheduled)).clone();
            m.parent = parent.map(|p| p.id.clone());
            Arc::new(m)
        };
        let full = with_parent(1, None);
        let inc1 = with_parent(2, Some(&full));
        let inc2 = with_parent(3, Some(&inc1));
        let other = with_parent(4, None);
        let backups = vec![other.clone(), inc2.clone(), inc1.clone(), full.clone()];

        let p = plan(&backups, &[&KeepLast(1)], now, PlanOptions::default());
        let kept: Vec<&str> = p.keep.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(kept, [other.id.as_str()], "the newest full needs nothing");

        let p = plan(&backups, &[&KeepLast(2)], now, PlanOptions::default());
        let kept: Vec<&str> = p.keep.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(kept, [&other.id, &inc2.id, &inc1.id, &full.id]);
        assert!(p.delete.is_empty());
        let reasons = |id: &str| p.keep.iter().find(|d| d.id == id).unwrap().reasons.clone();
        assert_eq!(reasons(&inc1.id), [format!("parent of {}", inc2.id)]);
        assert_eq!(reasons(&full.id), [format!("parent of {}", inc1.id)]);
        assert_eq!(
            p.keep
                .iter()
                .find(|d| d.id == inc2.id)
                .unwrap()
                .parent
                .as_deref(),
            Some(inc1.id.as_str()),
            "the plan shows the chain"
        );

        // A corrupt cycle ends the walk instead of looping.
        let mut a = (*with_parent(5, None)).clone();
        let mut b = (*with_parent(6, None)).clone();
        a.parent = Some(b.id.clone());
        b.parent = Some(a.id.clone());
        let p = plan(
            &[Arc::new(b), Arc::new(a)],
            &[&KeepLast(1)],
            now,
            PlanOptions::default(),
        );
        assert_eq!(p.keep.len(), 2);
    }
}
