//! [`FsUpload`]: a streamed write into a temporary file, renamed into place
//! on completion.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use backup_core::{Error, Result, key::Key, store::ObjectMeta, store::PutMode, store::Upload};
use bytes::Bytes;

use crate::root::{Root, object_meta};
use crate::temp::{Created, TempFile};

/// Small writes are gathered up to this size before they reach the file.
const WRITE_BUFFER: usize = 1024 * 1024;

/// Chunks at least this large are handed to the file as they are rather
/// than copied into the buffer.
const DIRECT_WRITE: usize = 64 * 1024;

/// Each write that reaches the file runs on the blocking pool with the
/// `std::fs::File` moved into it, so a 1 MiB chunk costs one thread hop and
/// one `write` call. A failed write poisons the upload: only `abort` (or
/// drop) is left. Dropping it removes the temporary file.
pub(crate) struct FsUpload {
    root: Arc<Root>,
    key: Key,
    target: PathBuf,
    // Declared before `temp` so the file is closed before the guard removes it.
    file: Option<fs::File>,
    temp: Option<TempFile>,
    buf: Vec<u8>,
    size: u64,
    failed: bool,
}

impl FsUpload {
    pub(crate) fn new(root: Arc<Root>, key: Key, created: Created) -> FsUpload {
        FsUpload {
            root,
            key,
            target: created.target,
            file: Some(created.file),
            temp: Some(created.temp),
            buf: Vec::new(),
            size: 0,
            failed: false,
        }
    }

    fn usable(&self) -> Result<()> {
        if self.failed || self.file.is_none() {
            return Err(self.root.refuse(
                self.key.as_str(),
                "upload already failed; abort it and start again",
            ));
        }
        Ok(())
    }

    /// Writes the buffer, then `extra`, on the blocking pool.
    async fn write_out(&mut self, extra: Option<Bytes>) -> Result<()> {
        self.usable()?;
        let mut file = self.file.take().expect("checked by usable");
        let mut buf = std::mem::take(&mut self.buf);
        let joined = tokio::task::spawn_blocking(move || {
            let mut written = file.write_all(&buf);
            if let (Ok(()), Some(extra)) = (&written, &extra) {
                written = file.write_all(extra);
            }
            buf.clear();
            (file, buf, written)
        })
        .await;
        let (file, buf, written) = match joined {
            Ok(parts) => parts,
            Err(e) => {
                self.failed = true;
                return Err(self.root.refuse(self.key.as_str(), e));
            }
        };
        self.file = Some(file);
        self.buf = buf;
        written.map_err(|e| {
            self.failed = true;
            self.root.err(self.key.as_str(), e)
        })
    }
}

impl fmt::Debug for FsUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FsUpload")
            .field("key", &self.key)
            .field("target", &self.target)
            .field("size", &self.size)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Upload for FsUpload {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.usable()?;
        if data.is_empty() {
            return Ok(());
        }
        self.size += data.len() as u64;
        if self.buf.len() + data.len() < WRITE_BUFFER {
            self.buf.extend_from_slice(&data);
            Ok(())
        } else if data.len() >= DIRECT_WRITE {
            self.write_out(Some(data)).await
        } else {
            self.buf.extend_from_slice(&data);
            self.write_out(None).await
        }
    }

    async fn complete(mut self: Box<Self>) -> Result<ObjectMeta> {
        self.usable()?;
        let mut file = self.file.take().expect("checked by usable");
        let temp = self.temp.take().expect("present until complete or abort");
        let buf = std::mem::take(&mut self.buf);
        let (root, key, target) = (
            Arc::clone(&self.root),
            self.key.clone(),
            self.target.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let io = |e| root.err(key.as_str(), e);
            file.write_all(&buf).map_err(io)?;
            file.sync_all().map_err(io)?;
            let md = file.metadata().map_err(io)?;
            drop(file);
            temp.commit(&key, &target, PutMode::Overwrite)?;
            object_meta(key.clone(), &md).map_err(io)
        })
        .await
        .map_err(|e| self.root.refuse(self.key.as_str(), e))?
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        drop(self.file.take());
        let Some(temp) = self.temp.take() else {
            return Ok(());
        };
        let (root, key) = (Arc::clone(&self.root), self.key.clone());
        tokio::task::spawn_blocking(move || temp.discard().map_err(|e| root.err(key.as_str(), e)))
            .await
            .map_err(|e| Error::store(self.root.name(), e))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full disk surfaces as `StorageFull`: `/dev/full` stands in for the
    /// temporary file, since filling a real filesystem needs root.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn full_disk_is_storage_full() {
        let Ok(dev_full) = fs::OpenOptions::new().write(true).open("/dev/full") else {
            eprintln!("skipped: /dev/full is not available");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let root = Arc::new(Root::new(dir.path().to_path_buf()));
        let key = Key::new("a/b.bin").unwrap();
        let created = TempFile::create(&root, &key).unwrap();
        let created = Created {
            file: dev_full,
            ..created
        };
        let mut upload = Box::new(FsUpload::new(Arc::clone(&root), key, created));
        let err = upload
            .write(Bytes::from(vec![7u8; WRITE_BUFFER]))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::StorageFull { .. }), "{err:?}");
        assert!(
            upload.write(Bytes::from_static(b"x")).await.is_err(),
            "a failed upload refuses more writes"
        );
        upload.abort().await.unwrap();
        assert!(
            !dir.path().join("a").exists(),
            "abort removed the temporary file and its directory"
        );
    }
}
