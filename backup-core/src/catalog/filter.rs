//! [`Filter`]: which backups a listing returns.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::key::{Key, validate_id};
use crate::manifest::{BackupKind, BackupType, Manifest};

/// Which backups [`Catalog::list`](super::listing::Catalog::list) returns. Empty fields match everything.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Filter {
    /// Only this tenant's backups.
    pub tenant: Option<String>,
    /// Only this source's backups.
    pub source_id: Option<String>,
    /// Only manual or only scheduled backups.
    pub kind: Option<BackupKind>,
    /// Only full or only incremental backups.
    #[serde(rename = "type")]
    pub backup_type: Option<BackupType>,
    /// Started at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Started before this instant.
    pub until: Option<DateTime<Utc>>,
}

impl Filter {
    /// Every backup.
    pub fn all() -> Self {
        Filter::default()
    }

    /// Backups of one tenant.
    pub fn tenant(tenant: impl Into<String>) -> Self {
        Filter {
            tenant: Some(tenant.into()),
            ..Filter::default()
        }
    }

    /// Narrows to one source.
    pub fn source(mut self, source_id: impl Into<String>) -> Self {
        self.source_id = Some(source_id.into());
        self
    }

    /// Whether a manifest passes the filter.
    pub fn matches(&self, m: &Manifest) -> bool {
        self.tenant.as_ref().is_none_or(|t| *t == m.tenant)
            && self.source_id.as_ref().is_none_or(|s| *s == m.source_id)
            && self.kind.is_none_or(|k| k == m.kind)
            && self.backup_type.is_none_or(|t| t == m.backup_type)
            && self.since.is_none_or(|t| m.started_at >= t)
            && self.until.is_none_or(|t| m.started_at < t)
    }

    /// The narrowest store prefix that holds every match.
    pub(super) fn prefix(&self) -> Result<Option<Key>> {
        match (&self.tenant, &self.source_id) {
            (Some(t), Some(s)) => {
                validate_id(t)?;
                validate_id(s)?;
                Ok(Some(Key::new(format!("{t}/{s}"))?))
            }
            (Some(t), None) => {
                validate_id(t)?;
                Ok(Some(Key::new(t.as_str())?))
            }
            _ => Ok(None),
        }
    }
}
