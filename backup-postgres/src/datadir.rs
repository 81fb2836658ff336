//! [`DataDirTarget`]: restores a base backup ([`BASEBACKUP_FORMAT`]) into
//! a new PostgreSQL data directory, all or nothing.
//!
//! The archive is extracted into a hidden staging directory beside the
//! target (`.<name>.restore-<16 hex>`, mode 0700, so the final rename
//! stays on one file system), checked with `pg_verifybackup` of the
//! backup's major version (every file against PostgreSQL's
//! `backup_manifest`, and the WAL it needs), and only then renamed to the
//! target. The target must not exist or be an empty directory: a restore
//! never writes over a cluster. An abort, a dropped session, a failed
//! verification or extraction removes the staging directory; a restore
//! killed outright leaves it for the operator (its name says what it is).
//!
//! Starting a server on the result (ownership by the server's user,
//! recovery settings for point-in-time recovery) is the caller's part.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use async_trait::async_trait;
use backup_core::source::{RestoreOptions, RestoreReport, RestoreSession, RestoreTarget};
use backup_core::{Error, Result};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::io::StreamReader;

use crate::physical::BASEBACKUP_FORMAT;
use backup_core::child::cleared_command;

use crate::baseinfo::label_is_incremental;
use crate::tarscan::TarScan;
use crate::tools::{PgTools, parse_major};

const ENGINE: &str = "postgres";

/// Restores base backups into a new data directory (see the module docs).
#[derive(Debug, Clone)]
pub struct DataDirTarget {
    dir: PathBuf,
    tools: PgTools,
    /// A link of a chain being restored ([`DataDirTarget::chain_link`]).
    link: bool,
}

impl DataDirTarget {
    /// A target restoring into `dir`, which must not exist yet (or be an
    /// empty directory) when a restore begins; its parent must exist.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DataDirTarget {
            dir: dir.into(),
            tools: PgTools::auto(),
            link: false,
        }
    }

    /// A target for one link of a chain being restored
    /// ([`ChainRestore`](crate::ChainRestore)): incremental backups are
    /// accepted and `pg_verifybackup` is left to the combined result.
    pub(crate) fn chain_link(dir: impl Into<PathBuf>, tools: PgTools) -> Self {
        DataDirTarget {
            dir: dir.into(),
            tools,
            link: true,
        }
    }

    /// Chooses where `pg_verifybackup` comes from.
    pub fn with_tools(mut self, tools: PgTools) -> Self {
        self.tools = tools;
        self
    }

    /// The staging directory for one restore, beside the target.
    fn staging(&self) -> Result<PathBuf> {
        let name = self
            .dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| refused(format!("{} has no directory name", self.dir.display())))?;
        let parent = match self.dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(refused(format!(
                "the parent of {} does not exist",
                self.dir.display()
            )));
        }
        Ok(parent.join(format!(".{name}.restore-{:016x}", rand::random::<u64>())))
    }
}

fn refused(why: String) -> Error {
    Error::Restore {
        engine: ENGINE,
        detail: format!("cannot restore the base backup: {why}"),
    }
}

/// `pg_verifybackup` of the backup's major version (from `PG_VERSION`)
/// on the restored tree in `dir`.
pub(crate) async fn verify_data_dir(tools: &PgTools, dir: &Path) -> Result<()> {
    run_tool_of_version(tools, "pg_verifybackup", dir, &[dir.as_os_str()])
        .await?
        .map_err(|detail| Error::Integrity {
            what: "the restored base backup".into(),
            detail,
        })
}

/// Runs `tool` of the major version of the backup in `dir` (its
/// `PG_VERSION`) with `args`, from a cleared environment; `Ok(Err(why))`
/// when it fails, `why` naming its status and first lines of stderr.
pub(crate) async fn run_tool_of_version(
    tools: &PgTools,
    tool: &str,
    dir: &Path,
    args: &[&std::ffi::OsStr],
) -> Result<std::result::Result<(), String>> {
    let version = std::fs::read_to_string(dir.join("PG_VERSION"))
        .map_err(|e| refused(format!("the archive has no PG_VERSION ({e})")))?;
    let major = parse_major(version.trim())
        .ok_or_else(|| refused(format!("unexpected PG_VERSION {:?}", version.trim())))?;
    let path = tools.resolve(tool, Some(major)).await?.path;
    let out = cleared_command(&path)
        .args(args)
        .env("LC_MESSAGES", "C")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| Error::io(format!("running {}", path.display()), e))?;
    if out.status.success() {
        return Ok(Ok(()));
    }
    let text = String::from_utf8_lossy(&out.stderr);
    Ok(Err(format!(
        "{tool} {}: {}",
        out.status,
        text.lines().take(4).collect::<Vec<_>>().join(" | ")
    )))
}

/// Refuses the archive whose `backup_label` is `label` if it is a
/// block-level incremental backup: alone it is no cluster.
fn refuse_incremental(label: &[u8]) -> Result<()> {
    if label_is_incremental(label) {
        return Err(refused(
            "it is a block-level incremental base backup, which restores only with its parents: \
             restore the chain (ChainRestore, or backupctl restore), which combines them with \
             pg_combinebackup"
                .into(),
        ));
    }
    Ok(())
}

