//! Restore drills: `POST /api/v1/databases/{id}/drill` (admin) starts one
//! on the newest backup of an entry (logical PostgreSQL, MySQL/MariaDB,
//! SQLite or MongoDB; a drill that fails is a failed job);
//! `GET /api/v1/drills` lists the records, newest first, within the
//! caller's tenant.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::config::DatabaseConfig;
use crate::error::ApiError;
use crate::state::operations::{BY_API, JobInfo};
use crate::state::progress::{JobProgress, Work};

use super::common::{ApiResult, Caller, Found, Params, Shared, job_started, ok};

/// Most records one `GET /api/v1/drills` answers.
const MAX_LISTED: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DrillsQuery {
    database: Option<String>,
}

pub(super) async fn start_drill(
    State(app): State<Shared>,
    Found { item: db, .. }: Found<DatabaseConfig>,
    headers: HeaderMap,
    request: Body,
) -> ApiResult {
    crate::body::none(&headers, request).await?;
    let drill = crate::state::drills::drill_target(&db)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "drill_unsupported", e))?;
    let runner = std::sync::Arc::clone(&app);
    let (tenant, id) = (db.tenant.clone(), db.id.clone());
    let progress = std::sync::Arc::new(JobProgress::new(Work::Read));
    let meter = progress.meter();
    let info = JobInfo {
        kind: "drill",
        tenant: Some(&db.tenant),
        source: Some(&db.id),
        trigger: BY_API,
    };
    let job = app
        .operations
        .start(&app.tracker, info, progress, async move {
            let record = runner
                .engine
                .metered(meter)
                .drill_latest(&tenant, &id, drill.as_ref())
                .await?;
            // A drill that ran and failed is a failed job (its record is
            // stored all the same), as a scheduled one is.
            if let Some(error) = &record.error {
                return Err(backup_core::Error::Restore {
                    engine: "drill",
                    detail: format!("restore drill of {} failed: {error}", record.backup_id),
                }
                .into());
            }
            serde_json::to_value(&record).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("drill record: {e}"),
                )
            })
        });
    job_started(&job)
}

pub(super) async fn list_drills(
    State(app): State<Shared>,
    caller: Caller,
    Params(q): Params<DrillsQuery>,
) -> ApiResult {
    if let Some(id) = &q.database {
        super::common::path_id(id)?;
    }
    let tenants: BTreeSet<String> = match &caller.tenant {
        Some(t) => [t.clone()].into(),
        None => app
            .databases_for(None)
            .into_iter()
            .map(|d| d.tenant)
            .chain(app.config.tenants.keys().cloned())
            .chain([backup_core::manifest::DEFAULT_TENANT.to_string()])
            .collect(),
    };
    let mut drills = Vec::new();
    for tenant in tenants {
        drills.extend(
            app.engine
                .drill_records(&tenant, q.database.as_deref())
                .await?,
        );
    }
    drills.sort_by_key(|r| std::cmp::Reverse(r.verified_at));
    drills.truncate(MAX_LISTED);
    ok(json!({ "drills": drills }))
}
