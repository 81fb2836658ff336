//! Shared helpers of the integration tests: data generators and database
//! fingerprints.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;

use backup_mongo::TestServer;
use backup_mongo::archive::Crc64;
use bson::spec::BinarySubtype;
use bson::{Binary, Bson, DateTime, Decimal128, Document, RawDocumentBuf, Regex, Timestamp, doc};
use futures::TryStreamExt;
use mongodb::Client;
use mongodb::IndexModel;
use mongodb::options::IndexOptions;

pub fn server() -> &'static TestServer {
    let server = TestServer::shared();
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| eprintln!("MongoDB tests run against {}", server.describe()));
    server
}

pub async fn client() -> Client {
    server().client().await.expect("client")
}

/// A document mixing most BSON types: nested documents, arrays, ObjectId,
/// dates, decimal128, binary (generic and UUID), timestamps, regexes,
/// nulls, 32/64-bit integers, doubles, booleans, strings.
pub fn mixed_doc(i: i64) -> Document {
    let mut oid = [0u8; 12];
    oid[..8].copy_from_slice(&(0x6500_0000_0000_0000_u64 + i as u64).to_be_bytes());
    oid[8..].copy_from_slice(&(i as u32).wrapping_mul(2654435761).to_be_bytes());
    let mut d = doc! {
        "_id": bson::oid::ObjectId::from_bytes(oid),
        "i": i,
        "i32": (i % 100_000) as i32,
        "f": i as f64 * 0.25,
        "s": format!("name-{i:06}-ü"),
        "flag": i % 2 == 0,
        "when": DateTime::from_millis(1_600_000_000_000 + i * 1_000),
        "price": format!("{}.{:02}", i % 10_000, i % 100).parse::<Decimal128>().unwrap(),
        "bin": Binary { subtype: BinarySubtype::Generic, bytes: vec![(i % 251) as u8; (i % 40) as usize] },
        "uuid": Binary { subtype: BinarySubtype::Uuid, bytes: (i as u128).to_be_bytes().to_vec() },
        "tags": ["a", (i % 7) as i32, { "k": i }, [1, 2, [3]]],
        "nested": { "level": { "deep": i, "flag": i % 3 == 0, "nil": Bson::Null, "arr": [{ "x": 1 }, { "x": i }] } },
        "ts": Timestamp { time: 1_700_000_000, increment: (i % 1000) as u32 },
        "re": Regex { pattern: "^n.*e$".into(), options: "i".into() },
        "group": format!("g{}", i % 50),
    };
    if i % 5 == 0 {
        d.insert("sparse_key", i);
    }
    d
}

/// Inserts `mixed_doc(start..start+count)` in batches.
pub async fn insert_mixed(client: &Client, db: &str, coll: &str, start: i64, count: i64) {
    let coll = client.database(db).collection::<Document>(coll);
    let mut i = start;
    while i < start + count {
        let end = (i + 10_000).min(start + count);
        let docs: Vec<Document> = (i..end).map(mixed_doc).collect();
        coll.insert_many(docs).ordered(false).await.expect("insert");
        i = end;
    }
}

/// The source database of the end-to-end tests: `mixed` (mixed BSON types,
/// `docs` documents, 2 secondary indexes), `empty`, `log` (capped, with a
/// validator) and a view `recent` on `mixed`.
pub async fn make_source(client: &Client, db: &str, docs: i64) {
    let database = client.database(db);
    database.create_collection("empty").await.unwrap();
    database
        .run_command(doc! {
            "create": "log",
            "capped": true,
            "size": 1_048_576_i64,
            "max": 5_000_i64,
            "validator": { "msg": { "$type": "string" } },
        })
        .await
        .unwrap();
    database
        .collection::<Document>("log")
        .insert_many((0..200).map(|n| doc! { "n": n, "msg": format!("line {n}") }))
        .await
        .unwrap();
    insert_mixed(client, db, "mixed", 0, docs).await;
    let mixed = database.collection::<Document>("mixed");
    mixed
        .create_index(
            IndexModel::builder()
                .keys(doc! { "group": 1, "when": -1 })
                .options(
                    IndexOptions::builder()
                        .name("group_when".to_string())
                        .build(),
                )
                .build(),
        )
        .await
        .unwrap();
    mixed
        .create_index(
            IndexModel::builder()
                .keys(doc! { "sparse_key": 1 })
                .options(
                    IndexOptions::builder()
                        .name("sparse_key_unique".to_string())
                        .unique(true)
                        .sparse(true)
                        .build(),
                )
                .build(),
        )
        .await
        .unwrap();
    database
        .run_command(doc! {
            "create": "recent",
            "viewOn": "mixed",
            "pipeline": [{ "$match": { "flag": true } }, { "$project": { "i": 1, "when": 1 } }],
        })
        .await
        .unwrap();
}

