//! `/api/v1/status`, `/metrics`, `/readyz`: what the daemon reports about
//! itself.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use backup_core::Filter;
use backup_core::store::StoreExt;
use chrono::Utc;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::App;

use super::common::{ApiResult, Caller, Shared, ok};

pub(super) async fn status(State(app): State<Shared>, caller: Caller) -> ApiResult {
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
    let mut sources = serde_json::to_value(&health)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    crate::state::drills::annotate(&app, &mut sources).await?;
    let unverified = sources
        .as_array()
        .is_some_and(|s| s.iter().any(|h| h["status"] == "unverified"));
    ok(json!({
        "healthy": health.iter().all(|h| h.status.is_ok()) && !unverified,
        "sources": sources,
        "jobs": jobs,
        "running": app.scheduler.running(),
        "peak_running": app.scheduler.peak_running(),
        "max_parallel_jobs": app.config.max_parallel_jobs,
        "time_zone": app.config.tz.name(),
        "restore_leftovers": app.leftovers.visible(&visible),
        "wal_archiving": app.wal.views(&visible).await,
    }))
}

pub(super) fn metrics_text(app: &App) -> Response {
    for (tenant, source, status) in app.wal.statuses() {
        app.metrics.wal_status(&tenant, &source, &status);
    }
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
pub(super) fn has_metrics_token(app: &App, headers: &HeaderMap) -> bool {
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
pub(super) async fn metrics(State(app): State<Shared>, headers: HeaderMap) -> Response {
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
pub(super) async fn metrics_open(State(app): State<Shared>, headers: HeaderMap) -> Response {
    if app.config.metrics_token.is_none() {
        return metrics_text(&app);
    }
    metrics(State(app), headers).await
}

pub(super) async fn ready(State(app): State<Shared>) -> Response {
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
