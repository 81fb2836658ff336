//! The one public error type of `backup-core`, which adapters map their own
//! failures into.

use std::fmt;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed error cause, chained through [`std::error::Error::source`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong while backing up, storing, listing or
/// restoring.
///
/// `Display` is one line and never contains credentials: adapters redact
/// secrets before building an error. Causes are available through
/// [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No object or backup under this key or id.
    #[error("not found: {what}")]
    NotFound {
        /// The key or id that was looked up.
        what: String,
    },

    /// An object already exists where a create-only write was asked for.
    #[error("already exists: {key}")]
    AlreadyExists {
        /// The key that exists.
        key: String,
    },

    /// A key or backup id was rejected before touching any store.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The rejected input (control characters are escaped by `{:?}`).
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// Bad configuration or arguments given by the caller. Only for
    /// configuration: failures with a cause of their own have their own
    /// variants.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A backup cannot be restored into this target: it was taken from
    /// another engine, or in a format the target does not read.
    #[error(
        "backup {backup} is a {engine} {format} dump; the target restores {target}: restore it with a {engine} target"
    )]
    Incompatible {
        /// The backup id.
        backup: String,
        /// The engine the backup was taken from.
        engine: String,
        /// The backup's dump format.
        format: String,
        /// The engine the target restores.
        target: String,
    },

    /// An object is larger than the operation allows (a manifest or
    /// marker read into memory, an encoded chunk in a pack).
    #[error("{what} is {size} bytes, more than the {limit} allowed: it is not what it should be")]
    TooLarge {
        /// The object.
        what: String,
        /// Its size in bytes (at least).
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },

    /// A task of the library's own failed (it panicked or was aborted):
    /// a bug, or a shutdown.
    #[error("{what} failed: {source}")]
    Task {
        /// What the task was doing.
        what: &'static str,
        /// Why it stopped.
        #[source]
        source: tokio::task::JoinError,
    },

    /// Stored bytes do not match what the manifest recorded: a corrupt or
    /// truncated artifact. Nothing was applied.
    #[error("integrity check failed for {what}: {detail}")]
    Integrity {
        /// Which artifact failed.
        what: String,
        /// What differed (expected vs actual digest or size).
        detail: String,
    },

    /// An encrypted artifact could not be decrypted (no identity, wrong
    /// key). Nothing was applied.
    #[error("cannot decrypt {what}: {detail}")]
    Decryption {
        /// Which artifact.
        what: String,
        /// Why.
        detail: String,
    },

    /// An external tool (pg_dump, pg_restore, ...) could not be found.
    #[error("{tool} not found: {hint}")]
    ToolNotFound {
        /// The program that is missing.
        tool: String,
        /// How to fix it.
        hint: String,
    },

    /// An external tool is too old for the server it must talk to.
    #[error("{tool} {found} is older than the server ({server}): {hint}")]
    ToolTooOld {
        /// The program.
        tool: String,
        /// Its version.
        found: String,
        /// The server version.
        server: String,
        /// How to fix it.
        hint: String,
    },

    /// The database server could not be reached.
    #[error("cannot connect to {engine} server: {detail}")]
    Connection {
        /// `postgres`, `mongodb`, ...
        engine: &'static str,
        /// What the client reported, with secrets removed.
        detail: String,
    },

    /// The server rejected the credentials.
    #[error("authentication failed for {engine}: {detail}")]
    Authentication {
        /// `postgres`, `mongodb`, ...
        engine: &'static str,
        /// What the server reported, with secrets removed.
        detail: String,
    },

    /// The named database does not exist on the server.
    #[error("{engine} database {database:?} does not exist")]
    DatabaseMissing {
        /// `postgres`, `mongodb`, ...
        engine: &'static str,
        /// The database name.
        database: String,
    },

    /// The dump side failed (tool exit status, server error mid-stream).
    #[error("{engine} dump failed: {detail}")]
    Dump {
        /// `postgres`, `mongodb`, ...
        engine: &'static str,
        /// Exit status and captured stderr, with secrets removed.
        detail: String,
    },

    /// The source reported success but its dump is no dump: empty, or not
    /// starting with its format's signature. Nothing was committed.
    #[error("{engine} dump rejected: {detail}")]
    InvalidDump {
        /// `postgres`, `mongodb`, ...
        engine: String,
        /// What is wrong with it.
        detail: String,
    },

    /// The restore side failed; see `detail` for what was (not) applied.
    #[error("{engine} restore failed: {detail}")]
    Restore {
        /// `postgres`, `mongodb`, ...
        engine: &'static str,
        /// Exit status and captured stderr, with secrets removed.
        detail: String,
    },

    /// The source produced no bytes for longer than the watchdog allows.
    #[error("stalled: no progress for {seconds} s")]
    Stalled {
        /// How long nothing happened.
        seconds: u64,
    },

    /// Another operation holds what this one needs (a garbage collection
    /// running while a deduplicating backup wants to start, or the other
    /// way round). Retrying later may succeed.
    #[error("{what} is busy: {detail}")]
    Busy {
        /// What is busy (`tenant acme`).
        what: String,
        /// Who holds it and since when.
        detail: String,
    },

    /// A backup other backups depend on ([`Manifest::parent`](crate::Manifest::parent))
    /// cannot be deleted while they exist: they would no longer restore.
    #[error(
        "backup {backup} is the parent of {} backup(s) that need it to restore ({}); delete those first",
        dependents.len(),
        dependents.join(", ")
    )]
    HasDependents {
        /// The backup asked to be deleted.
        backup: String,
        /// The ids of the backups whose parent it is.
        dependents: Vec<String>,
    },

    /// The operation was cancelled by the caller or by shutdown.
    #[error("cancelled")]
    Cancelled,

    /// The store refused the credentials or the operation.
    #[error("access denied by {store}: {detail}")]
    AccessDenied {
        /// Which store.
        store: String,
        /// What it said, plus a hint about credentials.
        detail: String,
    },

    /// The destination ran out of space.
    #[error("no space left in {store}")]
    StorageFull {
        /// Which store.
        store: String,
    },

    /// The store does not support this operation.
    #[error("{store} does not support {operation}")]
    Unsupported {
        /// Which store.
        store: String,
        /// What was asked.
        operation: &'static str,
    },

    /// Any other store failure.
    #[error("{store} error: {source}")]
    Store {
        /// Which store.
        store: String,
        /// Whether retrying the same call may succeed.
        retryable: bool,
        /// The underlying failure.
        #[source]
        source: BoxError,
    },

    /// A compression or decompression stage failed.
    #[error("{algorithm} codec error: {source}")]
    Codec {
        /// `gzip`, `zstd`, ...
        algorithm: &'static str,
        /// The codec's error.
        #[source]
        source: std::io::Error,
    },

    /// A manifest could not be parsed or has an unknown version.
    #[error("invalid manifest {key}: {detail}")]
    Manifest {
        /// The manifest key.
        key: String,
        /// What is wrong with it.
        detail: String,
    },

    /// A local I/O failure outside any store.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether retrying the same call may succeed (network hiccups, server
    /// busy). Integrity, configuration and authentication errors are
    /// permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Store { retryable, .. } => *retryable,
            Error::Connection { .. } | Error::Stalled { .. } | Error::Busy { .. } => true,
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
            ),
            _ => false,
        }
    }

    /// Shorthand for an [`Error::Io`] with context.
    pub fn io(context: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            context: context.to_string(),
            source,
        }
    }

    /// Shorthand for a permanent [`Error::Store`].
    pub fn store(store: impl fmt::Display, source: impl Into<BoxError>) -> Self {
        Error::Store {
            store: store.to_string(),
            retryable: false,
            source: source.into(),
        }
    }

    /// Shorthand for [`Error::Task`].
    pub fn task(what: &'static str, source: tokio::task::JoinError) -> Self {
        Error::Task { what, source }
    }

    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(what: impl fmt::Display) -> Self {
        Error::NotFound {
            what: what.to_string(),
        }
    }

    /// Maps an I/O error raised by a store into the matching variant:
    /// not-found, already-exists, disk full, permission, or generic.
    pub fn from_store_io(store: impl fmt::Display, key: &str, err: std::io::Error) -> Self {
        use std::io::ErrorKind;
        match err.kind() {
            ErrorKind::NotFound => Error::not_found(key),
            ErrorKind::AlreadyExists => Error::AlreadyExists {
                key: key.to_string(),
            },
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => Error::StorageFull {
                store: store.to_string(),
            },
            ErrorKind::PermissionDenied => Error::AccessDenied {
                store: store.to_string(),
                detail: format!("{key}: {err}"),
            },
            ErrorKind::Interrupted | ErrorKind::TimedOut => Error::Store {
                store: store.to_string(),
                retryable: true,
                source: format!("{key}: {err}").into(),
            },
            _ => Error::Store {
                store: store.to_string(),
                retryable: false,
                source: format!("{key}: {err}").into(),
            },
        }
    }

    /// Converts this error into an `io::Error` so it can travel through
    /// `AsyncRead`/`AsyncWrite` stages; [`Error::from_io`] recovers it.
    pub fn into_io(self) -> std::io::Error {
        std::io::Error::other(self)
    }

    /// Recovers an [`Error`] that travelled through an `io::Error`, or wraps
    /// a plain one with `context`.
    pub fn from_io(context: impl fmt::Display, err: std::io::Error) -> Self {
        if err.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            let inner = err.into_inner().expect("checked above");
            return *inner.downcast::<Error>().expect("checked above");
        }
        if err.kind() == std::io::ErrorKind::StorageFull {
            return Error::StorageFull {
                store: context.to_string(),
            };
        }
        Error::io(context, err)
    }
}

