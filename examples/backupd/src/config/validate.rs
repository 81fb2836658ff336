//! From the file as written to the validated [`Config`], one function per
//! section. Every function reports its problems (with their paths) and goes
//! on, so the operator sees them all at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use backup_core::crypto::{AgeIdentities, AgeRecipients};
use backup_core::key::validate_id;
use backup_core::schedule::parse_tz;
use backup_core::{Compression, Schedule, Secret};
use chrono_tz::Tz;

use crate::packages::PackageFormat;
use crate::tenancy::{HostPattern, TenantPolicy, check_database_pattern};

use super::database::databases;
use super::fields::{
    EnvLookup, check_range, env_var, parse_compression, parse_duration, parse_schedule, retention,
};
use super::schema::{
    RawAuth, RawConfig, RawEncryption, RawGlobal, RawMetrics, RawNotifications, RawPackageConf,
    RawStorage, RawTenant,
};
use super::types::{
    Config, Defaults, MAX_PARALLEL_JOBS, MAX_SHUTDOWN_SECS, PackageConfig, Problems, Role,
    StorageConfig, TokenConfig, WebhookConfig,
};

/// Staleness threshold without `stale_after`.
const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(86_400);
/// Events a webhook gets without `events`.
const DEFAULT_EVENTS: [&str; 3] = ["succeeded", "failed", "stale"];
/// Events a webhook may ask for.
const KNOWN_EVENTS: [&str; 6] = [
    "started",
    "succeeded",
    "failed",
    "skipped",
    "pruned",
    "stale",
];

/// Checks every section of `raw`.
pub(super) fn validate(
    raw: RawConfig,
    base_dir: &Path,
    env: EnvLookup<'_>,
) -> Result<Config, Problems> {
    let mut problems = Problems::default();
    let tz = timezone(raw.timezone.as_deref(), env, &mut problems);
    let (defaults, max_parallel_jobs) = global(&raw.global, &mut problems);
    let shutdown_timeout = check_range(
        raw.shutdown_timeout_seconds,
        0,
        MAX_SHUTDOWN_SECS,
        "shutdown_timeout_seconds",
        &mut problems,
    )
    .unwrap_or(300);
    let packages = raw
        .package_conf
        .as_ref()
        .map(|p| packages(p, &mut problems));
    let storage = storage(&raw.storage, base_dir, env, &mut problems);
    let tokens = tokens(&raw.auth, env, &mut problems);
    let webhooks = webhooks(&raw.notifications, env, &mut problems);
    let (recipients, identities) = match &raw.encryption {
        Some(enc) => encryption(enc, env, &mut problems),
        None => (None, None),
    };
    let databases = databases(&raw.databases, &defaults, env, &mut problems);
    let tenants = tenants(&raw.tenants, &mut problems);
    let metrics_token = metrics_token(raw.metrics.as_ref(), &tokens, env, &mut problems);
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
        stale_after: defaults.stale_after,
        defaults,
        packages,
        storage,
        tokens,
        webhooks,
        recipients,
        identities,
        audit_log: base_dir.join(raw.audit_log.unwrap_or_else(|| PathBuf::from("audit.log"))),
        shutdown_timeout: Duration::from_secs(shutdown_timeout),
        wal_spool: base_dir.join(raw.wal_spool.unwrap_or_else(|| PathBuf::from("wal-spool"))),
        replicas: raw.replicas.unwrap_or_default(),
        databases,
    })
}

/// `timezone:`, else `TZ`, else UTC.
fn timezone(name: Option<&str>, env: EnvLookup<'_>, problems: &mut Problems) -> Tz {
    let name = name
        .map(str::to_string)
        .or_else(|| env("TZ"))
        .unwrap_or_else(|| "UTC".into());
    parse_tz(&name).unwrap_or_else(|e| {
        problems.push("timezone", e.to_string());
        Tz::UTC
    })
}

/// `global:`: the defaults of every database, and the concurrency.
fn global(g: &RawGlobal, problems: &mut Problems) -> (Defaults, usize) {
    let schedule = match &g.schedule {
        Some(s) => parse_schedule(s, "global.schedule", problems).unwrap_or(Schedule::Disabled),
        None => Schedule::Disabled,
    };
    let compression = match &g.compression {
        Some(c) => parse_compression(c, "global.compression", problems).unwrap_or_default(),
        None => Compression::default(),
    };
    let stale_after = match &g.stale_after {
        Some(s) => parse_duration(s).unwrap_or_else(|e| {
            problems.push("global.stale_after", e);
            DEFAULT_STALE_AFTER
        }),
        None => DEFAULT_STALE_AFTER,
    };
    let max_parallel_jobs = check_range(
        Some(g.max_parallel_jobs.unwrap_or(4)),
        1,
        MAX_PARALLEL_JOBS,
        "global.max_parallel_jobs",
        problems,
    )
    .unwrap_or(1);
    let defaults = Defaults {
        schedule,
        compression,
        retention: retention(g.retention(), "global", problems),
        stale_after,
    };
    (defaults, max_parallel_jobs)
}

