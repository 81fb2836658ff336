//! Pages of a listing and counts of backups ([`Catalog::page`],
//! [`Catalog::stats`]).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::filter::Filter;
use super::listing::Catalog;
use crate::error::Result;
use crate::manifest::Manifest;

/// Which slice of a listing to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// Items to skip.
    pub offset: usize,
    /// Most items to return.
    pub limit: usize,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            offset: 0,
            limit: 100,
        }
    }
}

/// One page of backups, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct BackupPage {
    /// The backups on this page.
    pub items: Vec<Arc<Manifest>>,
    /// Matching backups in all pages.
    pub total: usize,
    /// Offset of the next page, if there is one.
    pub next_offset: Option<usize>,
}

/// Counts and sizes of a set of backups. In JSON the newest start time is
/// `last_success` (the name health uses) and, for a release, also `last`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "StatsJson", into = "StatsJson")]
pub struct Stats {
    /// Number of backups.
    pub count: usize,
    /// Bytes they added to the store (for incremental backups the new
    /// chunks, not the size of the dump: see [`Manifest::bytes_stored`]).
    pub total_bytes: u64,
    /// Start time of the newest (every listed backup succeeded).
    pub last_success: Option<DateTime<Utc>>,
    /// Start time of the oldest.
    pub oldest: Option<DateTime<Utc>>,
}

/// [`Stats`] as JSON: `last` is the older name of `last_success`, written
/// beside it and read when it is the only one, for a release.
#[derive(Serialize, Deserialize)]
struct StatsJson {
    count: usize,
    total_bytes: u64,
    #[serde(default)]
    last_success: Option<DateTime<Utc>>,
    #[serde(default)]
    last: Option<DateTime<Utc>>,
    oldest: Option<DateTime<Utc>>,
}

impl From<StatsJson> for Stats {
    fn from(j: StatsJson) -> Stats {
        Stats {
            count: j.count,
            total_bytes: j.total_bytes,
            last_success: j.last_success.or(j.last),
            oldest: j.oldest,
        }
    }
}

impl From<Stats> for StatsJson {
    fn from(s: Stats) -> StatsJson {
        StatsJson {
            count: s.count,
            total_bytes: s.total_bytes,
            last_success: s.last_success,
            last: s.last_success,
            oldest: s.oldest,
        }
    }
}

impl Stats {
    pub(super) fn add(&mut self, m: &Manifest) {
        self.count += 1;
        self.total_bytes = self.total_bytes.saturating_add(m.bytes_stored());
        self.last_success = Some(
            self.last_success
                .map_or(m.started_at, |t| t.max(m.started_at)),
        );
        self.oldest = Some(self.oldest.map_or(m.started_at, |t| t.min(m.started_at)));
    }
}

/// [`Stats`] overall, per tenant and per source (`tenant/source_id`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    /// Everything matched.
    pub total: Stats,
    /// Per tenant.
    pub tenants: std::collections::BTreeMap<String, Stats>,
    /// Per `tenant/source_id`.
    pub sources: std::collections::BTreeMap<String, Stats>,
}

impl Catalog {
    /// One page of [`Catalog::list`].
    pub async fn page(&self, filter: &Filter, page: Page) -> Result<BackupPage> {
        let all = self.list(filter).await?;
        let total = all.len();
        let items: Vec<Arc<Manifest>> =
            all.into_iter().skip(page.offset).take(page.limit).collect();
        let end = page.offset + items.len();
        Ok(BackupPage {
            items,
            total,
            next_offset: (end < total).then_some(end),
        })
    }

    /// Count, total size, newest and oldest backup: overall, per tenant and
    /// per source.
    pub async fn stats(&self, filter: &Filter) -> Result<StatsReport> {
        let mut report = StatsReport::default();
        for m in self.list(filter).await? {
            report.total.add(&m);
            report.tenants.entry(m.tenant.clone()).or_default().add(&m);
            report
                .sources
                .entry(format!("{}/{}", m.tenant, m.source_id))
                .or_default()
                .add(&m);
        }
        Ok(report)
    }
}
