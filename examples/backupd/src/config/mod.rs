//! `config.yaml`: parsing and validation. Every problem is reported with its
//! path in the file, all at once, and the daemon refuses to start.
//!
//! - `schema`: the file as written (serde structs, unknown fields refused);
//! - `validate`: one function per section, into the validated `types`;
//! - `database`: one `databases:` entry (shared with the REST API);
//! - `fields`: checks shared by every section.

mod database;
mod drill;
mod fields;
mod schema;
mod types;
mod validate;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_engines;
#[cfg(test)]
mod tests_incremental;

pub use crate::engine::Engine;
pub use database::{database, drop_renamed_fields, same_database_by_name};
pub use fields::{EnvLookup, parse_duration};
pub use schema::{
    RENAMED_FIELDS, RawAuth, RawConfig, RawDatabase, RawEncryption, RawGlobal, RawMetrics,
    RawNotifications, RawPackageConf, RawPreset, RawRetention, RawSchedule, RawScheduleSer,
    RawStorage, RawTenant, RawToken, RawWebhook, Replicas,
};
pub use types::{
    BackupMode, Config, DRILL_JOB_PREFIX, DatabaseConfig, DatabaseView, Defaults,
    INCREMENTAL_JOB_PREFIX, MAX_BACKUPS, MAX_DURATION_SECS, MAX_INCREMENTAL_ID, MAX_PARALLEL_JOBS,
    MAX_RETENTION_DAYS, MAX_SHUTDOWN_SECS, PackageConfig, Problems, Retention, Role, StorageConfig,
    TokenConfig, WebhookConfig,
};

/// Parses and validates `text`. `base_dir` resolves relative paths;
/// `env` resolves the `*_var` references.
pub fn load(
    text: &str,
    base_dir: &std::path::Path,
    env: EnvLookup<'_>,
) -> Result<Config, Problems> {
    let raw: RawConfig = serde_yaml_ng::from_str(text).map_err(|e| {
        let mut p = Problems::default();
        // serde_yaml reports the path (`databases[1]: unknown field ...`).
        p.0.push(e.to_string());
        p
    })?;
    validate::validate(raw, base_dir, env)
}
