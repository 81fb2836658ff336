//! The BSON documents of the archive's own framing: the prelude header, one
//! metadata entry per collection, and the namespace headers between blocks.

use bson::{Bson, Document, RawBsonRef, RawDocument, doc};
use bytes::{BufMut, BytesMut};

use super::error::ArchiveError;
use super::format::FORMAT_VERSION;
use super::metadata::MetadataDocument;
use super::namespace::{CollectionType, Namespace};

/// The document right after the magic number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveHeader {
    /// How many collections the dump wrote concurrently. mongorestore
    /// restores `max(this, --numParallelCollections)` collections at once,
    /// so 1 never limits it.
    pub concurrent_collections: i32,
    /// Archive format version; always [`FORMAT_VERSION`] (`"0.1"`).
    pub format_version: String,
    /// Version of the dumped server, e.g. `"7.0.14"`. mongorestore parses
    /// it as a version number when it reads the prelude, so it should be
    /// the server's real version string.
    pub server_version: String,
    /// Version of the tool that wrote the archive.
    pub tool_version: String,
}

impl ArchiveHeader {
    /// A header for an archive written one collection at a time.
    pub fn new(server_version: impl Into<String>, tool_version: impl Into<String>) -> Self {
        ArchiveHeader {
            concurrent_collections: 1,
            format_version: FORMAT_VERSION.to_string(),
            server_version: server_version.into(),
            tool_version: tool_version.into(),
        }
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), ArchiveError> {
        let header = doc! {
            "concurrent_collections": self.concurrent_collections,
            "version": &self.format_version,
            "server_version": &self.server_version,
            "tool_version": &self.tool_version,
        };
        write_document(&header, out)
    }

    /// Parses the prelude header. Missing fields read as zero or empty, as
    /// mongo-tools does; fields of the wrong type are errors.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        let doc = raw(bytes)?;
        Ok(ArchiveHeader {
            concurrent_collections: match get(doc, "concurrent_collections")? {
                None => 0,
                Some(RawBsonRef::Int32(n)) => n,
                Some(RawBsonRef::Int64(n)) => i32::try_from(n)
                    .map_err(|_| format!("concurrent_collections {n} out of range"))?,
                Some(other) => return Err(wrong_type("concurrent_collections", "int32", other)),
            },
            format_version: get_str(doc, "version")?.unwrap_or_default().to_string(),
            server_version: get_str(doc, "server_version")?
                .unwrap_or_default()
                .to_string(),
            tool_version: get_str(doc, "tool_version")?
                .unwrap_or_default()
                .to_string(),
        })
    }
}

/// One collection's entry in the prelude.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionMetadata {
    /// Database and collection name.
    pub namespace: Namespace,
    /// Options and indexes as canonical Extended JSON: what mongodump would
    /// write to `<collection>.metadata.json`. Build it with
    /// [`MetadataDocument::to_extended_json`](super::MetadataDocument::to_extended_json).
    pub metadata: String,
    /// Uncompressed data size in bytes. mongodump always writes 0 and
    /// mongorestore uses it only to order its work.
    pub size: i64,
    /// Collection, view or timeseries.
    pub collection_type: CollectionType,
}

impl CollectionMetadata {
    /// An entry for `namespace` with its metadata JSON, size 0.
    pub fn new(
        namespace: Namespace,
        collection_type: CollectionType,
        metadata: impl Into<String>,
    ) -> Self {
        CollectionMetadata {
            namespace,
            metadata: metadata.into(),
            size: 0,
            collection_type,
        }
    }

