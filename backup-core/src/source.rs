//! Engine-facing traits: [`DumpSource`] produces a dump, [`RestoreTarget`]
//! applies one.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::fingerprint::{Fingerprint, MAX_FINGERPRINT_TABLES};
use crate::store::ByteStream;

mod leftovers;

pub use leftovers::{Candidate, Leftover, LeftoverReport, Removal};

/// How a source describes itself; recorded in every manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// Engine name: `postgres`, `mongodb`, ...
    pub engine: String,
    /// Name of the database being dumped.
    pub database: String,
    /// Dump format, e.g. `pgdump` (pg_dump custom format) or `archive`
    /// (mongodump archive). Appears in artifact names.
    pub format: String,
    /// File extension of the uncompressed dump, without a dot (`dump`).
    pub extension: String,
    /// The bytes every dump of this format starts with (`PGDMP` for
    /// `pg_dump -Fc`, `6d e2 99 81` for a mongodump archive), checked
    /// before a backup commits; `None` for formats without one. An empty
    /// dump is refused whatever this says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub magic: Option<Vec<u8>>,
}

/// Versions of the tool and server involved, for the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versions {
    /// Dump tool version (`pg_dump (PostgreSQL) 15.18`, driver version).
    pub tool: Option<String>,
    /// Server version as reported by the server.
    pub server: Option<String>,
}

/// Per-call options of [`DumpSource::dump`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DumpOptions {
    /// Restrict the dump to these tables / collections (empty = all).
    pub only: Vec<String>,
    /// Do not record a content [`Fingerprint`] (sources that record one
    /// by default — PostgreSQL logical dumps, MySQL, SQLite and MongoDB
    /// driver dumps — then skip the extra counting).
    pub skip_fingerprint: bool,
}

impl DumpOptions {
    /// Sets [`DumpOptions::only`]: dump just these tables / collections.
    ///
    /// ```
    /// use backup_core::source::DumpOptions;
    /// let opts = DumpOptions::default().only(vec!["orders".into()]);
    /// assert_eq!(opts.only, ["orders"]);
    /// ```
    pub fn only(mut self, names: Vec<String>) -> Self {
        self.only = names;
        self
    }

    /// Sets [`DumpOptions::skip_fingerprint`].
    pub fn skip_fingerprint(mut self, yes: bool) -> Self {
        self.skip_fingerprint = yes;
        self
    }
}

/// Receives a dump's [`Fingerprint`]; see [`DumpStream::with_fingerprint`].
pub type FingerprintReceiver = oneshot::Receiver<Fingerprint>;

/// Facts an engine learns while it dumps and records in the manifest
/// ([`Manifest::details`](crate::manifest::Manifest::details)): a base
/// backup's start and stop LSN, timeline, WAL range, ... Keys are
/// namespaced by the engine (`postgres.start_lsn`); values are plain text.
pub type Details = BTreeMap<String, String>;

/// Receives a dump's [`Details`]; see [`DumpStream::with_details`].
pub type DetailsReceiver = oneshot::Receiver<Details>;

/// Sends a dump's [`Details`]; see [`DumpStream::with_details`].
pub type DetailsSender = oneshot::Sender<Details>;

/// Most details one dump may deliver, and most bytes of keys and values
/// together: they go into every manifest and every listing.
pub const MAX_DETAILS: usize = 64;
const MAX_DETAILS_BYTES: usize = 16 * 1024;

/// A running dump: the bytes, what produced them and, when the source
/// learns facts only while streaming, a promise of those.
///
/// Build one with [`DumpStream::new`] (plus [`DumpStream::with_details`]);
/// fields added later get defaults there, so sources need not change.
pub struct DumpStream {
    /// The dump's bytes. The stream ends with `Ok` items only if the dump
    /// succeeded completely (tool exit status checked); any failure is
    /// reported as a final `Err` item, *after* the last byte. Dropping the
    /// stream stops the dump (the child process is killed).
    pub stream: ByteStream,
    /// Tool and server versions.
    pub versions: Versions,
    details: Option<DetailsReceiver>,
    parent: Option<String>,
    fingerprint: Option<FingerprintReceiver>,
}

