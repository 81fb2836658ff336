//! `config.yaml`: parsing and validation. Every problem is reported with its
//! path in the file, all at once, and the daemon refuses to start.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use backup_core::{Compression, Schedule, Secret, key::validate_id, schedule::parse_tz};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// The file as written. Unknown fields are errors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// IANA zone for schedules (default: `TZ`, else UTC).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Listen address (the `--listen` flag wins).
    #[serde(default)]
    pub listen: Option<String>,
    /// A second address serving only `/metrics`, `/healthz` and `/readyz`
    /// (without a token unless `metrics.token_var` is set).
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// Access to `/metrics`.
    #[serde(default)]
    pub metrics: Option<RawMetrics>,
    /// What tokens bound to each tenant may register.
    #[serde(default)]
    pub tenants: BTreeMap<String, RawTenant>,
    /// Defaults for every database.
    #[serde(default)]
    pub global: RawGlobal,
    /// Packages: bundles of the latest backup of each `package: true`
    /// database.
    #[serde(default, rename = "package-conf")]
    pub package_conf: Option<RawPackageConf>,
    /// Where backups go.
    pub storage: RawStorage,
    /// Bearer tokens.
    #[serde(default)]
    pub auth: RawAuth,
    /// Webhooks.
    #[serde(default)]
    pub notifications: RawNotifications,
    /// age encryption of new backups and the key to restore them.
    #[serde(default)]
    pub encryption: Option<RawEncryption>,
    /// Audit log file (JSON lines); default `audit.log` beside the config.
    #[serde(default)]
    pub audit_log: Option<PathBuf>,
    /// Seconds running backups may take to finish on SIGTERM (default 300).
    #[serde(default)]
    pub shutdown_timeout_seconds: Option<u64>,
    /// How many backupd processes share the storage: `many` (the default)
    /// takes a lease in the store per scheduled trigger, so each runs once,
    /// and needs storage with exclusive create-only writes; `one` takes no
    /// leases (for storage without them, such as Garage).
    #[serde(default)]
    pub replicas: Option<Replicas>,
    /// Databases registered at start-up.
    #[serde(default)]
    pub databases: Vec<RawDatabase>,
}

/// `replicas:` how many daemons share the storage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Replicas {
    /// This daemon is the only one using the storage: no leases.
    One,
    /// Several daemons may share the storage: a lease per trigger.
    #[default]
    Many,
}

/// `global:`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGlobal {
    /// Default schedule.
    pub schedule: Option<RawSchedule>,
    /// Default compression.
    pub compression: Option<String>,
    /// Default age limit in days.
    pub retention_days: Option<u32>,
    /// Default count limit.
    pub max_backups: Option<usize>,
    /// Runs at once.
    pub max_parallel_jobs: Option<usize>,
    /// Default staleness threshold (`24h`).
    pub stale_after: Option<String>,
}

/// `metrics:`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Env var holding a bearer token that may read `/metrics` (and
    /// nothing else); required on `metrics_listen` too when set.
    #[serde(default)]
    pub token_var: Option<String>,
}

/// One `tenants.<name>:` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenant {
    /// Hosts (`host` or `host:port`) this tenant's tokens may register
    /// databases on. Without any, they may register none.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Database names (or prefixes ending in `*`) they may register and
    /// restore into; empty: any name that is not another tenant's or a
    /// system database.
    #[serde(default)]
    pub allowed_databases: Vec<String>,
}

/// `package-conf:`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPackageConf {
    /// When packages are built.
    pub schedule: Option<RawSchedule>,
    /// `zip` or `tar.gz`.
    pub compression: Option<String>,
    /// Age limit in days.
    pub retention_days: Option<u32>,
    /// Count limit.
    pub max_backups: Option<usize>,
}

/// A schedule: a crontab string, a compact preset string, or a mapping
/// `{preset: daily, time: "03:00"}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawSchedule {
    /// `"0 3 * * *"`, `"@daily"`, `"daily 03:00"`, `"disabled"`.
    Text(String),
    /// `{preset: weekly, weekday: mon, time: "04:00"}`.
    Preset(RawPreset),
}

/// The mapping form of a preset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPreset {
    /// `disabled`, `daily`, `every_12h`, `every_6h`, `weekly`, `monthly`,
    /// `scheduled`/`once`.
    pub preset: String,
    /// `HH:MM` for daily/weekly/monthly.
    pub time: Option<String>,
    /// `HH:MM` base for every_12h/every_6h.
    pub base: Option<String>,
    /// `mon`..`sun` for weekly.
    pub weekday: Option<String>,
    /// 1-28 for monthly.
    pub day: Option<u32>,
    /// `YYYY-MM-DDTHH:MM` for once.
    pub at: Option<String>,
}

impl RawSchedule {
    fn compact(&self) -> String {
        match self {
            RawSchedule::Text(s) => s.clone(),
            RawSchedule::Preset(p) => {
                let time = p.time.clone().unwrap_or_default();
                match p.preset.as_str() {
                    "daily" => format!("daily {time}"),
                    "every_12h" | "every_6h" => {
                        format!(
                            "{} {}",
                            p.preset,
                            p.base.clone().or(p.time.clone()).unwrap_or_default()
                        )
                    }
                    "weekly" => format!("weekly {} {time}", p.weekday.clone().unwrap_or_default()),
                    "monthly" => format!("monthly {} {time}", p.day.unwrap_or(0)),
                    "scheduled" | "once" => format!("once {}", p.at.clone().unwrap_or_default()),
                    other => other.to_string(),
                }
            }
        }
    }
}

