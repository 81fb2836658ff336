//! The engine conformance suites of `backup_core::testing` against a
//! MongoDB-compatible server: a SecantusDB stand-in of this test's own,
//! started with authentication on (the shared stand-in runs without it and
//! accepts any password), or the server named by `MONGODB_URI`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use backup_core::testing::{
    EngineCapabilities, EngineHarness, source_conformance, target_conformance,
};
use backup_core::{DumpSource, Error, RestoreTarget, Result, Secret};
use backup_mongo::archive::Crc64;
use backup_mongo::{MongoConnection, MongoSource, MongoTarget, TestServer, ThrowawaySecantus};
use bson::{RawDocumentBuf, doc};

/// Documents of the harness's `items` collection, of about 4 KiB each: 18
/// MiB in all, more than one 16 MiB cursor batch, so that a dump read
/// past its first chunk still has a cursor open on the server.
const ITEMS: u64 = 4600;

struct Harness {
    /// The connection string, credentials included.
    uri: Secret,
    /// The password in `uri`, if any.
    password: Option<Secret>,
    /// A client of the harness's own, for seeding, digests and kills.
    client: mongodb::Client,
    /// The stand-in this harness started, stopped when it is dropped.
    _own: Option<ThrowawaySecantus>,
}

fn driver(e: mongodb::error::Error) -> Error {
    Error::Dump {
        engine: "mongodb",
        detail: format!("conformance harness: {e}"),
    }
}

impl Harness {
    /// A stand-in of its own with a `backup` user and `--auth`, or the
    /// server of `MONGODB_URI`.
    async fn start() -> Harness {
        let shared = std::env::var(backup_mongo::TEST_URI_VAR).is_ok_and(|u| !u.is_empty());
        let (uri, password, own) = if shared {
            let uri = TestServer::shared().uri().clone();
            let password = mongodb::options::ConnectionString::parse(uri.expose())
                .ok()
                .and_then(|c| c.credential)
                .and_then(|c| c.password)
                .map(Secret::new);
            (uri, password, None)
        } else {
            let password = format!("Pw-{:016x}", rand::random::<u64>());
            let own = ThrowawaySecantus::start_with_user("backup", &password, "root", "admin")
                .await
                .expect("starting a SecantusDB stand-in with a backup user and --auth");
            let uri = own
                .uri()
                .replacen("mongodb://", &format!("mongodb://backup:{password}@"), 1)
                + "&authSource=admin";
            (Secret::new(uri), Some(Secret::new(password)), Some(own))
        };
        let client = mongodb::Client::with_uri_str(uri.expose())
            .await
            .expect("a client of the test server");
        Harness {
            uri,
            password,
            client,
            _own: own,
        }
    }

    fn connection(&self, database: &str) -> MongoConnection {
        MongoConnection::from_uri(self.uri.expose())
            .expect("a valid connection string")
            .with_database(database)
    }
}

#[async_trait]
impl EngineHarness for Harness {
    async fn create_database(&self, seed: u64) -> Result<String> {
        let name = TestServer::unique_name("conformance");
        let db = self.client.database(&name);
        let items = db.collection::<bson::Document>("items");
        let filler = |i: u64| format!("{:016x}", i.wrapping_mul(seed | 1) ^ seed).repeat(250);
        let mut i = 0;
        while i < ITEMS {
            let end = (i + 500).min(ITEMS);
            let batch: Vec<bson::Document> = (i..end)
                .map(|n| doc! { "_id": n as i64, "seed": seed as i64, "group": (n % 10) as i32, "filler": filler(n) })
                .collect();
            items.insert_many(batch).await.map_err(driver)?;
            i = end;
        }
        db.run_command(doc! {
            "createIndexes": "items",
            "indexes": [{ "key": { "group": 1 }, "name": "group_1" }],
        })
        .await
        .map_err(driver)?;
        db.collection::<bson::Document>("settings")
            .insert_one(doc! { "_id": "seed", "value": seed as i64 })
            .await
            .map_err(driver)?;
        Ok(name)
    }

