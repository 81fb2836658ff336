//! [`DedupOptions`]: chunking, packing and garbage-collection tuning.

use std::time::Duration;

use super::chunker::ChunkSizes;

/// Tuning of deduplicated backups and garbage collection; `Default` suits
/// database dumps. The chunk sizes were chosen with the pgbench bench in
/// `backup-postgres/tests/dedup_bench.rs` (figures in the README): 64 KiB
/// chunks stored a contiguous 1% update in 1.3% of the base, where 16 KiB
/// chunks cost 1.3% more on every base (weaker compression of small
/// chunks, four times the index entries) and 256 KiB chunks stored 2.1%.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DedupOptions {
    /// Smallest chunk (default 16 KiB).
    pub min_chunk: usize,
    /// Average chunk the cut points aim at (default 64 KiB).
    pub avg_chunk: usize,
    /// Largest chunk (default 256 KiB).
    pub max_chunk: usize,
    /// Packs are closed once they reach this many bytes (default 16 MiB).
    pub pack_size: u64,
    /// Chunks hashed, compressed and encrypted at once, and range reads in
    /// flight during a restore (default 4).
    pub concurrency: usize,
    /// How long a backup waits for a running GC before failing with
    /// [`Error::Busy`](crate::Error::Busy) (default 10 minutes).
    pub gc_wait: Duration,
    /// How often a waiting backup looks again (default 5 s).
    pub poll_interval: Duration,
    /// In-flight markers older than this belong to crashed backups and are
    /// ignored and removed by GC (default 24 h).
    pub inflight_expiry: Duration,
    /// A GC marker older than this belongs to a crashed GC and is ignored
    /// (default 1 h).
    pub gc_marker_expiry: Duration,
    /// A pack is repacked when more than this share of its bytes is
    /// unreferenced (default 0.5).
    pub repack_threshold: f64,
    /// How long a GC waits between writing the GC marker and reading it
    /// back, where it cannot create the marker atomically (a store without
    /// exclusive create-only puts, or taking over a stale marker); see
    /// "Garbage collection and concurrent backups" in the module docs
    /// (default 30 s). Must exceed the longest time one store request can
    /// take to reach the store.
    pub gc_lock_settle: Duration,
}

impl Default for DedupOptions {
    fn default() -> Self {
        DedupOptions {
            min_chunk: 16 * 1024,
            avg_chunk: 64 * 1024,
            max_chunk: 256 * 1024,
            pack_size: 16 * 1024 * 1024,
            concurrency: 4,
            gc_wait: Duration::from_secs(600),
            poll_interval: Duration::from_secs(5),
            inflight_expiry: Duration::from_secs(24 * 3600),
            gc_marker_expiry: Duration::from_secs(3600),
            repack_threshold: 0.5,
            gc_lock_settle: Duration::from_secs(30),
        }
    }
}

impl DedupOptions {
    /// Sets the chunk size bounds. They are rounded to even numbers and
    /// kept within what FastCDC accepts (min 64 B to 1 MiB, average 256 B
    /// to 4 MiB, max 1 KiB to 16 MiB, min ≤ avg ≤ max).
    pub fn chunk_sizes(mut self, min: usize, avg: usize, max: usize) -> Self {
        let even = |x: usize| x & !1;
        self.min_chunk = even(min.clamp(64, 1 << 20));
        self.avg_chunk = even(avg.clamp(256, 4 << 20).max(self.min_chunk));
        self.max_chunk = even(max.clamp(1024, 16 << 20).max(self.avg_chunk));
        self
    }

    /// Sets [`DedupOptions::pack_size`].
    pub fn pack_size(mut self, bytes: u64) -> Self {
        self.pack_size = bytes;
        self
    }

    /// Sets [`DedupOptions::gc_wait`] and [`DedupOptions::poll_interval`].
    pub fn gc_wait(mut self, wait: Duration, poll: Duration) -> Self {
        self.gc_wait = wait;
        self.poll_interval = poll;
        self
    }

    /// Sets [`DedupOptions::repack_threshold`] (0 repacks any pack with
    /// garbage in it, 1 never repacks).
    pub fn repack_threshold(mut self, share: f64) -> Self {
        self.repack_threshold = share.clamp(0.0, 1.0);
        self
    }

    /// Sets [`DedupOptions::gc_lock_settle`].
    pub fn gc_lock_settle(mut self, settle: Duration) -> Self {
        self.gc_lock_settle = settle;
        self
    }

    /// Sets [`DedupOptions::concurrency`].
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Refuses options a backup or GC cannot run with exactly (they are
    /// public fields, so the setters' clamping can be bypassed): chunk
    /// sizes outside FastCDC's bounds or out of order, a zero pack size or
    /// concurrency, waits too long to add to a clock, a threshold outside
    /// 0..=1.
    pub(crate) fn validate(&self) -> crate::error::Result<()> {
        let bad = |what: String| {
            Err(crate::error::Error::Config(format!(
                "dedup options: {what}"
            )))
        };
        if !(64..=1 << 20).contains(&self.min_chunk)
            || !(256..=4 << 20).contains(&self.avg_chunk)
            || !(1024..=16 << 20).contains(&self.max_chunk)
            || self.min_chunk > self.avg_chunk
            || self.avg_chunk > self.max_chunk
        {
            return bad(format!(
                "chunk sizes {}/{}/{} out of range (min 64 B..1 MiB, avg 256 B..4 MiB, max 1 KiB..16 MiB, min <= avg <= max)",
                self.min_chunk, self.avg_chunk, self.max_chunk
            ));
        }
        if self.pack_size == 0 || self.concurrency == 0 {
            return bad(format!(
                "pack size {} and concurrency {} must be positive",
                self.pack_size, self.concurrency
            ));
        }
        for (name, d) in [
            ("gc_wait", self.gc_wait),
            ("poll_interval", self.poll_interval),
            ("inflight_expiry", self.inflight_expiry),
            ("gc_marker_expiry", self.gc_marker_expiry),
        ] {
            crate::duration::to_chrono(d, name)?;
        }
        if !(0.0..=1.0).contains(&self.repack_threshold) {
            return bad(format!(
                "repack threshold {} outside 0..=1",
                self.repack_threshold
            ));
        }
        Ok(())
    }

    pub(crate) fn sizes(&self) -> ChunkSizes {
        ChunkSizes {
            min: self.min_chunk,
            avg: self.avg_chunk,
            max: self.max_chunk,
        }
    }
}
