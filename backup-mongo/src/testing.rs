//! Servers for tests, demos and benchmarks (feature `throwaway`): a
//! disposable SecantusDB — a MongoDB-compatible stand-in, **not MongoDB**
//! — or the real server named by `MONGODB_URI`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use backup_core::testing::server::{ServerProcess, free_port, temp_dir};
use backup_core::{Error, Result, Secret};

use crate::conn::MongoConnection;

/// Environment variable naming a real MongoDB deployment for the test
/// suites (`mongodb://user:password@host:port/?authSource=admin`, a user
/// allowed to create and drop databases). When unset, tests start a
/// [`ThrowawaySecantus`].
pub const TEST_URI_VAR: &str = "MONGODB_URI";

/// Environment variable with the path of `secantusd-py`, when it is
/// neither on `$PATH` nor in `~/.cache/backup-tests/secantus-venv/bin`.
pub const SECANTUS_VAR: &str = "BACKUP_TEST_SECANTUS";

/// How long a starting server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// A SecantusDB server (`secantusd-py`: the MongoDB wire protocol over
/// WiredTiger, presenting itself as a single-node replica set running
/// MongoDB 8.2) on a free loopback port with its data in a temporary
/// directory. It is a stand-in for tests, not MongoDB: where it deviates,
/// the tests say so.
///
/// Killed (with its process group) and its directory deleted when
/// dropped; a watcher process also does both if the process that started
/// it dies without dropping it.
#[derive(Debug)]
pub struct ThrowawaySecantus {
    process: ServerProcess,
    dir: PathBuf,
    binary: PathBuf,
}

