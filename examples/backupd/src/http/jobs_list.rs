//! `GET /api/v1/jobs` (the caller's operations, newest first) and
//! `GET /api/v1/whoami` (the caller's role and tenant, for the console).

use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::state::Operation;

use super::common::{ApiResult, Caller, Params, Shared, ok};

/// `?limit=` of `GET /api/v1/jobs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JobsQuery {
    limit: Option<usize>,
}

/// The operations the caller's token sees (a tenant token: its tenant's;
/// a tenant-less one: all), newest first, at most `limit` (default 100).
pub(super) async fn list_jobs(
    State(app): State<Shared>,
    caller: Caller,
    Params(q): Params<JobsQuery>,
) -> ApiResult {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit {limit} is out of range (1 to 1000)"
        )));
    }
    let mut jobs: Vec<Operation> = app.operations.visible_to(caller.tenant.as_deref());
    // Newest first; ids (time, then random) break ties.
    jobs.sort_by(|a, b| (b.started_at, &b.id).cmp(&(a.started_at, &a.id)));
    let total = jobs.len();
    jobs.truncate(limit);
    ok(json!({"jobs": jobs, "total": total}))
}

/// The caller's role and tenant (never the token or its name).
pub(super) async fn whoami(caller: Caller) -> ApiResult {
    ok(json!({"role": caller.role, "tenant": caller.tenant}))
}
