//! The validated configuration: defaults applied, secrets resolved from
//! the environment, every value checked.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use backup_core::{Compression, Schedule, Secret};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::packages::PackageFormat;
use crate::tenancy::TenantPolicy;

use super::schema::Replicas;

/// A token with its secret value, resolved from the environment.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// The env var name: the token's identity in audit logs.
    pub name: String,
    /// The token itself.
    pub secret: Secret,
    /// Admin or reader.
    pub role: Role,
    /// Tenant restriction.
    pub tenant: Option<String>,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// List, get, stats, status, download.
    Reader,
}

/// How many backups retention keeps and for how long: `keep_last` and
/// `max_age` (the names of `backupctl prune --keep-last/--max-age`) in
/// `global:`, `package-conf:`, each database and the API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Retention {
    /// Keep the newest N.
    pub keep_last: Option<usize>,
    /// Keep what is younger than this (`30d`).
    #[serde(serialize_with = "optional_duration")]
    pub max_age: Option<Duration>,
}

impl Retention {
    /// Each limit of `self`, else the one of `fallback`.
    pub fn or(self, fallback: Retention) -> Retention {
        Retention {
            keep_last: self.keep_last.or(fallback.keep_last),
            max_age: self.max_age.or(fallback.max_age),
        }
    }
}

fn optional_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => backup_core::duration::text::serialize(d, s),
        None => s.serialize_none(),
    }
}

fn display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// A database entry with defaults applied and credentials resolved. Its
/// JSON (through [`DatabaseView`]) never holds the password.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseConfig {
    /// Id: the `source_id` of its backups.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `postgres`, `mongodb`, `mysql` or `sqlite`.
    pub engine: Engine,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database name.
    pub database_name: String,
    /// User name.
    pub username: Option<String>,
    /// Password (process memory only).
    #[serde(skip)]
    pub password: Option<Secret>,
    /// The env var the whole URL came from (`url_var`), kept for display.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_var: Option<String>,
    /// Env var names, kept for display.
    pub username_var: Option<String>,
    /// Env var names, kept for display.
    pub password_var: Option<String>,
    /// Effective schedule.
    pub schedule: Schedule,
    /// Effective compression.
    #[serde(serialize_with = "display")]
    pub compression: Compression,
    /// Effective limits.
    #[serde(flatten)]
    pub retention: Retention,
    /// In packages.
    pub package: bool,
    /// Tenant.
    pub tenant: String,
    /// Staleness threshold (`24h`).
    #[serde(with = "backup_core::duration::text")]
    pub stale_after: Duration,
    /// sslmode.
    pub sslmode: Option<String>,
    /// `sqlite` entries: the database file (`host` is its directory and
    /// `database_name` its file name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// PostgreSQL client tools' directory (`pg_bin`), else discovery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_bin: Option<PathBuf>,
    /// Logical dumps or physical base backups.
    pub mode: BackupMode,
    /// The replication slot WAL is archived from, when `wal_archiving` is
    /// on (physical entries only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_slot: Option<String>,
    /// Physical entries: when block-level incremental base backups are
    /// taken on the newest base backup of the entry (`schedule` is the
    /// full backups').
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incremental: Option<Schedule>,
    /// With `incremental`: a full base backup instead when there is no
    /// parent or the WAL summaries no longer cover it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fallback_to_full: bool,
    /// When restore drills run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drill: Option<Schedule>,
    /// Physical entries with drills: where scratch data directories go.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drill_dir: Option<std::path::PathBuf>,
    /// Physical entries with drills: the role the checks connect as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drill_user: Option<String>,
    /// How long a passed restore drill counts for health (`unverified`
    /// after it).
    #[serde(
        serialize_with = "optional_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub verify_max_age: Option<Duration>,
    /// Retention (scheduled and `POST /api/v1/cleanup`) never deletes the
    /// newest backup with a passed restore drill: `keep_newest_verified`,
    /// by default on for entries with a `drill:` schedule.
    pub keep_newest_verified: bool,
}

/// What the scheduler job id of an entry's incremental base backups
/// starts with (ids starting with `_` are reserved: no entry takes it).
pub const INCREMENTAL_JOB_PREFIX: &str = "_incremental.";

/// What the scheduler job id of an entry's restore drills starts with.
pub const DRILL_JOB_PREFIX: &str = "_drill.";

/// The longest id of an entry with incremental backups, so that its
/// incrementals' job id is an id too (at most 128 characters).
pub const MAX_INCREMENTAL_ID: usize = 128 - INCREMENTAL_JOB_PREFIX.len();

/// What a PostgreSQL entry's backups are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupMode {
    /// `pg_dump` of one database (and every MongoDB entry).
    #[default]
    Logical,
    /// `pg_basebackup` of the whole cluster.
    Physical,
}

impl BackupMode {
    /// Checks `name`, the database an entry of this mode names, as far as
    /// its backups depend on it: a logical entry backs up that database,
    /// so it must be a valid, non-system name for `engine`
    /// ([`check_database_name`](crate::tenancy::check_database_name)); a
    /// physical entry backs up the whole cluster and only connects to
    /// that database (`postgres` is the usual one), so nothing applies.
    pub fn check_database_name(self, engine: Engine, name: &str) -> Result<(), String> {
        match self {
            BackupMode::Logical => crate::tenancy::check_database_name(engine, name),
            BackupMode::Physical => Ok(()),
        }
    }
}

impl DatabaseConfig {
    /// The scheduler job id of this entry's restore drills.
    pub fn drill_job_id(&self) -> String {
        format!("{DRILL_JOB_PREFIX}{}", self.id)
    }

