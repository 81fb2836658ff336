//! Job progress: the [`Meter`] an operation's store (and, for a backup,
//! its source) counts into, read by `GET /api/v1/jobs` without a lock.
//!
//! Each job gets its own meter: a backup runs on an engine whose store is
//! wrapped for that run ([`Engine::metered`](backup_core::Engine::metered))
//! and on a [`MeteredSource`](backup_core::meter::MeteredSource); a
//! restore, a verification or a drill on such an engine. So the counts
//! move while the job runs, whatever its size.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use backup_core::meter::Meter;
use serde::ser::{Serialize, SerializeStruct, Serializer};

/// Elapsed time while the operation runs.
const RUNNING: u64 = u64::MAX;

/// What `bytes_read` of a job counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Dump bytes read from the database (a backup).
    Backup,
    /// Bytes read from the store (a restore, a verification, a drill).
    Read,
}

/// One operation's progress, serialised as `{"bytes_read",
/// "bytes_stored", "elapsed_ms", "rate_bytes_per_sec"}`: `bytes_read`
/// from the database for a backup, from the store otherwise;
/// `bytes_stored` written to the store (a backup's artifact, a drill's
/// record; nothing for a restore); the rate of `bytes_read`.
#[derive(Debug)]
pub struct JobProgress {
    meter: Arc<Meter>,
    work: Work,
    started: Instant,
    /// Elapsed time frozen when the operation ended (`RUNNING` until).
    ended_ms: AtomicU64,
}

impl Default for JobProgress {
    /// Counters nothing feeds (an operation that reports no progress).
    fn default() -> Self {
        JobProgress::new(Work::Read)
    }
}

impl JobProgress {
    /// Counters of a `work` operation starting now, on a fresh meter.
    pub fn new(work: Work) -> Self {
        JobProgress {
            meter: Arc::default(),
            work,
            started: Instant::now(),
            ended_ms: AtomicU64::new(RUNNING),
        }
    }

    /// The meter the operation's store (and source) count into.
    pub fn meter(&self) -> Arc<Meter> {
        Arc::clone(&self.meter)
    }

    /// Freezes the elapsed time: the operation ended.
    pub fn end(&self) {
        let ms = self.elapsed_now();
        let _ = self
            .ended_ms
            .compare_exchange(RUNNING, ms, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn elapsed_now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(RUNNING - 1)
    }

    /// Milliseconds since the start (until the end once ended).
    pub fn elapsed_ms(&self) -> u64 {
        match self.ended_ms.load(Ordering::Relaxed) {
            RUNNING => self.elapsed_now(),
            ms => ms,
        }
    }

    /// Bytes read so far: from the database for a backup, from the store
    /// otherwise.
    pub fn bytes_read(&self) -> u64 {
        match self.work {
            Work::Backup => self.meter.source_read(),
            Work::Read => self.meter.store_read(),
        }
    }

    /// Bytes written to the store so far.
    pub fn bytes_stored(&self) -> u64 {
        self.meter.store_written()
    }
}

impl Serialize for JobProgress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let read = self.bytes_read();
        let elapsed = self.elapsed_ms();
        let rate =
            u64::try_from(u128::from(read) * 1000 / u128::from(elapsed.max(1))).unwrap_or(u64::MAX);
        let mut st = s.serialize_struct("JobProgress", 4)?;
        st.serialize_field("bytes_read", &read)?;
        st.serialize_field("bytes_stored", &self.bytes_stored())?;
        st.serialize_field("elapsed_ms", &elapsed)?;
        st.serialize_field("rate_bytes_per_sec", &rate)?;
        st.end()
    }
}

/// Serialises shared counters (`Operation::progress`).
pub fn serialize_shared<S: Serializer>(p: &Arc<JobProgress>, s: S) -> Result<S::Ok, S::Error> {
    p.as_ref().serialize(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_core::key::Key;
    use backup_core::memory::InMemoryStore;
    use backup_core::meter::MeteredStore;
    use backup_core::store::{PutOptions, Store};
    use bytes::Bytes;

    #[tokio::test]
    async fn progress_reads_what_the_work_moves_and_freezes_at_the_end() {
        let backup = JobProgress::new(Work::Backup);
        let store = MeteredStore::new(Arc::new(InMemoryStore::new()), backup.meter());
        let key = Key::new("t/p/object").unwrap();
        store
            .put(
                &key,
                Bytes::from_static(b"0123456789"),
                PutOptions::default(),
            )
            .await
            .unwrap();
        let v = serde_json::to_value(&backup).unwrap();
        assert_eq!(v["bytes_read"], 0, "{v}");
        assert_eq!(v["bytes_stored"], 10, "{v}");

        let restore = JobProgress::new(Work::Read);
        let store = MeteredStore::new(Arc::new(store), restore.meter());
        store.get_range(&key, 0..4).await.unwrap();
        restore.end();
        let v = serde_json::to_value(&restore).unwrap();
        assert_eq!(v["bytes_read"], 4, "{v}");
        assert_eq!(v["bytes_stored"], 0, "{v}");
        assert_eq!(
            v["elapsed_ms"],
            serde_json::to_value(&restore).unwrap()["elapsed_ms"]
        );
    }
}
