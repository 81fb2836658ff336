//! The stages and tuning the pipeline's directions share: options,
//! hashers, the channel sink, the stall watchdog and task ownership.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use md5::Md5;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, PollSender};

use crate::manifest::Digests;

/// Tuning of the pipeline; `Default` suits most databases.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PipelineOptions {
    /// Size of the chunks handed from stage to stage and to the store
    /// (default 1 MiB).
    pub chunk_size: usize,
    /// Chunks buffered between stages before the producer waits
    /// (default 4).
    pub queue_depth: usize,
    /// A backup whose source produces no bytes for this long is failed and
    /// cleaned up (default 5 minutes).
    pub stall_timeout: Duration,
    /// Bytes of decompressed output held back from a restore target until
    /// the whole artifact has been verified (default 1 MiB). The target
    /// cannot finish, and so cannot commit, without them.
    pub holdback: usize,
    /// Cancels running backups and restores cleanly when triggered.
    pub cancel: CancellationToken,
    /// Also record MD5 of the stored bytes (default true: some tools and
    /// stores compare MD5). Costs ~1.6 s of CPU per GiB stored.
    pub md5: bool,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            chunk_size: 1024 * 1024,
            queue_depth: 4,
            stall_timeout: Duration::from_secs(300),
            holdback: 1024 * 1024,
            cancel: CancellationToken::new(),
            md5: true,
        }
    }
}

impl PipelineOptions {
    /// Sets [`PipelineOptions::stall_timeout`].
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }

    /// Sets [`PipelineOptions::cancel`].
    pub fn cancel_token(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// Sets [`PipelineOptions::md5`].
    pub fn md5(mut self, yes: bool) -> Self {
        self.md5 = yes;
        self
    }

    /// Refuses buffering a pipeline cannot run with (the fields are public,
    /// so [`PipelineOptions::buffering`]'s clamping can be bypassed).
    pub(crate) fn validate(&self) -> crate::error::Result<()> {
        if self.chunk_size == 0 || self.queue_depth == 0 {
            return Err(crate::error::Error::Config(format!(
                "pipeline options: chunk size {} and queue depth {} must be positive",
                self.chunk_size, self.queue_depth
            )));
        }
        Ok(())
    }

    /// Sets [`PipelineOptions::chunk_size`] and
    /// [`PipelineOptions::queue_depth`].
    pub fn buffering(mut self, chunk_size: usize, queue_depth: usize) -> Self {
        self.chunk_size = chunk_size.max(4096);
        self.queue_depth = queue_depth.max(1);
        self
    }
}

/// SHA-256 (and optionally MD5) of a stream, computed on the calling
/// thread. Used for the raw dump (SHA-256 only) and in tests.
#[derive(Clone)]
pub(crate) struct Hasher {
    sha256: Sha256,
    md5: Option<Md5>,
    size: u64,
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher {
            sha256: Sha256::new(),
            md5: Some(Md5::new()),
            size: 0,
        }
    }
}

