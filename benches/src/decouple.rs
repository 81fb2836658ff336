//! Wrappers that put a bounded buffer between a dump tool and the pipeline:
//! experiments for the analysis in `benches/README.md`.
//!
//! The pipeline reads a [`DumpSource`]'s stream and hashes and compresses
//! each chunk on the same task before reading the next, and a restore
//! hashes each chunk on the task that writes to the [`RestoreSession`].
//! With a tool on the other end of a 64 KiB pipe, the tool waits while we
//! hash. These wrappers decouple the two with a task and a channel of
//! `depth` chunks, to measure what that costs.

use std::fmt;

use async_trait::async_trait;
use backup_core::{
    DumpSource, Error, RestoreOptions, RestoreTarget, Result, source::DumpOptions,
    source::DumpStream, source::RestoreReport, source::RestoreSession, source::SourceInfo,
};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A [`DumpSource`] whose stream is read ahead by a task of its own, up to
/// `depth` chunks, so the dump tool keeps writing while the pipeline works
/// on earlier chunks. Dropping the stream stops the task (and so the tool).
#[derive(Debug, Clone)]
pub struct ReadAhead<S> {
    inner: S,
    depth: usize,
}

impl<S> ReadAhead<S> {
    /// Reads `inner` up to `depth` chunks ahead.
    pub fn new(inner: S, depth: usize) -> Self {
        ReadAhead {
            inner,
            depth: depth.max(1),
        }
    }
}

#[async_trait]
impl<S: DumpSource> DumpSource for ReadAhead<S> {
    fn info(&self) -> SourceInfo {
        self.inner.info()
    }

    async fn dump(&self, opts: &DumpOptions) -> Result<DumpStream> {
        let depth = self.depth;
        Ok(self.inner.dump(opts).await?.map_stream(|mut stream| {
            let (tx, rx) = mpsc::channel(depth);
            tokio::spawn(async move {
                while let Some(item) = stream.next().await {
                    if tx.send(item).await.is_err() {
                        break;
                    }
                }
            });
            futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            })
            .boxed()
        }))
    }
}

/// A [`RestoreTarget`] whose sessions write on a task of their own: `write`
/// queues up to `depth` chunks and returns, so the restore tool is fed
/// while the pipeline verifies the next chunks. A write error surfaces on a
/// later `write` or on `commit`.
#[derive(Debug, Clone)]
pub struct WriteBehind<T> {
    inner: T,
    depth: usize,
}

impl<T> WriteBehind<T> {
    /// Writes to `inner`'s sessions through a queue of `depth` chunks.
    pub fn new(inner: T, depth: usize) -> Self {
        WriteBehind {
            inner,
            depth: depth.max(1),
        }
    }
}

#[async_trait]
impl<T: RestoreTarget> RestoreTarget for WriteBehind<T> {
    fn engine(&self) -> &str {
        self.inner.engine()
    }

    fn accepts_format(&self, format: &str) -> bool {
        self.inner.accepts_format(format)
    }

    async fn begin(&self, opts: &RestoreOptions) -> Result<Box<dyn RestoreSession>> {
        let mut session = self.inner.begin(opts).await?;
        let (tx, mut rx) = mpsc::channel::<Bytes>(self.depth);
        let writer = tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                if let Err(e) = session.write(chunk).await {
                    return (session, Err(e));
                }
            }
            (session, Ok(()))
        });
        Ok(Box::new(Behind {
            tx: Some(tx),
            writer: Some(writer),
        }))
    }
}

type Writer = JoinHandle<(Box<dyn RestoreSession>, Result<()>)>;

struct Behind {
    tx: Option<mpsc::Sender<Bytes>>,
    writer: Option<Writer>,
}

impl fmt::Debug for Behind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteBehind").finish_non_exhaustive()
    }
}

impl Behind {
    /// Closes the queue and waits for the writer: the inner session and
    /// how its writes went.
    async fn finish(&mut self) -> Result<(Box<dyn RestoreSession>, Result<()>)> {
        self.tx = None;
        let writer = self.writer.take().ok_or(Error::Cancelled)?;
        writer.await.map_err(|e| Error::Restore {
            engine: "write-behind",
            detail: format!("writer task failed: {e}"),
        })
    }
}

#[async_trait]
impl RestoreSession for Behind {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        let tx = self.tx.as_ref().ok_or(Error::Cancelled)?;
        if tx.send(data).await.is_err() {
            // The writer stopped: report its error.
            let (_, written) = self.finish().await?;
            written?;
            return Err(Error::Cancelled);
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<RestoreReport> {
        let (session, written) = self.finish().await?;
        match written {
            Ok(()) => session.commit().await,
            Err(e) => {
                let _ = session.abort().await;
                Err(e)
            }
        }
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        // The queue never holds the end of the input (the pipeline aborts
        // before releasing its held-back tail), so let the writer drain it,
        // then abort the inner session, which rolls back and cleans up.
        match self.finish().await {
            Ok((session, _)) => session.abort().await,
            Err(e) => Err(e),
        }
    }
}