/// What the engine takes from a [`DumpStream`]: the bytes (followed by
/// the wait for details), versions, the slot the details land in and the
/// declared parent.
pub(crate) struct EngineParts {
    pub(crate) stream: ByteStream,
    pub(crate) versions: Versions,
    pub(crate) details: Arc<Mutex<Details>>,
    pub(crate) parent: Option<String>,
    pub(crate) fingerprint: Option<FingerprintReceiver>,
}

impl DumpStream {
    /// A dump of `stream`, produced by `versions`, without details.
    pub fn new(stream: ByteStream, versions: Versions) -> Self {
        DumpStream {
            stream,
            versions,
            details: None,
            parent: None,
            fingerprint: None,
        }
    }

    /// Promises a content [`Fingerprint`] taken in the dump's snapshot:
    /// the source sends it once the stream ended successfully. The engine
    /// waits for it after the last byte and records it in the manifest;
    /// a sender dropped without sending (the source could not count)
    /// leaves the manifest without one, the backup is not failed. More
    /// than [`MAX_FINGERPRINT_TABLES`] tables are not recorded either.
    pub fn with_fingerprint(mut self, fingerprint: FingerprintReceiver) -> Self {
        self.fingerprint = Some(fingerprint);
        self
    }

    /// Declares that this dump only restores on top of backup `id` (a
    /// block-level incremental base backup needs its parent): the engine
    /// records it as [`Manifest::parent`](crate::manifest::Manifest::parent),
    /// so retention keeps the parent while this backup is kept. The engine
    /// refuses the backup, before any of the dump is stored, unless `id`
    /// is a listed backup of the same tenant and source, and again at
    /// commit if the parent was deleted meanwhile.
    ///
    /// ```
    /// use backup_core::source::{DumpStream, Versions};
    /// let dump = DumpStream::new(Box::pin(futures::stream::empty()), Versions::default())
    ///     .with_parent("20250101T000000Z-0000abcd");
    /// assert_eq!(dump.parent(), Some("20250101T000000Z-0000abcd"));
    /// ```
    pub fn with_parent(mut self, id: impl Into<String>) -> Self {
        self.parent = Some(id.into());
        self
    }

    /// The backup this dump depends on, if it declared one
    /// ([`DumpStream::with_parent`]).
    pub fn parent(&self) -> Option<&str> {
        self.parent.as_deref()
    }

    /// Promises [`Details`]: the source sends them on the paired
    /// [`DetailsSender`] once the stream ended successfully (before its
    /// last `None`, or right after). The engine waits for them after the
    /// last byte and records them in the manifest; a sender dropped
    /// without sending fails the backup (nothing is committed), as do
    /// more than [`MAX_DETAILS`] entries, more than 16 KiB of them or an
    /// empty key.
    ///
    /// ```
    /// use backup_core::source::{DumpStream, Versions};
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// let dump = DumpStream::new(Box::pin(futures::stream::empty()), Versions::default())
    ///     .with_details(rx);
    /// // ... later, once the tool exited successfully:
    /// let _ = tx.send([("toy.rows".to_string(), "42".to_string())].into());
    /// # drop(dump);
    /// ```
    pub fn with_details(mut self, details: DetailsReceiver) -> Self {
        self.details = Some(details);
        self
    }

    /// Whether this dump promised [`Details`].
    pub fn has_details(&self) -> bool {
        self.details.is_some()
    }

    /// Replaces the byte stream by `f(stream)`, keeping versions and the
    /// promise of details: for wrappers (read-ahead, throttling) that
    /// pass the bytes through.
    pub fn map_stream(mut self, f: impl FnOnce(ByteStream) -> ByteStream) -> Self {
        let stream = std::mem::replace(&mut self.stream, Box::pin(futures::stream::empty()));
        self.stream = f(stream);
        self
    }

