//! `/api/v1/sources/{tenant}/{id}/run-record`: forgetting a source's run
//! record, so a failed attempt (a removed or mistyped database) no longer
//! makes it failing. Backups are never touched.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use backup_core::catalog::RunRecord;
use serde_json::json;

use crate::body;
use crate::error::ApiError;

use super::common::{ApiResult, Caller, Shared, admin, ok, path_id};

/// `DELETE`: admin only; a token bound to a tenant only within it (another
/// tenant's source is 404, as if it did not exist). The ids, and that the
/// record exists, are checked before the body, which must be empty.
pub(super) async fn forget_run_record(
    State(app): State<Shared>,
    caller: Caller,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
    request: Body,
) -> ApiResult {
    admin(&caller)?;
    path_id(&tenant)?;
    path_id(&id)?;
    if caller.tenant.as_deref().is_some_and(|t| t != tenant) {
        return Err(ApiError::not_found(format!("source {tenant}/{id}")));
    }
    // Absent is 404 before the body is looked at, as for every id.
    let catalog = app.engine.catalog();
    if RunRecord::load(catalog.store().as_ref(), &tenant, &id)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!(
            "run record of source {tenant}/{id} (it has no recorded attempt: nothing to forget)"
        )));
    }
    body::none(&headers, request).await?;
    let record = catalog.forget_source(&tenant, &id).await?;
    tracing::info!(tenant = %tenant, source = %id, "run record forgotten through the API");
    ok(json!({"forgotten": record}))
}