impl ThrowawaySecantus {
    /// Where `secantusd-py` is: `$BACKUP_TEST_SECANTUS`, `$PATH`, or the
    /// venv `.ci/test.sh` creates (`~/.cache/backup-tests/secantus-venv`).
    pub fn find_binary() -> Result<PathBuf> {
        if let Some(path) = std::env::var_os(SECANTUS_VAR) {
            let path = PathBuf::from(path);
            return if path.is_file() {
                Ok(path)
            } else {
                Err(Error::ToolNotFound {
                    tool: "secantusd-py".into(),
                    hint: format!("{SECANTUS_VAR}={} is not a file", path.display()),
                })
            };
        }
        let on_path = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("secantusd-py"))
                .find(|p| p.is_file())
        });
        let in_cache = std::env::var_os("HOME").map(|home| {
            Path::new(&home).join(".cache/backup-tests/secantus-venv/bin/secantusd-py")
        });
        on_path
            .or(in_cache.filter(|p| p.is_file()))
            .ok_or_else(|| Error::ToolNotFound {
                tool: "secantusd-py".into(),
                hint: format!(
                    "python3 -m venv ~/.cache/backup-tests/secantus-venv && ~/.cache/backup-tests/secantus-venv/bin/pip install --pre SecantusDB (or run .ci/test.sh), set {SECANTUS_VAR}, or point {TEST_URI_VAR} at a MongoDB server"
                ),
            })
    }

    /// Starts a server and waits until it accepts connections (blocking;
    /// a few seconds).
    pub fn start() -> Result<ThrowawaySecantus> {
        let binary = Self::find_binary()?;
        let dir = temp_dir("backup-secantus-", 0o700)?;
        let mut last = None;
        for _ in 0..3 {
            match spawn_server(&binary, &dir, free_port()?, false) {
                Ok(process) => {
                    return Ok(ThrowawaySecantus {
                        process,
                        dir,
                        binary,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Err(last.expect("at least one attempt"))
    }

    /// Restarts the server on the same port and data with authentication
    /// required (`--auth`, SCRAM-SHA-256): create users first, without
    /// authentication, then call this. Blocking.
    pub fn restart_with_auth(&mut self) -> Result<()> {
        // SIGTERM, so WiredTiger checkpoints what was written.
        self.process.terminate(Duration::from_secs(30));
        self.process = spawn_server(&self.binary, &self.dir, self.port(), true)?;
        Ok(())
    }

    /// Starts a server, creates `user` with `password` and role `role` on
    /// database `db` (`"root"` on `"admin"` for a superuser), then
    /// restarts it with authentication required
    /// ([`restart_with_auth`](Self::restart_with_auth)). The blocking
    /// steps run on tokio's blocking pool.
    pub async fn start_with_user(
        user: &str,
        password: &str,
        role: &str,
        db: &str,
    ) -> Result<ThrowawaySecantus> {
        let mut server = tokio::task::spawn_blocking(Self::start)
            .await
            .map_err(|e| Error::task("starting the stand-in", e))??;
        let conn = MongoConnection::from_uri(&server.uri())?.with_database(db);
        conn.client()
            .await?
            .database(db)
            .run_command(bson::doc! {
                "createUser": user, "pwd": password, "roles": [{ "role": role, "db": db }],
            })
            .await
            .map_err(|e| {
                crate::error::classify(&e, backup_core::Side::Restore, "creating a user", &conn)
            })?;
        tokio::task::spawn_blocking(move || server.restart_with_auth().map(|()| server))
            .await
            .map_err(|e| Error::task("restarting the stand-in", e))?
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.process.port()
    }

    /// `mongodb://127.0.0.1:<port>/?directConnection=true&connectTimeoutMS=120000`.
    ///
    /// The long connect timeout is for the stand-in: the driver's server
    /// monitor reads its heartbeat replies with this timeout (10 s by
    /// default) and, when one is late, interrupts every connection in use.
    /// A single-threaded Python server busy answering a large query on a
    /// loaded two-core machine can be that late; a real `mongod` is not.
    pub fn uri(&self) -> String {
        format!(
            "mongodb://127.0.0.1:{}/?directConnection=true&connectTimeoutMS=120000",
            self.port()
        )
    }

    /// Stops the server and deletes its files. Called by `Drop`.
    pub fn stop(&mut self) {
        self.process.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for ThrowawaySecantus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `secantusd-py` on `port` with its data and log in
/// `dir/server-<port>` (one per port, so a failed attempt never shares
/// files with the next), and waits until it accepts connections.
fn spawn_server(binary: &Path, dir: &Path, port: u16, auth: bool) -> Result<ServerProcess> {
    let home = dir.join(format!("server-{port}"));
    std::fs::create_dir_all(&home).map_err(|e| Error::io("creating the server directory", e))?;
    let mut cmd = Command::new(binary);
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--storage-path")
        .arg(home.join("data"))
        .args(["--log-level", "WARNING"])
        .current_dir(&home);
    if auth {
        cmd.arg("--auth");
    }
    ServerProcess::spawn(
        cmd,
        port,
        &home.join("secantusd.log"),
        Some(dir),
        START_TIMEOUT,
    )
}

/// The server the test suites run against: the deployment named by
/// [`TEST_URI_VAR`] when set, otherwise one [`ThrowawaySecantus`] per
/// test binary, started on first use.
///
/// Clients are made per call ([`TestServer::client`]): a driver client
/// belongs to the runtime that created it, and every `#[tokio::test]` has
/// its own.
#[derive(Debug)]
pub struct TestServer {
    uri: Secret,
    stand_in: bool,
    _server: Option<ThrowawaySecantus>,
}

impl TestServer {
    /// The shared server of this process (blocking on first call).
    ///
    /// # Panics
    ///
    /// If no server can be had: tests cannot run without one.
    pub fn shared() -> &'static TestServer {
        static SERVER: OnceLock<TestServer> = OnceLock::new();
        SERVER.get_or_init(|| {
            TestServer::from_env_or_throwaway()
                .unwrap_or_else(|e| panic!("no MongoDB-compatible server for the tests: {e}"))
        })
    }

    /// The server named by [`TEST_URI_VAR`], or a new
    /// [`ThrowawaySecantus`] owned by the returned value. Blocking.
    pub fn from_env_or_throwaway() -> Result<TestServer> {
        match std::env::var(TEST_URI_VAR) {
            Ok(uri) if !uri.is_empty() => {
                MongoConnection::from_uri(&uri)?;
                Ok(TestServer {
                    uri: Secret::new(uri),
                    stand_in: false,
                    _server: None,
                })
            }
            _ => {
                let server = ThrowawaySecantus::start()?;
                Ok(TestServer {
                    uri: Secret::new(server.uri()),
                    stand_in: true,
                    _server: Some(server),
                })
            }
        }
    }

    /// Whether this is the SecantusDB stand-in rather than a server named
    /// by [`TEST_URI_VAR`].
    pub fn is_stand_in(&self) -> bool {
        self.stand_in
    }

    /// What the tests run against, for messages.
    pub fn describe(&self) -> String {
        match self.stand_in {
            true => "SecantusDB (a MongoDB-compatible stand-in, not MongoDB)".to_string(),
            false => format!("the MongoDB server of {TEST_URI_VAR}"),
        }
    }

    /// Connection to `database`.
    pub fn connection(&self, database: &str) -> MongoConnection {
        MongoConnection::from_uri(self.uri.expose())
            .expect("validated when the server was chosen")
            .with_database(database)
    }

    /// The connection string, credentials included: for handing to a CLI
    /// in tests and demos. Do not log it.
    pub fn uri(&self) -> &Secret {
        &self.uri
    }

    /// The connection string for `database` (credentials included).
    pub fn uri_for(&self, database: &str) -> Secret {
        let uri = self.uri.expose();
        let (base, query) = match uri.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (uri, String::new()),
        };
        let scheme_end = base.find("://").map_or(0, |i| i + 3);
        let hosts_end = base[scheme_end..]
            .find('/')
            .map_or(base.len(), |i| scheme_end + i);
        Secret::new(format!("{}/{database}{query}", &base[..hosts_end]))
    }

    /// A new driver client on the current runtime.
    pub async fn client(&self) -> Result<mongodb::Client> {
        self.connection("admin").client().await
    }

    /// Fills `database` with a sample: `items` (`documents` documents of
    /// about 300 bytes mixing strings, numbers, dates, decimals, binary,
    /// arrays and nested documents, with a secondary index on `group`),
    /// an empty collection `empty` and a view `even_items`.
    pub async fn create_sample(&self, database: &str, documents: u64) -> Result<()> {
        let client = self.client().await?;
        let conn = self.connection(database);
        let db = client.database(database);
        let fail = |e: mongodb::error::Error| {
            crate::error::classify(&e, backup_core::Side::Restore, "creating the sample", &conn)
        };
        db.create_collection("empty").await.map_err(fail)?;
        let items = db.collection::<bson::Document>("items");
        let mut i = 0u64;
        while i < documents {
            let end = (i + 10_000).min(documents);
            let batch: Vec<bson::Document> = (i..end).map(sample_document).collect();
            items
                .insert_many(batch)
                .ordered(false)
                .await
                .map_err(fail)?;
            i = end;
        }
        db.run_command(bson::doc! {
            "createIndexes": "items",
            "indexes": [{ "key": { "group": 1 }, "name": "group_1" }],
        })
        .await
        .map_err(fail)?;
        db.run_command(bson::doc! {
            "create": "even_items",
            "viewOn": "items",
            "pipeline": [{ "$match": { "even": true } }],
        })
        .await
        .map_err(fail)?;
        Ok(())
    }

    /// Document count and CRC-64 of the raw documents in `_id` order, per
    /// collection of `database` (views and `system.*` excluded): equal
    /// summaries mean equal data.
    pub async fn summary(
        &self,
        database: &str,
    ) -> Result<std::collections::BTreeMap<String, (u64, u64)>> {
        let client = self.client().await?;
        let conn = self.connection(database);
        let fail = |e: mongodb::error::Error| {
            crate::error::classify(&e, backup_core::Side::Dump, "summarising", &conn)
        };
        let db = client.database(database);
        let specs = crate::server::list_collections(&db, &conn, backup_core::Side::Dump).await?;
        let mut out = std::collections::BTreeMap::new();
        for spec in specs {
            let name = spec.get_str("name").unwrap_or_default().to_string();
            if name.starts_with("system.") || spec.get_str("type") == Ok("view") {
                continue;
            }
            let mut cursor = db
                .collection::<bson::RawDocumentBuf>(&name)
                .find(bson::doc! {})
                .sort(bson::doc! { "_id": 1 })
                .await
                .map_err(fail)?;
            let mut crc = crate::archive::Crc64::new();
            let mut count = 0;
            while cursor.advance().await.map_err(fail)? {
                crc.update(cursor.current().as_bytes());
                count += 1;
            }
            out.insert(name, (count, crc.value()));
        }
        Ok(out)
    }

    /// Drops `database` if it exists.
    pub async fn drop_database(&self, database: &str) -> Result<()> {
        let client = self.client().await?;
        let conn = self.connection(database);
        client.database(database).drop().await.map_err(|e| {
            crate::error::classify(&e, backup_core::Side::Restore, "dropping a database", &conn)
        })
    }

    /// A database name unique to this call: `<prefix>_<8 hex>`.
    pub fn unique_name(prefix: &str) -> String {
        format!("{prefix}_{:08x}", rand::random::<u32>())
    }
}

/// One document of [`TestServer::create_sample`]: about 300 bytes of
/// mixed BSON types, deterministic in `i`.
pub(crate) fn sample_document(i: u64) -> bson::Document {
    use bson::spec::BinarySubtype;
    let mut oid = [0u8; 12];
    oid[4..].copy_from_slice(&i.to_be_bytes());
    bson::doc! {
        "_id": bson::oid::ObjectId::from_bytes(oid),
        "n": i as i64,
        "even": i.is_multiple_of(2),
        "group": format!("group-{}", i % 100),
        "name": format!("item number {i} with a reasonably long description"),
        "at": bson::DateTime::from_millis(1_700_000_000_000 + i as i64 * 37),
        "price": format!("{}.{:02}", i % 10_000, i % 100).parse::<bson::Decimal128>().expect("valid decimal"),
        "ratio": i as f64 / 7.0,
        "blob": bson::Binary { subtype: BinarySubtype::Generic, bytes: (i as u32).to_le_bytes().repeat(8) },
        "tags": ["a", "b", (i % 13) as i32],
        "owner": { "id": (i % 977) as i32, "region": "eu-west", "scores": [1.5, 2.5, 3.5] },
    }
}
