//! Entry points for the fuzz targets (`backup-core/fuzz`) and the property
//! tests (`examples/backupd/tests/prop_backupd.rs`): each route's body and query
//! parsing as its handler does it, without a running daemon.

use std::time::Duration;

use axum::http::Method;
use backup_core::key::validate_id;
use backup_core::{Compression, Schedule};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::backups::{CreateBackup, ListQuery};
use super::cleanup::CleanupBody;
use super::common::{WaitQuery, parse_query};
use super::databases::body_to_database;
use super::jobs::RestoreBody;
use crate::auth::Principal;
use crate::body::parse_object;
use crate::config::{BackupMode, DatabaseConfig, Defaults, RawDatabase, Retention};
use crate::error::ApiError;
use crate::routes::find_route;

/// The status, code and message of an [`ApiError`].
pub fn describe(e: &ApiError) -> (u16, &'static str, &str) {
    (e.status.as_u16(), e.code, &e.message)
}

/// A JSON body as [`crate::body::json`] reads it, once its
/// content type and size have been accepted.
fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value = parse_object(bytes)?;
    serde_json::from_value(Value::Object(value))
        .map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))
}

/// `POST /api/v1/backups`'s body.
pub fn create_backup(bytes: &[u8]) -> Result<(), ApiError> {
    body::<CreateBackup>(bytes).map(drop)
}

/// `POST /api/v1/backups/{id}/restore`'s body.
pub fn restore(bytes: &[u8]) -> Result<(), ApiError> {
    body::<RestoreBody>(bytes).map(drop)
}

/// `POST /api/v1/cleanup`'s body.
pub fn cleanup(bytes: &[u8]) -> Result<(), ApiError> {
    body::<CleanupBody>(bytes).map(drop)
}

/// The query string of `GET /api/v1/backups` (`ListQuery`) and of the
/// `?wait=` endpoints.
pub fn queries(query: &str) -> Result<(), ApiError> {
    let params = |method: Method| {
        find_route(&method, "/api/v1/backups")
            .expect("backups are routed")
            .query
    };
    parse_query::<WaitQuery>(query, params(Method::POST))?;
    parse_query::<ListQuery>(query, params(Method::GET)).map(drop)
}

/// `POST /api/v1/databases` (`base: None`) or `PATCH` (`base`: the
/// entry as the handler rebuilds it) for a caller bound to `tenant` or
/// not.
pub fn database(
    bytes: &[u8],
    defaults: &Defaults,
    tenant: Option<&str>,
    base: Option<&RawDatabase>,
) -> Result<DatabaseConfig, ApiError> {
    let fields = parse_object(bytes)?;
    let caller = Principal {
        name: "FUZZ_TOKEN".into(),
        role: crate::config::Role::Admin,
        tenant: tenant.map(str::to_string),
    };
    body_to_database(defaults, &caller, fields, base)
}

/// The defaults the fuzz target and the property tests register against.
pub fn sample_defaults() -> Defaults {
    Defaults {
        schedule: Schedule::Disabled,
        compression: Compression::default(),
        retention: Retention {
            keep_last: None,
            max_age: Some(Duration::from_secs(7 * 86_400)),
        },
        stale_after: Duration::from_secs(86_400),
    }
}

/// The registered entry a fuzzed `PATCH` starts from: tenant `acme`.
pub fn sample_base() -> RawDatabase {
    RawDatabase {
        id: "pg_main".into(),
        name: Some("main".into()),
        engine: "postgres".into(),
        host: Some("db.internal".into()),
        port: Some(5432),
        database_name: "app".into(),
        path: None,
        url_var: None,
        username_var: None,
        password_var: None,
        schedule: None,
        compression: Some("zstd:3".into()),
        keep_last: Some(5),
        max_age: Some("3d".into()),
        max_backups: None,
        retention_days: None,
        package: false,
        tenant: Some("acme".into()),
        stale_after: Some("86400s".into()),
        sslmode: None,
        pg_bin: None,
        mode: None,
        wal_archiving: false,
        slot: None,
        incremental: None,
        fallback_to_full: false,
        drill: None,
        drill_dir: None,
        drill_user: None,
        verify_max_age: None,
        keep_newest_verified: None,
        backup_type: None,
    }
}

/// What must hold of any entry [`database`] accepted for a caller bound
/// to `tenant` (or not): it stays in that tenant, carries no `*_var`
/// names, has valid ids and a staleness `chrono` can hold. The first
/// property broken, if any.
pub fn check_registered(db: &DatabaseConfig, tenant: Option<&str>) -> Result<(), String> {
    if let Some(t) = tenant
        && db.tenant != t
    {
        return Err(format!(
            "a caller bound to {t} registered into tenant {}",
            db.tenant
        ));
    }
    if db.username_var.is_some() || db.password_var.is_some() || db.url_var.is_some() {
        return Err("an entry from the API carries *_var names".into());
    }
    if db.pg_bin.is_some() || db.wal_slot.is_some() || db.mode != BackupMode::Logical {
        return Err("an entry from the API names pg_bin, a physical mode or WAL archiving".into());
    }
    validate_id(&db.id).map_err(|e| format!("id: {e}"))?;
    validate_id(&db.tenant).map_err(|e| format!("tenant: {e}"))?;
    chrono::Duration::from_std(db.stale_after)
        .map(drop)
        .map_err(|_| format!("stale_after {:?} does not fit chrono", db.stale_after))
}
