//! [`S3TestServer`]: an S3-compatible server for tests, demos and benches
//! (feature `throwaway`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use backup_core::testing::server::{ServerProcess, free_port};
use backup_core::{Error, Result, Secret};

use crate::config::S3StoreBuilder;
use crate::store::S3Store;

/// Environment variable naming an existing S3-compatible endpoint for the
/// test suites (`http://127.0.0.1:9000`). With it, also set
/// [`TEST_ACCESS_KEY_VAR`], [`TEST_SECRET_KEY_VAR`] and [`TEST_BUCKET_VAR`]
/// (and optionally `BACKUP_TEST_S3_REGION`); the bucket must exist.
pub const TEST_ENDPOINT_VAR: &str = "BACKUP_TEST_S3_ENDPOINT";
/// Access key id for [`TEST_ENDPOINT_VAR`].
pub const TEST_ACCESS_KEY_VAR: &str = "BACKUP_TEST_S3_ACCESS_KEY";
/// Secret access key for [`TEST_ENDPOINT_VAR`].
pub const TEST_SECRET_KEY_VAR: &str = "BACKUP_TEST_S3_SECRET_KEY";
/// Bucket for [`TEST_ENDPOINT_VAR`].
pub const TEST_BUCKET_VAR: &str = "BACKUP_TEST_S3_BUCKET";

/// How to install the server the tests start.
pub const S3S_FS_INSTALL: &str = "cargo install s3s-fs@0.14.1 --locked --features binary";

/// An S3-compatible server to run tests against: either the one named by
/// the `BACKUP_TEST_S3_*` variables, or an `s3s-fs` process (from `$PATH`
/// or `~/.cargo/bin`) serving a temporary directory on a free loopback
/// port, with random credentials and one bucket. The process is killed
/// and the directory deleted when the value is dropped (also on panic),
/// and by a watcher process if the test process dies without dropping it.
///
/// `s3s-fs` checks SigV4 signatures and supports multipart uploads,
/// `DeleteObjects` and conditional PUT. It stores a bucket as a directory
/// of the data directory, and the parts of unfinished multipart uploads as
/// `.upload_id-*` files at the top of the data directory, outside every
/// bucket.
#[derive(Debug)]
pub struct S3TestServer {
    endpoint: String,
    bucket: String,
    access_key_id: String,
    secret_access_key: Secret,
    region: Option<String>,
    process: Option<Process>,
}

#[derive(Debug)]
struct Process {
    server: Option<ServerProcess>,
    program: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
}

impl S3TestServer {
    /// The server named by `BACKUP_TEST_S3_ENDPOINT` (and its companions)
    /// if set, otherwise a fresh `s3s-fs` (see [`S3TestServer::start`]).
    pub fn from_env_or_start() -> Result<S3TestServer> {
        let Ok(endpoint) = std::env::var(TEST_ENDPOINT_VAR) else {
            return S3TestServer::start();
        };
        let var = |name: &str| {
            std::env::var(name).map_err(|_| {
                Error::Config(format!("{TEST_ENDPOINT_VAR} is set, so {name} must be too"))
            })
        };
        Ok(S3TestServer {
            endpoint,
            bucket: var(TEST_BUCKET_VAR)?,
            access_key_id: var(TEST_ACCESS_KEY_VAR)?,
            secret_access_key: Secret::new(var(TEST_SECRET_KEY_VAR)?),
            region: std::env::var("BACKUP_TEST_S3_REGION").ok(),
            process: None,
        })
    }

    /// Starts `s3s-fs` on a free loopback port over a new temporary
    /// directory holding one empty bucket; blocks until it accepts
    /// connections (a fraction of a second).
    pub fn start() -> Result<S3TestServer> {
        let program = find_s3s_fs()?;
        let dir = tempfile::Builder::new()
            .prefix("backup-s3-")
            .tempdir()
            .map_err(|e| Error::io("creating the s3s-fs data directory", e))?;
        let bucket = "backup-test".to_string();
        std::fs::create_dir(dir.path().join(&bucket))
            .map_err(|e| Error::io("creating the test bucket", e))?;
        let port = free_port()?;
        let mut server = S3TestServer {
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket,
            access_key_id: format!("test-{:08x}", rand::random::<u32>()),
            secret_access_key: Secret::new(format!("secret-{:016x}", rand::random::<u64>())),
            region: None,
            process: Some(Process {
                server: None,
                program,
                port,
                dir,
            }),
        };
        server.restart()?;
        Ok(server)
    }

    /// Whether this is a local `s3s-fs` the test controls (so it can be
    /// stopped and restarted).
    pub fn is_local(&self) -> bool {
        self.process.is_some()
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The access key id.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The secret access key.
    pub fn secret_access_key(&self) -> &Secret {
        &self.secret_access_key
    }

    /// The data directory of a local `s3s-fs`.
    pub fn data_dir(&self) -> Option<&Path> {
        self.process.as_ref().map(|p| p.dir.path())
    }

    /// A builder for a store on this server, under a fresh random prefix
    /// (so tests sharing a server never see each other's objects), with
    /// short retries so failure tests finish quickly.
    pub fn store_builder(&self) -> S3StoreBuilder {
        let mut builder = S3Store::builder(&self.bucket)
            .endpoint(&self.endpoint)
            .credentials(&self.access_key_id, self.secret_access_key.clone())
            .prefix(format!("test-{:08x}", rand::random::<u32>()))
            .max_retries(2)
            .retry_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60));
        if let Some(region) = &self.region {
            builder = builder.region(region);
        }
        builder
    }

    /// Kills a local `s3s-fs` at once (SIGKILL), as a crash would; its data
    /// stays for [`S3TestServer::restart`].
    pub fn kill(&mut self) {
        if let Some(process) = &mut self.process
            && let Some(mut server) = process.server.take()
        {
            server.kill();
        }
    }

    /// (Re)starts a local `s3s-fs` on the same port and data directory.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        let Some(process) = &mut self.process else {
            return Err(Error::Config(
                "the S3 test server is external; it cannot be restarted".into(),
            ));
        };
        let mut cmd = Command::new(&process.program);
        cmd.arg("--host")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(process.port.to_string())
            .arg("--access-key")
            .arg(&self.access_key_id)
            .arg("--secret-key")
            .arg(self.secret_access_key.expose())
            .arg(process.dir.path());
        let log = process.dir.path().with_extension("log");
        let _ = std::fs::remove_file(&log);
        process.server = Some(ServerProcess::spawn(
            cmd,
            process.port,
            &log,
            Some(process.dir.path()),
            Duration::from_secs(15),
        )?);
        Ok(())
    }
}

impl Drop for S3TestServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(process) = &self.process {
            let _ = std::fs::remove_file(process.dir.path().with_extension("log"));
        }
    }
}

fn find_s3s_fs() -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("s3s-fs"))
                .collect()
        })
        .unwrap_or_default();
    if let Some(cargo_home) = std::env::var_os("CARGO_HOME") {
        candidates.push(PathBuf::from(cargo_home).join("bin/s3s-fs"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cargo/bin/s3s-fs"));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| Error::ToolNotFound {
            tool: "s3s-fs".into(),
            hint: format!(
                "the S3 tests need an S3-compatible server: install one with `{S3S_FS_INSTALL}`, or set {TEST_ENDPOINT_VAR}, {TEST_ACCESS_KEY_VAR}, {TEST_SECRET_KEY_VAR} and {TEST_BUCKET_VAR}"
            ),
        })
}