/// `storage:`
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum RawStorage {
    /// A local directory.
    Fs {
        /// The directory.
        path: PathBuf,
    },
    /// An S3-compatible bucket.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix inside the bucket.
        #[serde(default)]
        prefix: Option<String>,
        /// Endpoint URL (MinIO, R2, Supabase...).
        #[serde(default)]
        endpoint: Option<String>,
        /// Region.
        #[serde(default)]
        region: Option<String>,
        /// Env var holding the access key id.
        #[serde(default)]
        access_key_var: Option<String>,
        /// Env var holding the secret key.
        #[serde(default)]
        secret_key_var: Option<String>,
        /// Path-style requests (MinIO and most self-hosted servers).
        #[serde(default)]
        path_style: Option<bool>,
        /// Allow plain HTTP (loopback, tests).
        #[serde(default)]
        allow_http: Option<bool>,
    },
}

/// `encryption:`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEncryption {
    /// age recipients (`age1...`): public keys, safe in the file.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Env var holding the identity (`AGE-SECRET-KEY-1...`) used for
    /// restores; without it, encrypted backups can be made and verified
    /// (stored bytes) but not restored by the daemon.
    #[serde(default)]
    pub identity_var: Option<String>,
}

/// `auth:`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Tokens.
    #[serde(default)]
    pub tokens: Vec<RawToken>,
}

/// One token entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    /// Env var holding the token.
    pub token_var: String,
    /// `admin` or `reader`.
    pub role: String,
    /// Restrict to one tenant.
    #[serde(default)]
    pub tenant: Option<String>,
}

/// `notifications:`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotifications {
    /// Webhooks.
    #[serde(default)]
    pub webhooks: Vec<RawWebhook>,
}

/// One webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// Env var holding the URL (it usually embeds a token).
    pub url_var: String,
    /// `json` (default) or `slack`.
    #[serde(default)]
    pub format: Option<String>,
    /// Events to send (default: succeeded, failed, stale).
    #[serde(default)]
    pub events: Option<Vec<String>>,
}

/// One `databases:` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    /// Unique id (letters, digits, `-`, `_`, `.`).
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// `postgres` or `mongodb`.
    pub engine: String,
    /// Host name.
    #[serde(default)]
    pub host: Option<String>,
    /// Port.
    #[serde(default)]
    pub port: Option<u16>,
    /// Database to back up.
    pub database_name: String,
    /// Env var holding the user name.
    #[serde(default)]
    pub username_var: Option<String>,
    /// Env var holding the password.
    #[serde(default)]
    pub password_var: Option<String>,
    /// Schedule (else the global one).
    #[serde(default, skip_serializing)]
    pub schedule: Option<RawScheduleSer>,
    /// Compression (else the global one).
    #[serde(default)]
    pub compression: Option<String>,
    /// Age limit in days (else global).
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// Count limit (else global).
    #[serde(default)]
    pub max_backups: Option<usize>,
    /// Include in packages.
    #[serde(default)]
    pub package: bool,
    /// Tenant (default tenant otherwise).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Staleness threshold (`24h`).
    #[serde(default)]
    pub stale_after: Option<String>,
    /// `sslmode` for PostgreSQL.
    #[serde(default)]
    pub sslmode: Option<String>,
}

/// Wrapper so a database entry can derive `Serialize` while the schedule
/// stays an input-only type.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct RawScheduleSer(pub RawSchedule);

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

/// A database entry with defaults applied and credentials resolved.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `postgres` or `mongodb`.
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
    pub password: Option<Secret>,
    /// Env var names, kept for display.
    pub username_var: Option<String>,
    /// Env var names, kept for display.
    pub password_var: Option<String>,
    /// Effective schedule.
    pub schedule: Schedule,
    /// Effective compression.
    pub compression: Compression,
    /// Effective age limit.
    pub retention_days: Option<u32>,
    /// Effective count limit.
    pub max_backups: Option<usize>,
    /// In packages.
    pub package: bool,
    /// Tenant.
    pub tenant: String,
    /// Staleness threshold.
    pub stale_after: Duration,
    /// sslmode.
    pub sslmode: Option<String>,
}

/// Supported engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// PostgreSQL via pg_dump/pg_restore.
    Postgres,
    /// MongoDB via the native driver.
    Mongodb,
}

/// Package settings with defaults applied.
#[derive(Debug, Clone)]
pub struct PackageConfig {
    /// When packages are built.
    pub schedule: Schedule,
    /// Zip or tar.gz.
    pub format: crate::packages::PackageFormat,
    /// Age limit.
    pub retention_days: Option<u32>,
    /// Count limit.
    pub max_backups: Option<usize>,
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
    pub tenants: BTreeMap<String, crate::tenancy::TenantPolicy>,
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
    /// Age limit.
    pub retention_days: Option<u32>,
    /// Count limit.
    pub max_backups: Option<usize>,
    /// Staleness.
    pub stale_after: Duration,
}

