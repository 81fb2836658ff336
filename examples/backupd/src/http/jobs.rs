//! Asynchronous operations: restores, and the state of any job.

use backup_core::backup_ref::BackupRef;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use backup_core::manifest::Manifest;
use serde::Deserialize;

use crate::body;
use crate::error::ApiError;
use crate::state::operations::{BY_API, JobInfo};
use crate::state::progress::{JobProgress, Work};
use crate::state::{Operation, RestoreRequest};

use super::common::{ApiResult, Found, Shared, job_started, ok};

/// A restore names its target: the source's own database (to restore
/// over it) or a new one. `clean` (drop what exists first) defaults to
/// false, the choice that overwrites nothing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RestoreBody {
    target_database: String,
    #[serde(default)]
    clean: bool,
}

pub(super) async fn restore_backup(
    State(app): State<Shared>,
    Found {
        id,
        item: m,
        caller,
    }: Found<Arc<Manifest>>,
    headers: HeaderMap,
    request: Body,
) -> ApiResult {
    let body: RestoreBody = body::json(
        &headers,
        request,
        r#"{"target_database": "...", "clean": false}"#,
    )
    .await?;
    let t = &body.target_database;
    if t.trim().is_empty() || t.len() > 63 || t.chars().any(|c| c.is_control()) {
        return Err(ApiError::bad_request(
            "target_database must be 1 to 63 printable characters",
        ));
    }
    let runner = Arc::clone(&app);
    let tenant = m.tenant.clone();
    let request = RestoreRequest {
        target_database: body.target_database,
        clean: body.clean,
        caller_tenant: caller.tenant.clone(),
    };
    // The bytes read from the store, as the restore fetches them.
    let progress = Arc::new(JobProgress::new(Work::Read));
    let meter = progress.meter();
    let info = JobInfo {
        kind: "restore",
        tenant: Some(&m.tenant),
        source: Some(&m.source_id),
        trigger: BY_API,
    };
    let job = app
        .operations
        .start(&app.tracker, info, progress, async move {
            runner
                .restore(BackupRef::in_tenant(&tenant, &id), request, meter)
                .await
        });
    job_started(&job)
}

pub(super) async fn get_job(found: Found<Operation>) -> ApiResult {
    ok(found.item)
}
