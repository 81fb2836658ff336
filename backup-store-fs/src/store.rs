//! [`FsStore`]: the [`Store`] implementation over a local directory.

use std::fmt;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backup_core::{
    Error, Result, Store, key::Key, store::GetResult, store::ObjectMeta, store::PutMode,
    store::PutOptions, store::TemporaryObject, store::TemporarySweep, store::Upload,
    store::check_range,
};
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::io::ReaderStream;

use crate::links::HardLinks;
use crate::root::{Root, object_meta};
use crate::temp::TempFile;
use crate::upload::FsUpload;
use crate::walk::{list_into, sweep_temporary};

/// Size of the chunks [`Store::get`] streams.
const READ_CHUNK: usize = 256 * 1024;

/// Listing entries buffered between the directory walk and the consumer.
const LIST_BUFFER: usize = 256;

/// A [`Store`] that keeps each object as a file below a root directory,
/// the key's segments becoming directories.
///
/// # How it keeps the contract
///
/// - **Atomic writes**: [`Store::put`] and streamed uploads write a hidden
///   temporary file (`.{name}.tmp-{random}`) in the target's directory,
///   fsync it, rename it into place and fsync the directory. Readers see the
///   old object or the new one, never a partial one, even across a crash.
/// - **Create-only puts** hard-link the temporary file to the target, which
///   the filesystem refuses atomically if the target exists. Before the
///   first one the store checks, once, that hard links work in its root
///   (see [`FsStore::supports_hard_links`]); on a filesystem without them
///   (FAT, exFAT, some network and FUSE filesystems) every create-only put
///   fails with [`Error::Unsupported`], never turning into an overwrite.
/// - **Listings** walk the tree and skip every name starting with `.`, so
///   temporary files never show up. For the same reason keys with a segment
///   starting with `.` are rejected on write ([`Error::InvalidKey`]) and are
///   absent on read.
/// - **Delete** removes the file, then the directories it leaves empty, up
///   to (never including) the root.
/// - **Staying inside the root**: keys cannot climb out lexically, and the
///   store never goes through a symbolic link below the root (lookups
///   refuse, listings skip them). This guards against links planted in
///   advance, not against someone racing the store with write access to the
///   root, who controls the stored data anyway.
///
/// A key cannot name both an object and a "directory" of other keys
/// (`a` and `a/b`): the second write fails with [`Error::Store`].
///
/// A crash mid-write leaves a temporary file behind: [`Store::sweep_temporary`]
/// finds and removes them (the catalog's sweep calls it, `check` reports
/// them), as does [`FsStore::remove_stale_temp_files`].
#[derive(Clone)]
pub struct FsStore {
    root: Arc<Root>,
    pub(crate) hard_links: Arc<HardLinks>,
}

impl FsStore {
    /// Opens the store at `root`, creating the directory (and its parents)
    /// if missing. The root is canonicalized, so the store does not depend
    /// on the working directory.
    pub fn new(root: impl Into<PathBuf>) -> Result<FsStore> {
        let root = root.into();
        let context = |e| Error::io(format!("opening fs store at {}", root.display()), e);
        fs::create_dir_all(&root).map_err(context)?;
        let dir = fs::canonicalize(&root).map_err(context)?;
        if !fs::metadata(&dir).map_err(context)?.is_dir() {
            return Err(Error::Config(format!(
                "fs store root {} is not a directory",
                dir.display()
            )));
        }
        Ok(FsStore {
            root: Arc::new(Root::new(dir)),
            hard_links: Arc::default(),
        })
    }

    /// Whether the filesystem under the root has hard links, which
    /// create-only puts need. Found out once per store (shared by its
    /// clones) by hard-linking a hidden probe file in the root, then
    /// removing it; a failure to probe (no write access) is returned and
    /// not cached.
    pub async fn supports_hard_links(&self) -> Result<bool> {
        let (root, links) = (Arc::clone(&self.root), Arc::clone(&self.hard_links));
        self.blocking(move || links.available(&root)).await
    }

    /// The root directory (canonical).
    pub fn root(&self) -> &Path {
        self.root.dir()
    }

    /// Removes temporary files left behind by writes that never finished
    /// (a crash, a killed process) and last modified more than `older_than`
    /// ago; returns how many were removed.
    ///
    /// An upload in progress keeps its temporary file's modification time
    /// fresh while it writes; pick `older_than` well above the longest pause
    /// an upload may take (hours rather than seconds), or an idle upload
    /// loses its file and fails on completion.
    pub async fn remove_stale_temp_files(&self, older_than: Duration) -> Result<usize> {
        let found = self
            .sweep_temporary(&TemporarySweep::older_than(older_than))
            .await?;
        Ok(found.iter().filter(|t| t.removed).count())
    }

    /// Runs filesystem work on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| Error::store(self.root.name(), e))?
    }
}

impl fmt::Display for FsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.root.name())
    }
}

impl fmt::Debug for FsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FsStore")
            .field("root", &self.root.dir())
            .finish()
    }
}

fn put_blocking(
    root: &Arc<Root>,
    hard_links: &HardLinks,
    key: &Key,
    data: &[u8],
    mode: PutMode,
) -> Result<ObjectMeta> {
    let io = |e: io::Error| root.err(key.as_str(), e);
    if mode == PutMode::Create {
        hard_links.require(root)?;
    }
    if mode == PutMode::Create && root.object(key)?.is_some() {
        // Cheap early answer; the hard link below is what makes it atomic.
        return Err(Error::AlreadyExists {
            key: key.to_string(),
        });
    }
    let created = TempFile::create(root, key)?;
    let mut file = created.file;
    file.write_all(data).map_err(io)?;
    file.sync_all().map_err(io)?;
    let md = file.metadata().map_err(io)?;
    drop(file);
    created.temp.commit(key, &created.target, mode)?;
    object_meta(key.clone(), &md).map_err(io)
}

