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
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

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
        let (tx, rx) = mpsc::channel::<Bytes>(8);
        let into = staging.clone();
        // One blocking thread extracts the whole archive with plain system
        // calls: an async extractor hands every file operation to the
        // blocking pool (several per file), which made a chain link of
        // about 1,300 small files take seconds on a busy machine.
        let task = tokio::task::spawn_blocking(move || {
            unpack(
                ChannelReader {
                    rx,
                    chunk: Bytes::new(),
                },
                &into,
            )
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

/// The session's chunks as a blocking reader (for the extraction thread).
/// A closed channel is the end of the archive: a stream cut short is
/// caught by the engine's digests before [`RestoreSession::commit`].
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    chunk: Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.chunk = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// Extracts a base backup's tar archive into `into`, which must be new
/// and private. Only directories and regular files are accepted (a base
/// backup of a cluster without tablespaces holds nothing else; symbolic
/// links, hard links and devices are refused, naming the member), and no
/// member may leave `into` (`..`, absolute paths, links followed: the
/// `tar` crate's `unpack_in` checks each). Permissions and times are
/// kept; nothing is overwritten.
fn unpack(reader: impl std::io::Read, into: &Path) -> std::io::Result<()> {
    use tar::EntryType;
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(false);
    archive.set_unpack_xattrs(false);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        if !matches!(kind, EntryType::Regular | EntryType::Directory) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "member {} is a {kind:?} entry: a base backup holds only directories and regular files",
                    entry.path_bytes().escape_ascii()
                ),
            ));
        }
        if !entry.unpack_in(into)? {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "member {} would be written outside the data directory",
                    entry.path_bytes().escape_ascii()
                ),
            ));
        }
    }
    Ok(())
}

#[derive(Debug)]
struct Session {
    tx: Option<mpsc::Sender<Bytes>>,
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

    /// Removes the staging directory in the background (from `Drop`),
    /// once the extraction (ended by the closed channel) has stopped
    /// writing into it.
    fn remove_staging(&mut self) {
        let task = self.task.take();
        if let Some(dir) = self.staging.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn(async move {
                        if let Some(task) = task {
                            let _ = task.await;
                        }
                        let _ =
                            tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
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
            Some(tx) => tx.send(data).await.is_ok(),
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
        // The closed channel ends the extraction at its next read; the
        // staging directory is removed once it has stopped writing.
        self.tx = None;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.remove_staging_now().await;
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.tx = None;
        self.remove_staging();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member: name as raw bytes, type, data or link target.
    type Member<'a> = (&'a [u8], tar::EntryType, &'a [u8]);

    /// A tar archive of `members`.
    fn archive(members: &[Member]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in members {
            let mut h = tar::Header::new_gnu();
            // Raw name bytes: the builder itself refuses `..`.
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_entry_type(*kind);
            h.set_mode(0o600);
            if kind.is_symlink() || kind.is_hard_link() {
                h.set_link_name(std::str::from_utf8(data).unwrap()).unwrap();
                h.set_size(0);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            } else {
                h.set_size(data.len() as u64);
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn files_and_directories_are_extracted_with_their_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let into = tmp.path().join("data");
        std::fs::create_dir(&into).unwrap();
        let tar = archive(&[
            (b"base", tar::EntryType::Directory, b""),
            (b"base/1", tar::EntryType::Regular, b"page"),
            (b"PG_VERSION", tar::EntryType::Regular, b"18\n"),
        ]);
        unpack(&tar[..], &into).unwrap();
        assert_eq!(std::fs::read(into.join("base/1")).unwrap(), b"page");
        assert_eq!(std::fs::read(into.join("PG_VERSION")).unwrap(), b"18\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(into.join("base/1"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    /// Links, devices and members outside the directory are refused,
    /// naming the member, and nothing lands outside it.
    #[test]
    fn links_and_escaping_members_are_refused() {
        let cases: [(&[Member], &str); 4] = [
            (
                &[(b"pg_tblspc/16384", tar::EntryType::Symlink, b"/etc")],
                "pg_tblspc/16384 is a Symlink",
            ),
            (
                &[
                    (b"PG_VERSION", tar::EntryType::Regular, b"18\n"),
                    (b"hard", tar::EntryType::Link, b"PG_VERSION"),
                ],
                "hard is a Link",
            ),
            (&[(b"dev", tar::EntryType::Char, b"")], "dev is a Char"),
            (
                &[(b"../escaped", tar::EntryType::Regular, b"x")],
                "../escaped would be written outside",
            ),
        ];
        for (members, expected) in cases {
            let tmp = tempfile::tempdir().unwrap();
            let into = tmp.path().join("data");
            std::fs::create_dir(&into).unwrap();
            let err = unpack(&archive(members)[..], &into).unwrap_err();
            assert!(err.to_string().contains(expected), "{expected}: {err}");
            assert!(!tmp.path().join("escaped").exists());
            assert!(!into.join("pg_tblspc/16384").exists());
        }
    }
}
