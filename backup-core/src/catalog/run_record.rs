//! [`RunRecord`]: the outcome of a source's latest backup attempt.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::key::{Key, validate_id};
use crate::manifest::BackupKind;
use crate::store::{Store, StoreExt};

/// File name of a source's last-run record, beside its backups.
pub const RUN_RECORD_NAME: &str = "last-run.json";

/// The outcome of the latest backup attempt of a source, stored at
/// `{tenant}/{source_id}/last-run.json` so health survives restarts and is
/// shared by every process using the store. Never holds secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Tenant.
    pub tenant: String,
    /// Source id.
    pub source_id: String,
    /// Manual or scheduled.
    pub kind: BackupKind,
    /// When the attempt started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Whether a backup was committed.
    pub succeeded: bool,
    /// The committed backup, on success.
    pub backup_id: Option<String>,
    /// The error, on failure (one line, no secrets).
    pub error: Option<String>,
    /// For a scheduled attempt, the schedule time it stood for (in the
    /// scheduler's clock): a restarted scheduler reads it to know that
    /// trigger ran already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<DateTime<Utc>>,
}

impl RunRecord {
    fn key(tenant: &str, source_id: &str) -> Result<Key> {
        Key::new(format!("{tenant}/{source_id}/{RUN_RECORD_NAME}"))
    }

    /// The latest record of a source, or `None` if it never ran.
    pub async fn load(store: &dyn Store, tenant: &str, source_id: &str) -> Result<Option<Self>> {
        validate_id(tenant)?;
        validate_id(source_id)?;
        let key = Self::key(tenant, source_id)?;
        match store.get_bytes(&key).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Manifest {
                    key: key.to_string(),
                    detail: format!("unreadable run record: {e}"),
                }),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// When the source last ran, for a scheduler deciding whether a missed
    /// trigger still needs a run: the trigger a scheduled attempt stood for,
    /// else (a manual attempt) when it started.
    pub fn last_run(&self) -> DateTime<Utc> {
        self.scheduled_for.unwrap_or(self.started_at)
    }

    /// Removes the record of a source, so health no longer reports its
    /// latest attempt (its backups are not touched). Returns the removed
    /// record; `Error::NotFound` when the source has none.
    pub async fn delete(store: &dyn Store, tenant: &str, source_id: &str) -> Result<Self> {
        let record = Self::load(store, tenant, source_id)
            .await?
            .ok_or_else(|| {
                Error::not_found(format!(
                    "run record of source {tenant}/{source_id} (it has no recorded attempt: nothing to forget)"
                ))
            })?;
        store.delete(&Self::key(tenant, source_id)?).await?;
        Ok(record)
    }

    /// Writes the record (overwriting the previous one).
    pub async fn save(&self, store: &dyn Store) -> Result<()> {
        let key = Self::key(&self.tenant, &self.source_id)?;
        let body = serde_json::to_vec_pretty(self).expect("run records serialise");
        store
            .put(
                &key,
                bytes::Bytes::from(body),
                crate::store::PutOptions::default(),
            )
            .await
            .map(|_| ())
    }
}
