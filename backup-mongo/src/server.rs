//! What the adapter asks a server before dumping or restoring: its version
//! and topology, and a database's collections with their metadata.

use std::collections::BTreeSet;

use backup_core::{Error, Result};
use bson::spec::BinarySubtype;
use bson::{Bson, Document, doc};
use futures::TryStreamExt;
use mongodb::{Client, Database};

use crate::archive::{CollectionType, MetadataDocument};
use crate::conn::MongoConnection;
use crate::error::{NAMESPACE_NOT_FOUND, Side, classify};

/// The smallest wire version (MongoDB 5.0) with snapshot reads outside
/// transactions.
const SNAPSHOT_WIRE_VERSION: i32 = 13;

/// Version and topology of the deployment.
#[derive(Debug, Clone)]
pub(crate) struct ServerInfo {
    /// `buildInfo.version`, e.g. `8.0.4`.
    pub(crate) version: String,
    /// Replica set or sharded cluster on MongoDB ≥ 5.0: snapshot reads at
    /// one cluster time work outside transactions.
    pub(crate) snapshot_reads: bool,
    /// `replica set "rs0"`, `sharded cluster`, `standalone`.
    pub(crate) topology: String,
}

/// Runs `hello` and `buildInfo`; the first operation, so unreachable
/// servers and bad credentials are reported here, before any data moves.
pub(crate) async fn server_info(
    client: &Client,
    conn: &MongoConnection,
    side: Side,
) -> Result<ServerInfo> {
    let admin = client.database("admin");
    let hello = admin
        .run_command(doc! { "hello": 1 })
        .await
        .map_err(|e| classify(&e, side, "hello", conn))?;
    let build = admin
        .run_command(doc! { "buildInfo": 1 })
        .await
        .map_err(|e| classify(&e, side, "buildInfo", conn))?;
    let version = build.get_str("version").unwrap_or("unknown").to_string();
    let wire = match hello.get("maxWireVersion") {
        Some(Bson::Int32(n)) => *n,
        Some(Bson::Int64(n)) => i32::try_from(*n).unwrap_or(i32::MAX),
        _ => 0,
    };
    let topology = if let Ok(set) = hello.get_str("setName") {
        format!("replica set {set:?}")
    } else if hello.get_str("msg") == Ok("isdbgrid") {
        "sharded cluster".to_string()
    } else {
        "standalone".to_string()
    };
    Ok(ServerInfo {
        version,
        snapshot_reads: wire >= SNAPSHOT_WIRE_VERSION && topology != "standalone",
        topology,
    })
}

/// One collection or view as `listCollections` and `listIndexes` describe
/// it.
#[derive(Debug, Clone)]
pub(crate) struct CollectionSpec {
    pub(crate) name: String,
    pub(crate) kind: CollectionType,
    pub(crate) metadata: MetadataDocument,
}

/// The raw `listCollections` output of `db` (system collections included).
pub(crate) async fn list_collections(
    db: &Database,
    conn: &MongoConnection,
    side: Side,
) -> Result<Vec<Document>> {
    db.run_cursor_command(doc! { "listCollections": 1 })
        .await
        .map_err(|e| classify(&e, side, &format!("listCollections on {}", db.name()), conn))?
        .try_collect()
        .await
        .map_err(|e| classify(&e, side, &format!("listCollections on {}", db.name()), conn))
}

