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
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{AbortOnDrop, ChannelSink, Hasher, ParallelHasher, PipelineOptions, compare_digests};
use crate::compression::Compressor;
use crate::crypto::AgeIdentities;
use crate::manifest::Digests;
use crate::source::{RestoreReport, RestoreSession};
use crate::store::ByteStream;
use crate::{Error, Result};

/// Smallest holdback used whatever the options say: a dump tool must not
/// be able to see its end of input before verification.
const MIN_HOLDBACK: usize = 64 * 1024;

/// Where verified bytes go.
pub(crate) enum RestoreSink {
    /// A restore session, committed only after verification.
    Session(Box<dyn RestoreSession>),
    /// Nowhere: a verification run.
    Discard,
}

/// What the artifact should hash to.
pub(crate) struct Expected<'a> {
    pub(crate) what: &'a str,
    pub(crate) stored: &'a Digests,
    pub(crate) raw: &'a Digests,
}

/// Streams an artifact into `sink`, verifying it on the way, and commits the
/// sink only if every digest matches. Returns the report of the committed
/// session (`None` for [`RestoreSink::Discard`]).
pub(crate) async fn run_restore(
    artifact: ByteStream,
    decompressor: Arc<dyn Compressor>,
    expected: Expected<'_>,
    sink: RestoreSink,
    opts: &PipelineOptions,
    identities: Option<AgeIdentities>,
) -> Result<Option<RestoreReport>> {
    let (tx, rx) = mpsc::channel::<Bytes>(opts.queue_depth);
    let pump = AbortOnDrop(Some(tokio::spawn(pump_artifact(
        artifact,
        decompressor,
        ChannelSink::new(tx, opts.chunk_size),
        expected.what.to_string(),
        identities,
    ))));
    deliver(rx, pump, expected, sink, opts).await
}

/// The common end of every restore: writes what the `pump` task sends
/// through `rx` into `sink`, holding back the last `holdback` bytes until
/// the pump's digests (of the stored bytes) and the digests of everything
/// received (the dump) match `expected`, then commits. On any mismatch or
/// failure the session is aborted before its end of input.
pub(crate) async fn deliver(
    rx: mpsc::Receiver<Bytes>,
    pump: AbortOnDrop<Result<Digests>>,
    expected: Expected<'_>,
    sink: RestoreSink,
    opts: &PipelineOptions,
) -> Result<Option<RestoreReport>> {
    let mut session = match sink {
        RestoreSink::Session(s) => Some(s),
        RestoreSink::Discard => None,
    };
    let verified = tokio::select! {
        biased;
        _ = opts.cancel.cancelled() => Err(Error::Cancelled),
        r = feed(&mut session, rx, pump, &expected, opts.holdback.max(MIN_HOLDBACK)) => r,
    };
    match (verified, session) {
        (Ok(tail), Some(mut session)) => {
            for chunk in tail {
                if let Err(e) = session.write(chunk).await {
                    let _ = session.abort().await;
                    return Err(e);
                }
            }
            session.commit().await.map(Some)
        }
        (Ok(_), None) => Ok(None),
        (Err(e), Some(session)) => {
            if let Err(abort) = session.abort().await {
                tracing::warn!(error = %abort, "aborting the restore session failed");
            }
            Err(e)
        }
        (Err(e), None) => Err(e),
    }
}

/// Writes verified-so-far output to the session, keeping the last
/// `holdback` bytes back; returns them once every digest matched.
///
/// If the session fails first (a tool choking on corrupt input, say), the
/// rest of the artifact is still read and verified, so a corrupt artifact is
/// reported as such rather than as whatever the tool made of it.
async fn feed(
    session: &mut Option<Box<dyn RestoreSession>>,
    mut rx: mpsc::Receiver<Bytes>,
    pump: AbortOnDrop<Result<Digests>>,
    expected: &Expected<'_>,
    holdback: usize,
) -> Result<VecDeque<Bytes>> {
    let mut raw = Hasher::sha256_only();
    let mut tail: VecDeque<Bytes> = VecDeque::new();
    let mut tail_len = 0usize;
    let mut session_error: Option<Error> = None;
    while let Some(chunk) = rx.recv().await {
        raw.update(&chunk);
        if session_error.is_some() {
            continue;
        }
        tail_len += chunk.len();
        tail.push_back(chunk);
        while let Some(front) = tail.front() {
            if tail_len - front.len() < holdback {
                break;
            }
            let front = tail.pop_front().expect("front exists");
            tail_len -= front.len();
            if let Some(session) = session.as_mut()
                && let Err(e) = session.write(front).await
            {
                session_error = Some(e);
                tail.clear();
                break;
            }
        }
    }
    let also = |session_error: &Option<Error>| match session_error {
        Some(e) => format!(" (the restore target also failed: {e})"),
        None => String::new(),
    };
    let stored = match pump.join().await {
        Ok(Ok(stored)) => stored,
        Ok(Err(Error::Integrity { what, detail })) => {
            return Err(Error::Integrity {
                what,
                detail: format!("{detail}{}", also(&session_error)),
            });
        }
        Ok(Err(e)) => return Err(e),
        Err(e) => {
            return Err(Error::Restore {
                engine: "pipeline",
                detail: format!("decompression task failed: {e}"),
            });
        }
    };
    if let Some(diff) = compare_digests(expected.stored, &stored) {
        return Err(Error::Integrity {
            what: expected.what.to_string(),
            detail: format!("stored bytes: {diff}{}", also(&session_error)),
        });
    }
    if let Some(diff) = compare_digests(expected.raw, &raw.finish()) {
        return Err(Error::Integrity {
            what: expected.what.to_string(),
            detail: format!("decompressed dump: {diff}{}", also(&session_error)),
        });
    }
    match session_error {
        Some(e) => Err(e),
        None => Ok(tail),
    }
}

/// Hashes the stored bytes, decrypts them when `identities` are given,
/// and decompresses them into the channel. Returns digests of the stored
/// bytes.
async fn pump_artifact(
    artifact: ByteStream,
    decompressor: Arc<dyn Compressor>,
    sink: ChannelSink,
    what: String,
    identities: Option<AgeIdentities>,
) -> Result<Digests> {
    let mut decoder = decompressor.decoder(Box::pin(sink));
    let stage = if decompressor.algorithm() == "none" {
        "read"
    } else {
        "decompress"
    };
    let corrupt = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // The consumer stopped; its own error is the one to report.
            Error::Cancelled
        } else {
            Error::Integrity {
                what: what.clone(),
                detail: format!("cannot {stage} the artifact: {e}"),
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
    hashing.join().await.map_err(|e| Error::Restore {
        engine: "pipeline",
        detail: format!("hashing task failed: {e}"),
    })
}
