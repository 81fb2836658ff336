//! [`FileSource`]: a dump source that streams a file.

use std::io::Read;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use backup_core::{
    DumpSource, Error, Result, source::DumpOptions, source::DumpStream, source::SourceInfo,
    source::Versions,
};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

/// A [`DumpSource`] whose dump is the content of a file (or its first
/// `limit` bytes), so every variant of a benchmark reads the same input.
///
/// A reader thread reads chunks of `chunk` bytes (1 MiB by default, the
/// size `backup-postgres` reads from `pg_dump`'s stdout) and hands them over
/// a channel holding at most two chunks: it runs concurrently with the
/// pipeline, a little ahead of it (more than `pg_dump` can, whose 64 KiB
/// pipe fills while the pipeline hashes a chunk).
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
    limit: u64,
    chunk: usize,
}

impl FileSource {
    /// Streams the whole file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSource {
            path: path.into(),
            limit: u64::MAX,
            chunk: 1 << 20,
        }
    }

    /// Streams only the first `bytes` bytes.
    pub fn limit(mut self, bytes: u64) -> Self {
        self.limit = bytes;
        self
    }

    /// Sets the read size.
    pub fn chunk(mut self, bytes: usize) -> Self {
        self.chunk = bytes.max(1);
        self
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl DumpSource for FileSource {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            engine: "file".into(),
            database: "bench".into(),
            format: "copytext".into(),
            extension: "txt".into(),
            magic: None,
        }
    }

    async fn dump(&self, _opts: &DumpOptions) -> Result<DumpStream> {
        let file = std::fs::File::open(&self.path)
            .map_err(|e| Error::io(format!("opening {}", self.path.display()), e))?;
        let (tx, rx) = mpsc::channel::<Result<Bytes>>(2);
        let (limit, chunk, path) = (self.limit, self.chunk, self.path.clone());
        std::thread::Builder::new()
            .name("file-source".into())
            .spawn(move || {
                let mut reader = file.take(limit);
                loop {
                    let mut buf = vec![0u8; chunk];
                    let mut filled = 0;
                    while filled < chunk {
                        match reader.read(&mut buf[filled..]) {
                            Ok(0) => break,
                            Ok(n) => filled += n,
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(e) => {
                                let e = Error::io(format!("reading {}", path.display()), e);
                                let _ = tx.blocking_send(Err(e));
                                return;
                            }
                        }
                    }
                    if filled == 0 {
                        return;
                    }
                    buf.truncate(filled);
                    // A closed channel means the pipeline stopped: stop too.
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() || filled < chunk {
                        return;
                    }
                }
            })
            .map_err(|e| Error::io("starting the file reader thread", e))?;
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(DumpStream::new(stream.boxed(), Versions::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn streams_the_file_or_its_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        for (limit, expect) in [(u64::MAX, &data[..]), (12_345, &data[..12_345])] {
            let source = FileSource::new(&path).limit(limit).chunk(4096);
            let mut stream = source.dump(&DumpOptions::default()).await.unwrap().stream;
            let mut got = Vec::new();
            while let Some(chunk) = stream.next().await {
                got.extend_from_slice(&chunk.unwrap());
            }
            assert_eq!(got, expect);
        }
    }
}
