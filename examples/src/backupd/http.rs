//! The REST API (axum): `/api/v1/...` behind bearer tokens, plus
//! `/metrics`, `/healthz`, `/readyz` and `/openapi.json`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use backup_core::{BackupKind, BackupType, Error, Filter, Page, StoreExt};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{AuditRecord, Principal};
use super::config::{DatabaseView, Defaults, Problems, RawDatabase, Role};
use super::packages;
use super::state::App;

type Shared = Arc<App>;

/// An API error: status plus a one-line message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn not_found(what: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let (status, code) = match &e {
            Error::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            Error::InvalidKey { .. } => (StatusCode::BAD_REQUEST, "invalid_id"),
            Error::Config(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::AlreadyExists { .. } => (StatusCode::CONFLICT, "conflict"),
            Error::Integrity { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "integrity"),
            Error::Unsupported { .. } => (StatusCode::NOT_IMPLEMENTED, "unsupported"),
            Error::Connection { .. }
            | Error::Authentication { .. }
            | Error::DatabaseMissing { .. } => (StatusCode::BAD_GATEWAY, "database"),
            Error::StorageFull { .. } => (StatusCode::INSUFFICIENT_STORAGE, "storage_full"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"success": false, "error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok(data: impl serde::Serialize) -> ApiResult {
    Ok(Json(json!({"success": true, "data": data})).into_response())
}

fn accepted(data: impl serde::Serialize) -> ApiResult {
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"success": true, "data": data})),
    )
        .into_response())
}

fn admin(p: &Principal) -> Result<(), ApiError> {
    if p.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this operation needs an admin token",
        ))
    }
}

/// Every route, for the router, the OpenAPI document and its test:
/// `(method, path, summary, admin only)`.
pub const ROUTES: &[(&str, &str, &str, bool)] = &[
    (
        "get",
        "/api/v1/backups",
        "List backups (filters: tenant, source_id, kind, type, since, until; paging: offset, limit)",
        false,
    ),
    (
        "post",
        "/api/v1/backups",
        "Start a manual backup: {\"database_id\": \"...\", \"type\": \"full\"}",
        true,
    ),
    (
        "get",
        "/api/v1/backups/stats",
        "Count, size, newest and oldest backup per tenant and source",
        false,
    ),
    (
        "get",
        "/api/v1/backups/{id}",
        "One backup's manifest",
        false,
    ),
    (
        "delete",
        "/api/v1/backups/{id}",
        "Delete a backup (manifest first, then artifact)",
        true,
    ),
    (
        "get",
        "/api/v1/backups/{id}/download",
        "Download a backup's artifact (streamed, with checksums)",
        false,
    ),
    (
        "post",
        "/api/v1/backups/{id}/restore",
        "Restore asynchronously: {\"target_database\": \"...\", \"clean\": false}",
        true,
    ),
    (
        "get",
        "/api/v1/jobs/{id}",
        "State of an asynchronous operation",
        false,
    ),
    (
        "get",
        "/api/v1/status",
        "Health per database and scheduler state",
        false,
    ),
    (
        "post",
        "/api/v1/cleanup",
        "Apply retention now: {\"dry_run\": true}",
        true,
    ),
    (
        "get",
        "/api/v1/databases",
        "Registered databases (never credentials)",
        false,
    ),
    (
        "post",
        "/api/v1/databases",
        "Register a database at run time",
        true,
    ),
    ("get", "/api/v1/databases/{id}", "One database", false),
    (
        "patch",
        "/api/v1/databases/{id}",
        "Change a database (schedule, retention, ...)",
        true,
    ),
    (
        "delete",
        "/api/v1/databases/{id}",
        "Unregister a database (its backups stay)",
        true,
    ),
    ("get", "/api/v1/packages", "List packages", false),
    ("post", "/api/v1/packages", "Build packages now", true),
    (
        "get",
        "/api/v1/packages/{id}/download",
        "Download a package",
        false,
    ),
    ("delete", "/api/v1/packages/{id}", "Delete a package", true),
    ("get", "/metrics", "Prometheus metrics", false),
    ("get", "/healthz", "Liveness", false),
    (
        "get",
        "/readyz",
        "Readiness (store reachable, not shutting down)",
        false,
    ),
    ("get", "/openapi.json", "This document", false),
];

