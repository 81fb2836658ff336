//! The collection metadata mongodump stores as a JSON string in the prelude.

use bson::{Bson, Document};

use super::error::ArchiveError;
use super::namespace::{CollectionType, Namespace};

/// A collection's options and indexes: the document that mongodump writes
/// as `metadata` in the prelude (and as `<collection>.metadata.json` in a
/// dump directory), in canonical Extended JSON v2.
///
/// ```
/// use backup_mongo::archive::{CollectionType, MetadataDocument};
/// use bson::doc;
///
/// let meta = MetadataDocument {
///     indexes: vec![doc! { "v": 2, "key": { "_id": 1 }, "name": "_id_" }],
///     uuid: Some("720e1aa22b1745d79f19750bab293087".into()),
///     ..MetadataDocument::new("Users", CollectionType::Collection)
/// };
/// assert_eq!(
///     meta.to_extended_json(),
///     r#"{"indexes":[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"}],"uuid":"720e1aa22b1745d79f19750bab293087","collectionName":"Users","type":"collection"}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetadataDocument {
    /// Collection options from `listCollections` (`capped`, `validator`,
    /// `viewOn` and `pipeline` for views, `timeseries`, ...). Omitted from
    /// the JSON when empty.
    pub options: Document,
    /// Index specifications from `listIndexes`, in server order; key order
    /// inside `key` is preserved. Empty for views.
    pub indexes: Vec<Document>,
    /// Collection UUID as 32 lowercase hex digits; mongorestore uses it
    /// with `--preserveUUID`. Views have none.
    pub uuid: Option<String>,
    /// The collection name.
    pub collection_name: String,
    /// Collection, view or timeseries; omitted when unspecified.
    pub collection_type: CollectionType,
}

impl MetadataDocument {
    /// Metadata with no options, indexes or UUID.
    pub fn new(collection_name: impl Into<String>, collection_type: CollectionType) -> Self {
        MetadataDocument {
            collection_name: collection_name.into(),
            collection_type,
            ..Self::default()
        }
    }

    /// The metadata as a BSON document, fields in mongodump's order.
    pub fn to_document(&self) -> Document {
        let mut doc = Document::new();
        if !self.options.is_empty() {
            doc.insert("options", self.options.clone());
        }
        doc.insert(
            "indexes",
            self.indexes
                .iter()
                .cloned()
                .map(Bson::Document)
                .collect::<Vec<_>>(),
        );
        if let Some(uuid) = self.uuid.as_deref().filter(|u| !u.is_empty()) {
            doc.insert("uuid", uuid);
        }
        doc.insert("collectionName", self.collection_name.as_str());
        if self.collection_type != CollectionType::Unspecified {
            doc.insert("type", self.collection_type.as_str());
        }
        doc
    }

    /// Canonical Extended JSON v2, compact, as mongodump writes it.
    pub fn to_extended_json(&self) -> String {
        Bson::Document(self.to_document())
            .into_canonical_extjson()
            .to_string()
    }

