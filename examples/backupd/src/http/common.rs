//! What every handler shares: the response envelope, the authorized
//! caller and the thing a path's `{id}` names ([`Caller`], [`Found`]),
//! query strings, downloads and asynchronous jobs.

use std::future::Future;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath, Path};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use backup_core::backup_ref::BackupRef;
use backup_core::key::validate_id;
use backup_core::manifest::Manifest;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::auth::Principal;
use crate::config::{DatabaseConfig, Role};
use crate::error::ApiError;
use crate::packages::{self, PackageManifest};
use crate::routes::{Param, find_route};
use crate::state::operations::JobInfo;
use crate::state::progress::JobProgress;
use crate::state::{App, JOB_PREFIX, Operation};

pub(super) type Shared = Arc<App>;

pub(super) type ApiResult = Result<Response, ApiError>;

pub(super) fn ok(data: impl serde::Serialize) -> ApiResult {
    Ok(Json(json!({"success": true, "data": data})).into_response())
}

pub(super) fn accepted(data: impl serde::Serialize) -> ApiResult {
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"success": true, "data": data})),
    )
        .into_response())
}

pub(super) fn created(data: impl serde::Serialize) -> ApiResult {
    Ok((
        StatusCode::CREATED,
        Json(json!({"success": true, "data": data})),
    )
        .into_response())
}

pub(super) fn admin(p: &Principal) -> Result<(), ApiError> {
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
pub(super) fn path_id(id: &str) -> Result<(), ApiError> {
    validate_id(id).map_err(ApiError::from)
}

/// A route's query string, parsed against its parameters in the route
/// table: an unknown, repeated or malformed parameter is `400
/// invalid_query`, naming the parameter and the form it accepts.
#[derive(Debug)]
pub(super) struct Params<T>(pub(super) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let params = parts
            .extensions
            .get::<MatchedPath>()
            .and_then(|m| find_route(&parts.method, m.as_str()))
            .map_or(&[][..], |r| r.query);
        parse_query(parts.uri.query().unwrap_or(""), params).map(Params)
    }
}

/// Parses `text` (a query string) into `T`, whose fields are `params`.
pub(super) fn parse_query<T: DeserializeOwned>(
    text: &str,
    params: &[Param],
) -> Result<T, ApiError> {
    let invalid = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", m);
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(text)
        .map_err(|e| invalid(format!("invalid query string: {e}")))?;
    let mut seen = std::collections::BTreeSet::new();
    for (name, value) in &pairs {
        let shown: String = name.chars().take(40).collect();
        let Some(param) = params.iter().find(|p| p.name == name) else {
            let accepted: Vec<&str> = params.iter().map(|p| p.name).collect();
            return Err(invalid(if accepted.is_empty() {
                format!("unknown query parameter {shown:?}: this route takes none")
            } else {
                format!(
                    "unknown query parameter {shown:?} (accepted: {})",
                    accepted.join(", ")
                )
            }));
        };
        if !seen.insert(name) {
            return Err(invalid(format!(
                "query parameter {name} is given more than once"
            )));
        }
        let alone = serde_urlencoded::to_string([(name, value)])
            .map_err(|e| invalid(format!("invalid query string: {e}")))?;
        if let Err(e) = serde_urlencoded::from_str::<T>(&alone) {
            let value: String = value.chars().take(80).collect();
            return Err(invalid(format!(
                "invalid query parameter {name}={value:?}: expected {} ({e})",
                param.form
            )));
        }
    }
    serde_urlencoded::from_str(text).map_err(|e| invalid(format!("invalid query string: {e}")))
}

/// The caller of a request, authorized for its route: the principal the
/// middleware authenticated, with the route's role checked again here (a
/// route missing from the table, or any method but `GET` and `HEAD`,
/// needs an admin).
/// Extracted before anything of the request is parsed.
#[derive(Debug, Clone)]
pub(super) struct Caller(pub(super) Principal);

impl std::ops::Deref for Caller {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(p) = parts.extensions.get::<Principal>().cloned() else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid bearer token",
            ));
        };
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .and_then(|m| find_route(&parts.method, m.as_str()));
        if route.is_none_or(|r| r.admin) || !matches!(parts.method, Method::GET | Method::HEAD) {
            admin(&p)?;
        }
        Ok(Caller(p))
    }
}