/// `package-conf:`
fn packages(p: &RawPackageConf, problems: &mut Problems) -> PackageConfig {
    let schedule = match &p.schedule {
        Some(s) => {
            parse_schedule(s, "package-conf.schedule", problems).unwrap_or(Schedule::Disabled)
        }
        None => Schedule::Disabled,
    };
    let format = match p.compression.as_deref().unwrap_or("zip") {
        "zip" => PackageFormat::Zip,
        "tar.gz" | "tgz" => PackageFormat::TarGz,
        other => {
            problems.push(
                "package-conf.compression",
                format!("unknown package format {other:?} (expected zip or tar.gz)"),
            );
            PackageFormat::Zip
        }
    };
    PackageConfig {
        schedule,
        format,
        retention: retention(p.retention(), "package-conf", problems),
    }
}

/// `storage:`, relative paths taken from `base_dir`.
fn storage(
    raw: &RawStorage,
    base_dir: &Path,
    env: EnvLookup<'_>,
    problems: &mut Problems,
) -> StorageConfig {
    match raw {
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
                    .and_then(|v| env_var(v, "storage.access_key_var", env, problems)),
                secret_key: secret_key_var
                    .as_ref()
                    .and_then(|v| env_var(v, "storage.secret_key_var", env, problems))
                    .map(Secret::new),
                path_style: path_style.unwrap_or(endpoint.is_some()),
                allow_http: allow_http.unwrap_or(false),
            }
        }
    }
}

/// `auth.tokens`: at least one, each at least 16 characters, no two alike.
fn tokens(auth: &RawAuth, env: EnvLookup<'_>, problems: &mut Problems) -> Vec<TokenConfig> {
    let mut tokens = Vec::new();
    if auth.tokens.is_empty() {
        problems.push(
            "auth.tokens",
            "at least one token is required (the API has no anonymous access)",
        );
    }
    for (i, t) in auth.tokens.iter().enumerate() {
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
        let secret = env_var(&t.token_var, &format!("{path}.token_var"), env, problems);
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
    tokens
}

/// `notifications.webhooks`.
fn webhooks(
    raw: &RawNotifications,
    env: EnvLookup<'_>,
    problems: &mut Problems,
) -> Vec<WebhookConfig> {
    let mut webhooks = Vec::new();
    for (i, w) in raw.webhooks.iter().enumerate() {
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
        let events = w
            .events
            .clone()
            .unwrap_or_else(|| DEFAULT_EVENTS.map(String::from).to_vec());
        for e in &events {
            if !KNOWN_EVENTS.contains(&e.as_str()) {
                problems.push(
                    format!("{path}.events"),
                    format!(
                        "unknown event {e:?} (expected one of {})",
                        KNOWN_EVENTS.join(", ")
                    ),
                );
            }
        }
        if let Some(url) = env_var(&w.url_var, &format!("{path}.url_var"), env, problems) {
            webhooks.push(WebhookConfig {
                url: Secret::new(url),
                slack,
                events,
            });
        }
    }
    webhooks
}

/// `encryption:`: recipients for new backups, the identity for restores.
fn encryption(
    enc: &RawEncryption,
    env: EnvLookup<'_>,
    problems: &mut Problems,
) -> (Option<AgeRecipients>, Option<AgeIdentities>) {
    let mut recipients = None;
    let mut identities = None;
    if enc.recipients.is_empty() {
        problems.push(
            "encryption.recipients",
            "at least one age recipient (age1...) is required",
        );
    } else {
        match AgeRecipients::parse(&enc.recipients) {
            Ok(r) => recipients = Some(r),
            Err(e) => problems.push("encryption.recipients", e.to_string()),
        }
    }
    if let Some(var) = &enc.identity_var
        && let Some(text) = env_var(var, "encryption.identity_var", env, problems)
    {
        match AgeIdentities::parse(&Secret::new(text)) {
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
    (recipients, identities)
}

/// `tenants:`: each tenant's allowed hosts and database names.
fn tenants(
    raw: &BTreeMap<String, RawTenant>,
    problems: &mut Problems,
) -> BTreeMap<String, TenantPolicy> {
    let mut tenants = BTreeMap::new();
    for (name, t) in raw {
        let path = format!("tenants.{name}");
        if let Err(e) = validate_id(name) {
            problems.push(&path, e.to_string());
        } else if name.starts_with('_') {
            problems.push(&path, "tenants starting with '_' are reserved");
        }
        let mut policy = TenantPolicy::default();
        for (i, h) in t.allowed_hosts.iter().enumerate() {
            match HostPattern::parse(h) {
                Ok(p) => policy.allowed_hosts.push(p),
                Err(e) => problems.push(format!("{path}.allowed_hosts[{i}]"), e),
            }
        }
        for (i, d) in t.allowed_databases.iter().enumerate() {
            match check_database_pattern(d) {
                Ok(()) => policy.allowed_databases.push(d.clone()),
                Err(e) => problems.push(format!("{path}.allowed_databases[{i}]"), e),
            }
        }
        tenants.insert(name.clone(), policy);
    }
    tenants
}

/// `metrics.token_var`: long enough, and not an API token.
fn metrics_token(
    raw: Option<&RawMetrics>,
    tokens: &[TokenConfig],
    env: EnvLookup<'_>,
    problems: &mut Problems,
) -> Option<Secret> {
    let token = raw
        .and_then(|m| m.token_var.as_ref())
        .and_then(|v| env_var(v, "metrics.token_var", env, problems))
        .map(Secret::new);
    if let Some(m) = &token {
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
    token
}
