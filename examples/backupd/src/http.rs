//! The REST API (axum): `/api/v1/...` behind bearer tokens, plus
//! `/metrics`, `/healthz`, `/readyz` and `/openapi.json`.
//!
//! Every API request goes through the same steps, in this order: the
//! token (401), the route's role (403, from [`ROUTES`]), shutdown (503 for
//! changes), the ids in the path (400 if malformed, 404 if not visible to
//! the caller's tenant), and only then the body ([`super::body`]: 415,
//! 413, 400). Nothing is parsed for a caller who may not act.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use backup_core::{
    BackupType, Filter, catalog::Page, key::validate_id, manifest::BackupKind, store::StoreExt,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::auth::{AuditRecord, Principal};
use super::body;
use super::config::{DatabaseView, Defaults, Problems, RawDatabase, Role};
pub use super::error::ApiError;
use super::packages;
use super::state::App;

type Shared = Arc<App>;

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

fn created(data: impl serde::Serialize) -> ApiResult {
    Ok((
        StatusCode::CREATED,
        Json(json!({"success": true, "data": data})),
    )
        .into_response())
}

fn admin(p: &Principal) -> Result<(), ApiError> {
    if p.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "forbidden",
            "this operation needs an admin token",
        ))
    }
}

/// An id from the path: letters, digits, `-`, `_`, `.` (so `../x` and
/// `/etc/passwd` are 400 before anything is looked up).
fn path_id(id: &str) -> Result<(), ApiError> {
    validate_id(id).map_err(ApiError::from)
}

/// A query string, refused with our envelope when it has unknown keys,
/// wrong types or repeated keys.
fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {}", e.body_text())))
}

/// One route of the API.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// Lower-case HTTP method.
    pub method: &'static str,
    /// Path with `{id}` parameters.
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// Admin tokens only (every route that changes something).
    pub admin: bool,
    /// The JSON body it requires, as an example; `None`: it takes none.
    pub body: Option<&'static str>,
}

const fn route(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    admin: bool,
    body: Option<&'static str>,
) -> Route {
    Route {
        method,
        path,
        summary,
        admin,
        body,
    }
}