fn delete_blocking(root: &Root, key: &Key) -> Result<()> {
    let Some((path, _)) = root.object(key)? else {
        return Ok(());
    };
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(root.err(key.as_str(), e)),
    }
    if let Some(dir) = path.parent() {
        root.prune_empty_dirs(dir);
    }
    Ok(())
}

#[async_trait]
impl Store for FsStore {
    async fn put(&self, key: &Key, data: Bytes, opts: PutOptions) -> Result<ObjectMeta> {
        let (root, links, key) = (
            Arc::clone(&self.root),
            Arc::clone(&self.hard_links),
            key.clone(),
        );
        self.blocking(move || put_blocking(&root, &links, &key, &data, opts.mode))
            .await
    }

    async fn put_stream(&self, key: &Key) -> Result<Box<dyn Upload>> {
        let (root, k) = (Arc::clone(&self.root), key.clone());
        let created = self.blocking(move || TempFile::create(&root, &k)).await?;
        Ok(Box::new(FsUpload::new(
            Arc::clone(&self.root),
            key.clone(),
            created,
        )))
    }

    async fn get(&self, key: &Key) -> Result<GetResult> {
        let (root, k) = (Arc::clone(&self.root), key.clone());
        let (file, meta) = self
            .blocking(move || {
                let Some((path, _)) = root.object(&k)? else {
                    return Err(Error::not_found(&k));
                };
                let file = fs::File::open(&path).map_err(|e| root.err(k.as_str(), e))?;
                // Describe the file we opened, not the path: a concurrent
                // rename may have replaced it, and this handle keeps
                // reading the version it opened.
                let md = file.metadata().map_err(|e| root.err(k.as_str(), e))?;
                if !md.is_file() {
                    return Err(Error::not_found(&k));
                }
                let meta = object_meta(k.clone(), &md).map_err(|e| root.err(k.as_str(), e))?;
                Ok((file, meta))
            })
            .await?;
        let (root, k) = (Arc::clone(&self.root), key.clone());
        let stream = ReaderStream::with_capacity(tokio::fs::File::from_std(file), READ_CHUNK)
            .map(move |chunk| chunk.map_err(|e| root.err(k.as_str(), e)))
            .boxed();
        Ok(GetResult { meta, stream })
    }

    async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Bytes> {
        let (root, k) = (Arc::clone(&self.root), key.clone());
        self.blocking(move || {
            let Some((path, _)) = root.object(&k)? else {
                return Err(Error::not_found(&k));
            };
            let mut file = fs::File::open(&path).map_err(|e| root.err(k.as_str(), e))?;
            let size = file.metadata().map_err(|e| root.err(k.as_str(), e))?.len();
            check_range(&root.name(), &k, &range, size)?;
            let mut buf = vec![0u8; (range.end - range.start) as usize];
            file.seek(SeekFrom::Start(range.start))
                .and_then(|_| file.read_exact(&mut buf))
                .map_err(|e| root.err(k.as_str(), e))?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        let (root, key) = (Arc::clone(&self.root), key.clone());
        self.blocking(move || match root.object(&key)? {
            Some((_, md)) => object_meta(key.clone(), &md).map_err(|e| root.err(key.as_str(), e)),
            None => Err(Error::not_found(&key)),
        })
        .await
    }

    fn list(&self, prefix: Option<&Key>) -> BoxStream<'static, Result<ObjectMeta>> {
        let root = Arc::clone(&self.root);
        let prefix = prefix.cloned();
        // The walk starts on first poll, so `list` itself needs no runtime.
        stream::once(async move {
            let (tx, rx) = mpsc::channel(LIST_BUFFER);
            let walker = Arc::clone(&root);
            let task = tokio::task::spawn_blocking(move || {
                list_into(&walker, prefix.as_ref(), &tx);
            });
            listing(root, rx, task)
        })
        .flatten()
        .boxed()
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let (root, key) = (Arc::clone(&self.root), key.clone());
        self.blocking(move || delete_blocking(&root, &key)).await
    }

    async fn delete_many(&self, keys: &[Key]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        // One trip to the blocking pool for the lot, in slice order.
        let (root, keys) = (Arc::clone(&self.root), keys.to_vec());
        self.blocking(move || keys.iter().try_for_each(|key| delete_blocking(&root, key)))
            .await
    }

    async fn sweep_temporary(&self, opts: &TemporarySweep) -> Result<Vec<TemporaryObject>> {
        let (root, opts) = (Arc::clone(&self.root), opts.clone());
        self.blocking(move || sweep_temporary(&root, &opts)).await
    }
}

/// Yields what the walk sends, then reports a walk that died (panicked)
/// instead of ending the listing early without a word.
fn listing(
    root: Arc<Root>,
    rx: mpsc::Receiver<Result<ObjectMeta>>,
    task: JoinHandle<()>,
) -> BoxStream<'static, Result<ObjectMeta>> {
    stream::unfold((rx, Some(task)), move |(mut rx, task)| {
        let root = Arc::clone(&root);
        async move {
            if let Some(item) = rx.recv().await {
                return Some((item, (rx, task)));
            }
            match task?.await {
                Ok(()) => None,
                Err(e) => Some((Err(Error::store(root.name(), e)), (rx, None))),
            }
        }
    })
    .boxed()
}