/// Which side of an engine adapter failed: a dump ([`Error::Dump`]) or a
/// restore ([`Error::Restore`]). Adapters whose error mapping is shared by
/// both sides take one of these and build the variant with [`Side::error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Reading from the database.
    Dump,
    /// Writing into the database.
    Restore,
}

impl Side {
    /// [`Error::Dump`] or [`Error::Restore`] of `engine` with `detail`.
    pub fn error(self, engine: &'static str, detail: impl Into<String>) -> Error {
        let detail = detail.into();
        match self {
            Side::Dump => Error::Dump { engine, detail },
            Side::Restore => Error::Restore { engine, detail },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_survives_io_round_trip() {
        let original = Error::Integrity {
            what: "x".into(),
            detail: "sha256 mismatch".into(),
        };
        let back = Error::from_io("ctx", original.into_io());
        assert!(matches!(back, Error::Integrity { .. }), "{back:?}");
    }

    #[tokio::test]
    async fn a_failed_task_keeps_its_cause() {
        let join = tokio::spawn(async { panic!("boom") }).await.unwrap_err();
        let e = Error::task("the compression task", join);
        let source = std::error::Error::source(&e).expect("the JoinError is kept");
        assert!(source.is::<tokio::task::JoinError>(), "{source:?}");
        assert!(!e.to_string().contains('\n'), "{e}");
        assert!(!matches!(e, Error::Config(_)));
    }

    #[test]
    fn a_side_picks_the_variant() {
        let dump = Side::Dump.error("sqlite", "reading");
        assert!(
            matches!(dump, Error::Dump { engine: "sqlite", ref detail } if detail == "reading")
        );
        let restore = Side::Restore.error("mongodb", String::from("writing"));
        assert_eq!(restore.to_string(), "mongodb restore failed: writing");
    }

    #[test]
    fn plain_io_error_gets_context() {
        let back = Error::from_io("reading dump", std::io::Error::other("boom"));
        assert_eq!(back.to_string(), "reading dump: boom");
    }
}
