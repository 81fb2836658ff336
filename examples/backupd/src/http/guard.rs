//! The middleware in front of every API route: authentication, the
//! route's role, shutdown, and the audit record of every change.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use crate::auth::AuditRecord;
use crate::config::Role;
use crate::error::ApiError;
use crate::routes::find_route;

use super::common::{Shared, admin};

/// Authenticates every API call, authorizes it by the route's role,
/// refuses changes while shutting down, and audits every mutating call.
pub(super) async fn authenticate(
    State(app): State<Shared>,
    mut req: Request,
    next: Next,
) -> Response {
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
