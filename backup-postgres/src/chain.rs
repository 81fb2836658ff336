//! [`ChainRestore`]: restores a block-level incremental base backup with
//! every backup it depends on into a new data directory, combined with
//! `pg_combinebackup`.
//!
//! The chain is read from the manifests first (each backup's
//! [`parent`](backup_core::manifest::Manifest::parent), down to a full
//! base backup) and refused, before anything is written, when a link is
//! missing, the parents form a cycle, a link is no base backup, or links
//! disagree on the system identifier. Then, in a private staging
//! directory beside the target (`.<name>.chain-<16 hex>`, mode 0700),
//! every link is extracted from the store with its digests verified,
//! `pg_combinebackup` of the backup's major version writes the combined
//! cluster, `pg_verifybackup` checks it and it is renamed to the target.
//! The staging directory is removed on every path (a process killed
//! outright leaves it for the operator; its name says what it is).

use std::ffi::OsStr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::backup_ref::BackupRef;
use backup_core::manifest::Manifest;
use backup_core::source::RestoreOptions;
use backup_core::{Engine, Error, Result};

use crate::baseinfo::BaseBackupInfo;
use crate::datadir::{DataDirTarget, check_free, run_tool_of_version, verify_data_dir};
use crate::tools::PgTools;

const ENGINE: &str = "postgres";

/// Most links a chain may have (a full backup and its incrementals).
pub const MAX_CHAIN_LINKS: usize = 1000;

/// Restores a base backup, full or incremental, with the chain it
/// depends on into a new data directory (see the module docs). The
/// result is a data directory like the one
/// [`DataDirTarget`](crate::DataDirTarget) restores: start it, or replay
/// archived WAL on it with [`PointInTimeRestore`](crate::PointInTimeRestore).
///
/// ```no_run
/// use std::sync::Arc;
/// use backup_core::Engine;
/// use backup_postgres::{
///     ChainRestore, DirWalSource, PgTools, PointInTimeRestore, RecoveryTarget,
/// };
///
/// # async fn run(engine: Engine, incremental_id: &str) -> backup_core::Result<()> {
/// let data = "/srv/pg/restored";
/// let tools = PgTools::in_dir("/usr/lib/postgresql/18/bin");
/// let report = ChainRestore::new(data)
///     .with_tools(tools)
///     .run(&engine, incremental_id)
///     .await?;
/// println!("combined {} backups", report.links.len());
/// // Then, as for a full base backup, WAL up to a target:
/// PointInTimeRestore::new(
///     data,
///     Arc::new(DirWalSource::new("/srv/pg/archive")),
///     RecoveryTarget::time("2026-12-02T07:17:29Z")?,
///     "/usr/lib/postgresql/18/bin",
/// )
/// .run()
/// .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ChainRestore {
    dir: PathBuf,
    tools: PgTools,
}

/// What [`ChainRestore::run`] restored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChainReport {
    /// The backups combined, the full one first, the one asked for last.
    pub links: Vec<String>,
    /// The data directory restored.
    pub dir: PathBuf,
}

