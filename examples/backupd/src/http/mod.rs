//! The REST API (axum): `/api/v1/...` behind bearer tokens, plus
//! `/metrics`, `/healthz`, `/readyz` and `/openapi.json`.
//!
//! Every API request goes through the same steps, in this order: the
//! token (401), the route's role (403, from [`ROUTES`]), shutdown (503 for
//! changes), the query string (400 `invalid_query`, naming the
//! parameter), the ids in the path (400 if malformed, 404 if not visible
//! to the caller's tenant: one extractor, `common::Found`, for every
//! `{id}` route), and only then the body ([`crate::body`]: 415, 413,
//! 400). Nothing is parsed for a caller who may not act. Every error,
//! unknown routes (404) and methods (405) included, is the JSON envelope
//! with a code.
//!
//! One module per resource (`backups`, `jobs`, `databases`, `packages`,
//! `cleanup`, `status`), the middleware in `guard`, what handlers share in
//! `common`; the route table itself is [`crate::routes`].

mod backups;
mod cleanup;
mod common;
mod databases;
mod drills;
#[doc(hidden)]
pub mod fuzzing;
mod guard;
mod jobs;
mod jobs_list;
mod packages;
mod sources;
mod status;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::http::{Method, StatusCode};
use axum::middleware;
use axum::routing::{delete, get, post};

pub use crate::error::ApiError;
pub use crate::routes::{ROUTES, Route, find_route};
use crate::state::App;

use backups::{create_backup, delete_backup, download_backup, get_backup, list_backups, stats};
use cleanup::cleanup;
use databases::{create_database, delete_database, get_database, list_databases, patch_database};
use guard::authenticate;
use jobs::{get_job, restore_backup};
use jobs_list::{list_jobs, whoami};
use packages::{create_packages, delete_package, download_package, list_packages};
use sources::forget_run_record;
use status::{metrics, metrics_open, ready, status};

/// The router.
pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/backups", get(list_backups).post(create_backup))
        .route("/backups/stats", get(stats))
        .route("/backups/{id}", get(get_backup).delete(delete_backup))
        .route("/backups/{id}/download", get(download_backup))
        .route("/backups/{id}/restore", post(restore_backup))
        .route("/jobs", get(list_jobs))
        .route("/jobs/{id}", get(get_job))
        .route("/whoami", get(whoami))
        .route("/drills", get(drills::list_drills))
        .route("/databases/{id}/drill", post(drills::start_drill))
        .route("/status", get(status))
        .route("/cleanup", post(cleanup))
        .route("/databases", get(list_databases).post(create_database))
        .route(
            "/databases/{id}",
            get(get_database)
                .patch(patch_database)
                .delete(delete_database),
        )
        .route("/packages", get(list_packages).post(create_packages))
        .route("/packages/{id}/download", get(download_package))
        .route("/packages/{id}", delete(delete_package))
        .route(
            "/sources/{tenant}/{id}/run-record",
            delete(forget_run_record),
        )
        .method_not_allowed_fallback(wrong_method)
        .fallback(no_such_route)
        .layer(middleware::from_fn_with_state(app.clone(), authenticate));
    Router::new()
        .nest("/api/v1", api)
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route(
            "/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        )
        .merge(crate::console::router())
        .method_not_allowed_fallback(wrong_method)
        .fallback(no_such_route)
        .layer(middleware::from_fn(crate::body::finish_body))
        .with_state(app)
}

/// The router of `metrics_listen`: metrics and probes only.
pub fn metrics_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_open))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .method_not_allowed_fallback(wrong_method)
        .fallback(no_such_route)
        .layer(middleware::from_fn(crate::body::finish_body))
        .with_state(app)
}

/// `404 no_such_route` in the envelope, for a path no route has.
async fn no_such_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_route",
        "no such route: /openapi.json lists them",
    )
}

/// `405 method_not_allowed` in the envelope, for a route asked with a
/// method it does not take.
async fn wrong_method(method: Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this route does not take {method}: /openapi.json lists its methods"),
    )
}
