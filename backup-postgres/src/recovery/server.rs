//! Running the server on a recovering data directory: start it (as
//! `postgres` when this process is root), wait for promotion, read what
//! recovery did from its log, stop it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use backup_core::child::cleared_command;
use backup_core::{Error, Result};

const ENGINE: &str = "postgres";
/// How often the server's state is looked at while it recovers.
const POLL: Duration = Duration::from_millis(100);

/// The OS user the server runs as: `Some((uid, gid))` of `postgres` when
/// this process is root (the server refuses root), else `None`.
pub(crate) fn server_user() -> Result<Option<(u32, u32)>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name("postgres")
        .map_err(|e| Error::io("looking up the postgres user", e.into()))?
        .ok_or_else(|| {
            Error::Config(
                "running as root, the server must run as the postgres user, which does not exist: create it or run as the server's user".into(),
            )
        })?;
    Ok(Some((user.uid.as_raw(), user.gid.as_raw())))
}

/// Gives `path` and everything under it to `uid:gid` (symbolic links
/// themselves, never their targets).
pub(crate) async fn chown_tree(path: PathBuf, uid: u32, gid: u32) -> Result<()> {
    tokio::task::spawn_blocking(move || chown_walk(&path, uid, gid))
        .await
        .map_err(|e| Error::Restore {
            engine: ENGINE,
            detail: format!("changing owners: {e}"),
        })?
}

