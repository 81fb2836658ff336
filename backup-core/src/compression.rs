//! Compression: [`Compression`], a closed set of algorithms (none, gzip,
//! zstd). The manifest records the [`Algorithm`] and restore rebuilds the
//! decoder from it, so everything a backup can be written with can be
//! read back (STYLE.md 16): there is no open compressor trait.

use std::fmt;
use std::pin::Pin;
use std::str::FromStr;

use async_compression::Level;
use async_compression::tokio::write::{GzipDecoder, GzipEncoder, ZstdDecoder, ZstdEncoder};
use async_compression::zstd::CParameter;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWrite;

use crate::error::{Error, Result};

/// A boxed async writer: the unit pipeline stages are composed from.
pub type BoxWrite = Pin<Box<dyn AsyncWrite + Send>>;

/// The compression algorithms, as recorded in manifests and pack headers
/// (`"none"`, `"gzip"`, `"zstd"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Store bytes as they come.
    None,
    /// gzip (RFC 1952), readable by `gzip -d` everywhere.
    Gzip,
    /// Zstandard, readable by `zstd -d`.
    Zstd,
}

impl Algorithm {
    /// The name used in manifests and configuration.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::None => "none",
            Algorithm::Gzip => "gzip",
            Algorithm::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Algorithm::None),
            "gzip" => Ok(Algorithm::Gzip),
            "zstd" => Ok(Algorithm::Zstd),
            other => Err(Error::Config(format!(
                "unknown compression algorithm {other:?} (expected none, gzip or zstd)"
            ))),
        }
    }
}

/// A compression stage: an algorithm, a level and, for zstd, a number of
/// worker threads and their job size.
///
/// Both directions are *write* adapters ([`Compression::encoder`],
/// [`Compression::decoder`]): the pipeline pushes bytes in with large
/// writes and never flushes until the end, so encoders emit whole blocks
/// (zstd frames are not fragmented by per-read flushes, as they are with
/// `tokio::io::copy`). Shutting the returned writer down finishes the
/// stream and shuts `inner` down; a decoder's shutdown fails when its input
/// ended mid-stream (a truncated artifact).
///
/// Parses from `none`, `gzip`, `gzip:9`, `zstd`, `zstd:19`; the default is
/// zstd level 1 with 2 workers and 2 MiB jobs, chosen from the
/// measurements in `benches/` (see `benches/README.md`): on a real
/// PostgreSQL dump it is the fastest setting that still writes less than
/// `gzip -6` (0.85× its size). The job size is what `zstd -1 -T0` uses
/// (4 × level 1's 512 KiB window); it is fixed so that higher levels do
/// not grow it (4 × window made level 3 peak at ~90 MiB). 1 MiB jobs
/// used less memory but kept two cores only 1.3 busy on a base backup
/// (1.21–1.25x the shell pipeline, against 0.98x with 2 MiB jobs at 33
/// MiB peak RSS).
///
/// ```
/// use backup_core::{compression::Algorithm, Compression};
/// let c: Compression = "zstd:9".parse().unwrap();
/// assert_eq!((c.algorithm(), c.level()), (Algorithm::Zstd, Some(9)));
/// assert!("brotli".parse::<Compression>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Compression {
    algorithm: Algorithm,
    level: i32,
    workers: u32,
    job_size: u32,
}

/// Default zstd level.
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;
/// Bytes given to each zstd worker: fixed jobs bound the encoder's memory
/// (zstd's own default is 4 × the window, up to 8 MiB at level 3).
pub const ZSTD_JOB_SIZE: u32 = 2 * 1024 * 1024;
/// Default gzip level (what `gzip` itself uses).
pub const DEFAULT_GZIP_LEVEL: i32 = 6;
/// Default zstd worker threads.
pub const DEFAULT_ZSTD_WORKERS: u32 = 2;

impl Default for Compression {
    fn default() -> Self {
        Compression::zstd(DEFAULT_ZSTD_LEVEL)
    }
}

