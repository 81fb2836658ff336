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
use crate::state::progress::JobProgress;
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
    // Restores report no counts while they run: the dump's size read and
    // the artifact's fetched once done.
    let progress = Arc::new(JobProgress::default());
    let counters = Arc::clone(&progress);
    let (raw, stored) = (m.raw.size, m.stored.size);
    let job = app.start_tracked("restore", Some(&m.tenant), progress, async move {
        let report = runner
            .restore(BackupRef::in_tenant(&tenant, &id), request)
            .await?;
        counters.finish(raw, stored);
        Ok(report)
    });
    job_started(&job)
}

pub(super) async fn get_job(found: Found<Operation>) -> ApiResult {
    ok(found.item)
}