/// Every route, for the router's authorization, the OpenAPI document and
/// the tests.
pub const ROUTES: &[Route] = &[
    route(
        "get",
        "/api/v1/backups",
        "List backups (filters: tenant, source_id, kind, type, since, until; paging: offset, limit 1-1000)",
        false,
        None,
    ),
    route(
        "post",
        "/api/v1/backups",
        "Start a manual backup (`?wait=true` waits)",
        true,
        Some(r#"{"database_id": "...", "type": "full"}"#),
    ),
    route(
        "get",
        "/api/v1/backups/stats",
        "Count, size, newest and oldest backup per tenant and source",
        false,
        None,
    ),
    route(
        "get",
        "/api/v1/backups/{id}",
        "One backup's manifest",
        false,
        None,
    ),
    route(
        "delete",
        "/api/v1/backups/{id}",
        "Delete a backup (manifest first, then artifact)",
        true,
        None,
    ),
    route(
        "get",
        "/api/v1/backups/{id}/download",
        "Download a backup's artifact (streamed, with checksums)",
        false,
        None,
    ),
    route(
        "post",
        "/api/v1/backups/{id}/restore",
        "Restore asynchronously into the source's own database or a new one (target_database required; clean defaults to false)",
        true,
        Some(r#"{"target_database": "...", "clean": false}"#),
    ),
    route(
        "get",
        "/api/v1/jobs/{id}",
        "State of an asynchronous operation",
        false,
        None,
    ),
    route(
        "get",
        "/api/v1/status",
        "Health per database and scheduler state",
        false,
        None,
    ),
    route(
        "post",
        "/api/v1/cleanup",
        "Apply retention now (dry_run required)",
        true,
        Some(r#"{"dry_run": true}"#),
    ),
    route(
        "get",
        "/api/v1/databases",
        "Registered databases (never credentials)",
        false,
        None,
    ),
    route(
        "post",
        "/api/v1/databases",
        "Register a database at run time",
        true,
        Some(r#"{"id": "...", "engine": "postgres", "host": "...", "database_name": "..."}"#),
    ),
    route("get", "/api/v1/databases/{id}", "One database", false, None),
    route(
        "patch",
        "/api/v1/databases/{id}",
        "Change a database (schedule, retention, credentials; host, port, engine and database only with a tenant-less token)",
        true,
        Some(r#"{"max_backups": 10}"#),
    ),
    route(
        "delete",
        "/api/v1/databases/{id}",
        "Unregister a database (its backups stay)",
        true,
        None,
    ),
    route("get", "/api/v1/packages", "List packages", false, None),
    route(
        "post",
        "/api/v1/packages",
        "Build packages now (`?wait=true` waits)",
        true,
        None,
    ),
    route(
        "get",
        "/api/v1/packages/{id}/download",
        "Download a package",
        false,
        None,
    ),
    route(
        "delete",
        "/api/v1/packages/{id}",
        "Delete a package",
        true,
        None,
    ),
    route(
        "get",
        "/metrics",
        "Prometheus metrics (bearer: a tenant-less token or metrics.token_var)",
        false,
        None,
    ),
    route("get", "/healthz", "Liveness", false, None),
    route(
        "get",
        "/readyz",
        "Readiness (store reachable, not shutting down)",
        false,
        None,
    ),
    route("get", "/openapi.json", "This document", false, None),
];

/// The route `method path` (a matched path, with `{id}`).
pub fn find_route(method: &Method, path: &str) -> Option<&'static Route> {
    ROUTES
        .iter()
        .find(|r| r.path == path && method.as_str().eq_ignore_ascii_case(r.method))
}

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
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no_such_route", "no such API route")
        })
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
        .layer(middleware::from_fn(body::finish_body))
        .with_state(app)
}

/// The router of `metrics_listen`: metrics and probes only.
pub fn metrics_router(app: Shared) -> Router {
    Router::new()
        .route("/metrics", get(metrics_open))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .layer(middleware::from_fn(body::finish_body))
        .with_state(app)
}

/// Authenticates every API call, authorizes it by the route's role,
/// refuses changes while shutting down, and audits every mutating call.
async fn authenticate(State(app): State<Shared>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| req.uri().path().to_string(), |u| u.path().to_string());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|m| find_route(&method, m.as_str()));
    let mutating = method != Method::GET && method != Method::HEAD;
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
        Some(p) if (route.is_some_and(|r| r.admin) || mutating) && p.role != Role::Admin => {
            admin(p).unwrap_err().into_response()
        }
        Some(_) if mutating && app.stopping.is_cancelled() => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the daemon is shutting down: retry against the next instance",
        )
        .into_response(),
        Some(p) => {
            req.extensions_mut().insert(p.clone());
            next.run(req).await
        }
    };
    if mutating {
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

fn backup_view(m: &backup_core::manifest::Manifest) -> Value {
    let mut v = serde_json::to_value(m).expect("manifests serialise");
    v["filename"] = Value::String(
        m.artifact
            .rsplit('/')
            .next()
            .unwrap_or(&m.artifact)
            .to_string(),
    );
    v["size_bytes"] = json!(m.stored.size);
    v["size_human"] = Value::String(backup_core::format::human_bytes(m.stored.size));
    v
}

async fn list_backups(
    State(app): State<Shared>,
    caller: Caller,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let tenant = scope(&caller, q.tenant)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit {limit} is out of range (1 to 1000)"
        )));
    }
    let mut filter = Filter::all();
    filter.tenant = tenant;
    filter.source_id = q.source_id.or(q.database_id);
    filter.kind = q.kind;
    filter.backup_type = q.backup_type;
    filter.since = q.since;
    filter.until = q.until;
    let page = Page {
        offset: q.offset.unwrap_or(0),
        limit,
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
    headers: HeaderMap,
    request: Body,
) -> ApiResult {
    admin(&caller)?;
    // Resolve first: unknown ids and other tenants' backups are 404
    // whatever the body.
    app.engine
        .catalog()
        .get(&id, caller.tenant.as_deref())
        .await?;
    body::none(&headers, request).await?;
    let m = app
        .engine
        .catalog()
        .delete(&id, caller.tenant.as_deref())
        .await?;
    ok(json!({"deleted": m.id}))
}

/// A streamed file download with its length and checksums in the headers.
fn download(
    got: backup_core::store::GetResult,
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
        let got = backup_core::store::GetResult {
            meta: backup_core::store::ObjectMeta {
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
#[serde(deny_unknown_fields)]
struct WaitQuery {
    wait: Option<bool>,
}

async fn create_backup(
    State(app): State<Shared>,
    caller: Caller,
    wait: Result<Query<WaitQuery>, QueryRejection>,
    headers: HeaderMap,
    request: Body,
) -> ApiResult {
    admin(&caller)?;
    let wait = query(wait)?;
    let body: CreateBackup = body::json(
        &headers,
        request,
        r#"{"database_id": "...", "type": "full"}"#,
    )
    .await?;
    let backup_type = match body.backup_type.as_deref().unwrap_or("full") {
        "full" => BackupType::Full,
        "incremental" => BackupType::Incremental,
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown type {other:?} (expected full or incremental)"
            )));
        }
    };
    path_id(&body.database_id)
        .map_err(|_| ApiError::not_found(format!("database {:?}", body.database_id)))?;
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
        Ok::<_, ApiError>(backup_view(&m))
    };
    if wait.wait.unwrap_or(false) {
        return created(work.await?);
    }
    let job = app.start_operation("backup", Some(&db.tenant), work);
    accepted(json!({"job_id": job, "status_url": format!("/api/v1/jobs/{job}")}))
}

