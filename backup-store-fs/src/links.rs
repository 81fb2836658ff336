//! Whether the filesystem under the root has hard links, which create-only
//! puts need: they commit by hard-linking the finished temporary file to
//! its target, which the filesystem refuses atomically when the target
//! exists. Without hard links (FAT/exFAT, some network and FUSE
//! filesystems) there is no atomic create-only put, and the store must say
//! so instead of overwriting.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::OnceLock;

use backup_core::{Error, Result};

use crate::root::Root;

/// Why create-only puts are refused on a filesystem without hard links.
pub(crate) const NO_HARD_LINKS: &str = "create-only puts: the filesystem under the store's root has no hard links, so scheduler leases and dedup GC markers cannot be exclusive on it; run one scheduler replica without leases, or put the store on a filesystem with hard links";

/// The probe's answer, found once per store.
#[derive(Debug, Default)]
pub(crate) struct HardLinks(OnceLock<bool>);

impl HardLinks {
    /// Whether hard links work in `root`'s directory, probing the first
    /// time (blocking: call it on the blocking pool). A failure to probe
    /// (no write access, disk full) is returned and not cached.
    pub(crate) fn available(&self, root: &Root) -> Result<bool> {
        if let Some(known) = self.0.get() {
            return Ok(*known);
        }
        let found = probe(root.dir()).map_err(|e| root.err(".hardlink-probe", e))?;
        if !found {
            tracing::warn!(store = %root.name(), "no hard links on this filesystem: create-only puts are refused");
        }
        Ok(*self.0.get_or_init(|| found))
    }

    /// Fails with [`Error::Unsupported`] unless hard links work.
    pub(crate) fn require(&self, root: &Root) -> Result<()> {
        if self.available(root)? {
            return Ok(());
        }
        Err(Error::Unsupported {
            store: root.name().to_string(),
            operation: NO_HARD_LINKS,
        })
    }
}

/// Creates a hidden file in `dir` (named like the store's temporary files,
/// so a sweep removes it if the process dies here), hard-links it to a
/// second such name, and removes both. `Ok(false)` when the link fails in
/// a way that means "no hard links on this filesystem".
fn probe(dir: &Path) -> io::Result<bool> {
    let name = |what: &str| {
        dir.join(format!(
            ".hardlink-probe-{what}.tmp-{:016x}",
            rand::random::<u64>()
        ))
    };
    let (source, link) = (name("a"), name("b"));
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&source)?;
    let linked = fs::hard_link(&source, &link);
    let _ = fs::remove_file(&link);
    let _ = fs::remove_file(&source);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if means_no_hard_links(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether a failed `link(2)` of a file this process just created means
/// the filesystem has no hard links: `EOPNOTSUPP`/`ENOSYS` (Rust's
/// `Unsupported`), or `EPERM`, which Linux's FAT drivers return (the other
/// `EPERM` causes, a directory or a file the caller does not own, cannot
/// apply to the probe's own new file).
fn means_no_hard_links(err: &io::Error) -> bool {
    const EPERM: i32 = 1;
    err.kind() == io::ErrorKind::Unsupported || (cfg!(unix) && err.raw_os_error() == Some(EPERM))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_errors_are_classified() {
        // EPERM (vfat), EOPNOTSUPP, ENOSYS: no hard links.
        for errno in [1, 95, 38] {
            let err = io::Error::from_raw_os_error(errno);
            assert!(means_no_hard_links(&err), "{errno}: {err}");
        }
        // EACCES, EROFS, ENOSPC, EEXIST: something else is wrong.
        for errno in [13, 30, 28, 17] {
            let err = io::Error::from_raw_os_error(errno);
            assert!(!means_no_hard_links(&err), "{errno}: {err}");
        }
        assert!(means_no_hard_links(&io::Error::from(
            io::ErrorKind::Unsupported
        )));
    }

    #[test]
    fn the_probe_finds_hard_links_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(probe(dir.path()).unwrap());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn probe_names_are_swept_like_temporary_files() {
        let name = format!(".hardlink-probe-a.tmp-{:016x}", 7u64);
        assert!(crate::temp::is_temp_name(&name), "{name}");
    }

    #[tokio::test]
    async fn create_only_puts_probe_once_and_stay_exclusive() {
        use backup_core::{Store, key::Key, store::PutOptions};
        let dir = tempfile::tempdir().unwrap();
        let store = crate::FsStore::new(dir.path()).unwrap();
        let key = Key::new("_locks/job/x.json").unwrap();
        store
            .put(&key, bytes::Bytes::from_static(b"1"), PutOptions::create())
            .await
            .unwrap();
        assert_eq!(store.hard_links.0.get(), Some(&true), "probed on first use");
        let again = store
            .put(&key, bytes::Bytes::from_static(b"2"), PutOptions::create())
            .await;
        assert!(
            matches!(again, Err(Error::AlreadyExists { .. })),
            "{again:?}"
        );
        let hidden: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(hidden.is_empty(), "probe files left: {hidden:?}");
    }

    /// On a real filesystem without hard links (mount a FAT image and run
    /// `BACKUP_TEST_NO_HARDLINKS_DIR=/mnt/fat cargo test -p backup-store-fs
    /// -- --ignored without_hard_links`): create-only puts are refused with
    /// `Unsupported`, never turned into overwrites.
    #[tokio::test]
    #[ignore = "needs BACKUP_TEST_NO_HARDLINKS_DIR on a filesystem without hard links"]
    async fn without_hard_links_create_only_puts_are_unsupported() {
        use backup_core::{Store, key::Key, store::PutOptions, store::StoreExt};
        let dir = std::env::var("BACKUP_TEST_NO_HARDLINKS_DIR")
            .expect("BACKUP_TEST_NO_HARDLINKS_DIR names a directory on e.g. vfat");
        let store = crate::FsStore::new(
            Path::new(&dir).join(format!("probe-{:08x}", rand::random::<u32>())),
        )
        .unwrap();
        assert!(!store.supports_hard_links().await.unwrap());
        let key = Key::new("lease.json").unwrap();
        let err = store
            .put(&key, bytes::Bytes::from_static(b"1"), PutOptions::create())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
        assert!(err.to_string().contains("no hard links"), "{err}");
        assert!(!store.exists(&key).await.unwrap());
        // Manifests still go in, best effort.
        store
            .create_best_effort(&key, bytes::Bytes::from_static(b"1"))
            .await
            .unwrap();
        let _ = fs::remove_dir_all(store.root());
    }

    #[test]
    fn a_probe_that_cannot_write_is_an_error_not_an_answer() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone");
        assert!(probe(&missing).is_err());
    }
}