/// The router.
pub fn router(app: Shared) -> Router {
    let api = Router::new()
        .route("/backups", get(list_backups).post(create_backup))
        .route("/backups/stats", get(stats))
        .route("/backups/{id}", get(get_backup).delete(delete_backup))
        .route("/backups/{id}/download", get(download_backup))
        .route("/backups/{id}/restore", axum::routing::post(restore_backup))
        .route("/jobs/{id}", get(get_job))
        .route("/status", get(status))
        .route("/cleanup", axum::routing::post(cleanup))
        .route("/databases", get(list_databases).post(create_database))
        .route(
            "/databases/{id}",
            get(get_database)
                .patch(patch_database)
                .delete(delete_database),
        )
        .route("/packages", get(list_packages).post(create_packages))
        .route("/packages/{id}/download", get(download_package))
        .route("/packages/{id}", axum::routing::delete(delete_package))
        .layer(middleware::from_fn_with_state(app.clone(), authenticate));
    Router::new()
        .nest("/api/v1", api)
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route(
            "/openapi.json",
            get(|| async { Json(super::openapi::document()) }),
        )
        .with_state(app)
}

/// Authenticates every API call and audits every mutating one.
async fn authenticate(State(app): State<Shared>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| req.uri().path().to_string(), |u| u.path().to_string());
    let principal = app.tokens.authenticate(req.headers());
    let response = match &principal {
        None => {
            let mut r = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid bearer token",
            )
            .into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            r
        }
        Some(p) => {
            req.extensions_mut().insert(p.clone());
            next.run(req).await
        }
    };
    if method != Method::GET && method != Method::HEAD {
        let status = response.status().as_u16();
        app.audit.record(&AuditRecord {
            at: Utc::now(),
            who: principal.as_ref().map_or("anonymous", |p| p.name.as_str()),
            role: principal.as_ref().map(|p| p.role),
            tenant: principal.as_ref().and_then(|p| p.tenant.as_deref()),
            method: method.as_str(),
            path: &path,
            status,
            result: if status < 400 { "ok" } else { "error" },
        });
    }
    response
}

type Caller = axum::Extension<Principal>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    tenant: Option<String>,
    source_id: Option<String>,
    database_id: Option<String>,
    kind: Option<BackupKind>,
    #[serde(rename = "type")]
    backup_type: Option<BackupType>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    offset: Option<usize>,
    limit: Option<usize>,
}

/// The tenant scope of a request: the token's tenant, or the one asked for
/// (only tokens without a tenant may ask for any).
fn scope(p: &Principal, asked: Option<String>) -> Result<Option<String>, ApiError> {
    match (&p.tenant, asked) {
        (Some(mine), Some(asked)) if *mine != asked => {
            Err(ApiError::not_found(format!("tenant {asked}")))
        }
        (Some(mine), _) => Ok(Some(mine.clone())),
        (None, asked) => Ok(asked),
    }
}

fn backup_view(m: &backup_core::Manifest) -> Value {
    let mut v = serde_json::to_value(m).expect("manifests serialise");
    v["filename"] = Value::String(
        m.artifact
            .rsplit('/')
            .next()
            .unwrap_or(&m.artifact)
            .to_string(),
    );
    v["size_bytes"] = json!(m.stored.size);
    v["size_human"] = Value::String(backup_core::human_bytes(m.stored.size));
    v
}