    /// Splits the dump for the engine: a stream that, after the source's
    /// last byte, waits for the promised details (ending with an
    /// [`Error::InvalidDump`] if they never come or are out of bounds),
    /// the versions, the slot the details land in once that stream
    /// ended, and the declared parent.
    pub(crate) fn into_engine_parts(self, engine: &str) -> EngineParts {
        let slot = Arc::new(Mutex::new(Details::new()));
        let parent = self.parent;
        let fingerprint = self.fingerprint;
        let Some(promised) = self.details else {
            return EngineParts {
                stream: self.stream,
                versions: self.versions,
                details: slot,
                parent,
                fingerprint,
            };
        };
        let engine = engine.to_string();
        let filled = Arc::clone(&slot);
        let tail = futures::stream::once(async move {
            let refused = |detail: String| Err(Error::InvalidDump { engine, detail });
            let details = match promised.await {
                Ok(details) => details,
                Err(_) => {
                    return Some(refused(
                        "the source ended its dump without the details it promised (WAL positions \
                         and the like); nothing was committed: run the backup again"
                            .into(),
                    ));
                }
            };
            if let Err(why) = check_details(&details) {
                return Some(refused(why));
            }
            *filled.lock().expect("details slot") = details;
            None
        })
        .filter_map(futures::future::ready);
        EngineParts {
            stream: self.stream.chain(tail).boxed(),
            versions: self.versions,
            details: slot,
            parent,
            fingerprint,
        }
    }
}

/// Waits for a promised fingerprint (see [`DumpStream::with_fingerprint`]):
/// `None` when none was promised, the source gave up or it is too large.
pub(crate) async fn receive_fingerprint(
    promised: Option<FingerprintReceiver>,
) -> Option<Fingerprint> {
    let fingerprint = promised?.await.ok();
    match fingerprint {
        Some(f) if f.tables.len() > MAX_FINGERPRINT_TABLES => {
            tracing::warn!(
                tables = f.tables.len(),
                "not recording a fingerprint of more than {MAX_FINGERPRINT_TABLES} tables"
            );
            None
        }
        None => {
            tracing::warn!(
                "the source promised a content fingerprint but did not deliver one; the backup is recorded without"
            );
            None
        }
        some => some,
    }
}

/// Why `details` cannot go into a manifest, if they cannot.
fn check_details(details: &Details) -> std::result::Result<(), String> {
    if details.len() > MAX_DETAILS {
        return Err(format!(
            "the source delivered {} details, more than the {MAX_DETAILS} allowed",
            details.len()
        ));
    }
    let bytes: usize = details.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > MAX_DETAILS_BYTES {
        return Err(format!(
            "the source delivered {bytes} bytes of details, more than the {MAX_DETAILS_BYTES} allowed"
        ));
    }
    if details.keys().any(|k| k.trim().is_empty()) {
        return Err("the source delivered a detail with an empty key".into());
    }
    Ok(())
}

impl fmt::Debug for DumpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DumpStream")
            .field("versions", &self.versions)
            .field("details", &self.details.is_some())
            .field("parent", &self.parent)
            .field("fingerprint", &self.fingerprint.is_some())
            .finish_non_exhaustive()
    }
}

/// A database that can be dumped.
///
/// # Contract
///
/// - [`DumpSource::dump`] fails fast (before returning a stream) for
///   problems it can detect up front: missing tool, unreachable server,
///   wrong credentials, missing database.
/// - The stream reports failures that happen later as its last item; a
///   stream that ends without an error is a complete dump.
/// - A complete dump is never empty and starts with [`SourceInfo::magic`]
///   when that is set; the engine refuses to commit anything else.
/// - Credentials never appear in `Debug`, errors, [`SourceInfo`] or
///   [`Versions`], nor on any child process's command line.
#[async_trait]
pub trait DumpSource: fmt::Debug + Send + Sync + 'static {
    /// Engine, database, format and extension.
    fn info(&self) -> SourceInfo;

    /// Starts a dump.
    async fn dump(&self, opts: &DumpOptions) -> Result<DumpStream>;
}

