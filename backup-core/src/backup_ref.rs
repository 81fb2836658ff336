//! [`BackupRef`]: which backup a call means, a backup id and, optionally,
//! the one tenant it must belong to.

use std::fmt;

use crate::manifest::Manifest;

/// A backup id, in any tenant or within one tenant: what
/// [`Engine::restore`](crate::engine::Engine::restore),
/// [`Engine::verify`](crate::engine::Engine::verify),
/// [`Catalog::get`](crate::catalog::Catalog::get) and the other lookups
/// take instead of an `(id, Option<tenant>)` pair.
///
/// Within a tenant, another tenant's backup is
/// [`Error::NotFound`](crate::error::Error::NotFound), exactly as a missing
/// one. The id is checked where it is used: a string that is not a backup
/// id (a traversal attempt, say) is
/// [`Error::InvalidKey`](crate::error::Error::InvalidKey) before any
/// store is touched.
///
/// ```
/// use backup_core::backup_ref::BackupRef;
///
/// let any = BackupRef::from("20250101T000000Z-0000abcd");
/// assert_eq!(any.tenant(), None);
/// let scoped = BackupRef::in_tenant("acme", "20250101T000000Z-0000abcd");
/// assert_eq!(scoped.to_string(), "backup 20250101T000000Z-0000abcd of tenant acme");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackupRef {
    id: String,
    tenant: Option<String>,
}

impl BackupRef {
    /// Backup `id`, whatever its tenant.
    pub fn new(id: impl Into<String>) -> BackupRef {
        BackupRef {
            id: id.into(),
            tenant: None,
        }
    }

    /// Backup `id` of `tenant` only.
    pub fn in_tenant(tenant: impl Into<String>, id: impl Into<String>) -> BackupRef {
        BackupRef {
            id: id.into(),
            tenant: Some(tenant.into()),
        }
    }

    /// Backup `id`, of `tenant` only when one is given.
    pub fn scoped(id: impl Into<String>, tenant: Option<impl Into<String>>) -> BackupRef {
        BackupRef {
            id: id.into(),
            tenant: tenant.map(Into::into),
        }
    }

    /// The backup id (not yet checked).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The tenant the backup must belong to, if any.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }
}

impl<T: AsRef<str> + ?Sized> From<&T> for BackupRef {
    /// The backup with this id, whatever its tenant.
    fn from(id: &T) -> BackupRef {
        BackupRef::new(id.as_ref())
    }
}

impl From<String> for BackupRef {
    /// The backup with this id, whatever its tenant.
    fn from(id: String) -> BackupRef {
        BackupRef::new(id)
    }
}

impl Manifest {
    /// This backup, within its own tenant.
    pub fn backup_ref(&self) -> BackupRef {
        BackupRef::in_tenant(self.tenant.clone(), self.id.clone())
    }
}

impl fmt::Display for BackupRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tenant {
            Some(tenant) => write!(f, "backup {} of tenant {tenant}", self.id),
            None => write!(f, "backup {}", self.id),
        }
    }
}