impl Hasher {
    /// SHA-256 only (the raw dump: MD5 is kept for stored bytes, where
    /// stores and tools compare it).
    pub(crate) fn sha256_only() -> Self {
        Hasher {
            md5: None,
            ..Hasher::default()
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        self.sha256.update(data);
        if let Some(md5) = &mut self.md5 {
            md5.update(data);
        }
        self.size += data.len() as u64;
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    pub(crate) fn finish(self) -> Digests {
        Digests {
            size: self.size,
            sha256: hex::encode(self.sha256.finalize()),
            md5: self.md5.map(|m| hex::encode(m.finalize())),
        }
    }
}

/// SHA-256 and (optionally) MD5 of a stream, hashed on the blocking pool
/// behind the caller: [`update`](Self::update) collects chunks into a
/// batch of [`HASH_BATCH`] bytes and hands each full batch to one blocking
/// task per algorithm, waiting only for that algorithm's previous batch.
/// So hashing overlaps whatever the caller does next (reading,
/// compressing, uploading) instead of running between its steps, the two
/// algorithms run at once, and at most two batches per algorithm are held
/// (one being hashed, one filling). Chunks are `Bytes`: handing them over
/// is a reference-count increment. No long-lived thread is kept (that
/// would stall tokio's paused-time tests and waste a thread per backup).
pub(crate) struct ParallelHasher {
    sha256: Lane<Sha256>,
    md5: Option<Lane<Md5>>,
    batch: Vec<Bytes>,
    batch_len: usize,
    size: u64,
}

/// Bytes collected before a batch is handed to the blocking pool: large
/// enough that the hand-over costs nothing next to the hashing.
pub(crate) const HASH_BATCH: usize = 1024 * 1024;

/// One algorithm's state: idle, or being fed a batch on the blocking pool.
enum Lane<H> {
    Idle(H),
    Busy(JoinHandle<H>),
    /// Only while a batch is being handed over.
    Moving,
}

impl<H: Digest + Send + 'static> Lane<H> {
    /// Waits for the previous batch, then starts hashing `batch`.
    async fn feed(&mut self, batch: Arc<[Bytes]>) {
        let mut h = self.settle().await;
        *self = Lane::Busy(tokio::task::spawn_blocking(move || {
            for chunk in batch.iter() {
                h.update(chunk);
            }
            h
        }));
    }

    /// The state once every batch handed over is hashed.
    async fn settle(&mut self) -> H {
        match std::mem::replace(self, Lane::Moving) {
            Lane::Idle(h) => h,
            Lane::Busy(task) => task.await.expect("hashing task"),
            Lane::Moving => unreachable!("a lane is settled once at a time"),
        }
    }
}

impl ParallelHasher {
    pub(crate) fn new() -> Self {
        Self::with_md5(true)
    }

    /// SHA-256, and MD5 when `md5`.
    pub(crate) fn with_md5(md5: bool) -> Self {
        ParallelHasher {
            sha256: Lane::Idle(Sha256::new()),
            md5: md5.then(|| Lane::Idle(Md5::new())),
            batch: Vec::new(),
            batch_len: 0,
            size: 0,
        }
    }

    /// Adds one chunk; hashes the batch in the background once it is full.
    pub(crate) async fn update(&mut self, chunk: &Bytes) {
        self.size += chunk.len() as u64;
        self.batch_len += chunk.len();
        self.batch.push(chunk.clone());
        if self.batch_len >= HASH_BATCH {
            self.flush().await;
        }
    }

    async fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch: Arc<[Bytes]> = std::mem::take(&mut self.batch).into();
        self.batch_len = 0;
        match &mut self.md5 {
            Some(md5) => {
                tokio::join!(self.sha256.feed(batch.clone()), md5.feed(batch));
            }
            None => self.sha256.feed(batch).await,
        }
    }

    /// The digests, once every chunk is hashed.
    pub(crate) async fn finish(mut self) -> Digests {
        self.flush().await;
        let sha256 = self.sha256.settle().await;
        let md5 = match &mut self.md5 {
            Some(lane) => Some(lane.settle().await),
            None => None,
        };
        Digests {
            size: self.size,
            sha256: hex::encode(sha256.finalize()),
            md5: md5.map(|m| hex::encode(m.finalize())),
        }
    }
}

/// Passes `source` through, failing it with [`Error::Stalled`] when no
/// item arrives for `timeout`.
pub(crate) fn watchdog(
    source: crate::store::ByteStream,
    timeout: Duration,
) -> crate::store::ByteStream {
    use futures::StreamExt;
    futures::stream::unfold(Some(source), move |state| async move {
        let mut source = state?;
        match tokio::time::timeout(timeout, source.next()).await {
            Ok(Some(item)) => Some((item, Some(source))),
            Ok(None) => None,
            Err(_) => Some((
                Err(crate::error::Error::Stalled {
                    seconds: timeout.as_secs(),
                }),
                None,
            )),
        }
    })
    .boxed()
}

