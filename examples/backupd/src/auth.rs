//! Bearer tokens, roles and tenants, and the audit log.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use axum::http::HeaderMap;
use chrono::Utc;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::config::{Role, TokenConfig};

/// Who is calling.
#[derive(Debug, Clone, Serialize)]
pub struct Principal {
    /// The token's name (its environment variable), never its value.
    pub name: String,
    /// Admin or reader.
    pub role: Role,
    /// Tenant restriction.
    pub tenant: Option<String>,
}

impl Principal {
    /// Whether the caller may see `tenant`'s things.
    pub fn sees(&self, tenant: &str) -> bool {
        self.tenant.as_deref().is_none_or(|t| t == tenant)
    }
}

/// The configured tokens, stored as SHA-256 digests and compared in
/// constant time (hashing first also hides the tokens' lengths).
#[derive(Debug)]
pub struct Tokens {
    entries: Vec<([u8; 32], Principal)>,
}

impl Tokens {
    /// From the configuration.
    pub fn new(tokens: &[TokenConfig]) -> Self {
        Tokens {
            entries: tokens
                .iter()
                .map(|t| {
                    (
                        Sha256::digest(t.secret.expose().as_bytes()).into(),
                        Principal {
                            name: t.name.clone(),
                            role: t.role,
                            tenant: t.tenant.clone(),
                        },
                    )
                })
                .collect(),
        }
    }

    /// The principal for a request's `Authorization: Bearer` header.
    pub fn authenticate(&self, headers: &HeaderMap) -> Option<Principal> {
        let value = headers
            .get(axum::http::header::AUTHORIZATION)?
            .to_str()
            .ok()?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))?
            .trim();
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        // Compare against every entry so timing does not reveal which one
        // matched.
        for (expected, principal) in &self.entries {
            if bool::from(expected.ct_eq(&digest)) {
                found = Some(principal.clone());
            }
        }
        found
    }
}

/// One audit record: who did what, when, and how it ended. Never request
/// bodies (they may carry credentials).
#[derive(Debug, Serialize)]
pub struct AuditRecord<'a> {
    /// When.
    pub at: chrono::DateTime<Utc>,
    /// Token name, or `anonymous`.
    pub who: &'a str,
    /// Its role.
    pub role: Option<Role>,
    /// Its tenant.
    pub tenant: Option<&'a str>,
    /// HTTP method.
    pub method: &'a str,
    /// Request path (ids only).
    pub path: &'a str,
    /// HTTP status returned.
    pub status: u16,
    /// `ok` or `error`.
    pub result: &'a str,
}

/// Appends audit records as JSON lines to a file and to the log.
#[derive(Debug)]
pub struct Audit {
    file: Mutex<Option<std::fs::File>>,
    path: PathBuf,
}

impl Audit {
    /// Opens (creating) the audit file in append mode, mode 0600.
    pub fn open(path: PathBuf) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        Ok(Audit {
            file: Mutex::new(Some(file)),
            path,
        })
    }

    /// Where records go.
    pub fn path(&self) -> &PathBuf {
        &self.path
    }

    /// Writes one record.
    pub fn record(&self, record: &AuditRecord<'_>) {
        let line = serde_json::to_string(record).expect("audit records serialise");
        tracing::info!(target: "audit", "{line}");
        if let Ok(mut guard) = self.file.lock()
            && let Some(file) = guard.as_mut()
            && let Err(e) = writeln!(file, "{line}")
        {
            tracing::warn!(error = %e, "cannot write the audit log");
        }
    }
}
