//! Engine-facing traits: [`DumpSource`] produces a dump, [`RestoreTarget`]
//! applies one.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::store::ByteStream;

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
}

/// A running dump: the bytes and what produced them.
pub struct DumpStream {
    /// The dump's bytes. The stream ends with `Ok` items only if the dump
    /// succeeded completely (tool exit status checked); any failure is
    /// reported as a final `Err` item, *after* the last byte. Dropping the
    /// stream stops the dump (the child process is killed).
    pub stream: ByteStream,
    /// Tool and server versions.
    pub versions: Versions,
}

impl fmt::Debug for DumpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DumpStream")
            .field("versions", &self.versions)
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
