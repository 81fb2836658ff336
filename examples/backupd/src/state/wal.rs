//! The WAL archivers of `wal_archiving` entries: one [`WalArchiver`]
//! per entry, started when the entry is registered, restarted when it
//! changes, stopped when it is removed and at shutdown.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use backup_core::{Engine, EventBus, Result};
use backup_postgres::{
    ArchiverOptions, ArchiverStatus, PitrWindow, WalArchive, WalArchiver, WalArchiverHandle,
    WalPruneReport, prune_wal,
};
use serde::Serialize;

use super::entries::{pg_connection, pg_tools};
use super::windows::{Source, WindowCache};
use crate::config::DatabaseConfig;

/// One running archiver.
#[derive(Debug)]
struct Running {
    tenant: String,
    archive: Arc<WalArchive>,
    engine: Arc<Engine>,
    handle: WalArchiverHandle,
}

/// One archiver's parts, taken out of the lock.
struct Snapshot {
    tenant: String,
    id: String,
    archive: Arc<WalArchive>,
    engine: Arc<Engine>,
    status: ArchiverStatus,
}

/// The running archivers by database id, and their windows.
#[derive(Debug)]
pub struct WalArchivers {
    running: Mutex<BTreeMap<String, Running>>,
    windows: WindowCache,
}

/// What `/status` says of one archiver.
#[derive(Debug, Serialize)]
pub struct WalArchiveView {
    /// Tenant.
    pub tenant: String,
    /// Database id.
    pub source_id: String,
    /// The archiver's status (lag, newest segment, errors).
    pub status: ArchiverStatus,
    /// What the base backups and the archive make restorable.
    pub pitr_window: Option<PitrWindow>,
    /// Why the window could not be read, if it could not.
    pub pitr_window_error: Option<String>,
}

impl WalArchivers {
    /// No archiver yet; their windows are cached, watching `events` (the
    /// daemon's bus) for the changes of their sources.
    pub fn new(events: &EventBus) -> Self {
        WalArchivers {
            running: Mutex::default(),
            windows: WindowCache::new(events),
        }
    }

    /// Stops the archiver of `db.id` if one runs, then starts one when
    /// `db` archives WAL (`wal_slot`), spooling under `spool_root`.
    pub async fn replace(
        &self,
        db: &DatabaseConfig,
        engine: Engine,
        events: &EventBus,
        spool_root: &std::path::Path,
    ) -> Result<()> {
        self.stop(&db.id).await;
        let Some(slot) = &db.wal_slot else {
            return Ok(());
        };
        let engine = Arc::new(engine);
        let archive = Arc::new(WalArchive::new(Arc::clone(&engine), &db.tenant, &db.id)?);
        let options = ArchiverOptions::new(slot, spool_root.join(&db.tenant).join(&db.id))
            .tools(pg_tools(db))
            .source(&db.tenant, &db.id)
            .events(events.clone());
        let handle = WalArchiver::new(
            pg_connection(db, &db.database_name),
            Arc::clone(&archive) as Arc<dyn backup_postgres::SegmentSink>,
            options,
        )?
        .start();
        tracing::info!(tenant = %db.tenant, source = %db.id, %slot, "WAL archiver started");
        self.running.lock().expect("archivers lock").insert(
            db.id.clone(),
            Running {
                tenant: db.tenant.clone(),
                archive,
                engine,
                handle,
            },
        );
        Ok(())
    }

    /// Stops the archiver of database `id`, if one runs (it hands over
    /// the segments already complete first).
    pub async fn stop(&self, id: &str) {
        let running = self.running.lock().expect("archivers lock").remove(id);
        if let Some(r) = running {
            self.windows.forget(&r.tenant, id);
            let status = r.handle.stop().await;
            tracing::info!(
                source = id,
                archived = status.archived,
                "WAL archiver stopped"
            );
        }
    }

    /// Stops every archiver (shutdown).
    pub async fn stop_all(&self) {
        let all = std::mem::take(&mut *self.running.lock().expect("archivers lock"));
        for (id, r) in all {
            let status = r.handle.stop().await;
            tracing::info!(source = %id, archived = status.archived, "WAL archiver stopped");
        }
    }

