//! [`S3Upload`]: a streamed upload cut into multipart parts, sent a few at
//! a time, and aborted on any failure, abort or drop.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use backup_core::{Error, Result, key::Key, store::ObjectMeta, store::Upload};
use bytes::Bytes;
use chrono::Utc;
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, PutMultipartOptions, PutOptions, PutPayloadMut};
use tokio::task::JoinSet;

use crate::error::Op;
use crate::inner::Inner;
use crate::parts::MAX_PARTS;

/// Blocks of a part buffer: incoming chunks are copied into buffers of this
/// size, so a part is a few large allocations whatever the chunk sizes.
const BLOCK_SIZE: usize = 1024 * 1024;

/// Where an upload stands.
enum State {
    /// Nothing sent yet: the whole object may still fit one PUT.
    Buffering,
    /// A multipart upload is open; parts are in flight in `tasks`.
    Multipart {
        upload: Box<dyn MultipartUpload>,
        tasks: JoinSet<object_store::Result<()>>,
    },
    /// Completed or aborted: nothing to clean up.
    Finished,
}

/// A streamed upload to S3, started by [`Store::put_stream`](backup_core::Store::put_stream).
///
/// Bytes are copied into a part buffer; when it is full it becomes a part.
/// The first full part opens the multipart upload; up to the configured
/// concurrency parts upload at once, and [`Upload::write`] waits while that
/// many are in flight, so memory stays below (concurrency + 1) × part size.
/// An object smaller than one part never opens a multipart upload: it is
/// sent with one PUT on [`Upload::complete`].
pub(crate) struct S3Upload {
    inner: Arc<Inner>,
    key: Key,
    path: Path,
    buffer: PutPayloadMut,
    /// Size of the part being filled.
    part_size: usize,
    /// Parts handed to the client so far.
    parts: usize,
    written: u64,
    state: State,
    /// Set once a write has failed: the upload can only be aborted.
    poisoned: bool,
}

impl S3Upload {
    pub(crate) fn new(inner: Arc<Inner>, key: Key, path: Path) -> S3Upload {
        let part_size = inner.plan.part_size(0);
        S3Upload {
            inner,
            key,
            path,
            buffer: PutPayloadMut::new().with_block_size(BLOCK_SIZE),
            part_size,
            parts: 0,
            written: 0,
            state: State::Buffering,
            poisoned: false,
        }
    }

    fn err(&self, op: Op, err: object_store::Error) -> Error {
        self.inner.ctx.map(op, self.key.as_str(), err)
    }

    /// Sends the full buffer as the next part, opening the multipart upload
    /// first if needed and waiting while `concurrency` parts are in flight.
    async fn send_part(&mut self) -> Result<()> {
        if self.parts >= MAX_PARTS {
            return Err(self.inner.ctx.refuse(format!(
                "{} exceeds {MAX_PARTS} parts ({} bytes so far): raise the part size or the maximum part size",
                self.key, self.written
            )));
        }
        if matches!(self.state, State::Buffering) {
            let upload = self
                .inner
                .client
                .put_multipart_opts(&self.path, PutMultipartOptions::default())
                .await
                .map_err(|e| self.err(Op::CreateUpload, e))?;
            tracing::debug!(key = %self.key, "multipart upload started");
            self.state = State::Multipart {
                upload,
                tasks: JoinSet::new(),
            };
        }
        self.wait_for_parts(self.inner.plan.concurrency() - 1)
            .await?;
        let State::Multipart { upload, tasks } = &mut self.state else {
            unreachable!("opened above");
        };
        let buffer = std::mem::replace(
            &mut self.buffer,
            PutPayloadMut::new().with_block_size(BLOCK_SIZE),
        );
        tasks.spawn(upload.put_part(buffer.freeze()));
        self.parts += 1;
        self.part_size = self.inner.plan.part_size(self.parts);
        Ok(())
    }