    /// Parses metadata JSON (canonical or relaxed Extended JSON). Unknown
    /// fields are ignored; `namespace` only labels errors. When `type` is
    /// missing (older tools), it is inferred from the options: `viewOn`
    /// means a view, `timeseries` a timeseries collection.
    pub fn from_extended_json(namespace: &Namespace, json: &str) -> Result<Self, ArchiveError> {
        let invalid = |detail: String| ArchiveError::InvalidMetadata {
            namespace: namespace.clone(),
            detail,
        };
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
        let doc = match Bson::try_from(value).map_err(|e| invalid(e.to_string()))? {
            Bson::Document(doc) => doc,
            other => return Err(invalid(format!("not a document: {other}"))),
        };
        let mut meta = MetadataDocument {
            collection_type: CollectionType::Unspecified,
            ..MetadataDocument::default()
        };
        for (key, value) in doc {
            match (key.as_str(), value) {
                ("options", Bson::Document(options)) => meta.options = options,
                ("indexes", Bson::Array(indexes)) => {
                    for index in indexes {
                        match index {
                            Bson::Document(index) => meta.indexes.push(index),
                            other => {
                                return Err(invalid(format!("index is not a document: {other}")));
                            }
                        }
                    }
                }
                ("indexes", Bson::Null) => {}
                ("uuid", Bson::String(uuid)) => meta.uuid = Some(uuid).filter(|u| !u.is_empty()),
                ("collectionName", Bson::String(name)) => meta.collection_name = name,
                ("type", Bson::String(kind)) => meta.collection_type = CollectionType::parse(&kind),
                (key @ ("options" | "indexes" | "uuid" | "collectionName" | "type"), other) => {
                    return Err(invalid(format!(
                        "field {key:?} has unexpected type {:?}",
                        other.element_type()
                    )));
                }
                _ => {}
            }
        }
        if meta.collection_type == CollectionType::Unspecified {
            // The JSON omits `type` for older tools; so does a view dumped by
            // them, but its options still say what it is.
            if meta.options.contains_key("viewOn") {
                meta.collection_type = CollectionType::View;
            } else if meta.options.contains_key("timeseries") {
                meta.collection_type = CollectionType::Timeseries;
            }
        }
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    use bson::{doc, oid::ObjectId};

    use super::*;

    /// The `metadata` string of a real archive written by mongodump 100.5.2
    /// from MongoDB 5.0.6 for a collection with only the `_id` index.
    const MONGODUMP_USERS: &str = r#"{"indexes":[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"}],"uuid":"720e1aa22b1745d79f19750bab293087","collectionName":"Users","type":"collection"}"#;

    fn users() -> MetadataDocument {
        MetadataDocument {
            indexes: vec![doc! { "v": 2, "key": { "_id": 1 }, "name": "_id_" }],
            uuid: Some("720e1aa22b1745d79f19750bab293087".into()),
            ..MetadataDocument::new("Users", CollectionType::Collection)
        }
    }

    #[test]
    fn writes_what_mongodump_writes() {
        assert_eq!(users().to_extended_json(), MONGODUMP_USERS);
    }

    #[test]
    fn parses_what_mongodump_writes() {
        let ns = Namespace::new("test2", "Users");
        assert_eq!(
            MetadataDocument::from_extended_json(&ns, MONGODUMP_USERS).unwrap(),
            users()
        );
    }

    #[test]
    fn round_trip_keeps_key_order_and_types() {
        let meta = MetadataDocument {
            options: doc! {
                "capped": true,
                "size": 4096_i64,
                "validator": { "$jsonSchema": { "required": ["b", "a"] } },
            },
            indexes: vec![
                doc! { "v": 2, "key": { "_id": 1 }, "name": "_id_" },
                doc! { "v": 2, "key": { "z": -1, "a": 1, "m": "text" }, "name": "z_-1_a_1", "unique": true, "partialFilterExpression": { "at": { "$gt": bson::DateTime::from_millis(0) } } },
                doc! { "v": 2, "key": { "ref": 1 }, "name": "ref_1", "sparse": true, "hint": ObjectId::from_bytes([7; 12]) },
            ],
            uuid: None,
            ..MetadataDocument::new("events", CollectionType::Collection)
        };
        let json = meta.to_extended_json();
        assert!(
            json.starts_with(r#"{"options":{"capped":true,"size":{"$numberLong":"4096"}"#),
            "{json}"
        );
        assert!(
            json.contains(r#""key":{"z":{"$numberInt":"-1"},"a":{"$numberInt":"1"},"m":"text"}"#),
            "{json}"
        );
        assert!(!json.contains("uuid"), "{json}");
        let back =
            MetadataDocument::from_extended_json(&Namespace::new("d", "events"), &json).unwrap();
        assert_eq!(back, meta);
        let keys: Vec<_> = back.indexes[1]
            .get_document("key")
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["z", "a", "m"]);
    }

    #[test]
    fn view_metadata() {
        let view = MetadataDocument {
            options: doc! { "viewOn": "events", "pipeline": [{ "$match": { "kind": "a" } }] },
            ..MetadataDocument::new("a_events", CollectionType::View)
        };
        assert_eq!(
            view.to_extended_json(),
            r#"{"options":{"viewOn":"events","pipeline":[{"$match":{"kind":"a"}}]},"indexes":[],"collectionName":"a_events","type":"view"}"#
        );
        // Older tools wrote no `type`; the options still identify a view.
        let old = r#"{"options":{"viewOn":"events","pipeline":[]},"indexes":[],"collectionName":"a_events"}"#;
        let parsed =
            MetadataDocument::from_extended_json(&Namespace::new("d", "a_events"), old).unwrap();
        assert_eq!(parsed.collection_type, CollectionType::View);
    }

    #[test]
    fn rejects_bad_json_naming_the_collection() {
        let ns = Namespace::new("shop", "orders");
        let err = MetadataDocument::from_extended_json(&ns, "{\"indexes\": 3}").unwrap_err();
        assert!(err.to_string().contains("shop.orders"), "{err}");
        let err = MetadataDocument::from_extended_json(&ns, "not json").unwrap_err();
        assert!(
            matches!(err, ArchiveError::InvalidMetadata { .. }),
            "{err:?}"
        );
    }
}
