//! `/api/v1/packages`: list, build, download and delete packages.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::json;

use crate::body;
use crate::error::ApiError;
use crate::packages::{self, PackageManifest};
use crate::state::operations::{BY_API, JobInfo};

use super::common::{
    ApiResult, Caller, Found, Params, Shared, WaitQuery, download, ok, run_or_start,
};

pub(super) async fn list_packages(State(app): State<Shared>, caller: Caller) -> ApiResult {
    ok(packages::list(&app.store, caller.tenant.as_deref()).await?)
}

pub(super) async fn create_packages(
    State(app): State<Shared>,
    caller: Caller,
    Params(wait): Params<WaitQuery>,
    headers: HeaderMap,
    request: Body,
) -> ApiResult {
    body::none(&headers, request).await?;
    let runner = Arc::clone(&app);
    let tenant = caller.tenant.clone();
    let work = async move {
        let built = runner.build_packages(tenant.as_deref(), "manual").await?;
        Ok::<_, ApiError>(serde_json::to_value(built).expect("packages serialise"))
    };
    run_or_start(
        &app,
        JobInfo {
            kind: "package",
            tenant: caller.tenant.as_deref(),
            source: None,
            trigger: BY_API,
        },
        wait.wait.unwrap_or(false),
        Default::default(),
        work,
    )
    .await
}

pub(super) async fn download_package(
    State(app): State<Shared>,
    Found { item: p, .. }: Found<PackageManifest>,
) -> ApiResult {
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
    Found { item: p, .. }: Found<PackageManifest>,
    headers: HeaderMap,
    request: Body,
) -> ApiResult {
    body::none(&headers, request).await?;
    packages::delete(&app.store, &p).await?;
    ok(json!({"deleted": p.id}))
}
