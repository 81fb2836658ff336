//! Running `backupctl` as the victim: in its own process group, with a
//! fresh `TMPDIR` and `HOME`, killed with SIGKILL after a delay.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::procs::{self, IoCounters};

use super::GROUP_EXIT_LIMIT;

/// What receives the SIGKILL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum KillMode {
    /// Only `backupctl` (`kill -9 PID`, the OOM killer): the tools it
    /// started live on as orphans until their input or work ends.
    Victim,
    /// Its whole process group (`kill -9 -PGID`, a container or cgroup
    /// stop): the tools die with it.
    Group,
}

/// How a victim ended.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// When the kill was due, after the start (about).
    pub(crate) delay: Duration,
    /// What was to be killed.
    pub(crate) mode: KillMode,
    /// Whether the signal was sent; `false`: the victim exited first.
    pub(crate) killed: bool,
    /// Whether it exited with status 0 (only possible when not killed).
    pub(crate) success: bool,
    /// Its standard output.
    pub(crate) stdout: String,
    /// Its standard error.
    pub(crate) stderr: String,
    /// Its I/O counters just before the kill.
    pub(crate) io: Option<IoCounters>,
}

/// Runs `cmd` (a `backupctl` command from [`crate::support::cli::Cli`]) in
/// `dir` (its `TMPDIR` and `HOME` are made there), kills it after `delay`
/// (unless it exited first), waits until every process of its group is
/// gone, then until the servers on `ports` have finished with its
/// connections (what it had sent may still be carried out after its
/// death: a MongoDB insert recreating a dropped staging database, an S3
/// PUT whose body had arrived).
pub(crate) fn run_and_kill(
    cmd: Command,
    dir: &Path,
    delay: Duration,
    mode: KillMode,
    ports: &[u16],
) -> Outcome {
    run_and_kill_after(cmd, dir, &mut || true, delay, mode, ports)
}

/// Like [`run_and_kill`], but the delay starts once `started_work` says
/// so (polled every millisecond while the victim runs; e.g. once the store
/// changed): a kill lands in the work itself rather than in the start-up
/// of a short command. [`Outcome::delay`] is then counted from the start.
pub(crate) fn run_and_kill_after(
    mut cmd: Command,
    dir: &Path,
    started_work: &mut dyn FnMut() -> bool,
    delay: Duration,
    mode: KillMode,
    ports: &[u16],
) -> Outcome {
    let (out_path, err_path) = prepare(&mut cmd, dir);
    let started = Instant::now();
    let mut child = cmd.spawn().expect("start the victim");
    let pid = child.id();
    while !started_work() {
        if child.try_wait().expect("poll the victim").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(delay);
    let delay = started.elapsed();
    let mut io = None;
    let killed = match child.try_wait().expect("poll the victim") {
        Some(_) => false,
        None => {
            io = procs::io_counters(pid);
            match mode {
                KillMode::Victim => child.kill().expect("SIGKILL the victim"),
                KillMode::Group => procs::kill_group(pid),
            }
            true
        }
    };
    let status = child.wait().expect("reap the victim");
    procs::wait_group_gone(pid, GROUP_EXIT_LIMIT);
    procs::wait_servers_done(ports, GROUP_EXIT_LIMIT);
    Outcome {
        delay,
        mode,
        killed,
        success: !killed && status.success(),
        stdout: std::fs::read_to_string(out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(err_path).unwrap_or_default(),
        io,
    }
}

/// Runs `cmd` like [`run_and_kill`] but to its end, which must be a
/// success; returns its stdout and how long it took.
pub(crate) fn run_timed(mut cmd: Command, dir: &Path) -> (String, Duration) {
    let (out_path, err_path) = prepare(&mut cmd, dir);
    let started = Instant::now();
    let mut child = cmd.spawn().expect("start backupctl");
    let pid = child.id();
    let status = child.wait().expect("wait for backupctl");
    let took = started.elapsed();
    procs::wait_group_gone(pid, GROUP_EXIT_LIMIT);
    let stderr = std::fs::read_to_string(err_path).unwrap_or_default();
    assert!(status.success(), "the measuring run failed: {stderr}");
    (std::fs::read_to_string(out_path).unwrap_or_default(), took)
}

/// Fresh `TMPDIR` and `HOME` in `dir`, output into files there, own
/// process group.
fn prepare(cmd: &mut Command, dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let tmp = dir.join("tmp");
    let home = dir.join("home");
    for d in [&tmp, &home] {
        std::fs::create_dir_all(d).expect("create the victim's directories");
    }
    let out_path = dir.join("stdout");
    let err_path = dir.join("stderr");
    cmd.env("TMPDIR", &tmp)
        .env("HOME", &home)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    (out_path, err_path)
}