/// Collects problems with their paths.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<String>);

impl Problems {
    fn push(&mut self, path: impl AsRef<str>, message: impl AsRef<str>) {
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

/// Parses `90m`, `12h`, `30d`, `2w`, `1y` (or `s`) with checked
/// arithmetic: zero, overflow and anything above 100 years are errors.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("invalid duration {s:?} (expected e.g. 90m, 12h, 30d, 2w, 1y)");
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .filter(|&i| i > 0)
        .ok_or_else(bad)?;
    let (digits, unit) = t.split_at(split);
    let unit_secs: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "y" => 365 * 86_400,
        _ => return Err(bad()),
    };
    let out_of_range = || format!("duration {s:?} is out of range (1s to 100y)");
    // Only digits: a parse failure is an overflow.
    let n: u64 = digits.parse().map_err(|_| out_of_range())?;
    let secs = n
        .checked_mul(unit_secs)
        .filter(|&secs| (1..=MAX_DURATION_SECS).contains(&secs))
        .ok_or_else(out_of_range)?;
    Ok(Duration::from_secs(secs))
}

fn check_range<T: PartialOrd + std::fmt::Display + Copy>(
    value: Option<T>,
    min: T,
    max: T,
    path: &str,
    problems: &mut Problems,
) -> Option<T> {
    match value {
        Some(v) if v < min || v > max => {
            problems.push(path, format!("{v} is out of range ({min} to {max})"));
            None
        }
        v => v,
    }
}

/// Reads an environment variable through a lookup function (the real
/// environment in production, a map in tests).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

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
    validate(raw, base_dir, env)
}

fn parse_schedule(raw: &RawSchedule, path: &str, problems: &mut Problems) -> Option<Schedule> {
    match raw.compact().parse::<Schedule>() {
        Ok(s) => Some(s),
        Err(e) => {
            let msg = e.to_string();
            problems.push(
                path,
                msg.strip_prefix("invalid configuration: ").unwrap_or(&msg),
            );
            None
        }
    }
}

fn parse_compression(raw: &str, path: &str, problems: &mut Problems) -> Option<Compression> {
    match raw.parse::<Compression>() {
        Ok(c) => Some(c),
        Err(e) => {
            let msg = e.to_string();
            problems.push(
                path,
                msg.strip_prefix("invalid configuration: ").unwrap_or(&msg),
            );
            None
        }
    }
}

fn env_var(var: &str, path: &str, env: EnvLookup<'_>, problems: &mut Problems) -> Option<String> {
    match env(var) {
        Some(v) if !v.is_empty() => Some(v),
        Some(_) => {
            problems.push(path, format!("environment variable {var} is empty"));
            None
        }
        None => {
            problems.push(path, format!("environment variable {var} is not set"));
            None
        }
    }
}

/// Checks one database entry; used for the file and for the REST API.
pub fn database(
    raw: &RawDatabase,
    path: &str,
    defaults: &Defaults,
    env: EnvLookup<'_>,
    problems: &mut Problems,
) -> Option<DatabaseConfig> {
    let before = problems.0.len();
    if let Err(e) = validate_id(&raw.id) {
        problems.push(format!("{path}.id"), e.to_string());
    } else if raw.id.starts_with('_') {
        problems.push(format!("{path}.id"), "ids starting with '_' are reserved");
    }
    let engine = match raw.engine.as_str() {
        "postgres" | "postgresql" => Some(Engine::Postgres),
        "mongodb" | "mongo" => Some(Engine::Mongodb),
        other => {
            problems.push(
                format!("{path}.engine"),
                format!("unknown engine {other:?} (expected postgres or mongodb)"),
            );
            None
        }
    };
    let tenant = raw
        .tenant
        .clone()
        .unwrap_or_else(|| backup_core::manifest::DEFAULT_TENANT.to_string());
    if let Err(e) = validate_id(&tenant) {
        problems.push(format!("{path}.tenant"), e.to_string());
    } else if tenant.starts_with('_') {
        problems.push(
            format!("{path}.tenant"),
            "tenants starting with '_' are reserved",
        );
    }
    let schedule = match &raw.schedule {
        Some(s) => parse_schedule(&s.0, &format!("{path}.schedule"), problems),
        None => Some(defaults.schedule.clone()),
    };
    let compression = match &raw.compression {
        Some(c) => parse_compression(c, &format!("{path}.compression"), problems),
        None => Some(defaults.compression),
    };
    let stale_after = match &raw.stale_after {
        Some(s) => match parse_duration(s) {
            Ok(d) => Some(d),
            Err(e) => {
                problems.push(format!("{path}.stale_after"), e);
                None
            }
        },
        None => Some(defaults.stale_after),
    };
    check_range(
        raw.retention_days,
        1,
        MAX_RETENTION_DAYS,
        &format!("{path}.retention_days"),
        problems,
    );
    check_range(
        raw.max_backups,
        1,
        MAX_BACKUPS,
        &format!("{path}.max_backups"),
        problems,
    );
    check_range(raw.port, 1, u16::MAX, &format!("{path}.port"), problems);
    if let Some(h) = &raw.host
        && (h.trim().is_empty()
            || h.len() > 253
            || h.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        problems.push(
            format!("{path}.host"),
            "must be a host name or address (1 to 253 characters, no spaces)",
        );
    }
    if let Some(mode) = &raw.sslmode
        && ![
            "disable",
            "allow",
            "prefer",
            "require",
            "verify-ca",
            "verify-full",
        ]
        .contains(&mode.as_str())
    {
        problems.push(
            format!("{path}.sslmode"),
            format!("unknown sslmode {mode:?} (expected disable, allow, prefer, require, verify-ca or verify-full)"),
        );
    }
    if let Some(engine) = engine
        && let Err(e) = crate::tenancy::check_database_name(engine, &raw.database_name)
    {
        problems.push(format!("{path}.database_name"), e);
    }
    if raw
        .name
        .as_ref()
        .is_some_and(|n| n.len() > 200 || n.chars().any(char::is_control))
    {
        problems.push(
            format!("{path}.name"),
            "must be at most 200 printable characters",
        );
    }
    let username = raw
        .username_var
        .as_ref()
        .and_then(|v| env_var(v, &format!("{path}.username_var"), env, problems));
    let password = raw
        .password_var
        .as_ref()
        .and_then(|v| env_var(v, &format!("{path}.password_var"), env, problems))
        .map(Secret::new);
    if problems.0.len() > before {
        return None;
    }
    let engine = engine?;
    Some(DatabaseConfig {
        id: raw.id.clone(),
        name: raw.name.clone().unwrap_or_else(|| raw.id.clone()),
        engine,
        host: raw.host.clone().unwrap_or_else(|| "localhost".into()),
        port: raw.port.unwrap_or(match engine {
            Engine::Postgres => 5432,
            Engine::Mongodb => 27017,
        }),
        database_name: raw.database_name.clone(),
        username,
        password,
        username_var: raw.username_var.clone(),
        password_var: raw.password_var.clone(),
        schedule: schedule?,
        compression: compression?,
        retention_days: raw.retention_days.or(defaults.retention_days),
        max_backups: raw.max_backups.or(defaults.max_backups),
        package: raw.package,
        tenant,
        stale_after: stale_after?,
        sslmode: raw.sslmode.clone(),
    })
}