/// Collections and views of `db` to dump, sorted by name: every one but
/// `system.*` when `only` is empty, otherwise exactly those named (an
/// unknown name is an error). Timeseries collections are refused: the
/// native dump does not handle their bucket namespace yet.
pub(crate) async fn plan_dump(
    client: &Client,
    db_name: &str,
    only: &[String],
    conn: &MongoConnection,
) -> Result<Vec<CollectionSpec>> {
    let db = client.database(db_name);
    let listed = list_collections(&db, conn, Side::Dump).await?;
    let wanted: BTreeSet<&str> = only.iter().map(String::as_str).collect();
    let mut found = BTreeSet::new();
    let mut specs = Vec::new();
    for info in listed {
        let Ok(name) = info.get_str("name") else {
            continue;
        };
        if wanted.is_empty() {
            if name.starts_with("system.") {
                continue;
            }
        } else if !wanted.contains(name) {
            continue;
        }
        found.insert(name.to_string());
        let kind = CollectionType::parse(info.get_str("type").unwrap_or("collection"));
        if kind == CollectionType::Timeseries {
            return Err(Error::Dump {
                engine: "mongodb",
                detail: format!(
                    "{db_name}.{name} is a timeseries collection, which the native dump does not support; leave it out with DumpOptions::only or use Method::Tools (mongodump)"
                ),
            });
        }
        let options = info.get_document("options").cloned().unwrap_or_default();
        let uuid = match info.get_document("info").ok().and_then(|i| i.get("uuid")) {
            Some(Bson::Binary(b)) if b.subtype == BinarySubtype::Uuid => {
                Some(hex::encode(&b.bytes))
            }
            _ => None,
        };
        let indexes = if kind == CollectionType::View {
            Vec::new()
        } else {
            match list_indexes(&db, name, conn).await {
                Ok(indexes) => indexes,
                // Dropped since listCollections: nothing to dump.
                Err(None) => continue,
                Err(Some(e)) => return Err(e),
            }
        };
        specs.push(CollectionSpec {
            name: name.to_string(),
            kind: kind.clone(),
            metadata: MetadataDocument {
                options,
                indexes,
                uuid,
                collection_name: name.to_string(),
                collection_type: kind,
            },
        });
    }
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|n| !found.contains(**n))
        .copied()
        .collect();
    if !missing.is_empty() {
        return Err(Error::Config(format!(
            "no collection named {} in MongoDB database {db_name:?}",
            missing.join(", ")
        )));
    }
    if specs.is_empty() && wanted.is_empty() && !database_exists(client, db_name).await {
        return Err(Error::DatabaseMissing {
            engine: "mongodb",
            database: db_name.to_string(),
        });
    }
    specs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(specs)
}

/// `listIndexes` of one collection; `Err(None)` if it no longer exists.
async fn list_indexes(
    db: &Database,
    name: &str,
    conn: &MongoConnection,
) -> std::result::Result<Vec<Document>, Option<Error>> {
    let context = format!("listIndexes on {}.{name}", db.name());
    let cursor = db
        .run_cursor_command(doc! { "listIndexes": name })
        .await
        .map_err(|e| {
            (crate::error::code(&e) != Some(NAMESPACE_NOT_FOUND))
                .then(|| classify(&e, Side::Dump, &context, conn))
        })?;
    cursor
        .try_collect()
        .await
        .map_err(|e| Some(classify(&e, Side::Dump, &context, conn)))
}

/// Whether the server lists `name` among its databases. A database exists
/// in MongoDB only while it has a collection; when the user may not list
/// databases, assume it exists (an empty dump is then the answer).
pub(crate) async fn database_exists(client: &Client, name: &str) -> bool {
    match client
        .list_database_names()
        .filter(doc! { "name": name })
        .authorized_databases(true)
        .await
    {
        Ok(names) => names.iter().any(|n| n == name),
        Err(_) => true,
    }
}

/// Whether `name` is one of MongoDB's system databases (`admin`,
/// `local`, `config`, in any case: MongoDB refuses names differing only in
/// case).
pub fn is_system_database(name: &str) -> bool {
    ["admin", "local", "config"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(name))
}

/// Refuses a system database for `what` ("restore into", "dump").
pub(crate) fn check_not_system(name: &str, what: &str) -> Result<()> {
    if is_system_database(name) {
        return Err(Error::Config(format!(
            "refusing to {what} the MongoDB system database {name:?}; allow it explicitly (allow_system_databases) if that is really meant"
        )));
    }
    Ok(())
}

/// Checks a database name against MongoDB's rules, before anything is
/// created.
pub(crate) fn validate_database_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() >= 64
        || name.chars().any(|c| {
            matches!(
                c,
                '/' | '\\' | '.' | ' ' | '"' | '$' | '*' | '<' | '>' | ':' | '|' | '?' | '\0'
            )
        });
    if bad {
        return Err(Error::Config(format!(
            "invalid MongoDB database name {name:?}: 1 to 63 bytes, none of / \\ . space \" $ * < > : | ?"
        )));
    }
    Ok(())
}