async fn list_backups(
    State(app): State<Shared>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    let tenant = scope(&caller, q.tenant)?;
    let mut filter = Filter::all();
    filter.tenant = tenant;
    filter.source_id = q.source_id.or(q.database_id);
    filter.kind = q.kind;
    filter.backup_type = q.backup_type;
    filter.since = q.since;
    filter.until = q.until;
    let page = Page {
        offset: q.offset.unwrap_or(0),
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    let result = app.engine.catalog().page(&filter, page).await?;
    ok(json!({
        "items": result.items.iter().map(|m| backup_view(m)).collect::<Vec<_>>(),
        "total": result.total,
        "offset": page.offset,
        "limit": page.limit,
        "next_offset": result.next_offset,
    }))
}

async fn stats(State(app): State<Shared>, caller: Caller) -> ApiResult {
    let mut filter = Filter::all();
    filter.tenant = caller.tenant.clone();
    ok(app.engine.catalog().stats(&filter).await?)
}

async fn get_backup(
    State(app): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let m = app
        .engine
        .catalog()
        .get(&id, caller.tenant.as_deref())
        .await?;
    ok(backup_view(&m))
}

async fn delete_backup(
    State(app): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult {
    admin(&caller)?;
    let m = app
        .engine
        .catalog()
        .delete(&id, caller.tenant.as_deref())
        .await?;
    ok(json!({"deleted": m.id}))
}

/// A streamed file download with its length and checksums in the headers.
fn download(
    got: backup_core::GetResult,
    key: &str,
    content_type: &'static str,
    sha256: &str,
    md5: Option<&str>,
) -> Response {
    let file = key.rsplit('/').next().unwrap_or("download");
    let mut response = Response::new(Body::from_stream(got.stream));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(got.meta.size));
    // Keys are validated and file names sanitised: always a valid header.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(sha256) {
        h.insert("x-checksum-sha256", v.clone());
        if let Ok(etag) = HeaderValue::from_str(&format!("\"{sha256}\"")) {
            h.insert(header::ETAG, etag);
        }
    }
    if let Some(Ok(v)) = md5.map(HeaderValue::from_str) {
        h.insert("x-checksum-md5", v);
    }
    response
}

async fn download_backup(
    State(app): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let m = app
        .engine
        .catalog()
        .get(&id, caller.tenant.as_deref())
        .await?;
    if m.backup_type == BackupType::Incremental {
        // The artifact is a chunk list: send the reassembled dump, verified
        // as it streams (it ends in an error rather than its last bytes if
        // a chunk is damaged).
        let (m, stream) = app.engine.open_dump(&id, caller.tenant.as_deref()).await?;
        let got = backup_core::GetResult {
            meta: backup_core::ObjectMeta {
                key: m.artifact_key()?,
                size: m.raw.size,
                last_modified: m.finished_at,
            },
            stream,
        };
        let name = packages::dump_file_name(&m);
        return Ok(download(
            got,
            &name,
            "application/octet-stream",
            &m.raw.sha256,
            None,
        ));
    }
    let got = app.store.get(&m.artifact_key()?).await?;
    Ok(download(
        got,
        &m.artifact,
        "application/octet-stream",
        &m.stored.sha256,
        m.stored.md5.as_deref(),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBackup {
    database_id: String,
    #[serde(rename = "type", default)]
    backup_type: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct WaitQuery {
    wait: Option<bool>,
}

async fn create_backup(
    State(app): State<Shared>,
    caller: Caller,
    Query(wait): Query<WaitQuery>,
    body: Result<Json<CreateBackup>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    admin(&caller)?;
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let backup_type = match body.backup_type.as_deref().unwrap_or("full") {
        "full" => BackupType::Full,
        "incremental" => BackupType::Incremental,
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown type {other:?} (expected full or incremental)"
            )));
        }
    };
    let db = app
        .database(&body.database_id, caller.tenant.as_deref())
        .ok_or_else(|| ApiError::not_found(format!("database {}", body.database_id)))?;
    let runner = Arc::clone(&app);
    let db_id = db.id.clone();
    let work = async move {
        let outcome = runner
            .scheduler
            .run_now_as(&db_id, Some(backup_type))
            .await?;
        let id = outcome.backup_id.unwrap_or_default();
        let m = runner.engine.catalog().get(&id, None).await?;
        Ok(backup_view(&m))
    };
    if wait.wait.unwrap_or(false) {
        let v = work.await.map_err(ApiError::from)?;
        return Ok((
            StatusCode::CREATED,
            Json(json!({"success": true, "data": v})),
        )
            .into_response());
    }
    let job = app.start_operation("backup", Some(&db.tenant), work);
    accepted(json!({"job_id": job, "status_url": format!("/api/v1/jobs/{job}")}))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RestoreBody {
    target_database: Option<String>,
    #[serde(default)]
    clean: bool,
}

async fn restore_backup(
    State(app): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<RestoreBody>>,
) -> ApiResult {
    admin(&caller)?;
    let body = body.map(|b| b.0).unwrap_or_default();
    // Resolve now so unknown ids and other tenants' backups are 404 here.
    let m = app
        .engine
        .catalog()
        .get(&id, caller.tenant.as_deref())
        .await?;
    if let Some(t) = &body.target_database
        && (t.is_empty() || t.len() > 63 || t.chars().any(|c| c.is_control()))
    {
        return Err(ApiError::bad_request(
            "target_database must be 1 to 63 printable characters",
        ));
    }
    let runner = Arc::clone(&app);
    let tenant = m.tenant.clone();
    let job = app.start_operation("restore", Some(&m.tenant), async move {
        runner
            .restore(&id, Some(&tenant), body.target_database, body.clean)
            .await
    });
    accepted(json!({"job_id": job, "status_url": format!("/api/v1/jobs/{job}")}))
}

async fn get_job(State(app): State<Shared>, caller: Caller, Path(id): Path<String>) -> ApiResult {
    let op = app
        .operations
        .lock()
        .expect("operations lock")
        .get(&id)
        .filter(|o| caller.tenant.is_none() || o.tenant == caller.tenant)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("job {id}")))?;
    ok(op)
}