fn validate(
    raw: RawConfig,
    base_dir: &std::path::Path,
    env: EnvLookup<'_>,
) -> Result<Config, Problems> {
    let mut problems = Problems::default();
    let tz_name = raw
        .timezone
        .clone()
        .or_else(|| env("TZ"))
        .unwrap_or_else(|| "UTC".into());
    let tz = match parse_tz(&tz_name) {
        Ok(tz) => tz,
        Err(e) => {
            problems.push("timezone", e.to_string());
            Tz::UTC
        }
    };
    let g = &raw.global;
    let schedule = match &g.schedule {
        Some(s) => {
            parse_schedule(s, "global.schedule", &mut problems).unwrap_or(Schedule::Disabled)
        }
        None => Schedule::Disabled,
    };
    let compression = match &g.compression {
        Some(c) => parse_compression(c, "global.compression", &mut problems).unwrap_or_default(),
        None => Compression::default(),
    };
    let stale_after = match &g.stale_after {
        Some(s) => parse_duration(s).unwrap_or_else(|e| {
            problems.push("global.stale_after", e);
            Duration::from_secs(86_400)
        }),
        None => Duration::from_secs(86_400),
    };
    let max_parallel_jobs = check_range(
        Some(g.max_parallel_jobs.unwrap_or(4)),
        1,
        MAX_PARALLEL_JOBS,
        "global.max_parallel_jobs",
        &mut problems,
    )
    .unwrap_or(1);
    check_range(
        g.retention_days,
        1,
        MAX_RETENTION_DAYS,
        "global.retention_days",
        &mut problems,
    );
    check_range(
        g.max_backups,
        1,
        MAX_BACKUPS,
        "global.max_backups",
        &mut problems,
    );
    let shutdown_timeout = check_range(
        raw.shutdown_timeout_seconds,
        0,
        MAX_SHUTDOWN_SECS,
        "shutdown_timeout_seconds",
        &mut problems,
    )
    .unwrap_or(300);
    let defaults = Defaults {
        schedule,
        compression,
        retention_days: g.retention_days,
        max_backups: g.max_backups,
        stale_after,
    };
    let packages = raw.package_conf.as_ref().map(|p| {
        let schedule = match &p.schedule {
            Some(s) => parse_schedule(s, "package-conf.schedule", &mut problems)
                .unwrap_or(Schedule::Disabled),
            None => Schedule::Disabled,
        };
        let format = match p.compression.as_deref().unwrap_or("zip") {
            "zip" => crate::packages::PackageFormat::Zip,
            "tar.gz" | "tgz" => crate::packages::PackageFormat::TarGz,
            other => {
                problems.push(
                    "package-conf.compression",
                    format!("unknown package format {other:?} (expected zip or tar.gz)"),
                );
                crate::packages::PackageFormat::Zip
            }
        };
        check_range(
            p.retention_days,
            1,
            MAX_RETENTION_DAYS,
            "package-conf.retention_days",
            &mut problems,
        );
        check_range(
            p.max_backups,
            1,
            MAX_BACKUPS,
            "package-conf.max_backups",
            &mut problems,
        );
        PackageConfig {
            schedule,
            format,
            retention_days: p.retention_days,
            max_backups: p.max_backups,
        }
    });
    let storage = match &raw.storage {
        RawStorage::Fs { path } => {
            let path = base_dir.join(path);
            match std::fs::metadata(&path) {
                Ok(m) if !m.is_dir() => problems.push(
                    "storage.path",
                    format!("{} exists and is not a directory", path.display()),
                ),
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => problems.push(
                    "storage.path",
                    format!("cannot use {}: {e}", path.display()),
                ),
                _ => {}
            }
            StorageConfig::Fs(path)
        }
        RawStorage::S3 {
            bucket,
            prefix,
            endpoint,
            region,
            access_key_var,
            secret_key_var,
            path_style,
            allow_http,
        } => {
            if bucket.is_empty() {
                problems.push("storage.bucket", "must not be empty");
            }
            StorageConfig::S3 {
                bucket: bucket.clone(),
                prefix: prefix.clone(),
                endpoint: endpoint.clone(),
                region: region.clone(),
                access_key: access_key_var
                    .as_ref()
                    .and_then(|v| env_var(v, "storage.access_key_var", env, &mut problems)),
                secret_key: secret_key_var
                    .as_ref()
                    .and_then(|v| env_var(v, "storage.secret_key_var", env, &mut problems))
                    .map(Secret::new),
                path_style: path_style.unwrap_or(endpoint.is_some()),
                allow_http: allow_http.unwrap_or(false),
            }
        }
    };
    let mut tokens = Vec::new();
    if raw.auth.tokens.is_empty() {
        problems.push(
            "auth.tokens",
            "at least one token is required (the API has no anonymous access)",
        );
    }
    for (i, t) in raw.auth.tokens.iter().enumerate() {
        let path = format!("auth.tokens[{i}]");
        let role = match t.role.as_str() {
            "admin" => Some(Role::Admin),
            "reader" => Some(Role::Reader),
            other => {
                problems.push(
                    format!("{path}.role"),
                    format!("unknown role {other:?} (expected admin or reader)"),
                );
                None
            }
        };
        if let Some(tenant) = &t.tenant
            && let Err(e) = validate_id(tenant)
        {
            problems.push(format!("{path}.tenant"), e.to_string());
        }
        let secret = env_var(
            &t.token_var,
            &format!("{path}.token_var"),
            env,
            &mut problems,
        );
        if let Some(s) = &secret
            && s.len() < 16
        {
            problems.push(
                format!("{path}.token_var"),
                format!("the token in {} is shorter than 16 characters", t.token_var),
            );
        }
        if let Some(secret) = &secret
            && tokens
                .iter()
                .any(|t: &TokenConfig| t.secret.expose() == secret)
        {
            problems.push(
                format!("{path}.token_var"),
                format!("{} holds the same token as another entry", t.token_var),
            );
            continue;
        }
        if let (Some(role), Some(secret)) = (role, secret) {
            tokens.push(TokenConfig {
                name: t.token_var.clone(),
                secret: Secret::new(secret),
                role,
                tenant: t.tenant.clone(),
            });
        }
    }
    let mut webhooks = Vec::new();
    for (i, w) in raw.notifications.webhooks.iter().enumerate() {
        let path = format!("notifications.webhooks[{i}]");
        let slack = match w.format.as_deref().unwrap_or("json") {
            "json" => false,
            "slack" => true,
            other => {
                problems.push(
                    format!("{path}.format"),
                    format!("unknown format {other:?} (expected json or slack)"),
                );
                false
            }
        };
        let known = [
            "started",
            "succeeded",
            "failed",
            "skipped",
            "pruned",
            "stale",
        ];
        let events = w
            .events
            .clone()
            .unwrap_or_else(|| vec!["succeeded".into(), "failed".into(), "stale".into()]);
        for e in &events {
            if !known.contains(&e.as_str()) {
                problems.push(
                    format!("{path}.events"),
                    format!("unknown event {e:?} (expected one of {})", known.join(", ")),
                );
            }
        }
        if let Some(url) = env_var(&w.url_var, &format!("{path}.url_var"), env, &mut problems) {
            webhooks.push(WebhookConfig {
                url: Secret::new(url),
                slack,
                events,
            });
        }
    }
    let mut recipients = None;
    let mut identities = None;
    if let Some(enc) = &raw.encryption {
        if enc.recipients.is_empty() {
            problems.push(
                "encryption.recipients",
                "at least one age recipient (age1...) is required",
            );
        } else {
            match backup_core::crypto::AgeRecipients::parse(&enc.recipients) {
                Ok(r) => recipients = Some(r),
                Err(e) => problems.push("encryption.recipients", e.to_string()),
            }
        }
        if let Some(var) = &enc.identity_var
            && let Some(text) = env_var(var, "encryption.identity_var", env, &mut problems)
        {
            match backup_core::crypto::AgeIdentities::parse(&Secret::new(text)) {
                Ok(i) => identities = Some(i),
                Err(e) => problems.push(
                    "encryption.identity_var",
                    format!(
                        "{var}: {}",
                        e.to_string().trim_start_matches("invalid configuration: ")
                    ),
                ),
            }
        }
    }
    let mut databases: Vec<(usize, DatabaseConfig)> = Vec::new();
    let mut seen = HashSet::new();
    for (i, d) in raw.databases.iter().enumerate() {
        let path = format!("databases[{i}]");
        if !seen.insert(d.id.clone()) {
            problems.push(format!("{path}.id"), format!("duplicate id {:?}", d.id));
        }
        if let Some(db) = database(d, &path, &defaults, env, &mut problems) {
            // A database belongs to one tenant.
            if let Some((j, other)) = databases.iter().find(|(_, o)| {
                o.tenant != db.tenant && crate::tenancy::same_database_by_name(o, &db)
            }) {
                problems.push(
                    &path,
                    format!(
                        "database {:?} on {}:{} is already databases[{j}] ({:?}) of tenant {}: a database belongs to one tenant",
                        db.database_name, db.host, db.port, other.id, other.tenant
                    ),
                );
            }
            databases.push((i, db));
        }
    }
    let databases: Vec<DatabaseConfig> = databases.into_iter().map(|(_, d)| d).collect();
    let mut tenants = BTreeMap::new();
    for (name, t) in &raw.tenants {
        let path = format!("tenants.{name}");
        if let Err(e) = validate_id(name) {
            problems.push(&path, e.to_string());
        } else if name.starts_with('_') {
            problems.push(&path, "tenants starting with '_' are reserved");
        }
        let mut policy = crate::tenancy::TenantPolicy::default();
        for (i, h) in t.allowed_hosts.iter().enumerate() {
            match crate::tenancy::HostPattern::parse(h) {
                Ok(p) => policy.allowed_hosts.push(p),
                Err(e) => problems.push(format!("{path}.allowed_hosts[{i}]"), e),
            }
        }
        for (i, d) in t.allowed_databases.iter().enumerate() {
            match crate::tenancy::check_database_pattern(d) {
                Ok(()) => policy.allowed_databases.push(d.clone()),
                Err(e) => problems.push(format!("{path}.allowed_databases[{i}]"), e),
            }
        }
        tenants.insert(name.clone(), policy);
    }
    let metrics_token = raw
        .metrics
        .as_ref()
        .and_then(|m| m.token_var.as_ref())
        .and_then(|v| env_var(v, "metrics.token_var", env, &mut problems))
        .map(Secret::new);
    if let Some(m) = &metrics_token {
        if m.expose().len() < 16 {
            problems.push(
                "metrics.token_var",
                "the metrics token is shorter than 16 characters",
            );
        }
        if tokens.iter().any(|t| t.secret.expose() == m.expose()) {
            problems.push(
                "metrics.token_var",
                "the metrics token is the same as an API token",
            );
        }
    }
    if !problems.0.is_empty() {
        return Err(problems);
    }
    Ok(Config {
        tz,
        listen: raw.listen,
        metrics_listen: raw.metrics_listen,
        metrics_token,
        tenants,
        max_parallel_jobs,
        stale_after,
        defaults,
        packages,
        storage,
        tokens,
        webhooks,
        recipients,
        identities,
        audit_log: base_dir.join(raw.audit_log.unwrap_or_else(|| PathBuf::from("audit.log"))),
        shutdown_timeout: Duration::from_secs(shutdown_timeout),
        replicas: raw.replicas.unwrap_or_default(),
        databases,
    })
}