    /// Waits until at most `in_flight` parts are uploading; the first
    /// failed part fails the upload.
    async fn wait_for_parts(&mut self, in_flight: usize) -> Result<()> {
        let State::Multipart { tasks, .. } = &mut self.state else {
            return Ok(());
        };
        while tasks.len() > in_flight {
            match tasks.join_next().await {
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    return Err(self.inner.ctx.map(Op::UploadPart, self.key.as_str(), e));
                }
                Some(Err(join)) => {
                    return Err(self.inner.ctx.refuse(format!(
                        "uploading a part of {}: task failed: {join}",
                        self.key
                    )));
                }
                None => break,
            }
        }
        Ok(())
    }

    async fn write_inner(&mut self, mut data: Bytes) -> Result<()> {
        while !data.is_empty() {
            if self.buffer.content_length() >= self.part_size {
                self.send_part().await?;
            }
            let room = self.part_size - self.buffer.content_length();
            let take = room.min(data.len());
            self.buffer.extend_from_slice(&data[..take]);
            self.written += take as u64;
            data = data.split_off(take);
        }
        Ok(())
    }

    async fn complete_inner(&mut self) -> Result<ObjectMeta> {
        if matches!(self.state, State::Buffering) {
            // Smaller than one part: a single PUT, no multipart upload.
            let payload = std::mem::take(&mut self.buffer).freeze();
            self.inner
                .client
                .put_opts(&self.path, payload, PutOptions::default())
                .await
                .map_err(|e| self.err(Op::Put, e))?;
        } else {
            if !self.buffer.is_empty() {
                let last = std::mem::take(&mut self.buffer).freeze();
                let State::Multipart { upload, tasks } = &mut self.state else {
                    unreachable!("checked above");
                };
                tasks.spawn(upload.put_part(last));
                self.parts += 1;
            }
            self.wait_for_parts(0).await?;
            let State::Multipart { upload, .. } = &mut self.state else {
                unreachable!("checked above");
            };
            // The upload stays in `self.state` while completing: if this
            // future is dropped mid-call, `Drop` still aborts it.
            upload
                .complete()
                .await
                .map_err(|e| self.inner.ctx.map(Op::CompleteUpload, self.key.as_str(), e))?;
        }
        self.state = State::Finished;
        tracing::debug!(key = %self.key, bytes = self.written, parts = self.parts, "upload completed");
        Ok(ObjectMeta {
            key: self.key.clone(),
            size: self.written,
            last_modified: Utc::now(),
        })
    }

    async fn abort_inner(&mut self) -> Result<()> {
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Buffering | State::Finished => Ok(()),
            State::Multipart {
                mut upload,
                mut tasks,
            } => {
                tasks.shutdown().await;
                upload.abort().await.map_err(|e| {
                    let err = self.err(Op::AbortUpload, e);
                    tracing::warn!(
                        key = %self.key,
                        error = %err,
                        "could not abort the multipart upload: its parts stay in the bucket until a lifecycle rule (AbortIncompleteMultipartUpload) removes them"
                    );
                    err
                })
            }
        }
    }
}

#[async_trait]
impl Upload for S3Upload {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        if self.poisoned {
            return Err(self.inner.ctx.refuse(format!(
                "{}: the upload already failed and can only be aborted",
                self.key
            )));
        }
        let result = self.write_inner(data).await;
        if result.is_err() {
            self.poisoned = true;
            if let State::Multipart { tasks, .. } = &mut self.state {
                tasks.abort_all();
            }
        }
        result
    }

    async fn complete(mut self: Box<Self>) -> Result<ObjectMeta> {
        if self.poisoned {
            let err = self.inner.ctx.refuse(format!(
                "{}: the upload already failed and cannot be completed",
                self.key
            ));
            let _ = self.abort_inner().await;
            return Err(err);
        }
        match self.complete_inner().await {
            Ok(meta) => Ok(meta),
            Err(e) => {
                let _ = self.abort_inner().await;
                Err(e)
            }
        }
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.abort_inner().await
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        let State::Multipart { mut upload, tasks } =
            std::mem::replace(&mut self.state, State::Finished)
        else {
            return;
        };
        drop(tasks); // aborts the parts still in flight
        let key = self.key.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    match upload.abort().await {
                        Ok(()) => tracing::debug!(%key, "dropped upload aborted"),
                        Err(e) => tracing::warn!(
                            %key,
                            error = %e,
                            "could not abort a dropped multipart upload; a lifecycle rule (AbortIncompleteMultipartUpload) will remove its parts"
                        ),
                    }
                });
            }
            Err(_) => tracing::warn!(
                %key,
                "multipart upload dropped outside a Tokio runtime: it cannot be aborted here; a lifecycle rule (AbortIncompleteMultipartUpload) will remove its parts"
            ),
        }
    }
}

impl fmt::Debug for S3Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Buffering => "buffering",
            State::Multipart { .. } => "multipart",
            State::Finished => "finished",
        };
        f.debug_struct("S3Upload")
            .field("store", &self.inner.ctx.name)
            .field("key", &self.key)
            .field("state", &state)
            .field("written", &self.written)
            .field("parts", &self.parts)
            .field("part_size", &self.part_size)
            .finish()
    }
}
