//! [`Engine::drill`]: restore a backup into a scratch database, compare
//! its content with the fingerprint recorded at dump time, drop the
//! scratch database, record the result.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;

use super::setup::Engine;
use crate::backup_ref::BackupRef;
use crate::catalog::Filter;
use crate::drill::{DrillRecord, DrillStatus, DrillTarget, NOT_COMPARED, records_prefix};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::fingerprint::compare;
use crate::manifest::Manifest;
use crate::retention::{KeepNewestVerified, PlanOptions};
use crate::store::StoreExt;

/// Most drill records [`Engine::drill_records`] reads in one call.
pub const MAX_DRILL_RECORDS: usize = 10_000;

impl Engine {
    /// Restores `backup` into a fresh scratch database of `target`,
    /// recomputes its fingerprint there and compares it with the one in
    /// the manifest, then drops the scratch database (also when anything
    /// failed). The result is stored beside the backup
    /// (see [`crate::drill`]), emitted as [`Event::DrillSucceeded`] or
    /// [`Event::DrillFailed`] and returned; a failed drill is `Ok` with
    /// [`DrillStatus::Failed`]. `Err` only when the backup cannot be found
    /// or the record cannot be stored.
    ///
    /// A backup without a recorded fingerprint passes when it restores
    /// (every digest verified on the way), with the note
    /// [`NOT_COMPARED`].
    pub async fn drill(
        &self,
        backup: impl Into<BackupRef>,
        target: &dyn DrillTarget,
    ) -> Result<DrillRecord> {
        let manifest = self.catalog.get(backup).await?;
        let started = Instant::now();
        let outcome = self.drill_manifest(&manifest, target).await;
        let duration = started.elapsed();
        let (status, tables, error, note) = match outcome {
            Ok((tables, None, note)) => (DrillStatus::Passed, tables, None, note),
            Ok((tables, Some(why), note)) => (DrillStatus::Failed, tables, Some(why), note),
            Err(e) => (DrillStatus::Failed, Vec::new(), Some(e.to_string()), None),
        };
        let record = DrillRecord {
            backup_id: manifest.id.clone(),
            database: manifest.source_id.clone(),
            tenant: manifest.tenant.clone(),
            status,
            verified_at: Utc::now(),
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            tables,
            error,
            note,
        };
        let json = serde_json::to_vec_pretty(&record).map_err(|e| Error::Manifest {
            key: record.backup_id.clone(),
            detail: format!("drill record does not serialise: {e}"),
        })?;
        self.store
            .create_best_effort(&record.key()?, Bytes::from(json))
            .await?;
        match &record.error {
            None => {
                tracing::info!(id = %record.backup_id, ms = record.duration_ms, "restore drill passed");
                self.events.emit(Event::DrillSucceeded {
                    tenant: record.tenant.clone(),
                    source_id: record.database.clone(),
                    backup_id: record.backup_id.clone(),
                    duration_seconds: duration.as_secs_f64(),
                    at: record.verified_at,
                });
            }
            Some(error) => {
                tracing::warn!(id = %record.backup_id, %error, "restore drill FAILED");
                self.events.emit(Event::DrillFailed {
                    tenant: record.tenant.clone(),
                    source_id: record.database.clone(),
                    backup_id: record.backup_id.clone(),
                    error: error.clone(),
                    at: record.verified_at,
                });
            }
        }
        Ok(record)
    }

    /// [`Engine::drill`] of the newest backup of `source_id` in `tenant`.
    pub async fn drill_latest(
        &self,
        tenant: &str,
        source_id: &str,
        target: &dyn DrillTarget,
    ) -> Result<DrillRecord> {
        let newest = self
            .catalog
            .list(&Filter::tenant(tenant).source(source_id))
            .await?
            .into_iter()
            .find(|m| m.engine == target.engine())
            .ok_or_else(|| {
                Error::not_found(format!(
                    "a {} backup of {tenant}/{source_id}",
                    target.engine()
                ))
            })?;
        self.drill(BackupRef::in_tenant(tenant, newest.id.clone()), target)
            .await
    }

