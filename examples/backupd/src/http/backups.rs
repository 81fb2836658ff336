//! `/api/v1/backups`: list, stats, one manifest, delete, download and
//! manual backups.

use backup_core::backup_ref::BackupRef;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use backup_core::catalog::Page;
use backup_core::manifest::{BackupKind, Manifest};
use backup_core::{BackupType, Filter};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::body;
use crate::config::BackupMode;
use crate::error::ApiError;
use crate::packages;
use crate::state::operations::{BY_API, JobInfo};
use crate::state::progress::{JobProgress, Work};

use super::common::{
    ApiResult, Caller, Found, Params, Shared, WaitQuery, download, ok, path_id, run_or_start, scope,
};

/// The backup a path's `{id}` names, within the caller's tenant.
type Backup = Found<Arc<Manifest>>;

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
    Params(q): Params<ListQuery>,
) -> ApiResult {
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

pub(super) async fn get_backup(found: Backup) -> ApiResult {
    ok(backup_view(&found.item))
}

pub(super) async fn delete_backup(
    State(app): State<Shared>,
    Found { item: m, .. }: Backup,
    headers: HeaderMap,
    request: Body,
) -> ApiResult {
    body::none(&headers, request).await?;
    let m = app
        .engine
        .catalog()
        .delete(BackupRef::in_tenant(&m.tenant, &m.id))
        .await?;
    ok(json!({"deleted": m.id}))
}

pub(super) async fn download_backup(
    State(app): State<Shared>,
    Found { item: m, .. }: Backup,
) -> ApiResult {
    if m.backup_type == BackupType::Incremental {
        // The artifact is a chunk list: send the reassembled dump, verified
        // as it streams (it ends in an error rather than its last bytes if
        // a chunk is damaged).
        let (m, stream) = app
            .engine
            .open_dump(BackupRef::in_tenant(&m.tenant, &m.id))
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
    /// Physical entries: `full` (the default) or `incremental` (a
    /// block-level incremental on the entry's newest base backup; needs
    /// the entry's `incremental:` schedule, whose settings it follows).
    #[serde(default)]
    base_backup: Option<String>,
}

pub(super) async fn create_backup(
    State(app): State<Shared>,
    caller: Caller,
    Params(wait): Params<WaitQuery>,
    headers: HeaderMap,
    request: Body,
) -> ApiResult {
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
    let job_id = match body.base_backup.as_deref() {
        Some(_) if db.mode != BackupMode::Physical => {
            return Err(ApiError::bad_request(format!(
                "base_backup applies to physical entries; {} takes logical dumps",
                db.id
            )));
        }
        None | Some("full") => db.id.clone(),
        Some("incremental") if backup_type == BackupType::Incremental => {
            return Err(ApiError::bad_request(
                "type incremental (deduplicated chunks of a logical dump) contradicts base_backup incremental (a block-level incremental base backup): send base_backup incremental alone",
            ));
        }
        Some("incremental") if db.incremental.is_none() => {
            return Err(ApiError::bad_request(format!(
                "{} takes no incremental base backups: give its entry an incremental schedule (incremental: in the configuration)",
                db.id
            )));
        }
        Some("incremental") => db.incremental_job_id(),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown base_backup {other:?} (expected full or incremental)"
            )));
        }
    };
    let runner = Arc::clone(&app);
    let db_id = job_id;
    // The run counts its source and store bytes into these.
    let progress = Arc::new(JobProgress::new(Work::Backup));
    let counters = Arc::clone(&progress);
    let work = async move {
        let run = runner.scheduler.run_now_as(&db_id, Some(backup_type));
        let outcome = runner.manual_runs.run(&db_id, counters, run).await?;
        let id = outcome.backup_id.unwrap_or_default();
        let m = runner.engine.catalog().get(&id).await?;
        Ok::<_, ApiError>(backup_view(&m))
    };
    let info = JobInfo {
        kind: "backup",
        tenant: Some(&db.tenant),
        source: Some(&db.id),
        trigger: BY_API,
    };
    run_or_start(&app, info, wait.wait.unwrap_or(false), progress, work).await
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use super::*;
    use crate::http::common::parse_query;
    use crate::routes::find_route;

    #[test]
    fn every_documented_list_parameter_is_read() {
        let params = find_route(&Method::GET, "/api/v1/backups").unwrap().query;
        for p in params {
            let value = match p.name {
                "kind" => "manual",
                "type" => "incremental",
                "since" | "until" => "2025-01-31T00:00:00Z",
                "offset" | "limit" => "5",
                _ => "x",
            };
            parse_query::<ListQuery>(&format!("{}={value}", p.name), params)
                .unwrap_or_else(|e| panic!("{}: {e}", p.name));
        }
        let e = parse_query::<ListQuery>("since=yesterday", params).unwrap_err();
        assert_eq!(e.code, "invalid_query");
        assert!(e.message.contains("since=\"yesterday\""), "{e}");
        assert!(e.message.contains("RFC 3339"), "{e}");
        let e = parse_query::<ListQuery>("limit=1&limit=2", params).unwrap_err();
        assert!(e.message.contains("more than once"), "{e}");
        let e = parse_query::<ListQuery>("zzz=1", params).unwrap_err();
        assert!(
            e.message.contains("zzz") && e.message.contains("since"),
            "{e}"
        );
    }
}
