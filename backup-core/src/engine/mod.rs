//! [`Engine`]: backup, restore, verify and prune over one store.
//!
//! The engine is split by concern: `request` (what a backup is asked
//! for), `backup` (one writer for full and incremental artifacts, the
//! manifest last), `read` (restore, verify and `open_dump` over one
//! verified-read primitive) and `maintenance` (prune, GC, sweep, check).

mod backup;
mod drill;
mod maintenance;
mod objects;
mod read;
mod request;
mod setup;

pub use drill::MAX_DRILL_RECORDS;
pub use maintenance::PruneReport;
pub use objects::{SealOptions, SealedRecord};
pub use request::BackupRequest;
pub use setup::Engine;
