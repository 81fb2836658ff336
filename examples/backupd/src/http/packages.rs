//! `/api/v1/packages`: list, build, download and delete packages.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde_json::json;

use crate::body;
use crate::error::ApiError;
use crate::packages;

use super::common::{
    ApiResult, Caller, Shared, WaitQuery, admin, download, ok, query, run_or_start,
};

pub(super) async fn list_packages(State(app): State<Shared>, caller: Caller) -> ApiResult {
    ok(packages::list(&app.store, caller.tenant.as_deref()).await?)
}

pub(super) async fn create_packages(
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
    run_or_start(
        &app,
        "package",
        caller.tenant.as_deref(),
        wait.wait.unwrap_or(false),
        work,
    )
    .await
}

pub(super) async fn download_package(
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

pub(super) async fn delete_package(
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