    /// The status of every archiver: (tenant, database id, status).
    pub fn statuses(&self) -> Vec<(String, String, ArchiverStatus)> {
        self.running
            .lock()
            .expect("archivers lock")
            .iter()
            .map(|(id, r)| (r.tenant.clone(), id.clone(), r.handle.status()))
            .collect()
    }

    /// Deletes the WAL of database `id`'s archive that none of its base
    /// backups in `kept` (`None`: every listed one) needs
    /// ([`backup_postgres::prune_wal`]), after retention pruned the
    /// backups themselves. `None` when `id` archives no WAL.
    pub async fn prune(
        &self,
        id: &str,
        kept: Option<&[String]>,
        dry_run: bool,
    ) -> Result<Option<WalPruneReport>> {
        let found = self
            .running
            .lock()
            .expect("archivers lock")
            .get(id)
            .map(|r| {
                (
                    r.tenant.clone(),
                    Arc::clone(&r.archive),
                    Arc::clone(&r.engine),
                )
            });
        let Some((tenant, archive, engine)) = found else {
            return Ok(None);
        };
        let report = prune_wal(&engine, &archive, &tenant, id, kept, dry_run).await?;
        if !report.removed.is_empty() {
            tracing::info!(
                %tenant,
                source = id,
                dry_run,
                files = report.removed.len(),
                freed_bytes = report.freed_bytes,
                "WAL no kept base backup needs {}",
                if dry_run { "would be deleted" } else { "deleted" }
            );
        }
        Ok(Some(report))
    }

    /// The archivers of the databases in `visible`, with their windows.
    pub async fn views(&self, visible: &[String]) -> Vec<WalArchiveView> {
        let chosen: Vec<Snapshot> = self
            .running
            .lock()
            .expect("archivers lock")
            .iter()
            .filter(|(id, _)| visible.contains(id))
            .map(|(id, r)| Snapshot {
                tenant: r.tenant.clone(),
                id: id.clone(),
                archive: Arc::clone(&r.archive),
                engine: Arc::clone(&r.engine),
                status: r.handle.status(),
            })
            .collect();
        let mut out = Vec::new();
        for Snapshot {
            tenant,
            id,
            archive,
            engine,
            status,
        } in chosen
        {
            let source = Source {
                engine: &engine,
                archive: &archive,
                tenant: &tenant,
                id: &id,
                archived: status.archived,
            };
            let (window, error) = match self.windows.window(source).await {
                Ok(w) => (Some(w), None),
                Err(e) => (None, Some(e.to_string())),
            };
            out.push(WalArchiveView {
                tenant,
                source_id: id,
                status,
                pitr_window: window,
                pitr_window_error: error,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The archiver part of `/status` as hosts read it: these keys, times
    /// in RFC 3339, no process id.
    #[test]
    fn status_json_is_pinned() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-02T07:17:29Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let mut status = ArchiverStatus::default();
        status.last_segment = Some("000000010000000000000003".into());
        status.last_archived_at = Some(at);
        status.archived = 3;
        status.restarts = 1;
        status.last_error = Some("pg_receivewal exited".into());
        status.last_error_at = Some(at);
        status.lag_bytes = Some(8192);
        status.lag_seconds = Some(1.5);
        status.receiver_pid = Some(4242);
        let view = WalArchiveView {
            tenant: "default".into(),
            source_id: "cluster".into(),
            status,
            pitr_window: Some(PitrWindow::default()),
            pitr_window_error: None,
        };
        assert_eq!(
            serde_json::to_value(&view).unwrap(),
            serde_json::json!({
                "tenant": "default",
                "source_id": "cluster",
                "status": {
                    "last_segment": "000000010000000000000003",
                    "last_archived_at": "2026-12-02T07:17:29Z",
                    "archived": 3,
                    "restarts": 1,
                    "last_error": "pg_receivewal exited",
                    "last_error_at": "2026-12-02T07:17:29Z",
                    "lag_bytes": 8192,
                    "lag_seconds": 1.5
                },
                "pitr_window": {"ranges": []},
                "pitr_window_error": null
            })
        );
    }
}
