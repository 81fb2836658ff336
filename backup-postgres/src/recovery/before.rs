//! The checks of a point-in-time restore that need only the base
//! backup's manifest ([`PointInTimeRestore::check_backup`]), for a caller
//! that has yet to restore the base backup into the data directory.

use backup_core::manifest::Manifest;
use backup_core::{Error, Result};

use super::PointInTimeRestore;
use super::label::BackupLabel;
use super::timeline::plan_timelines;
use super::unusable::work_dir_of;
use super::wal::Geometry;
use crate::baseinfo::BaseBackupInfo;

impl PointInTimeRestore {
    /// Refuses, before the base backup of `manifest` is restored into the
    /// data directory (nothing is written), a restore that
    /// [`run`](PointInTimeRestore::run) would refuse once it is there: a
    /// time or LSN target before the backup's start, a timeline per
    /// [`RecoveryTimeline`](super::RecoveryTimeline) whose history file the
    /// archive lacks or that does not descend from the backup's timeline
    /// after its start, a segment missing on the way, a work directory
    /// (`.<name>.pitr`) left by an earlier restore. `run` checks all of
    /// it again on the restored directory (the archive may change
    /// meanwhile).
    pub async fn check_backup(&self, manifest: &Manifest) -> Result<()> {
        let info = BaseBackupInfo::from_manifest(manifest)?;
        let geometry = Geometry {
            segment_size: info.wal_segment_size,
        };
        let (_, first) = geometry.parse(&info.wal_first_segment).ok_or_else(|| {
            Error::Config(format!(
                "backup {} names {:?}, not a WAL segment",
                manifest.id, info.wal_first_segment
            ))
        })?;
        // The engine's start is at or before the server's START TIME.
        let label = BackupLabel {
            start_segment: info.wal_first_segment.clone(),
            start_lsn: info.start_lsn.0,
            timeline: info.timeline,
            start_time: Some(manifest.started_at),
        };
        self.check_target(&label)?;
        let data_dir = std::path::absolute(&self.data_dir).map_err(|e| {
            Error::io(
                format!("resolving the data directory {}", self.data_dir.display()),
                e,
            )
        })?;
        let work_dir = work_dir_of(&data_dir)?;
        if work_dir.exists() {
            return Err(Error::AlreadyExists {
                key: format!(
                    "{} (left by an earlier point-in-time restore: remove it); nothing was written",
                    work_dir.display()
                ),
            });
        }
        plan_timelines(&*self.source, self.timeline, &label, first, geometry).await?;
        Ok(())
    }
}
