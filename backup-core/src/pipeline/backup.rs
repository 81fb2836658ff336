//! Backup direction: dump stream → compressor → hasher → store upload.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::stages::{AbortOnDrop, ChannelSink, ParallelHasher, PipelineOptions};
use crate::compression::Compression;
use crate::crypto::AgeRecipients;
use crate::error::{Error, Result};
use crate::key::Key;
use crate::manifest::Digests;
use crate::store::{ByteStream, Store, Upload};

/// Called with the raw bytes read so far, every [`PROGRESS_EVERY`] bytes.
pub(crate) type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// How often progress is reported.
pub(crate) const PROGRESS_EVERY: u64 = 64 * 1024 * 1024;

/// What a successful upload produced.
#[derive(Debug)]
pub(crate) struct BackupOutcome {
    pub(crate) stored: Digests,
    pub(crate) raw: Digests,
}

/// One stored object being written: a stream goes in; the object comes out
/// compressed, encrypted when `encryption` is set, and hashed (stored and
/// raw digests). Every backup artifact is written through it; it knows
/// nothing of manifests or catalogs, so small artifacts can use it too.
pub(crate) struct ObjectWriter<'a> {
    /// The store the object is written to (to remove a damaged one).
    pub(crate) store: &'a dyn Store,
    /// Where the object goes.
    pub(crate) key: &'a Key,
    /// The open upload of `key`, opened by the caller before it starts the
    /// source, so store problems surface first.
    pub(crate) upload: Box<dyn Upload>,
    /// The compression stage.
    pub(crate) compression: Compression,
    /// Recipients the object is encrypted to, after compression.
    pub(crate) encryption: Option<AgeRecipients>,
    /// Buffering, stall watchdog, engine-wide cancellation.
    pub(crate) options: &'a PipelineOptions,
    /// Cancels this write only.
    pub(crate) cancel: Option<&'a CancellationToken>,
    /// Called as raw bytes are read.
    pub(crate) progress: Option<Progress>,
}

impl ObjectWriter<'_> {
    /// Streams `source` into the object.
    ///
    /// The object is committed only if the source ended cleanly, every
    /// stage succeeded and the sizes agree; on any failure (including
    /// cancellation and a stalled source) the upload is aborted and nothing
    /// is left under the key.
    pub(crate) async fn write(self, source: ByteStream) -> Result<BackupOutcome> {
        let ObjectWriter {
            store,
            key,
            upload,
            compression,
            encryption,
            options: opts,
            cancel,
            progress,
        } = self;
        let (tx, rx) = mpsc::channel::<Bytes>(opts.queue_depth);
        let pump = AbortOnDrop(Some(tokio::spawn(pump_source(
            source,
            compression,
            ChannelSink::new(tx, opts.chunk_size),
            opts.clone(),
            progress,
            encryption,
        ))));
        let mut upload = Some(upload);
        let result = tokio::select! {
            biased;
            _ = opts.cancel.cancelled() => Err(Error::Cancelled),
            _ = cancelled(cancel) => Err(Error::Cancelled),
            r = drive(&mut upload, rx, pump, opts.md5) => r,
        };
        match result {
            Ok((stored, raw)) => {
                let upload = upload.take().expect("upload present until completed");
                let object = upload.complete().await?;
                if object.size != stored.size {
                    // The store lost or added bytes: never leave such an object.
                    let _ = store.delete(key).await;
                    return Err(Error::Integrity {
                        what: key.to_string(),
                        detail: format!(
                            "store reports {} bytes after writing {}",
                            object.size, stored.size
                        ),
                    });
                }
                Ok(BackupOutcome { stored, raw })
            }
            Err(e) => {
                if let Some(upload) = upload.take()
                    && let Err(abort) = upload.abort().await
                {
                    tracing::warn!(%key, error = %abort, "aborting the failed upload also failed");
                }
                Err(e)
            }
        }
    }
}

