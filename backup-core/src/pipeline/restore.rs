//! Restore direction: store → hasher → decompressor → hasher → holdback →
//! restore target.
//!
//! The target receives the dump as it is verified, except for the last
//! `holdback` bytes, which are released only after the stored and raw
//! digests both match the manifest. A dump tool cannot finish (and so
//! cannot commit) without the end of its input, so a corrupt or truncated
//! artifact is refused before anything is applied: the session is aborted
//! instead.

use std::collections::VecDeque;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::stages::{
    AbortOnDrop, ChannelSink, Hasher, ParallelHasher, PipelineOptions, compare_digests,
};
use crate::compression::Compression;
use crate::crypto::AgeIdentities;
use crate::error::{Error, Result};
use crate::manifest::Digests;
use crate::source::{RestoreReport, RestoreSession};
use crate::store::ByteStream;

/// Smallest holdback used whatever the options say: a dump tool must not
/// be able to see its end of input before verification.
const MIN_HOLDBACK: usize = 64 * 1024;

/// What an object should hash to.
#[derive(Debug, Clone)]
pub(crate) struct Expected {
    /// The object, for errors.
    pub(crate) what: String,
    /// Digests of the stored bytes.
    pub(crate) stored: Digests,
    /// Digests of the plaintext (decrypted, decompressed) bytes.
    pub(crate) raw: Digests,
}

/// The verified reader of one stored object: decrypts (with `identities`)
/// and decompresses `artifact` on a task of its own and returns the
/// plaintext as a stream checked by [`verified`].
pub(crate) fn read_object(
    artifact: ByteStream,
    decompressor: Compression,
    expected: Expected,
    identities: Option<AgeIdentities>,
    opts: &PipelineOptions,
) -> ByteStream {
    let (tx, rx) = mpsc::channel::<Bytes>(opts.queue_depth);
    let pump = AbortOnDrop(Some(tokio::spawn(pump_artifact(
        artifact,
        decompressor,
        ChannelSink::new(tx, opts.chunk_size),
        expected.what.clone(),
        identities,
    ))));
    verified(rx, pump, expected, opts.holdback)
}

/// The plaintext a `pump` task sends through `rx`, checked against
/// `expected`: the last `holdback` bytes (at least [`MIN_HOLDBACK`]) are
/// released only once the pump's digests (of the stored bytes) and the
/// digests of everything received match; otherwise the stream ends with
/// an error instead of them. A consumer that sees a clean end has read a
/// verified object. Dropping the stream stops the pump.
pub(crate) fn verified(
    rx: mpsc::Receiver<Bytes>,
    pump: AbortOnDrop<Result<Digests>>,
    expected: Expected,
    holdback: usize,
) -> ByteStream {
    let state = Verifying {
        rx,
        pump: Some(pump),
        expected,
        raw: Hasher::sha256_only(),
        tail: VecDeque::new(),
        tail_len: 0,
        holdback: holdback.max(MIN_HOLDBACK),
        checked: false,
    };
    futures::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        match state.next().await {
            Some(Ok(chunk)) => Some((Ok(chunk), Some(state))),
            Some(Err(e)) => Some((Err(e), None)),
            None => None,
        }
    })
    .boxed()
}

/// The state of a [`verified`] stream.
struct Verifying {
    rx: mpsc::Receiver<Bytes>,
    pump: Option<AbortOnDrop<Result<Digests>>>,
    expected: Expected,
    raw: Hasher,
    tail: VecDeque<Bytes>,
    tail_len: usize,
    holdback: usize,
    /// Every digest matched: the tail may go.
    checked: bool,
}

impl Verifying {
    async fn next(&mut self) -> Option<Result<Bytes>> {
        loop {
            if self.checked {
                return self.tail.pop_front().map(Ok);
            }
            if let Some(front) = self.tail.front()
                && self.tail_len - front.len() >= self.holdback
            {
                let front = self.tail.pop_front().expect("front exists");
                self.tail_len -= front.len();
                return Some(Ok(front));
            }
            match self.rx.recv().await {
                Some(chunk) => {
                    self.raw.update(&chunk);
                    self.tail_len += chunk.len();
                    self.tail.push_back(chunk);
                }
                None => match self.check().await {
                    Ok(()) => self.checked = true,
                    Err(e) => {
                        self.tail.clear();
                        return Some(Err(e));
                    }
                },
            }
        }
    }

    /// Joins the pump and compares every digest.
    async fn check(&mut self) -> Result<()> {
        let pump = self.pump.take().expect("checked once");
        let stored = match pump.join().await {
            Ok(result) => result?,
            Err(e) => return Err(Error::task("the decompression task", e)),
        };
        let what = &self.expected.what;
        if let Some(diff) = compare_digests(&self.expected.stored, &stored) {
            return Err(Error::Integrity {
                what: what.clone(),
                detail: format!("stored bytes: {diff}"),
            });
        }
        let raw = std::mem::take(&mut self.raw).finish();
        if let Some(diff) = compare_digests(&self.expected.raw, &raw) {
            return Err(Error::Integrity {
                what: what.clone(),
                detail: format!("decompressed dump: {diff}"),
            });
        }
        Ok(())
    }
}