    async fn digest(&self, database: &str) -> Result<Option<String>> {
        let names = self.client.list_database_names().await.map_err(driver)?;
        if !names.iter().any(|n| n == database) {
            return Ok(None);
        }
        let db = self.client.database(database);
        let mut collections = db.list_collection_names().await.map_err(driver)?;
        collections.sort();
        let mut out = BTreeMap::new();
        for name in collections
            .into_iter()
            .filter(|n| !n.starts_with("system."))
        {
            let mut cursor = db
                .collection::<RawDocumentBuf>(&name)
                .find(doc! {})
                .sort(doc! { "_id": 1 })
                .await
                .map_err(driver)?;
            let (mut crc, mut count) = (Crc64::new(), 0u64);
            while cursor.advance().await.map_err(driver)? {
                crc.update(cursor.current().as_bytes());
                count += 1;
            }
            out.insert(name, (count, crc.value()));
        }
        Ok(Some(format!("{out:?}")))
    }

    async fn drop_database(&self, database: &str) -> Result<()> {
        self.client.database(database).drop().await.map_err(driver)
    }

    fn source(&self, database: &str) -> Box<dyn DumpSource> {
        Box::new(MongoSource::new(self.connection(database)))
    }

    fn source_with_bad_credentials(&self, database: &str) -> Option<(Box<dyn DumpSource>, Secret)> {
        self.password.as_ref()?;
        let wrong = Secret::new(format!("Wrong-{:016x}", rand::random::<u64>()));
        let conn = self.connection(database).with_password(wrong.clone());
        Some((Box::new(MongoSource::new(conn)), wrong))
    }

    fn target(&self) -> Box<dyn RestoreTarget> {
        Box::new(MongoTarget::new(self.connection("admin")))
    }

    /// Kills the server cursors open on `database`, as an operator's
    /// `killCursors` would: the dump's next `getMore` fails. The dump's
    /// first chunk may be its prelude alone, sent before any collection is
    /// read, so this waits for a cursor to appear; the collection is larger
    /// than one cursor batch, so the cursor stays open while the dump waits
    /// for its reader.
    async fn kill_dump(&self, database: &str) -> Result<()> {
        let prefix = format!("{database}.");
        let started = std::time::Instant::now();
        loop {
            let ops = self
                .client
                .database("admin")
                .run_command(doc! { "currentOp": 1, "idleCursors": true })
                .await
                .map_err(driver)?;
            let mut killed = 0;
            for op in ops.get_array("inprog").into_iter().flatten() {
                let Some(op) = op.as_document() else { continue };
                let (Ok(ns), Ok(id)) = (op.get_str("ns"), op.get_i64("cursorId")) else {
                    continue;
                };
                let Some(collection) = ns.strip_prefix(&prefix) else {
                    continue;
                };
                self.client
                    .database(database)
                    .run_command(doc! { "killCursors": collection, "cursors": [id] })
                    .await
                    .map_err(driver)?;
                killed += 1;
            }
            if killed > 0 {
                return Ok(());
            }
            if started.elapsed() > std::time::Duration::from_secs(120) {
                return Err(Error::Dump {
                    engine: "mongodb",
                    detail: format!("conformance harness: no cursor opened on {database}"),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Nothing to end: a native restore runs no child process, and the
    /// heartbeat an abandoned one leaves behind only refreshes a marker
    /// that `remove_leftovers` with no grace ignores.
    async fn kill_restore(&self, _target: &str) -> Result<()> {
        Ok(())
    }

    fn secrets(&self) -> Vec<Secret> {
        self.password.iter().cloned().collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_passes_the_engine_conformance_suites() {
    let harness = Harness::start().await;
    let caps = EngineCapabilities::default()
        .credentials(harness.password.is_some())
        .staging(true);
    source_conformance(&harness, caps).await;
    target_conformance(&harness, caps).await;
    tokio::task::spawn_blocking(move || drop(harness))
        .await
        .unwrap();
}
