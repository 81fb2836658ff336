//! Shared by the backupd test binaries (`mod support;`): the real daemon
//! binary on a random loopback port, started over a temporary directory
//! with a generated `config.yaml`, and an HTTP client that keeps every
//! response body so tests can check that no secret ever leaked. Tests of
//! the version matrix give the daemon their PostgreSQL server
//! ([`Options::pg`]) and build entries for it ([`pg_entry`],
//! [`database_body_on`]).
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use backup_core::{Engine, Filter, manifest::Manifest};
use backup_postgres::TestServer;
use backup_store_fs::FsStore;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Client, Method, StatusCode};

mod openapi;
pub use openapi::assert_declared;
use serde_json::{Value, json};

/// Global admin (no tenant).
pub const ADMIN: &str = "admin-token-for-tests-0123456789";
/// Global reader (no tenant).
pub const READER: &str = "reader-token-for-tests-0123456789";
/// Admin bound to tenant `a`.
pub const TENANT_A: &str = "tenant-a-token-for-tests-0123456789";
/// Reader bound to tenant `b`.
pub const TENANT_B: &str = "tenant-b-token-for-tests-0123456789";

/// How to start a daemon. `Default` gives the configuration every test
/// shares: four tokens (global admin and reader, tenant-`a` admin,
/// tenant-`b` reader), an fs store, tenant `a` allowed on 127.0.0.1.
#[derive(Debug, Clone)]
pub struct Options {
    /// YAML appended at the end of the file.
    pub extra_config: String,
    /// More token entries (YAML flow mappings, one per line).
    pub extra_tokens: Vec<String>,
    /// `global.max_parallel_jobs`.
    pub max_parallel_jobs: usize,
    /// Extra environment of the daemon.
    pub envs: Vec<(String, String)>,
    /// The `storage:` value.
    pub storage: String,
    /// The `tenants:` section (`None`: no section at all).
    pub tenants: Option<String>,
    /// The PostgreSQL server of the test (`None`: [`TestServer::shared`]):
    /// its admin credentials are `DB_USER`/`DB_PASSWORD`, and when its
    /// client tools are a directory of their own (the PostgreSQL 18 of the
    /// test matrix) that directory leads the daemon's `PATH`, where
    /// discovery finds the tools of entries registered through the API
    /// (which can never name `pg_bin`); [`pg_entry`] names it as `pg_bin`.
    pub pg: Option<&'static TestServer>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            extra_config: String::new(),
            extra_tokens: Vec::new(),
            max_parallel_jobs: 2,
            envs: Vec::new(),
            storage: "{type: fs, path: ./backups}".into(),
            tenants: Some("{a: {allowed_hosts: [127.0.0.1]}}".into()),
            pg: None,
        }
    }
}