/// A database entry as shown by the API: no credentials, only the names of
/// the variables that hold them.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Engine.
    pub engine: Engine,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database.
    pub database_name: String,
    /// User name.
    pub username: Option<String>,
    /// Whether a password is set (never the password).
    pub has_password: bool,
    /// Env var names.
    pub username_var: Option<String>,
    /// Env var names.
    pub password_var: Option<String>,
    /// Schedule.
    pub schedule: String,
    /// Compression.
    pub compression: String,
    /// Age limit.
    pub retention_days: Option<u32>,
    /// Count limit.
    pub max_backups: Option<usize>,
    /// In packages.
    pub package: bool,
    /// Tenant.
    pub tenant: String,
    /// Staleness threshold in hours.
    pub stale_after_hours: f64,
}

impl From<&DatabaseConfig> for DatabaseView {
    fn from(d: &DatabaseConfig) -> Self {
        DatabaseView {
            id: d.id.clone(),
            name: d.name.clone(),
            engine: d.engine,
            host: d.host.clone(),
            port: d.port,
            database_name: d.database_name.clone(),
            username: d.username.clone(),
            has_password: d.password.is_some(),
            username_var: d.username_var.clone(),
            password_var: d.password_var.clone(),
            schedule: d.schedule.to_string(),
            compression: d.compression.to_string(),
            retention_days: d.retention_days,
            max_backups: d.max_backups,
            package: d.package,
            tenant: d.tenant.clone(),
            stale_after_hours: d.stale_after.as_secs_f64() / 3600.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const SEED: &str = r#"
global: {schedule: "0 2 * * *", compression: gzip, retention_days: 15,
         max_backups: 10, max_parallel_jobs: 4}
package-conf: {schedule: "0 5 * * 1", compression: zip, retention_days: 30,
               max_backups: 4}
databases:
  - {id: pg_ventas_prod, name: "PostgreSQL Ventas", engine: postgres,
     host: postgres-db, port: 5432, username_var: POSTGRES_USER,
     password_var: POSTGRES_PASSWORD, database_name: ventasdb,
     schedule: "0 3 * * *", package: true}
  - {id: mongo_logs_dev, name: "MongoDB Logs", engine: mongodb,
     host: mongo-db, port: 27017, database_name: logsdb}
storage: {type: fs, path: ./backups}
auth:
  tokens:
    - {token_var: BACKUPD_ADMIN_TOKEN, role: admin}
    - {token_var: BACKUPD_READER_TOKEN, role: reader}
    - {token_var: TENANT_A_TOKEN, role: admin, tenant: a}
"#;

    fn env() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("POSTGRES_USER", "ventas"),
            ("POSTGRES_PASSWORD", "s3cret-pw"),
            ("BACKUPD_ADMIN_TOKEN", "admin-token-0123456789"),
            ("BACKUPD_READER_TOKEN", "reader-token-0123456789"),
            ("TENANT_A_TOKEN", "tenant-a-token-0123456789"),
        ])
    }

    fn load_with(text: &str, vars: &HashMap<&str, &str>) -> Result<Config, Problems> {
        let lookup = |k: &str| vars.get(k).map(|v| v.to_string());
        load(text, std::path::Path::new("/etc/backupd"), &lookup)
    }

    #[test]
    fn the_seed_config_is_accepted_as_written() {
        let c = load_with(SEED, &env()).unwrap();
        assert_eq!(c.max_parallel_jobs, 4);
        assert_eq!(c.databases.len(), 2);
        let pg = &c.databases[0];
        assert_eq!(pg.schedule.to_string(), "0 3 * * *");
        assert_eq!(pg.compression.to_string(), "gzip:6");
        assert_eq!((pg.retention_days, pg.max_backups), (Some(15), Some(10)));
        assert_eq!(pg.password.as_ref().unwrap().expose(), "s3cret-pw");
        assert!(pg.package);
        let mongo = &c.databases[1];
        assert_eq!(mongo.schedule.to_string(), "0 2 * * *", "global default");
        assert_eq!(mongo.engine, Engine::Mongodb);
        assert_eq!(mongo.tenant, "default");
        assert!(matches!(&c.storage, StorageConfig::Fs(p) if p.ends_with("backups")));
        assert_eq!(c.tokens.len(), 3);
        assert_eq!(c.tokens[2].tenant.as_deref(), Some("a"));
        let pc = c.packages.unwrap();
        assert_eq!(pc.format, crate::packages::PackageFormat::Zip);
        assert!(!format!("{:?}", c.databases).contains("s3cret-pw"));
    }

    #[test]
    fn replicas_default_to_many_and_refuse_other_values() {
        let c = load_with(SEED, &env()).unwrap();
        assert_eq!(c.replicas, Replicas::Many, "leases unless told otherwise");
        let c = load_with(&format!("{SEED}replicas: one\n"), &env()).unwrap();
        assert_eq!(c.replicas, Replicas::One);
        let problems = load_with(&format!("{SEED}replicas: two\n"), &env()).unwrap_err();
        assert!(
            problems.0.iter().any(|p| p.contains("replicas")),
            "{problems:?}"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let text = SEED
            .replace(r#"schedule: "0 3 * * *""#, r#"schedule: "0 25 * * *""#)
            .replace("engine: mongodb", "engine: oracle")
            .replace("compression: gzip", "compression: brotli");
        let mut vars = env();
        vars.remove("POSTGRES_PASSWORD");
        let problems = load_with(&text, &vars).unwrap_err().0;
        let want = [
            r#"databases[0].schedule: invalid cron "0 25 * * *": hour out of range"#,
            "databases[0].password_var: environment variable POSTGRES_PASSWORD is not set",
            r#"databases[1].engine: unknown engine "oracle""#,
            r#"global.compression: unknown compression "brotli""#,
        ];
        for w in want {
            assert!(
                problems.iter().any(|p| p.contains(w)),
                "missing {w:?} in {problems:#?}"
            );
        }
    }

    #[test]
    fn presets_and_storage_forms() {
        let text = r#"
timezone: Europe/Madrid
storage: {type: s3, bucket: b, prefix: p, endpoint: "http://127.0.0.1:9000", region: us-east-1, access_key_var: AK, secret_key_var: SK}
auth: {tokens: [{token_var: T, role: admin}]}
databases:
  - {id: a, engine: postgres, database_name: x, schedule: {preset: daily, time: "03:00"}}
  - {id: b, engine: postgres, database_name: x, schedule: {preset: every_12h, base: "15:00"}}
  - {id: c, engine: postgres, database_name: x, schedule: {preset: weekly, weekday: mon, time: "04:00"}}
  - {id: d, engine: postgres, database_name: x, schedule: {preset: monthly, day: 1, time: "05:00"}}
  - {id: e, engine: postgres, database_name: x, schedule: {preset: scheduled, at: "2030-01-01T03:00"}}
  - {id: f, engine: postgres, database_name: x, schedule: disabled}
  - {id: g, engine: postgres, database_name: y, schedule: "every_6h 15:00", tenant: a}
"#;
        let vars = HashMap::from([
            ("AK", "ak"),
            ("SK", "sk-secret"),
            ("T", "token-0123456789abcdef"),
        ]);
        let c = load_with(text, &vars).unwrap();
        let schedules: Vec<String> = c.databases.iter().map(|d| d.schedule.to_string()).collect();
        assert_eq!(
            schedules,
            [
                "0 3 * * *",
                "0 3,15 * * *",
                "0 4 * * 1",
                "0 5 1 * *",
                "once 2030-01-01T03:00",
                "disabled",
                "0 3,9,15,21 * * *"
            ]
        );
        assert_eq!(c.tz.name(), "Europe/Madrid");
        assert!(
            matches!(&c.storage, StorageConfig::S3 { bucket, path_style: true, .. } if bucket == "b")
        );
        assert!(!format!("{:?}", c.storage).contains("sk-secret"));
        // Unknown fields and short tokens are refused.
        let bad = text.replace(
            "timezone: Europe/Madrid",
            "timezone: Mars/Olympus\nbogus: 1",
        );
        assert!(load_with(&bad, &vars).is_err());
        let short = HashMap::from([("AK", "ak"), ("SK", "sk"), ("T", "short")]);
        let problems = load_with(text, &short).unwrap_err().0;
        assert!(
            problems.iter().any(|p| p.contains("shorter than 16")),
            "{problems:?}"
        );
    }

    #[test]
    fn durations_use_checked_arithmetic() {
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("100y").unwrap().as_secs(), MAX_DURATION_SECS);
        for bad in [
            "213503982334602d",
            "18446744073709551616s",
            "101y",
            "0h",
            "h",
            "-1d",
            "1.5h",
            "1 d",
            "1D",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_out_of_range_name_their_field() {
        let cases = [
            (
                "max_parallel_jobs: 4}",
                "max_parallel_jobs: 0}",
                "global.max_parallel_jobs",
            ),
            (
                "max_parallel_jobs: 4}",
                "max_parallel_jobs: 100000}",
                "global.max_parallel_jobs",
            ),
            (
                "retention_days: 15,",
                "retention_days: 0,",
                "global.retention_days",
            ),
            ("max_backups: 10,", "max_backups: 0,", "global.max_backups"),
            (
                "retention_days: 30,",
                "retention_days: 4000000000,",
                "package-conf.retention_days",
            ),
            ("port: 5432,", "port: 0,", "databases[0].port"),
            (
                "database_name: ventasdb,",
                "database_name: template1,",
                "databases[0].database_name",
            ),
            (
                "database_name: logsdb}",
                "database_name: Admin}",
                "databases[1].database_name",
            ),
            (
                "database_name: logsdb}",
                "database_name: LOCAL}",
                "databases[1].database_name",
            ),
            (
                "package: true}",
                "package: true, stale_after: 213503982334602d}",
                "databases[0].stale_after",
            ),
            (
                "package: true}",
                "package: true, sslmode: sometimes}",
                "databases[0].sslmode",
            ),
        ];
        for (from, to, field) in cases {
            let text = SEED.replacen(from, to, 1);
            assert_ne!(text, SEED, "{from}");
            let problems = load_with(&text, &env()).unwrap_err().0;
            assert!(
                problems.iter().any(|p| p.starts_with(field)),
                "{field} missing in {problems:?}"
            );
        }
        let text = format!("{SEED}shutdown_timeout_seconds: 18446744073709551615\n");
        let problems = load_with(&text, &env()).unwrap_err().0;
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("shutdown_timeout_seconds"))
        );
    }

    #[test]
    fn tenants_metrics_and_one_owner_per_database() {
        let text = format!(
            "{SEED}tenants:\n  a: {{allowed_hosts: [\"db.internal:5432\", \"[fd00::1]\"], allowed_databases: [\"a_*\"]}}\nmetrics: {{token_var: M}}\nmetrics_listen: 127.0.0.1:9100\n"
        );
        let mut vars = env();
        vars.insert("M", "metrics-token-0123456789");
        let c = load_with(&text, &vars).unwrap();
        let a = &c.tenants["a"];
        assert!(a.allows_host("DB.internal", 5432));
        assert!(!a.allows_host("db.internal", 5433));
        assert!(a.allows_database("a_1") && !a.allows_database("b_1"));
        assert_eq!(c.metrics_listen.as_deref(), Some("127.0.0.1:9100"));
        assert!(!format!("{:?}", c).contains("metrics-token-0123456789"));
        // The metrics token must not double as an API token.
        vars.insert("M", "admin-token-0123456789");
        assert!(load_with(&text, &vars).is_err());
        // One database, two tenants: refused, whatever the host spelling.
        let text = SEED.replace(
            "host: mongo-db, port: 27017, database_name: logsdb}",
            "host: mongo-db, port: 27017, database_name: logsdb}\n  - {id: other, engine: mongodb, host: MONGO-DB., database_name: LogsDB, tenant: b}",
        );
        let problems = load_with(&text, &env()).unwrap_err().0;
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("databases[2]") && p.contains("one tenant")),
            "{problems:?}"
        );
        // Same tenant, same database: allowed (two schedules of one database).
        let text = SEED.replace(
            "host: mongo-db, port: 27017, database_name: logsdb}",
            "host: mongo-db, port: 27017, database_name: logsdb}\n  - {id: other, engine: mongodb, host: mongo-db, database_name: logsdb}",
        );
        assert!(load_with(&text, &env()).is_ok());
    }
}