async fn status(State(app): State<Shared>, caller: Caller) -> ApiResult {
    let mut filter = Filter::all();
    filter.tenant = caller.tenant.clone();
    let health = app
        .engine
        .catalog()
        .health(
            &filter,
            &app.health_options(caller.tenant.as_deref()),
            Utc::now(),
        )
        .await?;
    let visible: Vec<String> = app
        .databases_for(caller.tenant.as_deref())
        .into_iter()
        .map(|d| d.id)
        .collect();
    let jobs: Vec<_> = app
        .scheduler
        .jobs()
        .into_iter()
        .filter(|j| visible.contains(&j.id))
        .collect();
    ok(json!({
        "healthy": health.iter().all(|h| h.status == backup_core::HealthStatus::Healthy),
        "sources": health,
        "jobs": jobs,
        "running": app.scheduler.running(),
        "peak_running": app.scheduler.peak_running(),
        "max_parallel_jobs": app.config.max_parallel_jobs,
        "time_zone": app.config.tz.name(),
    }))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CleanupBody {
    #[serde(default)]
    dry_run: bool,
}

async fn cleanup(
    State(app): State<Shared>,
    caller: Caller,
    body: Option<Json<CleanupBody>>,
) -> ApiResult {
    admin(&caller)?;
    let dry_run = body.map(|b| b.0.dry_run).unwrap_or(false);
    ok(app.cleanup(caller.tenant.as_deref(), dry_run).await?)
}

async fn list_databases(State(app): State<Shared>, caller: Caller) -> ApiResult {
    let views: Vec<DatabaseView> = app
        .databases_for(caller.tenant.as_deref())
        .iter()
        .map(DatabaseView::from)
        .collect();
    ok(views)
}

async fn get_database(
    State(app): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let db = app
        .database(&id, caller.tenant.as_deref())
        .ok_or_else(|| ApiError::not_found(format!("database {id}")))?;
    ok(DatabaseView::from(&db))
}

/// A database in a request: the file's fields plus `username` and
/// `password` given directly (kept in memory only, never echoed or
/// persisted).
type DatabaseBody = serde_json::Map<String, Value>;

fn body_to_database(
    defaults: &Defaults,
    caller: &Principal,
    mut fields: serde_json::Map<String, Value>,
    base: Option<&RawDatabase>,
) -> Result<super::config::DatabaseConfig, ApiError> {
    // Credentials come in the body only. `*_var` names are accepted in the
    // configuration file, never over the API: looking them up would let a
    // caller read any variable of the daemon's environment.
    for key in ["username_var", "password_var"] {
        if fields.contains_key(key) {
            return Err(ApiError::bad_request(format!(
                "{key} is accepted only in the configuration file; send `username` and `password` instead"
            )));
        }
    }
    let text = |v: Value, what: &str| match v {
        Value::String(s) => Ok(s),
        _ => Err(ApiError::bad_request(format!("{what} must be a string"))),
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
    for (k, v) in fields {
        merged[k] = v;
    }
    if let Some(t) = &caller.tenant {
        match merged.get("tenant").and_then(Value::as_str) {
            Some(asked) if asked != t => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!("this token is bound to tenant {t}"),
                ));
            }
            _ => merged["tenant"] = Value::String(t.clone()),
        }
    }
    let raw: RawDatabase =
        serde_json::from_value(merged).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut problems = Problems::default();
    let env = |_: &str| None;
    let Some(mut db) = super::config::database(&raw, "database", defaults, &env, &mut problems)
    else {
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

async fn create_database(
    State(app): State<Shared>,
    caller: Caller,
    body: Result<Json<DatabaseBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    admin(&caller)?;
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let db = body_to_database(&app.config.defaults, &caller, body, None)?;
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
    app.register(db).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"success": true, "data": view})),
    )
        .into_response())
}