/// Writes a [`verified`] stream into `session` and commits it only after
/// the stream ended cleanly; on any failure or cancellation (`cancel`
/// resolving) the session is aborted, so nothing is committed.
///
/// If the session fails first (a tool choking on corrupt input, say), the
/// rest of the stream is still read and verified, so a corrupt object is
/// reported as such rather than as whatever the tool made of it.
pub(crate) async fn restore_into(
    stream: ByteStream,
    session: Box<dyn RestoreSession>,
    cancel: impl std::future::Future<Output = ()>,
) -> Result<RestoreReport> {
    let mut session = Some(session);
    let fed = tokio::select! {
        biased;
        _ = cancel => Err(Error::Cancelled),
        r = feed(stream, &mut session) => r,
    };
    let session = session.expect("the session is kept until here");
    match fed {
        Ok(()) => session.commit().await,
        Err(e) => {
            if let Err(abort) = session.abort().await {
                tracing::warn!(error = %abort, "aborting the restore session failed");
            }
            Err(e)
        }
    }
}

async fn feed(mut stream: ByteStream, session: &mut Option<Box<dyn RestoreSession>>) -> Result<()> {
    let session = session.as_mut().expect("session present while feeding");
    let mut session_error: Option<Error> = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => {
                if session_error.is_none()
                    && let Err(e) = session.write(chunk).await
                {
                    session_error = Some(e);
                }
            }
            Err(Error::Integrity { what, detail }) => {
                let also = match &session_error {
                    Some(e) => format!(" (the restore target also failed: {e})"),
                    None => String::new(),
                };
                return Err(Error::Integrity {
                    what,
                    detail: format!("{detail}{also}"),
                });
            }
            Err(e) => return Err(e),
        }
    }
    match session_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Reads a [`verified`] stream to its end, for verification only.
pub(crate) async fn drain(
    mut stream: ByteStream,
    cancel: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let read = async {
        while let Some(item) = stream.next().await {
            item?;
        }
        Ok(())
    };
    tokio::select! {
        biased;
        _ = cancel => Err(Error::Cancelled),
        r = read => r,
    }
}

/// Hashes the stored bytes, decrypts them when `identities` are given,
/// and decompresses them into the channel. Returns digests of the stored
/// bytes.
async fn pump_artifact(
    artifact: ByteStream,
    decompressor: Compression,
    sink: ChannelSink,
    what: String,
    identities: Option<AgeIdentities>,
) -> Result<Digests> {
    let mut decoder = decompressor.decoder(Box::pin(sink));
    let algorithm = decompressor.algorithm();
    let corrupt = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // The consumer stopped; its own error is the one to report.
            Error::Cancelled
        } else {
            Error::Integrity {
                what: what.clone(),
                detail: format!("cannot read the artifact ({algorithm}): {e}"),
            }
        }
    };
    // Stored bytes are hashed by a task of their own as they are pulled,
    // in parallel with decryption and decompression.
    let (hash_tx, mut hash_rx) = mpsc::channel::<Bytes>(16);
    let hashing = AbortOnDrop(Some(tokio::spawn(async move {
        let mut hasher = ParallelHasher::new();
        while let Some(chunk) = hash_rx.recv().await {
            hasher.update(&chunk).await;
        }
        hasher.finish().await
    })));
    let mut artifact = artifact
        .then(move |chunk| {
            let tx = hash_tx.clone();
            async move {
                if let Ok(c) = &chunk {
                    let _ = tx.send(c.clone()).await;
                }
                chunk
            }
        })
        .boxed();
    match identities {
        None => {
            while let Some(chunk) = artifact.next().await {
                decoder.write_all(&chunk?).await.map_err(corrupt)?;
            }
            // Dropping the stream closes the hashing channel.
            drop(artifact);
        }
        Some(identities) => {
            let reader =
                tokio_util::io::StreamReader::new(artifact.map(|c| c.map_err(Error::into_io)));
            let mut plain = identities.decrypt(reader, &what).await?;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = plain.read(&mut buf).await.map_err(|e| {
                    if e.get_ref().is_some_and(|i| i.is::<Error>()) {
                        Error::from_io("reading the artifact", e)
                    } else {
                        Error::Integrity {
                            what: what.clone(),
                            detail: format!("cannot decrypt the artifact: {e}"),
                        }
                    }
                })?;
                if n == 0 {
                    break;
                }
                decoder.write_all(&buf[..n]).await.map_err(corrupt)?;
            }
            drop(plain);
        }
    }
    decoder.shutdown().await.map_err(corrupt)?;
    hashing
        .join()
        .await
        .map_err(|e| Error::task("the hashing task", e))
}
