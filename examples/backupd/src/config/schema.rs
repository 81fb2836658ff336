//! The file as written: the serde structs of `config.yaml`. Unknown fields
//! are errors everywhere; nothing here checks values (see `validate`).

use std::collections::BTreeMap;
use std::path::PathBuf;

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
    /// Directory where the WAL archivers of `wal_archiving` entries spool
    /// what they receive, one subdirectory per entry (default `wal-spool`
    /// beside the config); keep it between runs.
    #[serde(default)]
    pub wal_spool: Option<PathBuf>,
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
    /// Default count limit: keep the newest N.
    pub keep_last: Option<usize>,
    /// Default age limit (`30d`).
    pub max_age: Option<String>,
    /// Older spelling of `keep_last` (accepted for a release, with a warning).
    pub max_backups: Option<usize>,
    /// Older form of `max_age`, in days (accepted for a release, with a warning).
    pub retention_days: Option<u32>,
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
    /// Count limit: keep the newest N.
    pub keep_last: Option<usize>,
    /// Age limit (`30d`).
    pub max_age: Option<String>,
    /// Older spelling of `keep_last`.
    pub max_backups: Option<usize>,
    /// Older form of `max_age`, in days.
    pub retention_days: Option<u32>,
}

/// A schedule: a string (`"0 3 * * *"`, `"@daily"`, `"daily 03:00"`,
/// `"disabled"`) or a mapping (`{preset: daily, time: "03:00"}`). Anything
/// else is refused with the accepted forms (see `fields::parse_schedule`
/// for the checks of each preset's fields).
#[derive(Debug, Clone)]
pub enum RawSchedule {
    /// `"0 3 * * *"`, `"@daily"`, `"daily 03:00"`, `"disabled"`.
    Text(String),
    /// `{preset: weekly, weekday: mon, time: "04:00"}`.
    Preset(RawPreset),
}

/// What a schedule may be, with an example of each form, for errors.
pub(super) const SCHEDULE_EXPECTED: &str = r#"a schedule: a string ("0 3 * * *", "@daily", "daily 03:00", "every_12h 15:00", "weekly mon 04:00", "monthly 1 05:00", "once 2026-01-01T03:00", "disabled") or a mapping ({preset: daily, time: "03:00"}, {preset: every_12h, base: "15:00"}, {preset: weekly, weekday: mon, time: "04:00"}, {preset: monthly, day: 1, time: "05:00"}, {preset: once, at: "2026-01-01T03:00"}, {preset: disabled})"#;

impl<'de> Deserialize<'de> for RawSchedule {
    // Not `#[serde(untagged)]`: its error ("data did not match any variant
    // of untagged enum") says neither what was wrong nor what is accepted.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawSchedule;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(SCHEDULE_EXPECTED)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawSchedule, E> {
                Ok(RawSchedule::Text(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawSchedule, A::Error> {
                RawPreset::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawSchedule::Preset)
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Serialize for RawSchedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RawSchedule::Text(text) => s.serialize_str(text),
            RawSchedule::Preset(preset) => preset.serialize(s),
        }
    }
}