async fn patch_database(
    State(app): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<DatabaseBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    admin(&caller)?;
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let current = app
        .database(&id, caller.tenant.as_deref())
        .ok_or_else(|| ApiError::not_found(format!("database {id}")))?;
    if body
        .get("id")
        .and_then(Value::as_str)
        .is_some_and(|new| new != id)
    {
        return Err(ApiError::bad_request("the id of a database cannot change"));
    }
    let mut fields = body;
    // Start from the current entry; schedule and compression as text.
    let base = RawDatabase {
        id: current.id.clone(),
        name: Some(current.name.clone()),
        engine: match current.engine {
            super::config::Engine::Postgres => "postgres".into(),
            super::config::Engine::Mongodb => "mongodb".into(),
        },
        host: Some(current.host.clone()),
        port: Some(current.port),
        database_name: current.database_name.clone(),
        username_var: None,
        password_var: None,
        schedule: None,
        compression: Some(current.compression.to_string()),
        retention_days: current.retention_days,
        max_backups: current.max_backups,
        package: current.package,
        tenant: Some(current.tenant.clone()),
        stale_after: Some(format!("{}s", current.stale_after.as_secs())),
        sslmode: current.sslmode.clone(),
    };
    fields
        .entry("schedule".to_string())
        .or_insert_with(|| Value::String(current.schedule.to_string()));
    let mut db = body_to_database(&app.config.defaults, &caller, fields, Some(&base))?;
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
    app.register(db).await?;
    ok(view)
}

