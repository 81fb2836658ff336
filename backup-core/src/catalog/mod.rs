//! The catalog: backups as recorded by the manifests in a store.
//!
//! Nothing else is consulted: a store alone is enough to rebuild the list of
//! backups. Artifacts without a manifest are never listed; [`Catalog::sweep`]
//! removes them once they are older than a grace period and their backup
//! no longer runs (see the commit protocol in the `inflight` module docs).

mod filter;
mod health;
mod listing;
mod run_record;
mod stats;
mod sweep;

pub use filter::Filter;
pub use health::{HealthOptions, HealthStatus, SourceHealth};
pub use listing::Catalog;
pub(crate) use listing::is_reserved;
pub use run_record::{RUN_RECORD_NAME, RunRecord};
pub use stats::{BackupPage, Page, Stats, StatsReport};
pub use sweep::{ChunkSweep, SweepReport};