/// A restore names its target: the source's own database (to restore
/// over it) or a new one. `clean` (drop what exists first) defaults to
/// false, the choice that overwrites nothing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreBody {
    target_database: String,
    #[serde(default)]
    clean: bool,
}

async fn restore_backup(
    State(app): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    request: Body,
) -> ApiResult {
    admin(&caller)?;
    // Resolve now so unknown ids and other tenants' backups are 404 here,
    // before the body is read.
    let m = app
        .engine
        .catalog()
        .get(&id, caller.tenant.as_deref())
        .await?;
    let body: RestoreBody = body::json(
        &headers,
        request,
        r#"{"target_database": "...", "clean": false}"#,
    )
    .await?;
    let t = &body.target_database;
    if t.trim().is_empty() || t.len() > 63 || t.chars().any(|c| c.is_control()) {
        return Err(ApiError::bad_request(
            "target_database must be 1 to 63 printable characters",
        ));
    }
    let runner = Arc::clone(&app);
    let tenant = m.tenant.clone();
    let request = super::state::RestoreRequest {
        target_database: body.target_database,
        clean: body.clean,
        caller_tenant: caller.tenant.clone(),
    };
    let job = app.start_operation("restore", Some(&m.tenant), async move {
        runner.restore(&id, Some(&tenant), request).await
    });
    accepted(json!({"job_id": job, "status_url": format!("/api/v1/jobs/{job}")}))
}

async fn get_job(State(app): State<Shared>, caller: Caller, Path(id): Path<String>) -> ApiResult {
    path_id(&id)?;
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
        "healthy": health.iter().all(|h| h.status == backup_core::catalog::HealthStatus::Healthy),
        "sources": health,
        "jobs": jobs,
        "running": app.scheduler.running(),
        "peak_running": app.scheduler.peak_running(),
        "max_parallel_jobs": app.config.max_parallel_jobs,
        "time_zone": app.config.tz.name(),
        "restore_leftovers": app.leftovers.visible(&visible),
    }))
}

/// A cleanup states whether it is a dry run: a body that does not is
/// refused rather than taken for a real run.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CleanupBody {
    dry_run: bool,
}