    /// Drill records of `tenant` (of one source, if given), newest first.
    /// Records that cannot be read are skipped with a warning.
    pub async fn drill_records(
        &self,
        tenant: &str,
        source_id: Option<&str>,
    ) -> Result<Vec<DrillRecord>> {
        let prefix = records_prefix(tenant, source_id)?;
        let mut keys = Vec::new();
        let mut listing = self.store.list(Some(&prefix));
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            if meta.key.as_str().ends_with(".json") {
                keys.push(meta.key);
            }
            if keys.len() >= MAX_DRILL_RECORDS {
                break;
            }
        }
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let parsed = match self.store.get_bytes(&key).await {
                Ok(bytes) => {
                    serde_json::from_slice::<DrillRecord>(&bytes).map_err(|e| e.to_string())
                }
                Err(Error::NotFound { .. }) => continue,
                Err(e) => Err(e.to_string()),
            };
            match parsed {
                Ok(r) if r.tenant == tenant => out.push(r),
                Ok(_) => tracing::warn!(%key, "skipping a drill record of another tenant"),
                Err(e) => tracing::warn!(%key, error = %e, "skipping unreadable drill record"),
            }
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.verified_at));
        Ok(out)
    }

    /// With [`PlanOptions::keep_newest_verified`]: the policy keeping the
    /// newest of `backups` (one source's) with a passed drill.
    pub(super) async fn verified_policy(
        &self,
        backups: &[Arc<Manifest>],
        opts: PlanOptions,
    ) -> Result<Option<KeepNewestVerified>> {
        let Some(first) = backups.first().filter(|_| opts.keep_newest_verified) else {
            return Ok(None);
        };
        let passed = self
            .drill_records(&first.tenant, Some(&first.source_id))
            .await?
            .into_iter()
            .filter(DrillRecord::passed)
            .map(|r| r.backup_id)
            .collect();
        Ok(Some(KeepNewestVerified(passed)))
    }

    /// Restores and compares; `Ok((tables, failure, note))`.
    async fn drill_manifest(
        &self,
        manifest: &Arc<Manifest>,
        target: &dyn DrillTarget,
    ) -> Result<(
        Vec<crate::fingerprint::TableCheck>,
        Option<String>,
        Option<String>,
    )> {
        if manifest.engine != target.engine() {
            return Err(Error::Config(format!(
                "backup {} is a {} backup; the drill server is {}",
                manifest.id,
                manifest.engine,
                target.engine()
            )));
        }
        let scratch = target.scratch().await?;
        tracing::info!(id = %manifest.id, scratch = %scratch.name(), "restore drill started");
        let checked = async {
            let backup = BackupRef::in_tenant(manifest.tenant.clone(), manifest.id.clone());
            let checks = scratch
                .restore(self, backup)
                .await
                .map_err(|e| e.to_string())?;
            let restored = match &manifest.fingerprint {
                None => None,
                Some(_) => Some(
                    scratch
                        .fingerprint()
                        .await
                        .map_err(|e| format!("counting the restored copy: {e}"))?,
                ),
            };
            Ok::<_, String>((restored, checks))
        }
        .await;
        let name = scratch.name().to_string();
        let dropped = scratch.discard().await;
        let dropped = dropped.err().map(|e| {
            format!("the scratch database {name} could not be dropped ({e}); the leftover sweep drops it later")
        });
        let (restored, checks) = match checked {
            Ok(found) => found,
            Err(why) => return Ok((Vec::new(), Some(why), dropped)),
        };
        let mut note = match (checks, dropped) {
            (Some(c), Some(d)) => Some(format!("{c}; {d}")),
            (c, d) => c.or(d),
        };
        match (&manifest.fingerprint, restored) {
            (Some(expected), Some(restored)) => {
                let comparison = compare(expected, &restored);
                let failure = (!comparison.matches()).then(|| {
                    format!(
                        "content differs from the dump: {}",
                        comparison.differences.join("; ")
                    )
                });
                Ok((comparison.tables, failure, note))
            }
            _ => {
                note = Some(match note {
                    Some(n) => format!("{NOT_COMPARED}; {n}"),
                    None => NOT_COMPARED.to_string(),
                });
                Ok((Vec::new(), None, note))
            }
        }
    }
}
