//! `/api/v1/backups`: list, stats, one manifest, delete, download and
//! manual backups.

use backup_core::backup_ref::BackupRef;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use backup_core::catalog::Page;
use backup_core::manifest::BackupKind;
use backup_core::{BackupType, Filter};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::body;
use crate::error::ApiError;
use crate::packages;

use super::common::{
    ApiResult, Caller, Shared, WaitQuery, admin, download, ok, path_id, query, run_or_start, scope,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    tenant: Option<String>,
    source_id: Option<String>,
    database_id: Option<String>,
    kind: Option<BackupKind>,
    #[serde(rename = "type")]
    backup_type: Option<BackupType>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    offset: Option<usize>,
    limit: Option<usize>,
}

pub(super) fn backup_view(m: &backup_core::manifest::Manifest) -> Value {
    let mut v = serde_json::to_value(m).expect("manifests serialise");
    v["filename"] = Value::String(
        m.artifact
            .rsplit('/')
            .next()
            .unwrap_or(&m.artifact)
            .to_string(),
    );
    v["size_bytes"] = json!(m.stored.size);
    v["size_human"] = Value::String(backup_core::format::human_bytes(m.stored.size));
    v
}

pub(super) async fn list_backups(
    State(app): State<Shared>,
    caller: Caller,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let tenant = scope(&caller, q.tenant)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit {limit} is out of range (1 to 1000)"
        )));
    }
    let mut filter = Filter::all();
    filter.tenant = tenant;
    filter.source_id = q.source_id.or(q.database_id);
    filter.kind = q.kind;
    filter.backup_type = q.backup_type;
    filter.since = q.since;
    filter.until = q.until;
    let page = Page {
        offset: q.offset.unwrap_or(0),
        limit,
    };
    let result = app.engine.catalog().page(&filter, page).await?;
    ok(json!({
        "items": result.items.iter().map(|m| backup_view(m)).collect::<Vec<_>>(),
        "total": result.total,
        "offset": page.offset,
        "limit": page.limit,
        "next_offset": result.next_offset,
    }))
}

pub(super) async fn stats(State(app): State<Shared>, caller: Caller) -> ApiResult {
    let mut filter = Filter::all();
    filter.tenant = caller.tenant.clone();
    ok(app.engine.catalog().stats(&filter).await?)
}

pub(super) async fn get_backup(
    State(app): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let m = app
        .engine
        .catalog()
        .get(BackupRef::scoped(&id, caller.tenant.as_deref()))
        .await?;
    ok(backup_view(&m))
}

pub(super) async fn delete_backup(
    State(app): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    request: Body,
) -> ApiResult {
    admin(&caller)?;
    // Resolve first: unknown ids and other tenants' backups are 404
    // whatever the body.
    app.engine
        .catalog()
        .get(BackupRef::scoped(&id, caller.tenant.as_deref()))
        .await?;
    body::none(&headers, request).await?;
    let m = app
        .engine
        .catalog()
        .delete(BackupRef::scoped(&id, caller.tenant.as_deref()))
        .await?;
    ok(json!({"deleted": m.id}))
}

pub(super) async fn download_backup(
    State(app): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let m = app
        .engine
        .catalog()
        .get(BackupRef::scoped(&id, caller.tenant.as_deref()))
        .await?;
    if m.backup_type == BackupType::Incremental {
        // The artifact is a chunk list: send the reassembled dump, verified
        // as it streams (it ends in an error rather than its last bytes if
        // a chunk is damaged).
        let (m, stream) = app
            .engine
            .open_dump(BackupRef::scoped(&id, caller.tenant.as_deref()))
            .await?;
        let got = backup_core::store::GetResult {
            meta: backup_core::store::ObjectMeta {
                key: m.artifact_key()?,
                size: m.raw.size,
                last_modified: m.finished_at,
            },
            stream,
        };
        let name = packages::dump_file_name(&m);
        return Ok(download(
            got,
            &name,
            "application/octet-stream",
            &m.raw.sha256,
            None,
        ));
    }
    let got = app.store.get(&m.artifact_key()?).await?;
    Ok(download(
        got,
        &m.artifact,
        "application/octet-stream",
        &m.stored.sha256,
        m.stored.md5.as_deref(),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBackup {
    /// The database entry's id (the backups' `source_id`); `database_id`
    /// is the older name, accepted for a release.
    #[serde(alias = "database_id")]
    source_id: String,
    #[serde(rename = "type", default)]
    backup_type: Option<String>,
}

pub(super) async fn create_backup(
    State(app): State<Shared>,
    caller: Caller,
    wait: Result<Query<WaitQuery>, QueryRejection>,
    headers: HeaderMap,
    request: Body,
) -> ApiResult {
    admin(&caller)?;
    let wait = query(wait)?;
    let body: CreateBackup =
        body::json(&headers, request, r#"{"source_id": "...", "type": "full"}"#).await?;
    let backup_type = match body.backup_type.as_deref().unwrap_or("full") {
        "full" => BackupType::Full,
        "incremental" => BackupType::Incremental,
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown type {other:?} (expected full or incremental)"
            )));
        }
    };
    path_id(&body.source_id)
        .map_err(|_| ApiError::not_found(format!("database {:?}", body.source_id)))?;
    let db = app
        .database(&body.source_id, caller.tenant.as_deref())
        .ok_or_else(|| ApiError::not_found(format!("database {}", body.source_id)))?;
    let runner = Arc::clone(&app);
    let db_id = db.id.clone();
    let work = async move {
        let outcome = runner
            .scheduler
            .run_now_as(&db_id, Some(backup_type))
            .await?;
        let id = outcome.backup_id.unwrap_or_default();
        let m = runner.engine.catalog().get(&id).await?;
        Ok::<_, ApiError>(backup_view(&m))
    };
    run_or_start(
        &app,
        "backup",
        Some(&db.tenant),
        wait.wait.unwrap_or(false),
        work,
    )
    .await
}
