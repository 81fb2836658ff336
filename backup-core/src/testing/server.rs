//! Starting throwaway servers for tests, demos and benches (PostgreSQL,
//! SecantusDB, `s3s-fs`, and the MariaDB or PostgreSQL 18 harnesses to
//! come): a private temporary directory, a free loopback port, the server
//! in its own process group with its output in a log, a wait until it
//! accepts TCP connections, and a watcher that stops it and removes its
//! files when the test process dies without dropping it (a panic in a
//! `static`, an abort, a `kill -9`).
//!
//! [`ServerProcess`] is the whole of it for a server that runs as a
//! direct child; servers that daemonize themselves (`pg_ctl start`) use
//! the parts: [`temp_dir`], [`free_port`], [`Watcher`], [`log_tail`].

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::child::cleared_std_command;
use crate::error::{Error, Result};

/// A free TCP port on 127.0.0.1 (free when asked: a server started on it
/// can still lose a race, so callers retry a failed start on a new one).
pub fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::io("finding a free port", e))
}

/// A new directory `<tmp>/<prefix><16 hex>`, mode 0700 (`mode` changes
/// it, for servers that run as another user), that the caller removes
/// (or a [`Watcher`] does).
pub fn temp_dir(prefix: &str, mode: u32) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("{prefix}{:016x}", rand::random::<u64>()));
    std::fs::create_dir(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("chmod {}", dir.display()), e))?;
    Ok(dir)
}

/// The last `lines` non-empty lines of a log file joined with ` | `, for
/// an error message (empty when it cannot be read).
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let kept: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    kept[kept.len().saturating_sub(lines)..].join(" | ")
}

/// A process in its own session (`setsid sh -c ...`) that outlives this
/// one: once this process has exited (or the server's process, when one
/// is given, has) it kills the server's process group, runs a stop
/// command, and — only if this process is gone — removes a directory.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Watcher {
    /// The server's process group, killed with `SIGKILL`; the watcher
    /// also ends when that process ends.
    pub group: Option<u32>,
    /// A shell command that stops the server (`pg_ctl ... stop`), for
    /// servers that are not this process's children.
    pub stop: Option<String>,
    /// Removed once this process is gone.
    pub remove: Option<PathBuf>,
}

impl Watcher {
    /// A watcher that does nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`Watcher::group`].
    pub fn group(mut self, pid: u32) -> Self {
        self.group = Some(pid);
        self
    }

    /// Sets [`Watcher::stop`].
    pub fn stop(mut self, shell: impl Into<String>) -> Self {
        self.stop = Some(shell.into());
        self
    }

    /// Sets [`Watcher::remove`].
    pub fn remove(mut self, dir: impl Into<PathBuf>) -> Self {
        self.remove = Some(dir.into());
        self
    }

    /// The watcher's shell script.
    fn script(&self) -> String {
        let me = std::process::id();
        let mut script = match self.group {
            Some(pid) => format!(
                "while kill -0 {me} 2>/dev/null && kill -0 {pid} 2>/dev/null; do sleep 1; done; kill -9 -{pid} >/dev/null 2>&1 || kill -9 {pid} >/dev/null 2>&1; "
            ),
            None => format!("while kill -0 {me} 2>/dev/null; do sleep 1; done; "),
        };
        if let Some(stop) = &self.stop {
            script.push_str(&format!("{stop} >/dev/null 2>&1; "));
        }
        if let Some(dir) = &self.remove {
            script.push_str(&format!(
                "kill -0 {me} 2>/dev/null && exit 0; sleep 1; rm -rf '{}'",
                dir.display().to_string().replace('\'', r"'\''")
            ));
        }
        script
    }

    /// Starts the watcher. A failure to start one is logged, not returned:
    /// the server still stops on drop.
    pub fn spawn(&self) {
        let spawned = cleared_std_command("setsid")
            .args(["sh", "-c", &self.script()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the server watcher; the server stops only on drop");
        }
    }
}

/// A server running as a child of this process, in its own process
/// group, its stdout and stderr appended to a log file, watched by a
/// [`Watcher`] that kills its group if this process dies. Killed (with
/// its group) when dropped; removing its files is the owner's business.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    name: String,
    port: u16,
    log: PathBuf,
}

