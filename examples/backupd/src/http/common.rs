//! What every handler shares: the response envelope, the role check, ids
//! and query strings from the request, downloads and asynchronous jobs.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use backup_core::key::validate_id;
use serde::Deserialize;
use serde_json::json;

use crate::auth::Principal;
use crate::config::Role;
use crate::error::ApiError;
use crate::state::App;

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

/// A query string, refused with our envelope when it has unknown keys,
/// wrong types or repeated keys.
pub(super) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {}", e.body_text())))
}

pub(super) type Caller = axum::Extension<Principal>;

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
    kind: &str,
    tenant: Option<&str>,
    wait: bool,
    work: F,
) -> ApiResult
where
    F: std::future::Future<Output = Result<serde_json::Value, ApiError>> + Send + 'static,
{
    if wait {
        return created(work.await?);
    }
    job_started(&app.start_operation(kind, tenant, work))
}

/// 202 with the id and URL of the asynchronous operation `job`.
pub(super) fn job_started(job: &str) -> ApiResult {
    accepted(json!({"job_id": job, "status_url": format!("/api/v1/jobs/{job}")}))
}