impl Compression {
    /// No compression.
    pub fn none() -> Self {
        Compression {
            algorithm: Algorithm::None,
            level: 0,
            workers: 0,
            job_size: ZSTD_JOB_SIZE,
        }
    }

    /// gzip at `level` (1 to 9).
    pub fn gzip(level: i32) -> Self {
        Compression {
            algorithm: Algorithm::Gzip,
            level: level.clamp(1, 9),
            workers: 0,
            job_size: ZSTD_JOB_SIZE,
        }
    }

    /// zstd at `level` (1 to 22) with the default worker count.
    pub fn zstd(level: i32) -> Self {
        Compression {
            algorithm: Algorithm::Zstd,
            level: level.clamp(1, 22),
            workers: DEFAULT_ZSTD_WORKERS,
            job_size: ZSTD_JOB_SIZE,
        }
    }

    /// Sets the zstd worker threads (0 = compress on the calling task).
    /// Ignored by other algorithms.
    pub fn with_workers(mut self, workers: u32) -> Self {
        self.workers = workers;
        self
    }

    /// Sets the bytes given to each zstd worker (default
    /// [`ZSTD_JOB_SIZE`]; zstd raises values below its minimum). Ignored
    /// by other algorithms and without workers; decoding does not depend
    /// on it.
    pub fn with_job_size(mut self, bytes: u32) -> Self {
        self.job_size = bytes;
        self
    }

    /// zstd worker threads.
    pub fn workers(&self) -> u32 {
        self.workers
    }

    /// The decoder for an algorithm read from a manifest or pack header
    /// (decoding needs no level).
    pub fn for_algorithm(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::None => Compression::none(),
            Algorithm::Gzip => Compression::gzip(DEFAULT_GZIP_LEVEL),
            Algorithm::Zstd => Compression::zstd(DEFAULT_ZSTD_LEVEL),
        }
    }

    /// The algorithm, recorded in manifests to pick the decoder on restore.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Whether bytes pass through unchanged ([`Algorithm::None`]): the
    /// pipeline then hashes them once, as stored bytes.
    pub fn is_identity(&self) -> bool {
        self.algorithm == Algorithm::None
    }

    /// Level recorded in manifests, if the algorithm has levels.
    pub fn level(&self) -> Option<i32> {
        match self.algorithm {
            Algorithm::None => None,
            _ => Some(self.level),
        }
    }

    /// File-name suffix for artifacts, with its dot (`".zst"`), or `""`.
    pub fn extension(&self) -> &'static str {
        match self.algorithm {
            Algorithm::None => "",
            Algorithm::Gzip => ".gz",
            Algorithm::Zstd => ".zst",
        }
    }

    /// Wraps `inner` so that bytes written are compressed into it.
    pub fn encoder(&self, inner: BoxWrite) -> BoxWrite {
        match self.algorithm {
            Algorithm::None => inner,
            Algorithm::Gzip => {
                Box::pin(GzipEncoder::with_quality(inner, Level::Precise(self.level)))
            }
            Algorithm::Zstd => {
                let mut params = vec![CParameter::checksum_flag(true)];
                if self.workers > 0 {
                    params.push(CParameter::nb_workers(self.workers));
                    params.push(CParameter::job_size(self.job_size));
                }
                Box::pin(ZstdEncoder::with_quality_and_params(
                    inner,
                    Level::Precise(self.level),
                    &params,
                ))
            }
        }
    }

    /// Wraps `inner` so that compressed bytes written are decompressed
    /// into it.
    pub fn decoder(&self, inner: BoxWrite) -> BoxWrite {
        match self.algorithm {
            Algorithm::None => inner,
            Algorithm::Gzip => Box::pin(GzipDecoder::new(inner)),
            Algorithm::Zstd => Box::pin(ZstdDecoder::new(inner)),
        }
    }
}

