//! Job progress: counters an operation shares with what feeds them, read
//! by `GET /api/v1/jobs` without a lock.
//!
//! A backup job's counters follow [`Event::Progress`] of its source
//! (bytes read), fed by one subscriber task ([`ProgressFeed`]) that keeps
//! its own table of running backups: registrations reach it over a channel,
//! so an event costs a map look-up and an atomic store, never a lock.
//! Restores expose no counts while they run: theirs are set when they end
//! (the dump's size read, the artifact's size fetched).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use backup_core::{Event, EventBus};
use serde::ser::{Serialize, SerializeStruct, Serializer};
use tokio::sync::{broadcast, mpsc};

/// `bytes_stored` while unknown.
const UNKNOWN: u64 = u64::MAX;

/// One operation's progress, serialised as `{"bytes_read",
/// "bytes_stored" (null while unknown), "elapsed_ms",
/// "rate_bytes_per_sec"}`.
#[derive(Debug)]
pub struct JobProgress {
    bytes_read: AtomicU64,
    bytes_stored: AtomicU64,
    started: Instant,
    /// Elapsed time frozen when the operation ended (`UNKNOWN`: running).
    ended_ms: AtomicU64,
}

impl Default for JobProgress {
    fn default() -> Self {
        JobProgress {
            bytes_read: AtomicU64::new(0),
            bytes_stored: AtomicU64::new(UNKNOWN),
            started: Instant::now(),
            ended_ms: AtomicU64::new(UNKNOWN),
        }
    }
}

impl JobProgress {
    /// Records raw bytes read so far (never goes back).
    pub fn read(&self, bytes: u64) {
        self.bytes_read.fetch_max(bytes, Ordering::Relaxed);
    }

    /// Records the bytes stored (or fetched) once known.
    pub fn stored(&self, bytes: u64) {
        self.bytes_stored
            .store(bytes.min(UNKNOWN - 1), Ordering::Relaxed);
    }

    /// Sets the final counts (exactly: whatever the events said before).
    pub fn finish(&self, read: u64, stored: u64) {
        self.bytes_read.store(read, Ordering::Relaxed);
        self.stored(stored);
    }

    /// Whether the operation ended ([`JobProgress::end`]).
    pub fn is_ended(&self) -> bool {
        self.ended_ms.load(Ordering::Relaxed) != UNKNOWN
    }

    /// Freezes the elapsed time: the operation ended.
    pub fn end(&self) {
        let ms = self.elapsed_now();
        let _ = self
            .ended_ms
            .compare_exchange(UNKNOWN, ms, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn elapsed_now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(UNKNOWN - 1)
    }

    /// Milliseconds since the start (until the end once ended).
    pub fn elapsed_ms(&self) -> u64 {
        match self.ended_ms.load(Ordering::Relaxed) {
            UNKNOWN => self.elapsed_now(),
            ms => ms,
        }
    }

    /// Raw bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }
}

impl Serialize for JobProgress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let read = self.bytes_read();
        let elapsed = self.elapsed_ms();
        let rate =
            u64::try_from(u128::from(read) * 1000 / u128::from(elapsed.max(1))).unwrap_or(u64::MAX);
        let stored = match self.bytes_stored.load(Ordering::Relaxed) {
            UNKNOWN => None,
            n => Some(n),
        };
        let mut st = s.serialize_struct("JobProgress", 4)?;
        st.serialize_field("bytes_read", &read)?;
        st.serialize_field("bytes_stored", &stored)?;
        st.serialize_field("elapsed_ms", &elapsed)?;
        st.serialize_field("rate_bytes_per_sec", &rate)?;
        st.end()
    }
}

/// Serialises shared counters (`Operation::progress`).
pub fn serialize_shared<S: Serializer>(p: &Arc<JobProgress>, s: S) -> Result<S::Ok, S::Error> {
    p.as_ref().serialize(s)
}

/// A source's `(tenant, id)`.
type SourceKey = (String, String);

/// Feeds the counters of running backups from the event bus.
#[derive(Debug, Clone)]
pub struct ProgressFeed {
    register: mpsc::UnboundedSender<(SourceKey, Weak<JobProgress>)>,
}

impl ProgressFeed {
    /// Starts the subscriber task on `events` (it ends with the bus).
    pub fn start(events: &EventBus) -> ProgressFeed {
        let (register, mut registrations) = mpsc::unbounded_channel();
        let mut rx = events.subscribe();
        tokio::spawn(async move {
            let mut watched: HashMap<SourceKey, Vec<Weak<JobProgress>>> = HashMap::new();
            loop {
                let event = match rx.recv().await {
                    Ok(e) => e,
                    // Missed events: the next one carries the total again.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                while let Ok((key, counters)) = registrations.try_recv() {
                    watched.entry(key).or_default().push(counters);
                }
                let (tenant, source_id, bytes) = match event {
                    Event::Progress {
                        tenant,
                        source_id,
                        bytes,
                        ..
                    } => (tenant, source_id, Some(bytes)),
                    Event::Succeeded {
                        tenant, source_id, ..
                    }
                    | Event::Failed {
                        tenant, source_id, ..
                    } => (tenant, source_id, None),
                    _ => continue,
                };
                let key = (tenant, source_id);
                let Some(list) = watched.get_mut(&key) else {
                    continue;
                };
                list.retain(|w| match w.upgrade() {
                    Some(p) => {
                        if let Some(b) = bytes {
                            p.read(b);
                        }
                        // Ended operations stay listed, but take no later
                        // run's progress.
                        Arc::strong_count(&p) > 1 && !p.is_ended()
                    }
                    None => false,
                });
                if list.is_empty() {
                    watched.remove(&key);
                }
            }
        });
        ProgressFeed { register }
    }

    /// Feeds `counters` from the progress of source `id` of `tenant`
    /// while anything else holds them.
    pub fn watch(&self, tenant: &str, id: &str, counters: &Arc<JobProgress>) {
        let _ = self.register.send((
            (tenant.to_string(), id.to_string()),
            Arc::downgrade(counters),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn progress_serialises_with_a_null_store_count_until_known() {
        let p = JobProgress::default();
        p.read(10);
        p.read(4);
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["bytes_read"], 10);
        assert!(v["bytes_stored"].is_null());
        p.finish(9, 7);
        assert!(!p.is_ended());
        p.end();
        assert!(p.is_ended());
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["bytes_read"], 9);
        assert_eq!(v["bytes_stored"], 7);
        assert_eq!(
            v["elapsed_ms"],
            serde_json::to_value(&p).unwrap()["elapsed_ms"]
        );
    }

    #[tokio::test]
    async fn the_feed_follows_its_source_only() {
        let bus = EventBus::new(16);
        let feed = ProgressFeed::start(&bus);
        let mine = Arc::new(JobProgress::default());
        feed.watch("t", "db", &mine);
        let progress = |tenant: &str, bytes| Event::Progress {
            tenant: tenant.into(),
            source_id: "db".into(),
            bytes,
            at: Utc::now(),
        };
        bus.emit(progress("other", 99));
        bus.emit(progress("t", 42));
        while mine.bytes_read() != 42 {
            tokio::task::yield_now().await;
        }
    }
}
