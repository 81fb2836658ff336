//! Per-source health ([`Catalog::health`]) from backups and run records.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::filter::Filter;
use super::listing::Catalog;
use super::run_record::{RUN_RECORD_NAME, RunRecord};
use crate::error::{Error, Result};
use crate::store::StoreExt;

/// Health of one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// A backup succeeded within the threshold and the last run did not fail.
    Healthy,
    /// No successful backup within the threshold (or none at all).
    Stale,
    /// The latest attempt failed.
    Failing,
    /// A source expected on a schedule that has had no backup and no
    /// attempt yet, while its first scheduled run is not overdue (it is due
    /// within [`HealthOptions::first_due`] plus the threshold): no alert yet.
    Pending,
}

impl HealthStatus {
    /// Whether nothing needs attention: healthy, or pending its first
    /// scheduled run. What exit statuses and alerts go by.
    pub fn is_ok(self) -> bool {
        matches!(self, HealthStatus::Healthy | HealthStatus::Pending)
    }
}

/// The health of one source, as [`Catalog::health`] reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceHealth {
    /// Tenant.
    pub tenant: String,
    /// Source id.
    pub source_id: String,
    /// Verdict.
    pub status: HealthStatus,
    /// Start time of the newest committed backup.
    pub last_success: Option<DateTime<Utc>>,
    /// Hours since then.
    pub hours_since_success: Option<f64>,
    /// The error of the latest attempt, when it failed.
    pub last_error: Option<String>,
    /// The threshold applied, in hours (older field: see `stale_after`).
    pub stale_after_hours: f64,
    /// The threshold applied (`24h`), in the syntax `--stale-after` and
    /// `stale_after:` take; written beside `stale_after_hours` for a release.
    #[serde(with = "crate::duration::text", default)]
    pub stale_after: Duration,
}

/// Thresholds for [`Catalog::health`].
#[derive(Debug, Clone)]
pub struct HealthOptions {
    /// Default threshold (24 h).
    pub stale_after: Duration,
    /// Per-source thresholds, keyed `tenant/source_id`.
    pub per_source: HashMap<String, Duration>,
    /// Sources to report even if the store has nothing for them yet
    /// (`(tenant, source_id)`); they are stale until their first backup,
    /// unless [`HealthOptions::first_due`] gives them a grace.
    pub expected: Vec<(String, String)>,
    /// When the first scheduled run of a source is due, keyed
    /// `tenant/source_id` (a host sets it for the sources it schedules): a
    /// source with no backup and no recorded attempt is
    /// [`HealthStatus::Pending`] until that time plus its threshold, then
    /// stale. A source without an entry gets no grace.
    pub first_due: HashMap<String, DateTime<Utc>>,
}

impl Default for HealthOptions {
    fn default() -> Self {
        HealthOptions {
            stale_after: Duration::from_secs(24 * 3600),
            per_source: HashMap::new(),
            expected: Vec::new(),
            first_due: HashMap::new(),
        }
    }
}

