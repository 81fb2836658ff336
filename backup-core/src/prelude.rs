//! What a host application needs for the common case, in one import:
//!
//! ```
//! use backup_core::prelude::*;
//! ```
//!
//! Backing up and restoring ([`Engine`], [`BackupRequest`],
//! [`RestoreOptions`]) through adapters ([`DumpSource`], [`RestoreTarget`],
//! [`Store`]), on a schedule ([`Scheduler`], [`SchedulerConfig`],
//! [`JobSpec`], [`BackupJob`], [`Schedule`]) with retention
//! ([`RetentionPolicy`]), and watching it happen ([`EventBus`], [`Event`]).
//! Everything else lives in the module that defines it.

pub use crate::backup_job::BackupJob;
pub use crate::backup_ref::BackupRef;
pub use crate::catalog::Filter;
pub use crate::compression::Compression;
pub use crate::engine::{BackupRequest, Engine};
pub use crate::error::{Error, Result, Side};
pub use crate::events::{Event, EventBus};
pub use crate::manifest::BackupType;
pub use crate::retention::RetentionPolicy;
pub use crate::schedule::Schedule;
pub use crate::scheduler::{JobSpec, Scheduler, SchedulerConfig};
pub use crate::secret::Secret;
pub use crate::source::{DumpSource, RestoreOptions, RestoreTarget};
pub use crate::store::Store;