/// The daemon as a child process; killed (and its logs kept) on drop.
pub struct Daemon {
    pub child: Child,
    pub base: String,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
    pub port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemon binary of this package (`cargo test -p backupd` builds it).
pub fn daemon_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_backupd"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The configuration file `Options` describe.
pub fn config_text(o: &Options) -> String {
    let mut tokens = String::from(
        "    - {token_var: T_ADMIN, role: admin}\n    - {token_var: T_READER, role: reader}\n    - {token_var: T_A, role: admin, tenant: a}\n    - {token_var: T_B, role: reader, tenant: b}\n",
    );
    for t in &o.extra_tokens {
        tokens.push_str(&format!("    - {t}\n"));
    }
    let tenants = o
        .tenants
        .as_ref()
        .map(|t| format!("tenants: {t}\n"))
        .unwrap_or_default();
    format!(
        r#"
global: {{schedule: disabled, compression: zstd, max_parallel_jobs: {jobs}}}
package-conf: {{schedule: disabled, compression: zip, max_backups: 2}}
storage: {storage}
audit_log: ./audit.log
shutdown_timeout_seconds: 30
{tenants}auth:
  tokens:
{tokens}{extra}
"#,
        jobs = o.max_parallel_jobs,
        storage = o.storage,
        extra = o.extra_config,
    )
}

/// Runs the daemon over `config` in `dir` without waiting for it: for
/// configurations that must be refused.
pub fn run_to_exit(config: &str, envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.yaml"), config).unwrap();
    let out = Command::new(daemon_binary())
        .args([
            "--config",
            "config.yaml",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .current_dir(dir.path())
        .env_clear()
        .env("T_ADMIN", ADMIN)
        .env("T_READER", READER)
        .env("T_A", TENANT_A)
        .env("T_B", TENANT_B)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Daemon {
    pub fn start(extra_config: &str, max_parallel_jobs: usize) -> Daemon {
        Daemon::start_with(Options {
            extra_config: extra_config.into(),
            max_parallel_jobs,
            ..Options::default()
        })
    }

    pub fn start_with_env(
        extra_config: &str,
        max_parallel_jobs: usize,
        envs: &[(&str, &str)],
    ) -> Daemon {
        Daemon::start_with(Options {
            extra_config: extra_config.into(),
            max_parallel_jobs,
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Options::default()
        })
    }

    pub fn start_with(o: Options) -> Daemon {
        let server = o.pg.unwrap_or_else(TestServer::shared);
        let conn = server.connection("postgres");
        let path = match server.tools().bin_dir() {
            Some(bin) => {
                let mut dirs = vec![bin.to_path_buf()];
                dirs.extend(std::env::split_paths(
                    &std::env::var_os("PATH").unwrap_or_default(),
                ));
                std::env::join_paths(dirs).expect("a PATH of the tools' directories")
            }
            None => std::env::var_os("PATH").unwrap_or_default(),
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.yaml"), config_text(&o)).unwrap();
        let port = free_port();
        let log = dir.path().join("daemon.log");
        let child = Command::new(daemon_binary())
            .args([
                "--config",
                "config.yaml",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .current_dir(dir.path())
            .env("T_ADMIN", ADMIN)
            .env("T_READER", READER)
            .env("T_A", TENANT_A)
            .env("T_B", TENANT_B)
            .env("DB_USER", conn.user())
            .env("DB_PASSWORD", conn.password().unwrap().expose())
            .env("BACKUP_LOG", "debug")
            .env("PATH", path)
            .envs(o.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut d = Daemon {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
            log,
            port,
        };
        for _ in 0..600 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return d;
            }
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("backupd exited ({status}): {}", d.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("backupd did not start: {}", d.logs());
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("backups")
    }

    /// An engine over the daemon's fs store, to look behind its back.
    pub fn engine(&self) -> Engine {
        Engine::new(Arc::new(FsStore::new(self.store()).unwrap()))
    }

    /// Every backup of the daemon's store, as its catalog lists them.
    pub async fn listed_backups(&self) -> Vec<Arc<Manifest>> {
        self.engine().catalog().list(&Filter::all()).await.unwrap()
    }

    pub fn audit(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("audit.log")).unwrap_or_default()
    }
}

/// Every file under `dir` with its size and modification time: compared
/// before and after calls that must change nothing.
pub fn snapshot(dir: &Path) -> BTreeMap<String, (u64, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                out.insert(
                    e.path().strip_prefix(dir).unwrap().display().to_string(),
                    (meta.len(), meta.modified().unwrap()),
                );
            }
        }
    }
    out
}

/// A response: status, headers, body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

/// A request body as sent on the wire.
#[derive(Debug, Clone)]
pub struct RawBody {
    pub content_type: Option<&'static str>,
    pub bytes: Vec<u8>,
}

impl RawBody {
    pub fn json(v: &Value) -> RawBody {
        RawBody {
            content_type: Some("application/json"),
            bytes: serde_json::to_vec(v).unwrap(),
        }
    }
}

pub struct Api {
    pub client: Client,
    pub base: String,
    /// Every response body seen, to check no secret ever leaks.
    pub seen: std::sync::Mutex<Vec<String>>,
}

impl Api {
    pub fn new(d: &Daemon) -> Api {
        Api::at(&d.base)
    }

    pub fn at(base: &str) -> Api {
        Api {
            client: Client::new(),
            base: base.to_string(),
            seen: Default::default(),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let r = self
            .raw(method, path, token, body.as_ref().map(RawBody::json))
            .await;
        (r.status, r.body)
    }

    /// A request with exactly this body and content type.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<RawBody>,
    ) -> Reply {
        self.try_raw(method, path, token, body).await.unwrap()
    }

    /// [`Api::raw`], with transport failures (a reset connection) as errors.
    pub async fn try_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<RawBody>,
    ) -> Result<Reply, reqwest::Error> {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            if let Some(ct) = b.content_type {
                req = req.header(CONTENT_TYPE, HeaderValue::from_static(ct));
            }
            req = req.body(b.bytes);
        }
        let resp = req.send().await?;
        let status = resp.status();
        assert_declared(&method, path, status);
        let headers = resp.headers().clone();
        let text = resp.text().await?;
        self.seen.lock().unwrap().push(text.clone());
        Ok(Reply {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        })
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    /// GET `path` as `token`: the raw response, for downloads (headers and
    /// bytes).
    pub async fn download(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Builds packages now as the admin (`POST /api/v1/packages?wait=true`),
    /// asserting 201; returns the response.
    pub async fn make_packages(&self) -> Value {
        let (status, v) = self
            .call(
                Method::POST,
                "/api/v1/packages?wait=true",
                Some(ADMIN),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        v
    }

    /// `GET /metrics` as `token`: the Prometheus text.
    pub async fn metrics(&self, token: &str) -> String {
        self.download("/metrics", token).await.text().await.unwrap()
    }

    /// Polls a job until it ends; returns its record.
    pub async fn wait_job(&self, job: &str, token: &str) -> Value {
        for _ in 0..3000 {
            let (status, v) = self.get(&format!("/api/v1/jobs/{job}"), token).await;
            assert_eq!(status, StatusCode::OK, "{v}");
            if v["data"]["status"] != "running" {
                return v["data"].clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("job {job} did not finish");
    }

    /// `POST /api/v1/databases/{id}/drill` as `token`: asserts it was
    /// accepted, waits for the job and returns its record.
    pub async fn drill(&self, id: &str, token: &str) -> Value {
        let (status, v) = self
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/databases/{id}/drill"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{v}");
        self.wait_job(v["data"]["job_id"].as_str().unwrap(), token)
            .await
    }

    pub fn all_bodies(&self) -> String {
        self.seen.lock().unwrap().join("\n")
    }
}

pub fn database_body(id: &str, db: &str, tenant: Option<&str>, package: bool) -> Value {
    database_body_on(TestServer::shared(), id, db, tenant, package)
}

/// [`database_body`] for database `db` of `server`.
pub fn database_body_on(
    server: &TestServer,
    id: &str,
    db: &str,
    tenant: Option<&str>,
    package: bool,
) -> Value {
    let conn = server.connection(db);
    let mut v = json!({
        "id": id,
        "engine": "postgres",
        "host": conn.host(),
        "port": conn.port(),
        "database_name": db,
        "username": conn.user(),
        "password": conn.password().unwrap().expose(),
        "schedule": "disabled",
        "max_backups": 1,
        "package": package,
    });
    if let Some(t) = tenant {
        v["tenant"] = json!(t);
    }
    v
}

/// Posts a backup request `body` (`POST /api/v1/backups`) as `token`,
/// asserting 202, and waits for its job; returns the job record, whatever
/// its outcome.
pub async fn post_backup(api: &Api, token: &str, body: Value) -> Value {
    let (status, v) = api.post("/api/v1/backups", token, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    api.wait_job(v["data"]["job_id"].as_str().unwrap(), token)
        .await
}

/// A full backup of entry `db_id` now, as `token`, which must succeed;
/// returns the backup's id.
pub async fn backup_now(api: &Api, db_id: &str, token: &str) -> String {
    let job = post_backup(api, token, json!({"source_id": db_id, "type": "full"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    job["result"]["id"].as_str().unwrap().to_string()
}

/// Starts a restore and waits for its job; returns the job record.
pub async fn restore(api: &Api, id: &str, token: &str, body: Value) -> (StatusCode, Value) {
    let (status, v) = api
        .post(&format!("/api/v1/backups/{id}/restore"), token, body)
        .await;
    if status != StatusCode::ACCEPTED {
        return (status, v);
    }
    let job = api
        .wait_job(v["data"]["job_id"].as_str().unwrap(), token)
        .await;
    (status, job)
}

/// Asserts that none of `secrets` appears in the responses, the daemon's
/// log or its audit log.
pub fn assert_no_secrets(api: &Api, d: &Daemon, secrets: &[&str]) {
    for (what, text) in [
        ("responses", api.all_bodies()),
        ("logs", d.logs()),
        ("audit log", d.audit()),
    ] {
        for s in secrets {
            assert!(!s.is_empty());
            assert!(
                !text.contains(s),
                "a secret ({} chars) in the {what}",
                s.len()
            );
        }
    }
}

/// Registers the database `body` as `token`, asserting 201; returns the
/// response.
pub async fn register(api: &Api, token: &str, body: Value) -> Value {
    let (status, v) = api.post("/api/v1/databases", token, body).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    v
}

/// Registers the database `body` as `token`, backs it up and waits for
/// the backup; returns its id.
pub async fn register_and_back_up(api: &Api, token: &str, body: Value) -> String {
    let id = body["id"]
        .as_str()
        .expect("a database body has an id")
        .to_string();
    register(api, token, body).await;
    backup_now(api, &id, token).await
}

/// A `databases:` entry of the configuration file (YAML flow mapping, no
/// leading dash) for database `db` of `server` with the daemon's
/// `DB_USER`/`DB_PASSWORD` (see [`Options::pg`]), `pg_bin` when the
/// server's tools are a directory of their own, and `extra` (`key: value,
/// ...`) appended.
pub fn pg_entry(server: &TestServer, id: &str, db: &str, extra: &str) -> String {
    let conn = server.connection(db);
    let pg_bin = server
        .tools()
        .bin_dir()
        .map(|b| format!(", pg_bin: {:?}", b.display().to_string()))
        .unwrap_or_default();
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    format!(
        "{{id: {id}, engine: postgres, host: {}, port: {}, database_name: {db}, username_var: DB_USER, password_var: DB_PASSWORD{pg_bin}{extra}}}",
        conn.host(),
        conn.port()
    )
}
