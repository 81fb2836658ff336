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
    /// (`(tenant, source_id)`); they are stale until their first backup.
    pub expected: Vec<(String, String)>,
}

impl Default for HealthOptions {
    fn default() -> Self {
        HealthOptions {
            stale_after: Duration::from_secs(24 * 3600),
            per_source: HashMap::new(),
            expected: Vec::new(),
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

    /// Health of every source with backups or run records under `filter`
    /// (plus `opts.expected`): `failing` if the latest attempt failed,
    /// `stale` if no backup succeeded within the threshold, else `healthy`.
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
            out.push(SourceHealth {
                tenant,
                source_id,
                status: if failing {
                    HealthStatus::Failing
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