/// Per-call options of [`RestoreTarget::begin`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RestoreOptions {
    /// Restore into this database instead of the one configured on the
    /// target.
    pub database: Option<String>,
    /// Create the target database first if it does not exist.
    pub create: bool,
    /// Drop objects before recreating them (`--clean --if-exists`).
    pub clean: bool,
    /// Do not restore ownership (`--no-owner`).
    pub no_owner: bool,
    /// Restore only these tables / collections (empty = everything).
    pub only: Vec<String>,
    /// Refuse with [`Error::AlreadyExists`](crate::Error::AlreadyExists) if
    /// the target database exists already: restore only into a new one
    /// (used by multi-tenant hosts so a restore can never land in someone
    /// else's database).
    pub must_be_new: bool,
    /// Cancels this restore when triggered: the session is aborted, so
    /// nothing is committed.
    pub cancel: Option<CancellationToken>,
}

impl RestoreOptions {
    /// Options restoring into `database`.
    pub fn into_database(database: impl Into<String>) -> Self {
        RestoreOptions {
            database: Some(database.into()),
            ..Self::default()
        }
    }

    /// Sets [`RestoreOptions::create`].
    pub fn create(mut self, yes: bool) -> Self {
        self.create = yes;
        self
    }

    /// Sets [`RestoreOptions::clean`].
    pub fn clean(mut self, yes: bool) -> Self {
        self.clean = yes;
        self
    }

    /// Sets [`RestoreOptions::no_owner`].
    pub fn no_owner(mut self, yes: bool) -> Self {
        self.no_owner = yes;
        self
    }

    /// Sets [`RestoreOptions::must_be_new`] (and `create`).
    pub fn new_database_only(mut self, yes: bool) -> Self {
        self.must_be_new = yes;
        if yes {
            self.create = true;
        }
        self
    }

    /// Sets a cancellation token for this restore
    /// ([`RestoreOptions::cancel`]).
    pub fn cancel_token(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Sets [`RestoreOptions::only`].
    pub fn only(mut self, names: Vec<String>) -> Self {
        self.only = names;
        self
    }
}

/// What a restore reports when it commits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// The database that received the data.
    pub database: String,
    /// Anything the tool reported that did not fail the restore.
    pub warnings: Vec<String>,
}

/// A database that can receive a dump.
///
/// # Contract
///
/// A session applies nothing visible until [`RestoreSession::commit`]
/// succeeds, where the engine allows it (PostgreSQL: one transaction);
/// engines that cannot (MongoDB) document what an abort leaves behind.
/// [`RestoreSession::abort`] (and dropping a session) must stop the restore
/// without committing.
#[async_trait]
pub trait RestoreTarget: fmt::Debug + Send + Sync + 'static {
    /// Engine name this target restores (`postgres`), compared with the
    /// manifest's.
    fn engine(&self) -> &str;

    /// Whether the target understands dumps of this format.
    fn accepts_format(&self, format: &str) -> bool;

    /// Starts a restore session.
    async fn begin(&self, opts: &RestoreOptions) -> Result<Box<dyn RestoreSession>>;

    /// What restores that never finished (killed, crashed host) left on
    /// the server: staging databases and the like, marked as this
    /// library's. The default finds nothing, for engines whose restores
    /// leave nothing behind (one transaction); an engine that stages must
    /// override it and [`RestoreTarget::remove_leftovers`] together.
    async fn leftovers(&self) -> Result<Vec<Leftover>> {
        Ok(Vec::new())
    }

    /// Removes the [`leftovers`](RestoreTarget::leftovers) idle for
    /// `older_than` or more; younger ones, ones in use and unmarked
    /// look-alikes are reported and left alone. A host runs it
    /// periodically with a grace well above the engine's heartbeat
    /// (`DEFAULT_STAGING_GRACE` of the adapters). The default removes
    /// nothing.
    async fn remove_leftovers(&self, older_than: Duration) -> Result<LeftoverReport> {
        let _ = older_than;
        Ok(LeftoverReport::default())
    }
}

/// An in-progress restore started by [`RestoreTarget::begin`].
#[async_trait]
pub trait RestoreSession: fmt::Debug + Send {
    /// Feeds the next bytes of the (decompressed, verified-so-far) dump.
    async fn write(&mut self, data: Bytes) -> Result<()>;

    /// Signals the end of input and waits for the restore to finish.
    async fn commit(self: Box<Self>) -> Result<RestoreReport>;

    /// Stops the restore without committing anything.
    async fn abort(self: Box<Self>) -> Result<()>;
}
