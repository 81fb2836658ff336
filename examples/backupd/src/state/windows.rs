//! The point-in-time windows `/status` shows, cached per source: telling
//! one lists the source's whole WAL archive, too much for every request.
//!
//! A cached window is used until the source changes or [`MAX_AGE`]
//! passes. Changes are seen when the window is asked for, not later: the
//! archiver's count of archived files (from the status shown beside the
//! window) and the events on the daemon's bus since the last request (a
//! backup committed or pruned, a WAL file archived), drained then.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use backup_core::Engine;
use backup_core::events::{Event, EventBus};
use backup_postgres::{PitrWindow, WalArchive, pitr_window};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::TryRecvError;

/// Longest a window is shown without being told again.
pub const MAX_AGE: Duration = Duration::from_secs(60);

/// The windows of the archiving sources, by (tenant, source id).
#[derive(Debug)]
pub struct WindowCache {
    events: Mutex<Receiver<Event>>,
    entries: Mutex<BTreeMap<(String, String), Entry>>,
}

/// One source: bumped on each change; the window told at a generation.
#[derive(Debug, Default)]
struct Entry {
    generation: u64,
    cached: Option<Cached>,
}

#[derive(Debug)]
struct Cached {
    generation: u64,
    archived: u64,
    at: Instant,
    window: PitrWindow,
}

/// What a window is of, and what the source's archiver has archived so far.
pub struct Source<'a> {
    /// Engine of the source's backups.
    pub engine: &'a Engine,
    /// Its WAL archive.
    pub archive: &'a WalArchive,
    /// Tenant.
    pub tenant: &'a str,
    /// Source (database) id.
    pub id: &'a str,
    /// Files its archiver has archived (its status' `archived`).
    pub archived: u64,
}

impl WindowCache {
    /// A cache that watches `bus` for the changes of its sources.
    pub fn new(bus: &EventBus) -> Self {
        WindowCache {
            events: Mutex::new(bus.subscribe()),
            entries: Mutex::default(),
        }
    }

    /// The window of `source`: the cached one when nothing changed and it
    /// is younger than [`MAX_AGE`], else told again (an error is not kept).
    pub async fn window(&self, source: Source<'_>) -> backup_core::Result<PitrWindow> {
        self.drain();
        let key = (source.tenant.to_string(), source.id.to_string());
        let generation = {
            let mut entries = self.entries.lock().expect("windows lock");
            let entry = entries.entry(key.clone()).or_default();
            if let Some(c) = &entry.cached
                && c.generation == entry.generation
                && c.archived == source.archived
                && c.at.elapsed() < MAX_AGE
            {
                return Ok(c.window.clone());
            }
            entry.generation
        };
        let at = Instant::now();
        let window = pitr_window(source.engine, source.archive, source.tenant, source.id).await?;
        let mut entries = self.entries.lock().expect("windows lock");
        let entry = entries.entry(key).or_default();
        // Not if the source changed while it was told.
        if entry.generation == generation {
            entry.cached = Some(Cached {
                generation,
                archived: source.archived,
                at,
                window: window.clone(),
            });
        }
        Ok(window)
    }

    /// Drops the window of a source no longer archived.
    pub fn forget(&self, tenant: &str, id: &str) {
        self.entries
            .lock()
            .expect("windows lock")
            .remove(&(tenant.to_string(), id.to_string()));
    }

    /// Marks the sources the events since the last call changed.
    fn drain(&self) {
        let mut events = self.events.lock().expect("windows events lock");
        let mut entries = self.entries.lock().expect("windows lock");
        loop {
            match events.try_recv() {
                Ok(
                    Event::Succeeded {
                        tenant, source_id, ..
                    }
                    | Event::Pruned {
                        tenant, source_id, ..
                    }
                    | Event::WalArchived {
                        tenant, source_id, ..
                    },
                ) => {
                    if let Some(e) = entries.get_mut(&(tenant, source_id)) {
                        e.generation += 1;
                    }
                }
                Ok(_) => {}
                // Events were lost: any source may have changed.
                Err(TryRecvError::Lagged(_)) => {
                    entries.values_mut().for_each(|e| e.generation += 1);
                }
                Err(TryRecvError::Empty | TryRecvError::Closed) => return,
            }
        }
    }
}