impl ServerProcess {
    /// Spawns `cmd` (which must make the server listen on 127.0.0.1:`port`)
    /// with its output appended to `log`, starts its watcher (removing
    /// `remove_on_exit`, if given, once this process is gone) and waits up
    /// to `timeout` for the port to accept connections. A server that
    /// exits or does not listen in time is killed and reported with the
    /// end of its log.
    pub fn spawn(
        mut cmd: Command,
        port: u16,
        log: &Path,
        remove_on_exit: Option<&Path>,
        timeout: Duration,
    ) -> Result<ServerProcess> {
        let name = Path::new(cmd.get_program())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::io(format!("creating the {name} log"), e))?;
        let err = out
            .try_clone()
            .map_err(|e| Error::io(format!("creating the {name} log"), e))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| Error::io(format!("starting {name}"), e))?;
        let mut watcher = Watcher::new().group(child.id());
        if let Some(dir) = remove_on_exit {
            watcher = watcher.remove(dir);
        }
        watcher.spawn();
        let mut server = ServerProcess {
            child,
            name,
            port,
            log: log.to_path_buf(),
        };
        server.wait_ready(timeout)?;
        Ok(server)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let started = Instant::now();
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            let why = match self.child.try_wait() {
                Ok(Some(status)) => format!("exited ({status}) before accepting connections"),
                _ if started.elapsed() > timeout => format!(
                    "did not accept connections on port {} within {} s",
                    self.port,
                    timeout.as_secs()
                ),
                _ => {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            self.kill();
            return Err(Error::Config(format!(
                "{} {why}: {}",
                self.name,
                log_tail(&self.log, 8)
            )));
        }
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id (and process group).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server gracefully (`SIGTERM`), killing its group if it
    /// has not exited within `grace`.
    pub fn terminate(&mut self, grace: Duration) {
        let _ = cleared_std_command("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let started = Instant::now();
        while started.elapsed() < grace {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    /// Kills the server's whole process group at once (`SIGKILL`), as a
    /// crash would, and reaps it.
    pub fn kill(&mut self) {
        let _ = cleared_std_command("sh")
            .args(["-c", &format!("kill -9 -{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_is_up_when_its_port_is_and_gone_when_dropped() {
        let dir = temp_dir("backup-core-server-test-", 0o700).unwrap();
        let port = free_port().unwrap();
        let mut cmd = Command::new("python3");
        cmd.args([
            "-c",
            &format!(
                "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',{port})); s.listen(); print('listening', flush=True); time.sleep(600)"
            ),
        ]);
        let log = dir.join("server.log");
        let server = ServerProcess::spawn(cmd, port, &log, None, Duration::from_secs(30)).unwrap();
        assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
        drop(server);
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
        assert_eq!(log_tail(&log, 1), "listening");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_server_that_exits_is_reported_with_its_log() {
        let dir = temp_dir("backup-core-server-test-", 0o700).unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo 'bad option --frobnicate' >&2; exit 3"]);
        let log = dir.join("server.log");
        let err = ServerProcess::spawn(
            cmd,
            free_port().unwrap(),
            &log,
            None,
            Duration::from_secs(30),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("sh exited") && err.contains("bad option --frobnicate"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn watcher_scripts_wait_for_this_process() {
        let script = Watcher::new()
            .group(42)
            .stop("pg_ctl stop")
            .remove("/tmp/x'y")
            .script();
        let me = std::process::id();
        assert!(
            script.starts_with(&format!("while kill -0 {me} 2>/dev/null && kill -0 42")),
            "{script}"
        );
        assert!(script.contains("kill -9 -42"), "{script}");
        assert!(script.contains("pg_ctl stop"), "{script}");
        assert!(script.ends_with(r"rm -rf '/tmp/x'\''y'"), "{script}");
    }
}
