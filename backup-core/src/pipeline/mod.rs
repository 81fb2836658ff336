//! The streaming pipeline: source → compressor → hasher → store, and back.
//!
//! Stages run concurrently and are joined by a bounded channel of chunks
//! (`queue_depth` × `chunk_size` bytes at most), so memory stays flat
//! whatever the size of the database and a slow store slows the dump down
//! (backpressure) instead of filling memory.

mod backup;
mod restore;
mod signature;
mod stages;

pub(crate) use backup::{ObjectWriter, PROGRESS_EVERY, Progress, cancelled};
pub(crate) use restore::{Expected, drain, read_object, restore_into, verified};
pub(crate) use signature::check_dump;
pub use stages::PipelineOptions;
#[cfg(feature = "testing")]
pub(crate) use stages::sha256_hex;
pub(crate) use stages::{
    AbortOnDrop, Hasher, ParallelHasher as StoredHasher, compare_digests as compare, watchdog,
};