/// Something a path's `{id}` names, looked up within a tenant (`None`:
/// any); absent and other tenants' things are both `404`.
pub(super) trait Lookup: Sized + Send {
    /// The thing `id` names, visible to `tenant`.
    fn find(
        app: &App,
        id: &str,
        tenant: Option<&str>,
    ) -> impl Future<Output = Result<Self, ApiError>> + Send;
}

/// What every handler of a `/{id}` route starts with, in this order: the
/// caller authorized for the route ([`Caller`]), the `{id}` validated
/// (`400 invalid_id`), and the thing it names looked up within the
/// caller's tenant (`404`). Handlers read their body only after it.
#[derive(Debug)]
pub(super) struct Found<T> {
    /// The `{id}` of the path.
    pub(super) id: String,
    /// What it names.
    pub(super) item: T,
    /// Who asks.
    pub(super) caller: Caller,
}

impl<T: Lookup> FromRequestParts<Shared> for Found<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Shared) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, app).await?;
        let Path(id) = Path::<String>::from_request_parts(parts, app)
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_id",
                    format!("invalid id in the path: {}", e.body_text()),
                )
            })?;
        path_id(&id)?;
        let item = T::find(app, &id, caller.tenant.as_deref()).await?;
        Ok(Found { id, item, caller })
    }
}

impl Lookup for Arc<Manifest> {
    async fn find(app: &App, id: &str, tenant: Option<&str>) -> Result<Self, ApiError> {
        if id.starts_with(JOB_PREFIX) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_a_backup_id",
                format!("{id} is a job id, not a backup id: GET /api/v1/jobs/{id}"),
            ));
        }
        Ok(app
            .engine
            .catalog()
            .get(BackupRef::scoped(id, tenant))
            .await?)
    }
}

impl Lookup for DatabaseConfig {
    async fn find(app: &App, id: &str, tenant: Option<&str>) -> Result<Self, ApiError> {
        app.database(id, tenant)
            .ok_or_else(|| ApiError::not_found(format!("database {id}")))
    }
}

impl Lookup for Operation {
    async fn find(app: &App, id: &str, tenant: Option<&str>) -> Result<Self, ApiError> {
        if !id.starts_with(JOB_PREFIX) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_a_job_id",
                format!(
                    "{id} is not a job id (job ids start with {JOB_PREFIX}; a backup is at /api/v1/backups/{id})"
                ),
            ));
        }
        app.operations
            .get(id, tenant)
            .ok_or_else(|| ApiError::not_found(format!("job {id}")))
    }
}

impl Lookup for PackageManifest {
    async fn find(app: &App, id: &str, tenant: Option<&str>) -> Result<Self, ApiError> {
        Ok(packages::get(&app.store, id, tenant).await?)
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct WaitQuery {
    pub(super) wait: Option<bool>,
}

/// The tenant scope of a request: the token's tenant, or the one asked for
/// (only tokens without a tenant may ask for any).
pub(super) fn scope(p: &Principal, asked: Option<String>) -> Result<Option<String>, ApiError> {
    match (&p.tenant, asked) {
        (Some(mine), Some(asked)) if *mine != asked => {
            Err(ApiError::not_found(format!("tenant {asked}")))
        }
        (Some(mine), _) => Ok(Some(mine.clone())),
        (None, asked) => Ok(asked),
    }
}

/// A streamed file download with its length and checksums in the headers.
pub(super) fn download(
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

/// Runs `work` now when the caller asked to wait (201 with its result), or
/// as an asynchronous operation of `kind` (202 with the job to poll).
pub(super) async fn run_or_start<F>(
    app: &Shared,
    info: JobInfo<'_>,
    wait: bool,
    progress: Arc<JobProgress>,
    work: F,
) -> ApiResult
where
    F: std::future::Future<Output = Result<serde_json::Value, ApiError>> + Send + 'static,
{
    if wait {
        return created(work.await?);
    }
    job_started(&app.operations.start(&app.tracker, info, progress, work))
}

/// 202 with the id and URL of the asynchronous operation `job`.
pub(super) fn job_started(job: &str) -> ApiResult {
    accepted(json!({"job_id": job, "status_url": format!("/api/v1/jobs/{job}")}))
}