impl Catalog {
    /// The latest run record of every source under `filter`'s tenant (or
    /// all), keyed `tenant/source_id`.
    pub async fn run_records(&self, filter: &Filter) -> Result<HashMap<String, RunRecord>> {
        let prefix = filter.prefix()?;
        let mut out = HashMap::new();
        for meta in self.store.list_all(prefix.as_ref()).await? {
            let parts: Vec<&str> = meta.key.segments().collect();
            if parts.len() != 3 || parts[2] != RUN_RECORD_NAME {
                continue;
            }
            match self.store.get_bytes(&meta.key).await {
                Ok(bytes) => match serde_json::from_slice::<RunRecord>(&bytes) {
                    Ok(r) if filter.source_id.as_ref().is_none_or(|s| *s == r.source_id) => {
                        out.insert(format!("{}/{}", r.tenant, r.source_id), r);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(key = %meta.key, error = %e, "unreadable run record"),
                },
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Forgets the run record of a source (`{tenant}/{source_id}/last-run.json`),
    /// so a failed attempt (a mistyped database, a source removed for good)
    /// no longer makes it `failing`: its health follows its backups again,
    /// and a source with neither backups nor a record is no longer listed.
    /// Backups are never deleted. Returns the record removed;
    /// [`Error::NotFound`] when the source has none.
    pub async fn forget_source(&self, tenant: &str, source_id: &str) -> Result<RunRecord> {
        RunRecord::delete(self.store.as_ref(), tenant, source_id).await
    }

    /// Health of every source with backups or run records under `filter`
    /// (plus `opts.expected`): `failing` if the latest attempt failed,
    /// `stale` if no backup succeeded within the threshold, `pending` if
    /// it never ran and its first scheduled run
    /// ([`HealthOptions::first_due`]) is not overdue by the threshold, else
    /// `healthy`.
    pub async fn health(
        &self,
        filter: &Filter,
        opts: &HealthOptions,
        now: DateTime<Utc>,
    ) -> Result<Vec<SourceHealth>> {
        let mut newest: std::collections::BTreeMap<
            String,
            (String, String, Option<DateTime<Utc>>),
        > = std::collections::BTreeMap::new();
        for (tenant, source) in &opts.expected {
            let probe = format!("{tenant}/{source}");
            if filter.tenant.as_ref().is_none_or(|t| t == tenant)
                && filter.source_id.as_ref().is_none_or(|s| s == source)
            {
                newest.insert(probe, (tenant.clone(), source.clone(), None));
            }
        }
        for m in self.list(filter).await? {
            let entry = newest
                .entry(format!("{}/{}", m.tenant, m.source_id))
                .or_insert_with(|| (m.tenant.clone(), m.source_id.clone(), None));
            entry.2 = Some(entry.2.map_or(m.started_at, |t| t.max(m.started_at)));
        }
        let records = self.run_records(filter).await?;
        for (key, r) in &records {
            newest
                .entry(key.clone())
                .or_insert_with(|| (r.tenant.clone(), r.source_id.clone(), None));
        }
        let mut out = Vec::new();
        for (key, (tenant, source_id, last)) in newest {
            let threshold = opts
                .per_source
                .get(&key)
                .copied()
                .unwrap_or(opts.stale_after);
            let age_seconds = last.map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
            let hours = age_seconds.map(|s| s / 3600.0);
            let record = records.get(&key);
            let failing = record.is_some_and(|r| !r.succeeded);
            let stale = age_seconds.is_none_or(|s| s > threshold.as_secs_f64());
            let pending = last.is_none()
                && record.is_none()
                && opts.first_due.get(&key).is_some_and(|due| {
                    // A threshold too large for chrono never runs out.
                    crate::duration::to_chrono(threshold, "stale threshold")
                        .ok()
                        .and_then(|t| due.checked_add_signed(t))
                        .is_none_or(|until| now <= until)
                });
            out.push(SourceHealth {
                tenant,
                source_id,
                status: if failing {
                    HealthStatus::Failing
                } else if pending {
                    HealthStatus::Pending
                } else if stale {
                    HealthStatus::Stale
                } else {
                    HealthStatus::Healthy
                },
                last_success: last,
                hours_since_success: hours.map(|h| (h * 100.0).round() / 100.0),
                last_error: record
                    .filter(|r| !r.succeeded)
                    .and_then(|r| r.error.clone()),
                stale_after_hours: threshold.as_secs_f64() / 3600.0,
                stale_after: threshold,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeZone;

    use super::*;
    use crate::error::Error;
    use crate::manifest::BackupKind;
    use crate::memory::InMemoryStore;

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, h, 0, 0).unwrap()
    }

    fn failed(tenant: &str, source: &str) -> RunRecord {
        RunRecord {
            tenant: tenant.into(),
            source_id: source.into(),
            kind: BackupKind::Manual,
            started_at: at(1),
            finished_at: at(1),
            succeeded: false,
            backup_id: None,
            error: Some("database \"salez\" does not exist".into()),
            scheduled_for: None,
        }
    }

    fn catalog() -> Catalog {
        Catalog::new(Arc::new(InMemoryStore::new()))
    }

    #[tokio::test]
    async fn a_forgotten_source_is_no_longer_failing_and_a_second_forget_is_not_found() {
        let catalog = catalog();
        failed("default", "salez")
            .save(catalog.store().as_ref())
            .await
            .unwrap();
        failed("other", "salez")
            .save(catalog.store().as_ref())
            .await
            .unwrap();
        let opts = HealthOptions::default();
        let before = catalog.health(&Filter::all(), &opts, at(2)).await.unwrap();
        assert_eq!(before.len(), 2);
        assert!(before.iter().all(|h| h.status == HealthStatus::Failing));

        let removed = catalog.forget_source("default", "salez").await.unwrap();
        assert_eq!(removed, failed("default", "salez"));
        let after = catalog.health(&Filter::all(), &opts, at(2)).await.unwrap();
        // Only the other tenant's record is left.
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].tenant, "other");

        match catalog.forget_source("default", "salez").await {
            Err(Error::NotFound { what }) => {
                assert!(what.contains("default/salez"), "{what}")
            }
            other => panic!("expected not found, got {other:?}"),
        }
        assert!(catalog.forget_source("default", "../x").await.is_err());
    }

    #[tokio::test]
    async fn a_scheduled_source_is_pending_until_its_first_run_is_overdue() {
        let catalog = catalog();
        let opts = HealthOptions {
            stale_after: Duration::from_secs(3600),
            expected: vec![
                ("t".into(), "db".into()),
                ("t".into(), "unscheduled".into()),
            ],
            first_due: [("t/db".to_string(), at(3))].into_iter().collect(),
            ..HealthOptions::default()
        };
        // (now, status of t/db): pending through due + threshold, then stale.
        for (now, want) in [
            (at(0), HealthStatus::Pending),
            (at(3), HealthStatus::Pending),
            (at(4), HealthStatus::Pending),
            (at(4) + chrono::Duration::seconds(1), HealthStatus::Stale),
        ] {
            let health = catalog.health(&Filter::all(), &opts, now).await.unwrap();
            let status: Vec<(&str, HealthStatus)> = health
                .iter()
                .map(|h| (h.source_id.as_str(), h.status))
                .collect();
            assert_eq!(
                status,
                [("db", want), ("unscheduled", HealthStatus::Stale)],
                "at {now}"
            );
            assert_eq!(health[0].status.is_ok(), want == HealthStatus::Pending);
        }
        // A failed first attempt is failing at once, grace or not.
        failed("t", "db")
            .save(catalog.store().as_ref())
            .await
            .unwrap();
        let health = catalog.health(&Filter::all(), &opts, at(0)).await.unwrap();
        assert_eq!(health[0].status, HealthStatus::Failing);
    }
}