/// `Ok` when `dir` does not exist or is an empty directory.
pub(crate) fn check_free(dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::AlreadyExists {
                    key: format!(
                        "data directory {} (not empty; restore into a new directory)",
                        dir.display()
                    ),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("checking {}", dir.display()), e)),
    }
}

#[async_trait]
impl RestoreTarget for DataDirTarget {
    fn engine(&self) -> &str {
        ENGINE
    }

    fn accepts_format(&self, format: &str) -> bool {
        format == BASEBACKUP_FORMAT
    }

    async fn begin(&self, opts: &RestoreOptions) -> Result<Box<dyn RestoreSession>> {
        if opts.database.is_some() || !opts.only.is_empty() || opts.clean {
            return Err(refused(
                "a base backup restores a whole cluster into a data directory: no database, table or clean option applies".into(),
            ));
        }
        check_free(&self.dir)?;
        let staging = self.staging()?;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .map_err(|e| Error::io(format!("creating {}", staging.display()), e))?;
        let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(8);
        let into = staging.clone();
        let task = tokio::spawn(async move {
            let reader = StreamReader::new(tokio_stream_from(rx));
            let mut archive = tokio_tar::ArchiveBuilder::new(reader)
                .set_preserve_permissions(true)
                .set_overwrite(false)
                .set_allow_external_symlinks(false)
                .build();
            archive.unpack(&into).await
        });
        Ok(Box::new(Session {
            tx: Some(tx),
            task: Some(task),
            staging: Some(staging),
            dir: self.dir.clone(),
            tools: self.tools.clone(),
            label_scan: (!self.link).then(TarScan::new),
            link: self.link,
        }))
    }
}

/// The receiving end of the channel as a stream of chunks.
fn tokio_stream_from(
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Unpin {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed()
}

#[derive(Debug)]
struct Session {
    tx: Option<mpsc::Sender<std::io::Result<Bytes>>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    /// Removed on drop unless renamed into place.
    staging: Option<PathBuf>,
    dir: PathBuf,
    tools: PgTools,
    /// Looks at the archive's start until `backup_label` (its first
    /// member) passed, to refuse an incremental backup early.
    label_scan: Option<TarScan>,
    /// A chain link: no refusal of incremental backups, no verification.
    link: bool,
}

/// Bytes of the archive looked at for `backup_label` before giving up
/// (the check at commit still applies).
const LABEL_SCAN_LIMIT: u64 = 1024 * 1024;

impl Session {
    /// The extraction's outcome once its input has ended.
    async fn extraction(&mut self) -> Result<()> {
        self.tx = None;
        let task = self.task.take().expect("extraction task");
        match task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Restore {
                engine: ENGINE,
                detail: format!("extracting the base backup: {e}"),
            }),
            Err(e) => Err(Error::Restore {
                engine: ENGINE,
                detail: format!("extracting the base backup: {e}"),
            }),
        }
    }

    /// Removes the staging directory and waits for it to be gone.
    async fn remove_staging_now(&mut self) {
        if let Some(dir) = self.staging.take() {
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        }
    }

    /// Removes the staging directory in the background (from `Drop`).
    fn remove_staging(&mut self) {
        if let Some(dir) = self.staging.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn_blocking(move || {
                        let _ = std::fs::remove_dir_all(dir);
                    });
                }
                Err(_) => {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
        }
    }
}

#[async_trait]
impl RestoreSession for Session {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        if let Some(scan) = &mut self.label_scan {
            let label = match scan.feed(&data) {
                Ok(()) => scan.label().map(<[u8]>::to_vec),
                // A malformed archive fails the extraction itself.
                Err(_) => Some(Vec::new()),
            };
            if let Some(label) = label {
                self.label_scan = None;
                refuse_incremental(&label)?;
            } else if scan.offset() > LABEL_SCAN_LIMIT {
                self.label_scan = None;
            }
        }
        let sent = match &self.tx {
            Some(tx) => tx.send(Ok(data)).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The extraction stopped: its error says why.
        self.extraction().await?;
        Err(Error::Restore {
            engine: ENGINE,
            detail: "the archive ended before its data".into(),
        })
    }

    async fn commit(mut self: Box<Self>) -> Result<RestoreReport> {
        let result = async {
            self.extraction().await?;
            let staging = self.staging.clone().expect("staging directory");
            if !self.link {
                refuse_incremental(
                    &std::fs::read(staging.join("backup_label")).unwrap_or_default(),
                )?;
                verify_data_dir(&self.tools, &staging).await?;
            }
            check_free(&self.dir)?;
            std::fs::rename(&staging, &self.dir).map_err(|e| {
                Error::io(
                    format!("moving the restored cluster into {}", self.dir.display()),
                    e,
                )
            })?;
            self.staging = None;
            Ok(RestoreReport {
                database: self.dir.display().to_string(),
                warnings: Vec::new(),
            })
        }
        .await;
        if result.is_err() {
            self.remove_staging_now().await;
        }
        result
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.tx = None;
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        self.remove_staging_now().await;
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.remove_staging();
    }
}