async fn cleanup(
    State(app): State<Shared>,
    caller: Caller,
    headers: HeaderMap,
    request: Body,
) -> ApiResult {
    admin(&caller)?;
    let body: CleanupBody = body::json(&headers, request, r#"{"dry_run": true}"#).await?;
    ok(app.cleanup(caller.tenant.as_deref(), body.dry_run).await?)
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
    path_id(&id)?;
    let db = app
        .database(&id, caller.tenant.as_deref())
        .ok_or_else(|| ApiError::not_found(format!("database {id}")))?;
    ok(DatabaseView::from(&db))
}

/// A database in a request: the file's fields plus `username` and
/// `password` given directly (kept in memory only, never echoed or
/// persisted).
type DatabaseBody = serde_json::Map<String, Value>;

const DATABASE_EXAMPLE: &str =
    r#"{"id": "...", "engine": "postgres", "host": "...", "database_name": "..."}"#;

/// The fields that place an entry on a server: only a tenant-less token
/// may change them once registered.
const PLACEMENT: [&str; 4] = ["engine", "host", "port", "database_name"];

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

/// For a tenant-bound caller: the database must be on a host (and have a
/// name) its tenant's `tenants:` entry allows.
fn tenant_policy(
    app: &App,
    caller: &Principal,
    db: &super::config::DatabaseConfig,
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

async fn create_database(
    State(app): State<Shared>,
    caller: Caller,
    headers: HeaderMap,
    request: Body,
) -> ApiResult {
    admin(&caller)?;
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

async fn patch_database(
    State(app): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    request: Body,
) -> ApiResult {
    admin(&caller)?;
    path_id(&id)?;
    let current = app
        .database(&id, caller.tenant.as_deref())
        .ok_or_else(|| ApiError::not_found(format!("database {id}")))?;
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

async fn delete_database(
    State(app): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    request: Body,
) -> ApiResult {
    admin(&caller)?;
    path_id(&id)?;
    if app.database(&id, caller.tenant.as_deref()).is_none() {
        return Err(ApiError::not_found(format!("database {id}")));
    }
    body::none(&headers, request).await?;
    app.unregister(&id);
    ok(json!({"deleted": id}))
}

async fn list_packages(State(app): State<Shared>, caller: Caller) -> ApiResult {
    ok(packages::list(&app.store, caller.tenant.as_deref()).await?)
}

async fn create_packages(
    State(app): State<Shared>,
    caller: Caller,
    wait: Result<Query<WaitQuery>, QueryRejection>,
    headers: HeaderMap,
    request: Body,
) -> ApiResult {
    admin(&caller)?;
    let wait = query(wait)?;
    body::none(&headers, request).await?;
    let runner = Arc::clone(&app);
    let tenant = caller.tenant.clone();
    let work = async move {
        let built = runner.build_packages(tenant.as_deref(), "manual").await?;
        Ok::<_, ApiError>(serde_json::to_value(built).expect("packages serialise"))
    };
    if wait.wait.unwrap_or(false) {
        return created(work.await?);
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
        .get(&backup_core::key::Key::new(p.artifact.as_str())?)
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
    headers: HeaderMap,
    request: Body,
) -> ApiResult {
    admin(&caller)?;
    let p = packages::get(&app.store, &id, caller.tenant.as_deref()).await?;
    body::none(&headers, request).await?;
    packages::delete(&app.store, &p).await?;
    ok(json!({"deleted": p.id}))
}

fn metrics_text(app: &App) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

/// Whether `headers` carry the metrics token.
fn has_metrics_token(app: &App, headers: &HeaderMap) -> bool {
    let Some(expected) = &app.config.metrics_token else {
        return false;
    };
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
    else {
        return false;
    };
    use sha2::{Digest, Sha256};
    let a: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
    let b: [u8; 32] = Sha256::digest(expected.expose().as_bytes()).into();
    bool::from(a.ct_eq(&b))
}

/// `/metrics` on the API listener: the metrics token or a tenant-less API
/// token (metrics name every tenant's sources).
async fn metrics(State(app): State<Shared>, headers: HeaderMap) -> Response {
    if has_metrics_token(&app, &headers) {
        return metrics_text(&app);
    }
    match app.tokens.authenticate(&headers) {
        Some(p) if p.tenant.is_none() => metrics_text(&app),
        Some(p) => ApiError::forbidden(
            "forbidden",
            format!(
                "metrics cover every tenant: token {} is bound to one; use a tenant-less token or metrics.token_var",
                p.name
            ),
        )
        .into_response(),
        None => {
            let mut r = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid bearer token (metrics need a tenant-less token or the metrics token)",
            )
            .into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            r
        }
    }
}

/// `/metrics` on `metrics_listen`: open unless a metrics token is
/// configured.
async fn metrics_open(State(app): State<Shared>, headers: HeaderMap) -> Response {
    if app.config.metrics_token.is_none() {
        return metrics_text(&app);
    }
    metrics(State(app), headers).await
}

async fn ready(State(app): State<Shared>) -> Response {
    if app.stopping.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    let probe = backup_core::key::Key::new("_readyz").expect("valid key");
    match app.store.exists(&probe).await {
        Ok(_) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: store unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_table_is_consistent() {
        for r in ROUTES {
            let mutating = r.method != "get";
            // The middleware refuses non-admins on both counts; they agree.
            assert_eq!(r.admin, mutating, "{} {}", r.method, r.path);
            if let Some(example) = r.body {
                assert!(matches!(r.method, "post" | "patch"), "{}", r.path);
                let v: Value = serde_json::from_str(example).expect(r.path);
                assert!(v.is_object(), "{}", r.path);
            }
            let method = Method::from_bytes(r.method.to_uppercase().as_bytes()).unwrap();
            assert!(find_route(&method, r.path).is_some());
        }
    }
}

/// Entry points for the fuzz targets (`backup-core/fuzz`) and the property
/// tests (`examples/backupd/tests/prop_backupd.rs`): each route's body and query
/// parsing as its handler does it, without a running daemon.
#[doc(hidden)]
pub mod fuzzing {
    use axum::extract::Query;
    use axum::http::Uri;
    use serde::de::DeserializeOwned;
    use serde_json::Value;

    use super::{ApiError, CleanupBody, CreateBackup, ListQuery, RestoreBody, WaitQuery};
    use crate::auth::Principal;
    use crate::body::parse_object;
    use crate::config::{DatabaseConfig, Defaults, RawDatabase};

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
        let uri: Uri = format!("/api/v1/backups?{query}")
            .parse()
            .map_err(|_| ApiError::bad_request("not a URI"))?;
        super::query(Query::<WaitQuery>::try_from_uri(&uri))?;
        super::query(Query::<ListQuery>::try_from_uri(&uri)).map(drop)
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
        super::body_to_database(defaults, &caller, fields, base)
    }
}