impl ChainRestore {
    /// Restores into `dir`, which must not exist yet (or be an empty
    /// directory); its parent must exist.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ChainRestore {
            dir: dir.into(),
            tools: PgTools::auto(),
        }
    }

    /// Chooses where `pg_combinebackup` and `pg_verifybackup` come from.
    pub fn with_tools(mut self, tools: PgTools) -> Self {
        self.tools = tools;
        self
    }

    /// The chain of `backup`, the full base backup first, read from the
    /// manifests and checked: every parent listed (in the backup's
    /// tenant), no cycle, every link a base backup of the same system
    /// whose details agree with its manifest, at most
    /// [`MAX_CHAIN_LINKS`] links, a full backup at the root.
    pub async fn chain(
        engine: &Engine,
        backup: impl Into<BackupRef>,
    ) -> Result<Vec<(Arc<Manifest>, BaseBackupInfo)>> {
        let tip = engine.catalog().get(backup).await?;
        let mut links = Vec::new();
        let mut current = tip;
        loop {
            let info = BaseBackupInfo::from_manifest(&current)
                .map_err(|e| broken(&links, &current.id, format!("not a base backup: {e}")))?;
            if let Some((_, first)) = links.first()
                && info.system_identifier != first.system_identifier
            {
                return Err(broken(
                    &links,
                    &current.id,
                    format!(
                        "a backup of system {}, not {} like the backup restored",
                        info.system_identifier, first.system_identifier
                    ),
                ));
            }
            let parent = current.parent.clone();
            links.push((Arc::clone(&current), info));
            let Some(parent) = parent else { break };
            if links.iter().any(|(m, _)| m.id == parent) {
                return Err(broken(
                    &links,
                    &parent,
                    "the parents lead back to it (a cycle)".into(),
                ));
            }
            if links.len() >= MAX_CHAIN_LINKS {
                return Err(broken(
                    &links,
                    &parent,
                    format!("the chain has more than {MAX_CHAIN_LINKS} links"),
                ));
            }
            current = match engine
                .catalog()
                .get(BackupRef::in_tenant(&current.tenant, &parent))
                .await
            {
                Ok(m) if m.source_id == current.source_id => m,
                Ok(m) => {
                    return Err(broken(
                        &links,
                        &parent,
                        format!(
                            "a backup of source {}, not {}",
                            m.source_id, current.source_id
                        ),
                    ));
                }
                Err(Error::NotFound { .. }) => {
                    return Err(Error::not_found(format!(
                        "parent backup {parent} of {} (the chain of {} is broken: \
                         nothing was restored)",
                        current.id, links[0].0.id
                    )));
                }
                Err(e) => return Err(e),
            };
        }
        links.reverse();
        Ok(links)
    }

    /// Restores `backup` and its chain (see the type's docs). Nothing is
    /// written to the target before the combined cluster is verified;
    /// every failure leaves the target as it was.
    pub async fn run(&self, engine: &Engine, backup: impl Into<BackupRef>) -> Result<ChainReport> {
        let links = Self::chain(engine, backup).await?;
        check_free(&self.dir)?;
        let staging = Staging::create(&self.dir)?;
        let result = self.combine(engine, &links, &staging.0).await;
        staging.remove().await;
        result?;
        Ok(ChainReport {
            links: links.iter().map(|(m, _)| m.id.clone()).collect(),
            dir: self.dir.clone(),
        })
    }

    /// Extracts every link under `staging`, combines them there and moves
    /// the verified result to the target.
    async fn combine(
        &self,
        engine: &Engine,
        links: &[(Arc<Manifest>, BaseBackupInfo)],
        staging: &Path,
    ) -> Result<()> {
        let mut dirs = Vec::with_capacity(links.len());
        for (i, (m, _)) in links.iter().enumerate() {
            let dir = staging.join(format!("link-{i}"));
            let target = DataDirTarget::chain_link(&dir, self.tools.clone());
            if let Err(e) = engine
                .restore(m.backup_ref(), &target, &RestoreOptions::default())
                .await
            {
                return Err(match e {
                    Error::Integrity { what, detail } => Error::Integrity {
                        what: format!(
                            "backup {} (link {} of {} of the chain)",
                            m.id,
                            i + 1,
                            links.len()
                        ),
                        detail: format!("{what}: {detail}; nothing was restored"),
                    },
                    other => other,
                });
            }
            dirs.push(dir);
        }
        let combined = if dirs.len() == 1 {
            dirs.pop().expect("one link")
        } else {
            let out = staging.join("combined");
            self.pg_combinebackup(&dirs, &out).await?;
            out
        };
        verify_data_dir(&self.tools, &combined).await?;
        check_free(&self.dir)?;
        std::fs::rename(&combined, &self.dir).map_err(|e| {
            Error::io(
                format!("moving the restored cluster into {}", self.dir.display()),
                e,
            )
        })
    }

    /// `pg_combinebackup -o out dirs...` of the last link's major version.
    async fn pg_combinebackup(&self, dirs: &[PathBuf], out: &Path) -> Result<()> {
        let last = dirs.last().expect("links");
        let mut args = vec![OsStr::new("--output"), out.as_os_str()];
        args.extend(dirs.iter().map(|d| d.as_os_str()));
        run_tool_of_version(&self.tools, "pg_combinebackup", last, &args)
            .await?
            .map_err(refused)
    }
}

/// The private staging directory of one chain restore; removed on drop
/// if [`Staging::remove`] was not reached (a cancelled restore).
struct Staging(PathBuf);

impl Staging {
    /// Creates `.<name>.chain-<16 hex>` (0700) beside `dir`.
    fn create(dir: &Path) -> Result<Staging> {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| refused(format!("{} has no directory name", dir.display())))?;
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(refused(format!(
                "the parent of {} does not exist",
                dir.display()
            )));
        }
        let path = parent.join(format!(".{name}.chain-{:016x}", rand::random::<u64>()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        Ok(Staging(path))
    }

    /// Removes the directory and waits for it to be gone.
    async fn remove(mut self) {
        let path = std::mem::take(&mut self.0);
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(path)).await;
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn refused(why: String) -> Error {
    Error::Restore {
        engine: ENGINE,
        detail: format!("cannot restore the chain: {why}"),
    }
}

/// The chain read so far (tip first) is broken at backup `id`.
fn broken(links: &[(Arc<Manifest>, BaseBackupInfo)], id: &str, why: String) -> Error {
    let tip = links.first().map(|(m, _)| m.id.as_str()).unwrap_or(id);
    refused(format!(
        "backup {id} in the chain of {tip}: {why}; nothing was restored"
    ))
}