/// Resolves when `token` is cancelled; never without one.
pub(crate) async fn cancelled(token: Option<&CancellationToken>) {
    match token {
        Some(token) => token.cancelled().await,
        None => std::future::pending().await,
    }
}

/// Digests of the raw dump, as the pump computed them.
enum RawDigests {
    /// Hashed on the way in (SHA-256 only).
    Hashed(Digests),
    /// Stored unchanged (no compression, no encryption), so only counted:
    /// its digests are the stored ones.
    SameAsStored {
        /// Bytes read.
        size: u64,
    },
}

/// Feeds compressed chunks to the upload, then collects the pump's result.
async fn drive(
    upload: &mut Option<Box<dyn Upload>>,
    mut rx: mpsc::Receiver<Bytes>,
    pump: AbortOnDrop<Result<RawDigests>>,
    md5: bool,
) -> Result<(Digests, Digests)> {
    let writer = upload.as_mut().expect("upload present while driving");
    let mut stored = ParallelHasher::with_md5(md5);
    while let Some(chunk) = rx.recv().await {
        // Hash and upload the same chunk at once.
        let (_, written) = tokio::join!(stored.update(&chunk), writer.write(chunk.clone()));
        written?;
    }
    let raw = pump
        .join()
        .await
        .map_err(|e| Error::task("the compression task", e))??;
    let stored = stored.finish().await;
    let raw = match raw {
        RawDigests::Hashed(raw) => raw,
        RawDigests::SameAsStored { size } => {
            if size != stored.size {
                return Err(Error::Integrity {
                    what: "the uncompressed dump".into(),
                    detail: format!("{size} bytes read but {} stored", stored.size),
                });
            }
            Digests {
                size,
                sha256: stored.sha256.clone(),
                md5: None,
            }
        }
    };
    Ok((stored, raw))
}

/// Reads the source with a stall watchdog and pushes it through the
/// compressor into the channel sink. Returns digests of the raw dump.
async fn pump_source(
    mut source: ByteStream,
    compression: Compression,
    sink: ChannelSink,
    opts: PipelineOptions,
    progress: Option<Progress>,
    encryption: Option<AgeRecipients>,
) -> Result<RawDigests> {
    // compress -> (encrypt) -> channel: encryption wraps the sink, the
    // compressor wraps that.
    let sink: crate::compression::BoxWrite = Box::pin(sink);
    let sink = match &encryption {
        Some(recipients) => recipients.encrypt(sink).await?,
        None => sink,
    };
    let stored_unchanged = compression.is_identity() && encryption.is_none();
    let mut encoder = compression.encoder(sink);
    // Unchanged bytes are hashed once, as stored bytes. Raw bytes are
    // hashed behind the compressor, on the blocking pool.
    let mut raw = (!stored_unchanged).then(|| ParallelHasher::with_md5(false));
    let mut size = 0u64;
    let mut next_report = PROGRESS_EVERY;
    loop {
        let next = tokio::time::timeout(opts.stall_timeout, source.next())
            .await
            .map_err(|_| Error::Stalled {
                seconds: opts.stall_timeout.as_secs(),
            })?;
        match next {
            None => break,
            Some(Err(e)) => return Err(e),
            Some(Ok(chunk)) => {
                if let Some(raw) = &mut raw {
                    raw.update(&chunk).await;
                }
                size += chunk.len() as u64;
                if let Some(report) = &progress
                    && size >= next_report
                {
                    report(size);
                    next_report = size + PROGRESS_EVERY;
                }
                encoder
                    .write_all(&chunk)
                    .await
                    .map_err(|e| Error::from_io("compressing the dump", e))?;
            }
        }
    }
    encoder
        .shutdown()
        .await
        .map_err(|e| Error::from_io("finishing the compressed stream", e))?;
    Ok(match raw {
        Some(raw) => RawDigests::Hashed(raw.finish().await),
        None => RawDigests::SameAsStored { size },
    })
}
