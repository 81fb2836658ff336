//! Toy sources and targets the suites and tests drive: a [`ScriptedSource`]
//! that ends as scripted and a [`RecordingTarget`] that records what it
//! receives.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::source::{
    DumpOptions, DumpSource, DumpStream, RestoreOptions, RestoreReport, RestoreSession,
    RestoreTarget, SourceInfo, Versions,
};

/// Deterministic bytes that differ at every position (so misplaced chunks
/// are caught).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A source that produces `len` pseudo-random bytes in `chunk`-sized
/// pieces, then ends cleanly — or, with [`ScriptedSource::fail_after`],
/// with an error, or with [`ScriptedSource::stall_after`], by going quiet.
#[derive(Debug, Clone)]
pub struct ScriptedSource {
    /// Bytes produced before the scripted ending.
    pub len: usize,
    /// Chunk size.
    pub chunk: usize,
    /// End with this error message instead of cleanly.
    pub fail: Option<String>,
    /// Stop producing bytes (forever) instead of ending.
    pub stall: bool,
    /// Seed of the content.
    pub seed: u64,
}

impl ScriptedSource {
    /// A source that succeeds with `len` bytes.
    pub fn ok(len: usize) -> Self {
        ScriptedSource {
            len,
            chunk: 64 * 1024,
            fail: None,
            stall: false,
            seed: 7,
        }
    }

    /// Fails after `len` bytes.
    pub fn fail_after(len: usize, message: &str) -> Self {
        ScriptedSource {
            fail: Some(message.to_string()),
            ..Self::ok(len)
        }
    }

    /// Goes quiet after `len` bytes.
    pub fn stall_after(len: usize) -> Self {
        ScriptedSource {
            stall: true,
            ..Self::ok(len)
        }
    }

    /// Everything this source emits before its ending.
    pub fn content(&self) -> Vec<u8> {
        pattern(self.len, self.seed)
    }
}

#[async_trait]
impl DumpSource for ScriptedSource {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            engine: "scripted".into(),
            database: "synthetic".into(),
            format: "bin".into(),
            extension: "bin".into(),
            magic: None,
        }
    }

    async fn dump(&self, _opts: &DumpOptions) -> Result<DumpStream> {
        let data = Bytes::from(self.content());
        let chunk = self.chunk.max(1);
        let pieces: Vec<Result<Bytes>> = (0..data.len())
            .step_by(chunk)
            .map(|i| Ok(data.slice(i..(i + chunk).min(data.len()))))
            .collect();
        let body = futures::stream::iter(pieces);
        let stream = match (&self.fail, self.stall) {
            (Some(msg), _) => body
                .chain(futures::stream::once(futures::future::ready(Err(
                    Error::Dump {
                        engine: "scripted",
                        detail: msg.clone(),
                    },
                ))))
                .boxed(),
            (None, true) => body.chain(futures::stream::pending()).boxed(),
            (None, false) => body.boxed(),
        };
        Ok(DumpStream::new(
            stream,
            Versions {
                tool: Some("scripted 1".into()),
                server: None,
            },
        ))
    }
}

/// What a [`RecordingTarget`] saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recording {
    /// Bytes received by the session so far.
    pub received: Vec<u8>,
    /// Bytes applied by a successful commit.
    pub committed: Option<Vec<u8>>,
    /// Whether the session was aborted.
    pub aborted: bool,
}

/// A [`RestoreTarget`](RestoreTarget) that records what it receives
/// and applies it only on commit, to observe the pipeline's guarantees.
#[derive(Debug, Clone, Default)]
pub struct RecordingTarget {
    /// Shared record of the last session.
    pub state: std::sync::Arc<std::sync::Mutex<Recording>>,
}

impl RecordingTarget {
    /// A snapshot of what was seen.
    pub fn recording(&self) -> Recording {
        self.state.lock().expect("recording lock").clone()
    }
}

#[derive(Debug)]
struct RecordingSession(std::sync::Arc<std::sync::Mutex<Recording>>);

#[async_trait]
impl RestoreTarget for RecordingTarget {
    fn engine(&self) -> &str {
        "scripted"
    }
    fn accepts_format(&self, format: &str) -> bool {
        format == "bin"
    }
    async fn begin(&self, _opts: &RestoreOptions) -> Result<Box<dyn RestoreSession>> {
        *self.state.lock().expect("recording lock") = Recording::default();
        Ok(Box::new(RecordingSession(std::sync::Arc::clone(
            &self.state,
        ))))
    }
}

#[async_trait]
impl RestoreSession for RecordingSession {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.0
            .lock()
            .expect("recording lock")
            .received
            .extend_from_slice(&data);
        Ok(())
    }
    async fn commit(self: Box<Self>) -> Result<RestoreReport> {
        let mut state = self.0.lock().expect("recording lock");
        state.committed = Some(state.received.clone());
        Ok(RestoreReport {
            database: "synthetic".into(),
            warnings: Vec::new(),
        })
    }
    async fn abort(self: Box<Self>) -> Result<()> {
        self.0.lock().expect("recording lock").aborted = true;
        Ok(())
    }
}