    /// The scheduler job id of this entry's incremental base backups.
    pub fn incremental_job_id(&self) -> String {
        format!("{INCREMENTAL_JOB_PREFIX}{}", self.id)
    }

    /// The checks of this entry's `database_name` that apply to its mode
    /// ([`BackupMode::check_database_name`]).
    pub fn check_database_name(&self) -> Result<(), String> {
        self.mode
            .check_database_name(self.engine, &self.database_name)
    }
}
/// Package settings with defaults applied.
#[derive(Debug, Clone)]
pub struct PackageConfig {
    /// When packages are built.
    pub schedule: Schedule,
    /// Zip or tar.gz.
    pub format: PackageFormat,
    /// Count and age limits.
    pub retention: Retention,
}

/// Webhook settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The URL (secret).
    pub url: Secret,
    /// Slack or JSON.
    pub slack: bool,
    /// Event names.
    pub events: Vec<String>,
}

/// Storage settings with secrets resolved.
#[derive(Debug, Clone)]
pub enum StorageConfig {
    /// A directory.
    Fs(PathBuf),
    /// A bucket.
    S3 {
        /// Bucket.
        bucket: String,
        /// Prefix.
        prefix: Option<String>,
        /// Endpoint.
        endpoint: Option<String>,
        /// Region.
        region: Option<String>,
        /// Access key id.
        access_key: Option<String>,
        /// Secret key.
        secret_key: Option<Secret>,
        /// Path-style.
        path_style: bool,
        /// Plain HTTP allowed.
        allow_http: bool,
    },
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Schedule zone.
    pub tz: Tz,
    /// Listen address from the file.
    pub listen: Option<String>,
    /// Separate metrics address.
    pub metrics_listen: Option<String>,
    /// Token that may read `/metrics`.
    pub metrics_token: Option<Secret>,
    /// Tenant policies by tenant name.
    pub tenants: BTreeMap<String, TenantPolicy>,
    /// Global concurrency.
    pub max_parallel_jobs: usize,
    /// Default staleness threshold.
    pub stale_after: Duration,
    /// Defaults for databases added at run time.
    pub defaults: Defaults,
    /// Packages, if configured.
    pub packages: Option<PackageConfig>,
    /// Storage.
    pub storage: StorageConfig,
    /// Tokens.
    pub tokens: Vec<TokenConfig>,
    /// Webhooks.
    pub webhooks: Vec<WebhookConfig>,
    /// Encryption of new backups.
    pub recipients: Option<backup_core::crypto::AgeRecipients>,
    /// Keys for restoring encrypted backups.
    pub identities: Option<backup_core::crypto::AgeIdentities>,
    /// Audit log path.
    pub audit_log: PathBuf,
    /// Shutdown drain time.
    pub shutdown_timeout: Duration,
    /// Where WAL archivers spool (`wal_spool`).
    pub wal_spool: PathBuf,
    /// Whether scheduled triggers take leases in the store.
    pub replicas: Replicas,
    /// Databases.
    pub databases: Vec<DatabaseConfig>,
}

/// Global defaults applied to databases.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Schedule.
    pub schedule: Schedule,
    /// Compression.
    pub compression: Compression,
    /// Count and age limits.
    pub retention: Retention,
    /// Staleness.
    pub stale_after: Duration,
}

/// Collects problems with their paths.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<String>);

impl Problems {
    pub(super) fn push(&mut self, path: impl AsRef<str>, message: impl AsRef<str>) {
        self.0
            .push(format!("{}: {}", path.as_ref(), message.as_ref()));
    }
}

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.0 {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Longest duration accepted anywhere (`stale_after`): 100 years.
pub const MAX_DURATION_SECS: u64 = 100 * 365 * 86_400;
/// Largest `retention_days`.
pub const MAX_RETENTION_DAYS: u32 = 36_500;
/// Largest `max_backups`.
pub const MAX_BACKUPS: usize = 100_000;
/// Largest `max_parallel_jobs`.
pub const MAX_PARALLEL_JOBS: usize = 256;
/// Largest `shutdown_timeout_seconds` (7 days).
pub const MAX_SHUTDOWN_SECS: u64 = 7 * 86_400;

/// A database entry as shown by the API: the entry's fields (no
/// credentials, only the names of the variables that hold them) and, for
/// a release, the older names `retention_days`, `max_backups` and
/// `stale_after_hours` beside `max_age`, `keep_last` and `stale_after`.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseView {
    /// The entry, its password cleared.
    #[serde(flatten)]
    pub entry: DatabaseConfig,
    /// Whether a password is set (never the password).
    pub has_password: bool,
    /// Older name of `max_age`, in whole days (`null` when `max_age` is
    /// not a whole number of days).
    pub retention_days: Option<u64>,
    /// Older name of `keep_last`.
    pub max_backups: Option<usize>,
    /// Older form of `stale_after`, in hours.
    pub stale_after_hours: f64,
}

impl From<&DatabaseConfig> for DatabaseView {
    fn from(d: &DatabaseConfig) -> Self {
        DatabaseView {
            entry: DatabaseConfig {
                password: None,
                ..d.clone()
            },
            has_password: d.password.is_some(),
            retention_days: d
                .retention
                .max_age
                .filter(|a| a.as_secs().is_multiple_of(86_400))
                .map(|a| a.as_secs() / 86_400),
            max_backups: d.retention.keep_last,
            stale_after_hours: d.stale_after.as_secs_f64() / 3600.0,
        }
    }
}
