//! The WAL archive: PostgreSQL's write-ahead log files kept in a backup
//! store beside the base backups they continue, for point-in-time
//! recovery. [`WalArchive`] stores and fetches them (what
//! `archive_command` / `restore_command` and the streaming archiver use);
//! [`WalFileName`] says which names it accepts.

mod archive;
mod leftovers;
mod name;
mod segments;
mod timeline;

pub use archive::{PushOutcome, WAL_DIR, WalArchive, WalConflict, WalPruneReport, WalRecord};
pub use name::{WalFileKind, WalFileName};
pub(crate) use segments::SegmentSet;
pub(crate) use timeline::{Leg, MAX_HISTORY_BYTES, TimelineHistory, timeline_path};