fn chown_walk(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(|e| Error::io(format!("changing the owner of {}", path.display()), e))?;
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if meta.is_dir() {
        let entries = std::fs::read_dir(path)
            .map_err(|e| Error::io(format!("listing {}", path.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("listing {}", path.display()), e))?;
            chown_walk(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// A server started on a recovering data directory.
#[derive(Debug)]
pub(crate) struct Server {
    child: tokio::process::Child,
    data_dir: PathBuf,
    log: PathBuf,
    pg_ctl: PathBuf,
    user: Option<(u32, u32)>,
    /// Killed when dropped (a restore abandoned mid-recovery) unless
    /// [`Server::keep_running`] was called.
    kill_on_drop: bool,
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.kill_on_drop {
            let _ = self.child.start_kill();
        }
    }
}

/// How to start the server.
pub(crate) struct Launch<'a> {
    pub(crate) bin_dir: &'a Path,
    pub(crate) data_dir: &'a Path,
    pub(crate) port: u16,
    pub(crate) socket_dir: &'a Path,
    pub(crate) listen_addresses: &'a str,
    pub(crate) log: &'a Path,
    pub(crate) user: Option<(u32, u32)>,
    /// More settings (`name=value`), each passed as its own `-c`.
    pub(crate) settings: &'a [String],
}

impl Server {
    /// Starts `postgres` in its own process group (so it can outlive this
    /// process when asked to), its log in English and UTC on stderr into
    /// `log`. Settings go as separate arguments: no shell sees them.
    pub(crate) fn start(launch: &Launch<'_>) -> Result<Server> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(launch.log)
            .map_err(|e| Error::io(format!("creating {}", launch.log.display()), e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| Error::io(format!("opening {}", launch.log.display()), e))?;
        let postgres = launch.bin_dir.join("postgres");
        let mut cmd = cleared_command(&postgres);
        cmd.arg("-D")
            .arg(launch.data_dir)
            .arg("-p")
            .arg(launch.port.to_string())
            .arg("-k")
            .arg(launch.socket_dir)
            .arg("-c")
            .arg(format!("listen_addresses={}", launch.listen_addresses));
        // The restored configuration may name the original's data
        // directory or pid file (a postgresql.conf kept in the data
        // directory): the command line wins over every file.
        cmd.arg("-c")
            .arg(format!("data_directory={}", launch.data_dir.display()))
            .arg("-c")
            .arg("external_pid_file=");
        for setting in launch.settings {
            cmd.arg("-c").arg(setting);
        }
        for setting in [
            "lc_messages=C",
            "log_timezone=UTC",
            "logging_collector=off",
            "log_destination=stderr",
            "log_min_messages=warning",
            // Read-only queries during recovery are not needed, and
            // without them recovery does not insist on settings at least
            // the original's (max_connections, ...).
            "hot_standby=off",
        ] {
            cmd.arg("-c").arg(setting);
        }
        cmd.stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(false)
            .process_group(0);
        if let Some((uid, gid)) = launch.user {
            cmd.uid(uid).gid(gid);
        }
        let child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("starting {}", postgres.display()), e))?;
        Ok(Server {
            child,
            data_dir: launch.data_dir.to_path_buf(),
            log: launch.log.to_path_buf(),
            pg_ctl: launch.bin_dir.join("pg_ctl"),
            user: launch.user,
            kill_on_drop: true,
        })
    }

    /// Waits until recovery has ended and the server is promoted
    /// (`postmaster.pid` says `ready`: open for writes, which it only is
    /// once out of recovery), or fails with what its log says when it
    /// exits first or `timeout` passes.
    pub(crate) async fn wait_promoted(&mut self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let pid_file = self.data_dir.join("postmaster.pid");
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(|e| Error::io("waiting for the recovering server", e))?
            {
                return Err(Error::Restore {
                    engine: ENGINE,
                    detail: format!(
                        "the server stopped during recovery ({status}): {}",
                        explain_failure(&self.log_text())
                    ),
                });
            }
            let text = std::fs::read_to_string(&pid_file).unwrap_or_default();
            if text.lines().nth(7).map(str::trim) == Some("ready") {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Restore {
                    engine: ENGINE,
                    detail: format!(
                        "recovery did not end within {timeout:?}; log: {}",
                        tail(&self.log_text(), 5)
                    ),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Lets the server outlive this value (a promoted server the caller
    /// asked to keep).
    pub(crate) fn keep_running(mut self) -> Server {
        self.kill_on_drop = false;
        self
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Stops the server with `pg_ctl stop -m <mode>` and waits for it to
    /// be gone; kills it when `pg_ctl` cannot stop it.
    pub(crate) async fn stop(mut self, mode: &str) -> Result<()> {
        if self.child.try_wait().ok().flatten().is_some() {
            return Ok(());
        }
        let mut cmd = cleared_command(&self.pg_ctl);
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args(["-m", mode, "-w", "-t", "60", "stop"])
            .stdin(Stdio::null());
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        let out = cmd
            .output()
            .await
            .map_err(|e| Error::io(format!("running {}", self.pg_ctl.display()), e))?;
        if !out.status.success() {
            let _ = self.child.start_kill();
        }
        let _ = self.child.wait().await;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Restore {
                engine: ENGINE,
                detail: format!(
                    "pg_ctl stop failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            })
        }
    }
}

/// What recovery reported in the server's log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LogFacts {
    /// `redo done at X/Y`: where the last replayed record starts.
    pub(crate) redo_done_at: Option<String>,
    /// `recovery stopping ...`: the record recovery stopped at.
    pub(crate) stopped: Option<String>,
    /// `last completed transaction was at log time ...`.
    pub(crate) last_transaction: Option<String>,
    /// The message logged just before `redo done`: why replay ended
    /// (e.g. `invalid record length ...`, `record with incorrect
    /// prev-link ...`).
    pub(crate) end_reason: Option<String>,
}

impl LogFacts {
    pub(crate) fn parse(log: &str) -> LogFacts {
        let after = |key: &str| {
            log.lines()
                .rev()
                .find_map(|l| l.split_once(key).map(|(_, rest)| rest.trim().to_string()))
        };
        LogFacts {
            redo_done_at: after("redo done at ")
                .and_then(|r| r.split_whitespace().next().map(str::to_string)),
            stopped: log.lines().rev().find_map(|l| {
                l.find("recovery stopping ")
                    .map(|i| l[i..].trim().to_string())
            }),
            last_transaction: after("last completed transaction was at log time "),
            end_reason: log
                .lines()
                .collect::<Vec<_>>()
                .windows(2)
                .rev()
                .find(|pair| pair[1].contains("redo done at "))
                .map(|pair| message(pair[0]).to_string()),
        }
    }
}

/// A log line without its prefix (time, pid, level).
fn message(line: &str) -> &str {
    ["LOG:", "FATAL:", "PANIC:", "WARNING:"]
        .iter()
        .find_map(|level| line.split_once(level).map(|(_, m)| m.trim()))
        .unwrap_or(line.trim())
}

/// Turns the log of a server that stopped during recovery into the
/// reason, in the user's terms, with the log's last lines.
pub(crate) fn explain_failure(log: &str) -> String {
    let reason = if log.contains("recovery ended before configured recovery target was reached") {
        "the recovery target was not reached: the WAL ends, or a segment is damaged, before it"
    } else if log.contains("before consistent recovery point") {
        "the recovery target is before the end of the base backup (its consistent point): choose a later target or an older base backup"
    } else {
        "recovery failed"
    };
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| {
            ["FATAL:", "PANIC:", "DETAIL:"]
                .iter()
                .any(|k| l.contains(k))
        })
        .collect();
    let shown = if errors.is_empty() {
        tail(log, 5)
    } else {
        errors[errors.len().saturating_sub(3)..].join(" | ")
    };
    format!("{reason}; log: {shown}")
}

/// The last `lines` non-empty lines of `text`, joined by ` | `.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let kept: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    kept[kept.len().saturating_sub(lines)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_facts() {
        let log = "2026-12-02 07:40:01.1 UTC [9] LOG:  starting point-in-time recovery to 2026-12-02 07:40:00+00\n\
                   2026-12-02 07:40:02.1 UTC [9] LOG:  recovery stopping before commit of transaction 812, time 2026-12-02 07:40:00.5+00\n\
                   2026-12-02 07:40:02.1 UTC [9] LOG:  invalid record length at 0/5000A48: expected at least 24, got 0\n\
                   2026-12-02 07:40:02.1 UTC [9] LOG:  redo done at 0/5000A10 system usage: CPU: user: 0.01 s\n\
                   2026-12-02 07:40:02.1 UTC [9] LOG:  last completed transaction was at log time 2026-12-02 07:39:59.9+00\n";
        let facts = LogFacts::parse(log);
        assert_eq!(facts.redo_done_at.as_deref(), Some("0/5000A10"));
        assert_eq!(
            facts.stopped.as_deref(),
            Some(
                "recovery stopping before commit of transaction 812, time 2026-12-02 07:40:00.5+00"
            )
        );
        assert_eq!(
            facts.end_reason.as_deref(),
            Some("invalid record length at 0/5000A48: expected at least 24, got 0")
        );
        assert_eq!(
            facts.last_transaction.as_deref(),
            Some("2026-12-02 07:39:59.9+00")
        );
        let fatal =
            "LOG: x\nFATAL:  recovery ended before configured recovery target was reached\n";
        assert!(explain_failure(fatal).starts_with("the recovery target was not reached"));
    }
}