async fn delete_database(
    State(app): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult {
    admin(&caller)?;
    if app.database(&id, caller.tenant.as_deref()).is_none() {
        return Err(ApiError::not_found(format!("database {id}")));
    }
    app.unregister(&id);
    ok(json!({"deleted": id}))
}

async fn list_packages(State(app): State<Shared>, caller: Caller) -> ApiResult {
    ok(packages::list(&app.store, caller.tenant.as_deref()).await?)
}

async fn create_packages(
    State(app): State<Shared>,
    caller: Caller,
    Query(wait): Query<WaitQuery>,
) -> ApiResult {
    admin(&caller)?;
    let runner = Arc::clone(&app);
    let tenant = caller.tenant.clone();
    let work = async move {
        let built = runner.build_packages(tenant.as_deref(), "manual").await?;
        Ok(serde_json::to_value(built).expect("packages serialise"))
    };
    if wait.wait.unwrap_or(false) {
        let v = work.await.map_err(ApiError::from)?;
        return Ok((
            StatusCode::CREATED,
            Json(json!({"success": true, "data": v})),
        )
            .into_response());
    }
    let job = app.start_operation("package", caller.tenant.as_deref(), work);
    accepted(json!({"job_id": job, "status_url": format!("/api/v1/jobs/{job}")}))
}

async fn download_package(
    State(app): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let p = packages::get(&app.store, &id, caller.tenant.as_deref()).await?;
    let got = app
        .store
        .get(&backup_core::Key::new(p.artifact.as_str())?)
        .await?;
    Ok(download(
        got,
        &p.artifact,
        p.format.content_type(),
        &p.sha256,
        None,
    ))
}

async fn delete_package(
    State(app): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult {
    admin(&caller)?;
    let p = packages::get(&app.store, &id, caller.tenant.as_deref()).await?;
    packages::delete(&app.store, &p).await?;
    ok(json!({"deleted": p.id}))
}

async fn metrics(State(app): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

async fn ready(State(app): State<Shared>) -> Response {
    if app.stopping.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    let probe = backup_core::Key::new("_readyz").expect("valid key");
    match app.store.exists(&probe).await {
        Ok(_) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: store unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response()
        }
    }
}

/// The request parsers of the handlers above, for the fuzz targets
/// (`backup-core/fuzz`) and `tests/prop_bodies.rs`: each runs the same
/// extractor or function the handler runs. Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use axum::Json;
    use axum::extract::Query;
    use axum::http::Uri;

    use super::{ApiError, CleanupBody, CreateBackup, ListQuery, RestoreBody, WaitQuery};
    use crate::backupd::auth::Principal;
    use crate::backupd::config::{DatabaseConfig, Defaults, RawDatabase};

    /// The status and message of an [`ApiError`].
    pub fn describe(e: &ApiError) -> (u16, &'static str, &str) {
        (e.status.as_u16(), e.code, &e.message)
    }

    /// `POST /api/v1/backups`'s body as its handler extracts it.
    pub fn create_backup(body: &[u8]) -> Result<(), ApiError> {
        Json::<CreateBackup>::from_bytes(body)
            .map(drop)
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }

    /// `POST /api/v1/backups/{id}/restore`'s body.
    pub fn restore(body: &[u8]) -> Result<(), ApiError> {
        Json::<RestoreBody>::from_bytes(body)
            .map(drop)
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }

    /// `POST /api/v1/cleanup`'s body.
    pub fn cleanup(body: &[u8]) -> Result<(), ApiError> {
        Json::<CleanupBody>::from_bytes(body)
            .map(drop)
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }

    /// The query string of `GET /api/v1/backups` (`ListQuery`) and of the
    /// `?wait=` endpoints.
    pub fn queries(query: &str) -> Result<(), ApiError> {
        let uri: Uri = format!("/api/v1/backups?{query}")
            .parse()
            .map_err(|_| ApiError::bad_request("not a URI"))?;
        Query::<WaitQuery>::try_from_uri(&uri).map_err(|e| ApiError::bad_request(e.body_text()))?;
        Query::<ListQuery>::try_from_uri(&uri)
            .map(drop)
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }

    /// `POST /api/v1/databases` (`base: None`) or `PATCH` (`base`: the
    /// entry as the handler rebuilds it) for a caller bound to `tenant` or
    /// not.
    pub fn database(
        body: &[u8],
        defaults: &Defaults,
        tenant: Option<&str>,
        base: Option<&RawDatabase>,
    ) -> Result<DatabaseConfig, ApiError> {
        let Json(fields) = Json::<super::DatabaseBody>::from_bytes(body)
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let caller = Principal {
            name: "FUZZ_TOKEN".into(),
            role: crate::backupd::config::Role::Admin,
            tenant: tenant.map(str::to_string),
        };
        super::body_to_database(defaults, &caller, fields, base)
    }
}
