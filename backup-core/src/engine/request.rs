//! [`BackupRequest`]: who, for whom and why a backup is taken.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::manifest::{BackupKind, BackupType, DEFAULT_TENANT};
use crate::source::DumpOptions;

/// Who, for whom and why a backup is taken.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BackupRequest {
    /// Id of the configured source (database entry); part of every key.
    pub source_id: String,
    /// Tenant the backup belongs to ([`DEFAULT_TENANT`](crate::manifest::DEFAULT_TENANT) by default).
    pub tenant: String,
    /// Manual or scheduled.
    pub kind: BackupKind,
    /// Full (one self-contained artifact, the default) or incremental
    /// (deduplicated into the tenant's chunk store; see [`DedupOptions`](crate::dedup::DedupOptions)).
    pub backup_type: BackupType,
    /// What the source should dump.
    pub dump: DumpOptions,
    /// Recorded in the manifest (`cli`, `scheduler`, `api:admin`).
    pub created_by: Option<String>,
    /// Free-form labels recorded in the manifest.
    pub labels: BTreeMap<String, String>,
    /// Cancels this backup (cleanly: nothing is committed) when triggered.
    pub cancel: Option<CancellationToken>,
    /// The schedule time a scheduled backup stands for, recorded in the
    /// source's [`RunRecord`](crate::catalog::RunRecord) so a restarted scheduler knows that trigger
    /// ran ([`BackupJob`](crate::BackupJob) sets it).
    pub scheduled_for: Option<DateTime<Utc>>,
}

impl BackupRequest {
    /// A manual backup of `source_id` for the default tenant.
    pub fn new(source_id: impl Into<String>) -> Self {
        BackupRequest {
            source_id: source_id.into(),
            tenant: DEFAULT_TENANT.to_string(),
            kind: BackupKind::Manual,
            backup_type: BackupType::Full,
            dump: DumpOptions::default(),
            created_by: None,
            labels: BTreeMap::new(),
            cancel: None,
            scheduled_for: None,
        }
    }

    /// Sets [`BackupRequest::scheduled_for`].
    pub fn scheduled_for(mut self, at: Option<DateTime<Utc>>) -> Self {
        self.scheduled_for = at;
        self
    }

    /// Sets a cancellation token for this backup.
    pub fn cancel_token(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Sets the tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = tenant.into();
        self
    }

    /// Sets what the source should dump ([`BackupRequest::dump`]).
    pub fn dump_options(mut self, dump: DumpOptions) -> Self {
        self.dump = dump;
        self
    }

    /// Sets manual or scheduled.
    pub fn kind(mut self, kind: BackupKind) -> Self {
        self.kind = kind;
        self
    }

    /// Sets full or incremental (deduplicated).
    pub fn backup_type(mut self, backup_type: BackupType) -> Self {
        self.backup_type = backup_type;
        self
    }

    /// Sets who asked.
    pub fn created_by(mut self, who: impl Into<String>) -> Self {
        self.created_by = Some(who.into());
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
}
