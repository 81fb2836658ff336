//! Looking into a restored data directory from tests and demos: a server
//! started on it for one query, then stopped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use backup_core::child::cleared_std_command;
use backup_core::testing::server::{free_port, log_tail, temp_dir};
use backup_core::{Error, Result};

use super::is_root;

/// Starts a server on the stopped data directory `data` (a restored
/// backup) with the binaries of `bin`, runs `sql` in `database` with
/// `psql` over a private Unix socket, stops the server and returns psql's
/// unaligned output (blocking; for tests and demos). When this process is
/// root the directory is given to `postgres`, which runs the server.
pub fn query_data_dir(bin: &Path, data: &Path, database: &str, sql: &str) -> Result<String> {
    let root = is_root();
    let sock = temp_dir("backup-pg-sock-", 0o755)?;
    let _cleanup = RemoveOnDrop(sock.clone());
    if root {
        for path in [data, sock.as_path()] {
            let status = cleared_std_command("chown")
                .args(["-R", "postgres:postgres"])
                .arg(path)
                .status()
                .map_err(|e| Error::io("chown", e))?;
            if !status.success() {
                return Err(Error::Config(format!("chown of {} failed", path.display())));
            }
        }
    }
    let run = |tool: &str, configure: &dyn Fn(&mut Command)| -> Result<std::process::Output> {
        let mut cmd = if root {
            let mut c = cleared_std_command("setpriv");
            c.args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(bin.join(tool));
            c
        } else {
            cleared_std_command(bin.join(tool))
        };
        cmd.env("LC_MESSAGES", "C").stdin(Stdio::null());
        configure(&mut cmd);
        cmd.output()
            .map_err(|e| Error::io(format!("running {tool}"), e))
    };
    let port = free_port()?.to_string();
    let options = format!("-p {port} -k {} -c listen_addresses=''", sock.display());
    let log = sock.join("server.log");
    let started = run("pg_ctl", &|c| {
        c.arg("-D").arg(data).arg("-l").arg(&log);
        c.args(["-w", "-t", "120", "-o", &options, "start"]);
    })?;
    if !started.status.success() {
        return Err(Error::Config(format!(
            "the server on {} did not start: {} {}",
            data.display(),
            String::from_utf8_lossy(&started.stderr).trim(),
            log_tail(&log, 10)
        )));
    }
    let out = run("psql", &|c| {
        c.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&sock);
        c.args(["-p", &port, "-U", "postgres", "-d", database, "-c", sql]);
    });
    let stopped = run("pg_ctl", &|c| {
        c.arg("-D").arg(data).args(["-m", "fast", "-w", "stop"]);
    });
    let out = out?;
    if !out.status.success() {
        return Err(Error::Config(format!(
            "psql on the server of {}: {}",
            data.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    stopped?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Removes a directory when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