/// What one collection or view looks like, for equality checks.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionPrint {
    pub kind: String,
    pub options: Document,
    /// Index specs by name, without `ns`.
    pub indexes: BTreeMap<String, Document>,
    pub count: u64,
    /// CRC-64 of every document's raw bytes in `_id` order.
    pub crc: u64,
}

/// Every collection and view of `db` (system ones excepted).
pub async fn fingerprint(client: &Client, db: &str) -> BTreeMap<String, CollectionPrint> {
    let database = client.database(db);
    let specs: Vec<Document> = database
        .run_cursor_command(doc! { "listCollections": 1 })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for spec in specs {
        let name = spec.get_str("name").unwrap().to_string();
        if name.starts_with("system.") {
            continue;
        }
        let kind = spec.get_str("type").unwrap_or("collection").to_string();
        let options = spec.get_document("options").cloned().unwrap_or_default();
        let mut print = CollectionPrint {
            kind: kind.clone(),
            options,
            indexes: BTreeMap::new(),
            count: 0,
            crc: 0,
        };
        if kind == "collection" {
            let indexes: Vec<Document> = database
                .run_cursor_command(doc! { "listIndexes": &name })
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            for mut index in indexes {
                index.remove("ns");
                print
                    .indexes
                    .insert(index.get_str("name").unwrap().to_string(), index);
            }
            let mut crc = Crc64::new();
            let mut cursor = database
                .collection::<RawDocumentBuf>(&name)
                .find(doc! {})
                .sort(doc! { "_id": 1 })
                .await
                .unwrap();
            while cursor.advance().await.unwrap() {
                crc.update(cursor.current().as_bytes());
                print.count += 1;
            }
            print.crc = crc.value();
        }
        out.insert(name, print);
    }
    out
}

/// The fingerprint without collection options (see
/// [`rename_keeps_options`]).
pub fn without_options(
    print: &BTreeMap<String, CollectionPrint>,
) -> BTreeMap<String, CollectionPrint> {
    print
        .iter()
        .map(|(k, v)| {
            let mut v = v.clone();
            if v.kind == "collection" {
                v.options = Document::new();
            }
            (k.clone(), v)
        })
        .collect()
}

/// Whether `renameCollection` (across databases) keeps a collection's
/// options, as MongoDB does. SecantusDB 0.7 drops them (a capped
/// collection with a validator comes out plain), which a staged restore
/// cannot work around without bending the adapter.
pub async fn rename_keeps_options(client: &Client) -> bool {
    let from = TestServer::unique_name("probe_from");
    let to = TestServer::unique_name("probe_to");
    client
        .database(&from)
        .run_command(doc! { "create": "c", "capped": true, "size": 4096_i64 })
        .await
        .unwrap();
    client
        .database("admin")
        .run_command(doc! { "renameCollection": format!("{from}.c"), "to": format!("{to}.c") })
        .await
        .unwrap();
    let specs: Vec<Document> = client
        .database(&to)
        .run_cursor_command(doc! { "listCollections": 1 })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let kept = specs.iter().any(|s| {
        s.get_document("options")
            .is_ok_and(|o| o.get_bool("capped") == Ok(true))
    });
    let _ = client.database(&from).drop().await;
    let _ = client.database(&to).drop().await;
    kept
}

pub async fn drop_db(client: &Client, db: &str) {
    let _ = client.database(db).drop().await;
}

pub async fn database_names(client: &Client) -> Vec<String> {
    client.list_database_names().await.unwrap()
}
