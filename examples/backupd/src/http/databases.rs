//! `/api/v1/databases`: registered databases, added, changed and removed
//! at run time within the caller's tenant policy.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::body;
use crate::config::{
    BackupMode, DatabaseConfig, DatabaseView, Defaults, Problems, RawDatabase, RawSchedule,
    database, drop_renamed_fields,
};
use crate::engine::Engine;
use crate::error::ApiError;
use crate::state::App;
use backup_core::duration::format_duration;

use super::common::{ApiResult, Caller, Found, Shared, created, ok};

/// The database a path's `{id}` names, within the caller's tenant.
type Database = Found<DatabaseConfig>;

pub(super) async fn list_databases(State(app): State<Shared>, caller: Caller) -> ApiResult {
    let views: Vec<DatabaseView> = app
        .databases_for(caller.tenant.as_deref())
        .iter()
        .map(DatabaseView::from)
        .collect();
    ok(views)
}

pub(super) async fn get_database(found: Database) -> ApiResult {
    ok(DatabaseView::from(&found.item))
}

/// A database in a request: the file's fields plus `username` and
/// `password` given directly (kept in memory only, never echoed or
/// persisted).
pub(super) type DatabaseBody = serde_json::Map<String, Value>;

pub(super) const DATABASE_EXAMPLE: &str =
    r#"{"id": "...", "engine": "postgres", "host": "...", "database_name": "..."}"#;

/// The fields that place an entry on a server: only a tenant-less token
/// may change them once registered.
pub(super) const PLACEMENT: [&str; 4] = ["engine", "host", "port", "database_name"];

pub(super) fn body_to_database(
    defaults: &Defaults,
    caller: &Principal,
    mut fields: serde_json::Map<String, Value>,
    base: Option<&RawDatabase>,
) -> Result<DatabaseConfig, ApiError> {
    // Credentials come in the body only. `*_var` names are accepted in the
    // configuration file, never over the API: looking them up would let a
    // caller read any variable of the daemon's environment.
    for key in ["username_var", "password_var", "url_var"] {
        if fields.contains_key(key) {
            return Err(ApiError::bad_request(format!(
                "{key} is accepted only in the configuration file; send `username` and `password` instead"
            )));
        }
    }
    // Which programs the daemon runs, and whole-cluster backups and WAL
    // archiving (long-running replication), are the operator's choice.
    for key in [
        "pg_bin",
        "path",
        "mode",
        "wal_archiving",
        "slot",
        "incremental",
        "fallback_to_full",
        "drill",
        "drill_dir",
        "drill_user",
        "verify_max_age",
    ] {
        if fields.contains_key(key) {
            return Err(ApiError::bad_request(format!(
                "{key} is accepted only in the configuration file"
            )));
        }
    }
    let text = |v: Value, what: &str| match v {
        Value::String(s) if !s.is_empty() && s.len() <= 1024 => Ok(s),
        _ => Err(ApiError::bad_request(format!(
            "{what} must be a string of 1 to 1024 characters"
        ))),
    };
    let username = fields
        .remove("username")
        .map(|v| text(v, "username"))
        .transpose()?;
    let password = fields
        .remove("password")
        .map(|v| text(v, "password"))
        .transpose()?;
    let mut merged = match base {
        Some(b) => serde_json::to_value(b).expect("raw databases serialise"),
        None => json!({}),
    };
    if let Value::Object(base) = &mut merged {
        drop_renamed_fields(base, &fields);
    }
    for (k, v) in fields {
        merged[k] = v;
    }
    if let Some(t) = &caller.tenant {
        match merged.get("tenant") {
            None | Some(Value::Null) => merged["tenant"] = Value::String(t.clone()),
            Some(Value::String(asked)) if asked == t => {}
            Some(Value::String(asked)) => {
                return Err(ApiError::not_found(format!("tenant {asked}")));
            }
            Some(_) => return Err(ApiError::bad_request("tenant must be a string")),
        }
    }
    let raw: RawDatabase = serde_json::from_value(merged)
        .map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?;
    let mut problems = Problems::default();
    let env = |_: &str| None;
    let Some(mut db) = database(&raw, "database", defaults, &env, &mut problems) else {
        return Err(ApiError::bad_request(problems.0.join("; ")));
    };
    if let Some(u) = username {
        db.username = Some(u);
    }
    if let Some(p) = password {
        db.password = Some(backup_core::Secret::new(p));
    }
    Ok(db)
}

/// For a tenant-bound caller: the database must be on a host (and have a
/// name) its tenant's `tenants:` entry allows.
pub(super) fn tenant_policy(
    app: &App,
    caller: &Principal,
    db: &DatabaseConfig,
) -> Result<(), ApiError> {
    let Some(t) = &caller.tenant else {
        return Ok(());
    };
    let policy = app.config.tenants.get(t);
    if !policy.is_some_and(|p| p.allows_host(&db.host, db.port)) {
        return Err(ApiError::forbidden(
            "host_not_allowed",
            format!(
                "tenant {t} may not register databases on {}:{} (see tenants.{t}.allowed_hosts in the configuration)",
                db.host, db.port
            ),
        ));
    }
    if !policy.is_some_and(|p| p.allows_database(&db.database_name)) {
        return Err(ApiError::forbidden(
            "database_not_allowed",
            format!(
                "tenant {t} may not register database {:?} (see tenants.{t}.allowed_databases)",
                db.database_name
            ),
        ));
    }
    Ok(())
}

