//! Names of what an archive holds: a [`Namespace`] and its
//! [`CollectionType`].

use std::fmt;

/// A database and collection name pair (`db.collection`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace {
    /// Database name. Empty for mongodump's top-level oplog.
    pub db: String,
    /// Collection name (for timeseries data, `system.buckets.<name>`).
    pub collection: String,
}

impl Namespace {
    /// The namespace `db.collection`.
    pub fn new(db: impl Into<String>, collection: impl Into<String>) -> Self {
        Namespace {
            db: db.into(),
            collection: collection.into(),
        }
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.db, self.collection)
    }
}

/// The kind of a collection, as listed by `listCollections` and stored in
/// the prelude's `type` field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum CollectionType {
    /// A regular collection.
    #[default]
    Collection,
    /// A view: metadata only, no documents.
    View,
    /// A timeseries collection; its data lives in `system.buckets.<name>`
    /// on servers before 8.3.
    Timeseries,
    /// No type recorded (archives from tools that predate the field).
    Unspecified,
    /// Any other value, kept verbatim.
    Other(String),
}

impl CollectionType {
    /// The string stored in the archive (empty for
    /// [`CollectionType::Unspecified`]).
    pub fn as_str(&self) -> &str {
        match self {
            CollectionType::Collection => "collection",
            CollectionType::View => "view",
            CollectionType::Timeseries => "timeseries",
            CollectionType::Unspecified => "",
            CollectionType::Other(s) => s,
        }
    }

    /// Parses the stored string; the inverse of [`CollectionType::as_str`].
    pub fn parse(s: &str) -> Self {
        match s {
            "collection" => CollectionType::Collection,
            "view" => CollectionType::View,
            "timeseries" => CollectionType::Timeseries,
            "" => CollectionType::Unspecified,
            other => CollectionType::Other(other.to_string()),
        }
    }
}

impl fmt::Display for CollectionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
