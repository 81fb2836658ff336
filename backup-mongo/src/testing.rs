//! Servers for tests, demos and benchmarks (feature `throwaway`): a
//! disposable SecantusDB — a MongoDB-compatible stand-in, **not MongoDB**
//! — or the real server named by `MONGODB_URI`.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use backup_core::{Error, Result, Secret};

use crate::MongoConnection;

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
    child: Child,
    dir: PathBuf,
    binary: PathBuf,
    port: u16,
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
        let dir = tempfile::Builder::new()
            .prefix("backup-secantus-")
            .tempdir()
            .map_err(|e| Error::io("creating the server directory", e))?
            .keep();
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start(&binary, &dir) {
                Ok(server) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Err(last.expect("at least one attempt"))
    }

    fn try_start(binary: &Path, dir: &Path) -> Result<ThrowawaySecantus> {
        let port = free_port()?;
        // One subdirectory per attempt, so the watcher of a failed attempt
        // never removes the files of the next one.
        let home = dir.join(format!("server-{port}"));
        std::fs::create_dir_all(&home)
            .map_err(|e| Error::io("creating the server directory", e))?;
        let child = spawn_server(binary, &home, port, false)?;
        let mut server = ThrowawaySecantus {
            child,
            dir: dir.to_path_buf(),
            binary: binary.to_path_buf(),
            port,
        };
        server.spawn_watcher();
        server.wait_ready()?;
        Ok(server)
    }

    fn home(&self) -> PathBuf {
        self.dir.join(format!("server-{}", self.port))
    }

    /// Waits until the server accepts TCP connections.
    fn wait_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let tail =
                    std::fs::read_to_string(self.home().join("secantusd.log")).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(8).collect();
                self.kill();
                return Err(Error::Config(format!(
                    "secantusd-py exited ({status}) before accepting connections: {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                )));
            }
            if started.elapsed() > START_TIMEOUT {
                self.kill();
                return Err(Error::Config(format!(
                    "secantusd-py did not accept connections on port {} within {} s",
                    self.port,
                    START_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Restarts the server on the same port and data with authentication
    /// required (`--auth`, SCRAM-SHA-256): create users first, without
    /// authentication, then call this. Blocking.
    pub fn restart_with_auth(&mut self) -> Result<()> {
        self.terminate();
        self.child = spawn_server(&self.binary, &self.home(), self.port, true)?;
        self.spawn_watcher();
        self.wait_ready()
    }

    /// Kills the server's process group when this process exits, however
    /// it exits.
    fn spawn_watcher(&self) {
        // `kill -9 -PID` signals the server's process group (dash's kill
        // takes no `--`).
        let script = format!(
            "while kill -0 {me} 2>/dev/null && kill -0 {pid} 2>/dev/null; do sleep 1; done; kill -9 -{pid} >/dev/null 2>&1 || kill -9 {pid} >/dev/null 2>&1; kill -0 {me} 2>/dev/null && exit 0; sleep 1; rm -rf '{dir}/server-{port}'; rmdir '{dir}' >/dev/null 2>&1",
            me = std::process::id(),
            pid = self.child.id(),
            dir = self.dir.display(),
            port = self.port,
        );
        let spawned = Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the server watcher; the server stops only on drop");
        }
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
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
            self.port
        )
    }

    /// Stops the server gracefully (SIGTERM, so WiredTiger checkpoints
    /// what was written), killing it if it takes more than 30 s.
    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill();
    }

    fn kill(&mut self) {
        // The whole process group: the launcher and anything it started.
        let _ = Command::new("sh")
            .args(["-c", &format!("kill -9 -{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the server and deletes its files. Called by `Drop`.
    pub fn stop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for ThrowawaySecantus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `secantusd-py` in its own process group, logging into `home`.
fn spawn_server(binary: &Path, home: &Path, port: u16, auth: bool) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    let log = File::options()
        .create(true)
        .append(true)
        .open(home.join("secantusd.log"))
        .map_err(|e| Error::io("creating the server log", e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| Error::io("creating the server log", e))?;
    let mut cmd = Command::new(binary);
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--storage-path")
        .arg(home.join("data"))
        .args(["--log-level", "WARNING"]);
    if auth {
        cmd.arg("--auth");
    }
    cmd.current_dir(home)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .map_err(|e| Error::io(format!("starting {}", binary.display()), e))
}

fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("finding a free port", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io("finding a free port", e))
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
            crate::error::classify(
                &e,
                crate::error::Side::Restore,
                "creating the sample",
                &conn,
            )
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
            crate::error::classify(&e, crate::error::Side::Dump, "summarising", &conn)
        };
        let db = client.database(database);
        let specs = crate::server::list_collections(&db, &conn, crate::error::Side::Dump).await?;
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
            crate::error::classify(
                &e,
                crate::error::Side::Restore,
                "dropping a database",
                &conn,
            )
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
