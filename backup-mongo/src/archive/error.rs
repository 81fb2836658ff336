//! What can go wrong while writing, reading or listing an archive.

use super::namespace::Namespace;

/// An archive error. Everything but [`ArchiveError::Usage`],
/// [`ArchiveError::Encode`] and [`ArchiveError::Io`] means the bytes are
/// not a valid, complete archive; those convert into
/// [`backup_core::Error::Integrity`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The stream does not start with the archive magic number.
    #[error(
        "not a mongodump archive: starts with {}, expected 6de29981",
        hex(found)
    )]
    BadMagic {
        /// The first four bytes of the stream.
        found: [u8; 4],
    },

    /// The stream ended before the archive was complete.
    #[error(
        "archive truncated at byte {offset} while reading {reading}{}",
        unfinished(namespaces)
    )]
    Truncated {
        /// Stream length when it ended.
        offset: u64,
        /// What was expected next: "a document", "the prelude", ...
        reading: &'static str,
        /// Namespaces left incomplete: the one being read first, then any
        /// other started or announced namespace that never reached its EOF
        /// block.
        namespaces: Vec<Namespace>,
    },

    /// A namespace's documents do not hash to the CRC of its EOF block.
    #[error(
        "CRC mismatch in {namespace}: archive says {expected:#018x}, documents hash to {actual:#018x}"
    )]
    CrcMismatch {
        /// The corrupt collection.
        namespace: Namespace,
        /// The CRC stored in the EOF block.
        expected: u64,
        /// The CRC of the documents read.
        actual: u64,
    },

    /// A length prefix that is neither a terminator nor a plausible BSON
    /// length (5 bytes to 16 MiB).
    #[error("invalid BSON length {length} at byte {offset}{}", within(namespace.as_ref()))]
    InvalidLength {
        /// Where the length prefix starts.
        offset: u64,
        /// The length read.
        length: i32,
        /// The namespace whose block contains it, if any.
        namespace: Option<Namespace>,
    },

    /// A document that is not well-formed BSON framing (no trailing NUL,
    /// length prefix not matching the bytes given, too large).
    #[error("invalid BSON document at byte {offset}{}: {detail}", within(namespace.as_ref()))]
    InvalidDocument {
        /// Where the document starts (for the writer: the bytes already
        /// written).
        offset: u64,
        /// The namespace it belongs to, if any.
        namespace: Option<Namespace>,
        /// What is wrong.
        detail: String,
    },

    /// The archive's own framing is wrong: an unreadable prelude or
    /// namespace header, a block for a namespace that already ended,
    /// documents after an EOF header, two terminators in a row.
    #[error("malformed archive at byte {offset}: {detail}")]
    Malformed {
        /// Where the offending item starts.
        offset: u64,
        /// What is wrong.
        detail: String,
    },

    /// The collection metadata JSON could not be parsed.
    #[error("invalid metadata for {namespace}: {detail}")]
    InvalidMetadata {
        /// Whose metadata.
        namespace: Namespace,
        /// What is wrong.
        detail: String,
    },

    /// The writer or reader was called out of order (a document outside a
    /// namespace, a namespace the prelude does not list, finishing with a
    /// collection left open, ...). A bug in the caller.
    #[error("archive API misuse: {0}")]
    Usage(String),

    /// A header could not be encoded as BSON.
    #[error("cannot encode archive header: {0}")]
    Encode(String),

    /// Reading the archive failed.
    #[error("reading archive: {0}")]
    Io(#[from] std::io::Error),
}

impl ArchiveError {
    /// Whether the error says the archive bytes are corrupt or incomplete
    /// (as opposed to a caller bug or an I/O failure).
    pub fn is_corruption(&self) -> bool {
        !matches!(
            self,
            ArchiveError::Usage(_) | ArchiveError::Encode(_) | ArchiveError::Io(_)
        )
    }
}

impl From<ArchiveError> for backup_core::Error {
    fn from(err: ArchiveError) -> Self {
        match err {
            ArchiveError::Io(source) => backup_core::Error::io("reading mongodump archive", source),
            err @ (ArchiveError::Usage(_) | ArchiveError::Encode(_)) => backup_core::Error::Dump {
                engine: "mongodb",
                detail: err.to_string(),
            },
            corrupt => backup_core::Error::Integrity {
                what: "mongodump archive".to_string(),
                detail: corrupt.to_string(),
            },
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn within(namespace: Option<&Namespace>) -> String {
    namespace.map_or_else(String::new, |ns| format!(" in {ns}"))
}

fn unfinished(namespaces: &[Namespace]) -> String {
    if namespaces.is_empty() {
        return String::new();
    }
    let mut list = String::from("; incomplete: ");
    for (i, ns) in namespaces.iter().enumerate() {
        if i > 0 {
            list.push_str(", ");
        }
        list.push_str(&ns.to_string());
    }
    list
}