/// The mapping form of a preset. Each preset takes its own fields and no
/// others: `daily` a `time`; `every_Nh` a `base` (the cycle's hour, not a
/// time of day: `every_12h` from `15:00` runs at 03:00 and 15:00);
/// `weekly` a `weekday` and a `time`; `monthly` a `day` and a `time`;
/// `once` an `at`; `disabled` nothing.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPreset {
    /// `disabled`, `daily`, `every_Nh` (N dividing 24), `weekly`,
    /// `monthly`, `once` (`scheduled` is an older spelling).
    pub preset: String,
    /// `HH:MM` for daily/weekly/monthly.
    pub time: Option<String>,
    /// `HH:MM` the cycle of every_Nh is counted from.
    pub base: Option<String>,
    /// `mon`..`sun` for weekly.
    pub weekday: Option<String>,
    /// 1-28 for monthly.
    pub day: Option<u32>,
    /// `YYYY-MM-DDTHH:MM` for once.
    pub at: Option<String>,
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
    /// `postgres`, `mongodb`, `mysql` (`mariadb`) or `sqlite`.
    pub engine: String,
    /// Host name.
    #[serde(default)]
    pub host: Option<String>,
    /// Port.
    #[serde(default)]
    pub port: Option<u16>,
    /// Database to back up (required unless `url_var` names it; for
    /// `sqlite` entries, the file name of `path`).
    #[serde(default)]
    pub database_name: String,
    /// `sqlite` entries: the database file, an absolute path. Restores
    /// write new files beside it. Configuration file only (over the API
    /// it would let a caller read and write files of the daemon's host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<std::path::PathBuf>,
    /// Env var holding a whole `postgres://user:password@host:port/db`
    /// URL (the `DATABASE_URL` convention), instead of `host`, `port`,
    /// `database_name`, `username_var`, `password_var` and `sslmode`.
    /// Configuration file only; PostgreSQL entries only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_var: Option<String>,
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
    /// Count limit: keep the newest N (else global).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<usize>,
    /// Age limit, `30d` (else global).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    /// Older spelling of `keep_last` (accepted for a release, with a warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backups: Option<usize>,
    /// Older form of `max_age`, in days (accepted for a release, with a warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
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
    /// PostgreSQL: the directory of the client tools (`pg_dump`,
    /// `pg_restore`, `psql`) for this entry, e.g. a newer major's
    /// `/usr/lib/postgresql/18/bin`, instead of discovery. An absolute
    /// path to an existing directory; configuration file only (over the
    /// API it would let a caller choose what the daemon runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_bin: Option<std::path::PathBuf>,
    /// PostgreSQL: `logical` (pg_dump of `database_name`, the default) or
    /// `physical` (a base backup of the whole cluster with pg_basebackup;
    /// restored with `backupctl restore ID --datadir DIR`). Configuration
    /// file only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// `physical` entries: archive the cluster's WAL continuously
    /// (pg_receivewal from a replication slot) for point-in-time restore.
    /// Configuration file only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wal_archiving: bool,
    /// The replication slot of `wal_archiving` (default `backupd_` and the
    /// id, lower-cased, other characters as `_`). Configuration file only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// `physical` PostgreSQL entries: when to take block-level incremental
    /// base backups (PostgreSQL 17+, `summarize_wal = on`) on the newest
    /// base backup of the entry (full or incremental), in the grammar of
    /// `schedule`, which stays the full backups' schedule. A trigger of
    /// both at the same time takes one full backup. Configuration file
    /// only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<RawSchedule>,
    /// With `incremental`: take a full base backup instead when the entry
    /// has no base backup yet or the server's WAL summaries no longer
    /// cover the newest one (default false: the incremental fails, saying
    /// so). Configuration file only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fallback_to_full: bool,
    /// When to run a restore drill of the newest backup (a scratch
    /// database on the entry's server; for a physical entry a scratch
    /// data directory under `drill_dir`), in the grammar of `schedule`
    /// (`weekly sun 05:00`). Configuration file only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<RawSchedule>,
    /// Physical PostgreSQL entries with `drill:`: the directory their
    /// scratch data directories are restored into (absolute; room for
    /// the whole cluster; the `postgres` user must be able to enter it
    /// when backupd runs as root). Configuration file only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill_dir: Option<String>,
    /// Physical PostgreSQL entries with `drill:`: the role of the restored
    /// cluster that reads every table (a superuser or a member of
    /// `pg_read_all_data`; default `postgres`). Configuration file only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill_user: Option<String>,
    /// How long a passed restore drill counts (`8d`): after that without
    /// a newer one, `/status` reports the entry `unverified`.
    /// Configuration file only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_max_age: Option<String>,
    /// Retention never deletes the newest backup with a passed restore
    /// drill (`true` or `false`; default: `true` when the entry has a
    /// `drill:` schedule, else `false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_newest_verified: Option<bool>,
    /// Not a setting of an entry: read only to refuse it with what to
    /// write instead. A backup's `type` (`full`, or `incremental`:
    /// deduplicated chunks of a logical dump) is chosen per request
    /// (`POST /api/v1/backups`, `backupctl backup --type`); a physical
    /// entry's incrementals are block-level base backups on its
    /// `incremental:` schedule.
    #[serde(default, rename = "type", skip_serializing)]
    pub backup_type: Option<String>,
}

/// The retention fields of a section, as written (`global:`,
/// `package-conf:`, a database): checked by `retention::retention`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawRetention<'a> {
    /// `keep_last`.
    pub keep_last: Option<usize>,
    /// `max_age`.
    pub max_age: Option<&'a str>,
    /// `max_backups`, the older spelling of `keep_last`.
    pub max_backups: Option<usize>,
    /// `retention_days`, the older form of `max_age`.
    pub retention_days: Option<u32>,
}

/// Sections with retention fields.
macro_rules! raw_retention {
    ($($section:ty),*) => {$(
        impl $section {
            /// Its retention fields.
            pub fn retention(&self) -> RawRetention<'_> {
                RawRetention {
                    keep_last: self.keep_last,
                    max_age: self.max_age.as_deref(),
                    max_backups: self.max_backups,
                    retention_days: self.retention_days,
                }
            }
        }
    )*};
}
raw_retention!(RawGlobal, RawPackageConf, RawDatabase);

/// Older field names of a database entry and the names that replace them:
/// a `PATCH` that sends one drops the other from the entry it starts from.
pub const RENAMED_FIELDS: [(&str, &str); 2] =
    [("max_backups", "keep_last"), ("retention_days", "max_age")];

/// Wrapper so a database entry can derive `Serialize` while the schedule
/// stays an input-only type.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct RawScheduleSer(pub RawSchedule);
