//! The WAL archivers of `wal_archiving` entries: one [`WalArchiver`]
//! per entry, started when the entry is registered, restarted when it
//! changes, stopped when it is removed and at shutdown.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use backup_core::{Engine, EventBus, Result};
use backup_postgres::{
    ArchiverOptions, ArchiverStatus, PitrWindow, WalArchive, WalArchiver, WalArchiverHandle,
    pitr_window,
};
use serde::Serialize;

use super::entries::{pg_connection, pg_tools};
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

/// The running archivers by database id.
#[derive(Debug, Default)]
pub struct WalArchivers {
    running: Mutex<BTreeMap<String, Running>>,
}

/// What `/status` says of one archiver.
#[derive(Debug, Serialize)]
pub struct WalArchiveView {
    /// Tenant.
    pub tenant: String,
    /// Database id.
    pub source_id: String,
    /// The archiver's status (lag, newest segment, errors).
    pub status: ArchiverView,
    /// What the base backups and the archive make restorable.
    pub pitr_window: Option<PitrWindow>,
    /// Why the window could not be read, if it could not.
    pub pitr_window_error: Option<String>,
}

/// [`ArchiverStatus`] as JSON.
#[derive(Debug, Serialize)]
pub struct ArchiverView {
    /// Newest archived segment.
    pub last_segment: Option<String>,
    /// When this archiver last archived a file.
    pub last_archived_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Files archived since the daemon started.
    pub archived: u64,
    /// Receiver restarts.
    pub restarts: u64,
    /// The most recent error.
    pub last_error: Option<String>,
    /// When it happened.
    pub last_error_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Bytes the server flushed beyond the archive.
    pub lag_bytes: Option<u64>,
    /// Seconds since the archive covered the server's flush position.
    pub lag_seconds: Option<f64>,
}

impl From<ArchiverStatus> for ArchiverView {
    fn from(s: ArchiverStatus) -> Self {
        ArchiverView {
            last_segment: s.last_segment,
            last_archived_at: s.last_archived_at,
            archived: s.archived,
            restarts: s.restarts,
            last_error: s.last_error,
            last_error_at: s.last_error_at,
            lag_bytes: s.lag_bytes,
            lag_seconds: s.lag_seconds,
        }
    }
}

impl WalArchivers {
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
            let (window, error) = match pitr_window(&engine, &archive, &tenant, &id).await {
                Ok(w) => (Some(w), None),
                Err(e) => (None, Some(e.to_string())),
            };
            out.push(WalArchiveView {
                tenant,
                source_id: id,
                status: status.into(),
                pitr_window: window,
                pitr_window_error: error,
            });
        }
        out
    }
}
