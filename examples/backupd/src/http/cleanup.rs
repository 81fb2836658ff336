//! `POST /api/v1/cleanup`: retention applied now.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;

use crate::body;

use super::common::{ApiResult, Caller, Shared, ok};

/// A cleanup states whether it is a dry run: a body that does not is
/// refused rather than taken for a real run.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CleanupBody {
    dry_run: bool,
}

pub(super) async fn cleanup(
    State(app): State<Shared>,
    caller: Caller,
    headers: HeaderMap,
    request: Body,
) -> ApiResult {
    let body: CleanupBody = body::json(&headers, request, r#"{"dry_run": true}"#).await?;
    ok(app.cleanup(caller.tenant.as_deref(), body.dry_run).await?)
}