pub(super) async fn create_database(
    State(app): State<Shared>,
    caller: Caller,
    headers: HeaderMap,
    request: Body,
) -> ApiResult {
    let body: DatabaseBody = body::json(&headers, request, DATABASE_EXAMPLE).await?;
    let db = body_to_database(&app.config.defaults, &caller, body, None)?;
    tenant_policy(&app, &caller, &db)?;
    if app
        .databases
        .read()
        .expect("databases lock")
        .contains_key(&db.id)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("database {} already exists", db.id),
        ));
    }
    let view = DatabaseView::from(&db);
    app.register_checked(db, None).await?;
    created(view)
}

pub(super) async fn patch_database(
    State(app): State<Shared>,
    Found {
        id,
        item: current,
        caller,
    }: Database,
    headers: HeaderMap,
    request: Body,
) -> ApiResult {
    let fields: DatabaseBody = body::json(&headers, request, r#"{"max_backups": 10}"#).await?;
    if fields
        .get("id")
        .is_some_and(|new| new.as_str() != Some(id.as_str()))
    {
        return Err(ApiError::bad_request("the id of a database cannot change"));
    }
    // Start from the current entry; schedule and compression as text.
    let base = RawDatabase {
        id: current.id.clone(),
        name: Some(current.name.clone()),
        engine: match current.engine {
            Engine::Postgres => "postgres".into(),
            Engine::Mongodb => "mongodb".into(),
            Engine::Mysql => "mysql".into(),
            Engine::Sqlite => "sqlite".into(),
        },
        // A sqlite entry is placed by its path alone.
        host: current.path.is_none().then(|| current.host.clone()),
        port: current.path.is_none().then_some(current.port),
        database_name: if current.path.is_some() {
            String::new()
        } else {
            current.database_name.clone()
        },
        path: current.path.clone(),
        url_var: None,
        username_var: None,
        password_var: None,
        schedule: None,
        compression: Some(current.compression.to_string()),
        keep_last: current.retention.keep_last,
        max_age: current.retention.max_age.map(format_duration),
        max_backups: None,
        retention_days: None,
        package: current.package,
        tenant: Some(current.tenant.clone()),
        stale_after: Some(format!("{}s", current.stale_after.as_secs())),
        sslmode: current.sslmode.clone(),
        pg_bin: current.pg_bin.clone(),
        mode: (current.mode == BackupMode::Physical).then(|| "physical".into()),
        wal_archiving: current.wal_slot.is_some(),
        slot: current.wal_slot.clone(),
        incremental: current
            .incremental
            .as_ref()
            .map(|s| RawSchedule::Text(s.to_string())),
        fallback_to_full: current.fallback_to_full,
        drill: current
            .drill
            .as_ref()
            .map(|s| RawSchedule::Text(s.to_string())),
        drill_dir: current.drill_dir.as_ref().map(|d| d.display().to_string()),
        drill_user: current.drill_user.clone(),
        verify_max_age: current.verify_max_age.map(format_duration),
        keep_newest_verified: Some(current.keep_newest_verified),
        backup_type: None,
    };
    let mut fields = fields;
    fields
        .entry("schedule".to_string())
        .or_insert_with(|| Value::String(current.schedule.to_string()));
    let mut db = body_to_database(&app.config.defaults, &caller, fields, Some(&base))?;
    let moved: Vec<&str> = PLACEMENT
        .into_iter()
        .filter(|f| match *f {
            "engine" => db.engine != current.engine,
            "host" => db.host != current.host,
            "port" => db.port != current.port,
            _ => db.database_name != current.database_name,
        })
        .collect();
    if caller.tenant.is_some() && !moved.is_empty() {
        return Err(ApiError::forbidden(
            "forbidden",
            format!(
                "a token bound to a tenant cannot change {} of a registered database: ask a tenant-less admin, or register a new entry",
                moved.join(", ")
            ),
        ));
    }
    // Credentials not given again stay as they were, but only for the same
    // server: pointing an entry elsewhere must not carry its password there.
    let same_server =
        db.host == current.host && db.port == current.port && db.engine == current.engine;
    if same_server {
        if db.username.is_none() {
            db.username = current.username.clone();
        }
        if db.password.is_none() {
            db.password = current.password.clone();
        }
        db.username_var = current.username_var.clone();
        db.password_var = current.password_var.clone();
    }
    let view = DatabaseView::from(&db);
    app.register_checked(db, Some(&id)).await?;
    ok(view)
}

pub(super) async fn delete_database(
    State(app): State<Shared>,
    Found { id, .. }: Database,
    headers: HeaderMap,
    request: Body,
) -> ApiResult {
    body::none(&headers, request).await?;
    app.unregister(&id).await;
    ok(json!({"deleted": id}))
}