    /// Parses [`CollectionMetadata::metadata`]; an empty string (entries
    /// without metadata) gives empty options and no indexes.
    pub fn parse_metadata(&self) -> Result<MetadataDocument, ArchiveError> {
        if self.metadata.is_empty() {
            return Ok(MetadataDocument::new(
                self.namespace.collection.clone(),
                self.collection_type.clone(),
            ));
        }
        MetadataDocument::from_extended_json(&self.namespace, &self.metadata)
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), ArchiveError> {
        // Go encodes its `int` field as int32 whenever the value fits.
        let size = match i32::try_from(self.size) {
            Ok(small) => Bson::Int32(small),
            Err(_) => Bson::Int64(self.size),
        };
        let entry = doc! {
            "db": &self.namespace.db,
            "collection": &self.namespace.collection,
            "metadata": &self.metadata,
            "size": size,
            "type": self.collection_type.as_str(),
        };
        write_document(&entry, out)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        let doc = raw(bytes)?;
        let size = match get(doc, "size")? {
            None => 0,
            Some(RawBsonRef::Int32(n)) => i64::from(n),
            Some(RawBsonRef::Int64(n)) => n,
            // Whole sizes written as doubles by some other tool.
            Some(RawBsonRef::Double(f)) if f.fract() == 0.0 => f as i64,
            Some(other) => return Err(wrong_type("size", "int32", other)),
        };
        Ok(CollectionMetadata {
            namespace: Namespace::new(
                get_str(doc, "db")?.unwrap_or_default(),
                get_str(doc, "collection")?.unwrap_or_default(),
            ),
            metadata: get_str(doc, "metadata")?.unwrap_or_default().to_string(),
            size,
            collection_type: CollectionType::parse(get_str(doc, "type")?.unwrap_or_default()),
        })
    }

    /// Whether mongorestore expects this entry's namespace to reach its EOF
    /// block before the archive ends (everything but timeseries).
    pub(crate) fn requires_data_block(&self) -> bool {
        self.collection_type != CollectionType::Timeseries
    }

    /// Whether `data` is where this entry's documents are written.
    pub(crate) fn owns_data_namespace(&self, data: &Namespace) -> bool {
        if data.db != self.namespace.db {
            return false;
        }
        if data.collection == self.namespace.collection {
            return true;
        }
        self.collection_type == CollectionType::Timeseries
            && data.collection.strip_prefix("system.buckets.")
                == Some(self.namespace.collection.as_str())
    }
}

/// The header in front of every block: `EOF: false` starts a segment of
/// documents, `EOF: true` closes the namespace and carries its CRC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamespaceHeader {
    pub(crate) namespace: Namespace,
    pub(crate) eof: bool,
    pub(crate) crc: i64,
}

impl NamespaceHeader {
    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), ArchiveError> {
        let header = doc! {
            "db": &self.namespace.db,
            "collection": &self.namespace.collection,
            "EOF": self.eof,
            "CRC": Bson::Int64(self.crc),
        };
        write_document(&header, out)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        let doc = raw(bytes)?;
        let collection = get_str(doc, "collection")?.unwrap_or_default();
        if collection.is_empty() {
            return Err("namespace header has no collection name".to_string());
        }
        Ok(NamespaceHeader {
            namespace: Namespace::new(get_str(doc, "db")?.unwrap_or_default(), collection),
            eof: match get(doc, "EOF")? {
                None => false,
                Some(RawBsonRef::Boolean(b)) => b,
                Some(other) => return Err(wrong_type("EOF", "bool", other)),
            },
            crc: match get(doc, "CRC")? {
                None => 0,
                Some(RawBsonRef::Int64(n)) => n,
                Some(RawBsonRef::Int32(n)) => i64::from(n),
                Some(other) => return Err(wrong_type("CRC", "int64", other)),
            },
        })
    }
}

fn write_document(doc: &Document, out: &mut BytesMut) -> Result<(), ArchiveError> {
    doc.to_writer(out.writer())
        .map_err(|e| ArchiveError::Encode(e.to_string()))
}

fn raw(bytes: &[u8]) -> Result<&RawDocument, String> {
    RawDocument::from_bytes(bytes).map_err(|e| e.to_string())
}

fn get<'a>(doc: &'a RawDocument, key: &str) -> Result<Option<RawBsonRef<'a>>, String> {
    doc.get(key).map_err(|e| format!("field {key:?}: {e}"))
}

fn get_str<'a>(doc: &'a RawDocument, key: &str) -> Result<Option<&'a str>, String> {
    match get(doc, key)? {
        None => Ok(None),
        Some(RawBsonRef::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong_type(key, "string", other)),
    }
}

fn wrong_type(key: &str, expected: &str, found: RawBsonRef<'_>) -> String {
    format!(
        "field {key:?} should be {expected}, found {:?}",
        found.element_type()
    )
}