/// Hex SHA-256 of `data` (test support).
#[cfg(feature = "testing")]
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Compares digests of what was read with what a manifest recorded;
/// returns a description of the first difference.
pub(crate) fn compare_digests(expected: &Digests, actual: &Digests) -> Option<String> {
    if expected.size != actual.size {
        return Some(format!(
            "size {} != recorded {} (truncated or extended)",
            actual.size, expected.size
        ));
    }
    if expected.sha256 != actual.sha256 {
        return Some(format!(
            "sha256 {} != recorded {}",
            actual.sha256, expected.sha256
        ));
    }
    if let (Some(e), Some(a)) = (&expected.md5, &actual.md5)
        && e != a
    {
        return Some(format!("md5 {a} != recorded {e}"));
    }
    None
}

/// The last stage of a write chain: cuts what it is given into chunks of
/// `chunk_size` bytes and sends them over a bounded channel, waiting when
/// the channel is full. Shutdown sends the remainder and closes the channel.
pub(crate) struct ChannelSink {
    tx: PollSender<Bytes>,
    buf: BytesMut,
    chunk_size: usize,
}

impl ChannelSink {
    pub(crate) fn new(tx: mpsc::Sender<Bytes>, chunk_size: usize) -> Self {
        ChannelSink {
            tx: PollSender::new(tx),
            buf: BytesMut::with_capacity(chunk_size),
            chunk_size,
        }
    }

    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.tx.poll_reserve(cx)).map_err(|_| closed())?;
        let chunk = self.buf.split().freeze();
        self.buf.reserve(self.chunk_size);
        self.tx.send_item(chunk).map_err(|_| closed())?;
        Poll::Ready(Ok(()))
    }
}

fn closed() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipeline consumer stopped")
}

impl AsyncWrite for ChannelSink {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.buf.len() >= this.chunk_size {
            ready!(this.poll_send(cx))?;
        }
        let room = this.chunk_size.saturating_sub(this.buf.len()).max(1);
        let n = data.len().min(room);
        this.buf.extend_from_slice(&data[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // Chunks are sent when full or at shutdown; flushing must not cut
        // small chunks.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.buf.is_empty() {
            ready!(this.poll_send(cx))?;
        }
        this.tx.close();
        Poll::Ready(Ok(()))
    }
}

/// Aborts a spawned stage when dropped, so a cancelled or failed pipeline
/// never leaves a detached task (and its child process) running.
pub(crate) struct AbortOnDrop<T>(pub(crate) Option<JoinHandle<T>>);

impl<T> AbortOnDrop<T> {
    pub(crate) async fn join(mut self) -> std::result::Result<T, tokio::task::JoinError> {
        // Keep the handle in place while awaiting, so a cancelled join still
        // aborts the task on drop.
        let result = self.0.as_mut().expect("joined once").await;
        self.0 = None;
        result
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn digests_of_known_input() {
        let mut h = Hasher::default();
        h.update(b"abc");
        let d = h.finish();
        assert_eq!(
            d.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.md5.as_deref(), Some("900150983cd24fb0d6963f7d28e17f72"));
        assert_eq!(d.size, 3);
    }

    #[tokio::test]
    async fn sink_cuts_chunks_and_applies_backpressure() {
        let (tx, mut rx) = mpsc::channel(1);
        let mut sink = ChannelSink::new(tx, 10);
        let writer = tokio::spawn(async move {
            sink.write_all(&[7u8; 35]).await.unwrap();
            sink.shutdown().await.unwrap();
        });
        let mut sizes = Vec::new();
        while let Some(chunk) = rx.recv().await {
            sizes.push(chunk.len());
        }
        writer.await.unwrap();
        assert_eq!(sizes, vec![10, 10, 10, 5]);
    }
}