impl From<Algorithm> for Compression {
    fn from(algorithm: Algorithm) -> Self {
        Compression::for_algorithm(algorithm)
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.algorithm {
            Algorithm::None => f.write_str("none"),
            other => write!(f, "{}:{}", other.name(), self.level),
        }
    }
}

impl FromStr for Compression {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let (name, level) = match s.split_once(':') {
            Some((n, l)) => {
                let level = l.parse::<i32>().map_err(|_| {
                    Error::Config(format!("invalid compression level {l:?} in {s:?}"))
                })?;
                (n, Some(level))
            }
            None => (s, None),
        };
        let (range, c) = match name {
            "none" if level.is_none() => return Ok(Compression::none()),
            "gzip" => (
                1..=9,
                Compression::gzip(level.unwrap_or(DEFAULT_GZIP_LEVEL)),
            ),
            "zstd" => (
                1..=22,
                Compression::zstd(level.unwrap_or(DEFAULT_ZSTD_LEVEL)),
            ),
            _ => {
                return Err(Error::Config(format!(
                    "unknown compression {s:?} (expected none, gzip[:1-9] or zstd[:1-22])"
                )));
            }
        };
        if let Some(level) = level
            && !range.contains(&level)
        {
            return Err(Error::Config(format!(
                "compression level {level} out of range {}..={} for {name}",
                range.start(),
                range.end()
            )));
        }
        Ok(c)
    }
}

impl TryFrom<String> for Compression {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        value.parse()
    }
}

impl From<Compression> for String {
    fn from(value: Compression) -> Self {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A writer into a shared vector, to observe what a stage emits.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl AsyncWrite for Shared {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.0.lock().unwrap().extend_from_slice(buf);
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    async fn run(stage: BoxWrite, input: &[u8]) -> std::io::Result<()> {
        let mut stage = stage;
        for chunk in input.chunks(1000) {
            stage.write_all(chunk).await?;
        }
        stage.shutdown().await
    }

    fn sample() -> Vec<u8> {
        (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[tokio::test]
    async fn round_trips_every_algorithm() {
        for c in ["none", "gzip:1", "gzip", "zstd", "zstd:19"] {
            for workers in [0, 2] {
                let c = c.parse::<Compression>().unwrap().with_workers(workers);
                let packed = Shared::default();
                run(c.encoder(Box::pin(packed.clone())), &sample())
                    .await
                    .unwrap();
                let packed = packed.0.lock().unwrap().clone();
                if c.algorithm() != Algorithm::None {
                    assert!(packed.len() < sample().len() / 2, "{c} did not compress");
                }
                let unpacked = Shared::default();
                run(c.decoder(Box::pin(unpacked.clone())), &packed)
                    .await
                    .unwrap();
                assert_eq!(*unpacked.0.lock().unwrap(), sample(), "{c}");
            }
        }
    }

    #[tokio::test]
    async fn truncated_input_fails_on_shutdown() {
        for c in [Compression::gzip(6), Compression::zstd(3)] {
            let packed = Shared::default();
            run(c.encoder(Box::pin(packed.clone())), &sample())
                .await
                .unwrap();
            let packed = packed.0.lock().unwrap().clone();
            let cut = &packed[..packed.len() - 7];
            let err = run(c.decoder(Box::pin(Shared::default())), cut)
                .await
                .unwrap_err();
            assert!(!err.to_string().is_empty(), "{c}");
        }
    }

    #[test]
    fn parses_and_rejects() {
        assert_eq!("none".parse::<Compression>().unwrap(), Compression::none());
        assert_eq!("gzip".parse::<Compression>().unwrap(), Compression::gzip(6));
        for bad in [
            "gzip:0", "gzip:10", "zstd:23", "zstd:x", "none:3", "lz4", "",
        ] {
            assert!(bad.parse::<Compression>().is_err(), "{bad}");
        }
        assert_eq!(Compression::zstd(7).to_string(), "zstd:7");
    }
}
