//! The base backup's own WAL range: where it ends (its `backup_manifest`)
//! and the check that what is staged for it is what the backup holds.

use std::path::Path;

use backup_core::{Error, Result};

use super::target::format_lsn;
use super::wal::{Geometry, first_difference};

/// A staged segment of the base backup's own WAL range must hold the
/// bytes of the backup's own copy in `pg_wal` (checked by
/// `pg_verifybackup` when the backup was restored) up to where that
/// range ends: damage there is named before the server starts, where
/// PostgreSQL would only say "WAL ends before end of online backup".
pub(super) async fn check_against_backup(
    data_dir: &Path,
    backup_end: Option<u64>,
    geometry: Geometry,
    staged: &Path,
    name: &str,
    segno: u64,
) -> Result<()> {
    let size = geometry.segment_size;
    let Some(end) = backup_end else {
        return Ok(());
    };
    let start = segno.saturating_mul(size);
    if start >= end {
        return Ok(());
    }
    let own = data_dir.join("pg_wal").join(name);
    if !own.is_file() {
        return Ok(());
    }
    let limit = (end - start).min(size);
    match first_difference(staged, &own, limit).await? {
        None => Ok(()),
        Some(at) => Err(Error::Integrity {
            what: format!("WAL segment {name}"),
            detail: format!(
                "the archived copy differs from the base backup's own (pg_wal/{name}, verified when restored) at byte {at}, inside the backup's WAL (it ends at {}): the archive's copy is damaged",
                format_lsn(end)
            ),
        }),
    }
}

/// Where the base backup restored in `data_dir` needs WAL up to on
/// `timeline`, from the end of its `backup_manifest`; `None` without one.
pub(super) fn backup_wal_end(data_dir: &Path, timeline: u32) -> Result<Option<u64>> {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL: u64 = 64 * 1024;
    let path = data_dir.join("backup_manifest");
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
    };
    let io = |e| Error::io(format!("reading {}", path.display()), e);
    let len = file.metadata().map_err(io)?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL)))
        .map_err(io)?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).map_err(io)?;
    crate::baseinfo::wal_end_in_manifest(&tail, timeline)
        .map(|end| end.map(|l| l.0))
        .map_err(|detail| Error::Manifest {
            key: path.display().to_string(),
            detail,
        })
}
