//! [`HelperProcess`]: a test binary started again to run one of its own
//! tests as a helper, so a test can read the helper's children in `/proc`
//! or `kill -9` the library halfway through a restore; plus the decoy
//! secrets such a helper holds in its environment
//! ([`DECOY_SECRETS`]) and the helper's side of a restore fed on stdin
//! ([`write_from_reader`]).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use bytes::Bytes;

use crate::source::RestoreSession;

/// What a helper prints before each line meant for the test (libtest may
/// print `test helper_process ... ` on the same line first).
pub const HELPER_PREFIX: &str = "HELPER ";

/// Decoy secrets a helper's environment holds the way a daemon's does: an
/// S3 secret key (and the variable `secret_key_var` would name), API
/// tokens, database passwords of other values and an age identity. None
/// may reach a child's argv or environment.
pub const DECOY_SECRETS: &[(&str, &str)] = &[
    ("AWS_SECRET_ACCESS_KEY", "decoy-aws-secret-4f9a0c"),
    ("S3_SECRET_FROM_SECRET_KEY_VAR", "decoy-s3-secret-var-93d1"),
    ("BACKUPD_ADMIN_TOKEN", "decoy-admin-token-77c1e2"),
    ("BACKUPD_TOKEN_ACME", "decoy-tenant-token-5b8e"),
    ("PGPASSWORD", "decoy-pgpassword-12ab34"),
    ("MONGODB_PASSWORD", "decoy-mongodb-password-31"),
    (
        "BACKUP_AGE_IDENTITY",
        "AGE-SECRET-KEY-1DECOYDECOYDECOYDECOYDECOYDECOYDECOYDECOYDECOYDECOYDEC",
    ),
];

/// This test binary running one of its tests (the helper's side) in a
/// child process: stdin and stdout piped, stderr inherited. Killed
/// (`SIGKILL`) and reaped when dropped.
#[derive(Debug)]
pub struct HelperProcess {
    child: Child,
    lines: Receiver<String>,
}

impl HelperProcess {
    /// The command that runs test `test` of this binary alone, with its
    /// output shown; add the helper's environment, then
    /// [`spawn`](Self::spawn) it. Every [`DECOY_SECRETS`] variable is set.
    pub fn command(test: &str) -> Command {
        let mut cmd = Command::new(std::env::current_exe().expect("the test binary's path"));
        cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
            .envs(DECOY_SECRETS.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        cmd
    }

    /// Starts `cmd` (from [`command`](Self::command)) and reads its
    /// stdout on a thread.
    pub fn spawn(mut cmd: Command) -> HelperProcess {
        let mut child = cmd.spawn().expect("start the helper process");
        let stdout = child.stdout.take().expect("the helper's stdout is piped");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        HelperProcess { child, lines }
    }

    /// The helper's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The helper's stdin.
    pub fn stdin(&mut self) -> &mut ChildStdin {
        self.child
            .stdin
            .as_mut()
            .expect("the helper's stdin is open")
    }

    /// The next line starting with [`HELPER_PREFIX`], without it; panics
    /// when the helper says nothing for two minutes or exits.
    pub fn expect_line(&self) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(120))
                .expect("the helper said nothing");
            if let Some(at) = line.find(HELPER_PREFIX) {
                return line[at + HELPER_PREFIX.len()..].to_string();
            }
        }
    }

    /// Kills the helper with `SIGKILL` and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HelperProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The helper's side: when environment variable `var` is set (by the
/// test that started this binary with [`HelperProcess::command`]), runs
/// `main` with its value on a two-worker multi-thread runtime; otherwise
/// (a normal test run) does nothing.
pub fn run_helper<F: std::future::Future<Output = ()>>(var: &str, main: impl FnOnce(String) -> F) {
    let Ok(mode) = std::env::var(var) else {
        return;
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for the helper")
        .block_on(main(mode));
}

/// Writes all of `reader` into `session` in chunks of `chunk` bytes,
/// calling `written` with each chunk's length once the session took it.
/// Reads block the thread (`block_in_place`): call it on a multi-thread
/// runtime. Does not commit.
pub async fn write_from_reader(
    session: &mut dyn RestoreSession,
    mut reader: impl Read,
    chunk: usize,
    mut written: impl FnMut(usize),
) {
    let mut buf = vec![0u8; chunk];
    loop {
        let n = tokio::task::block_in_place(|| reader.read(&mut buf)).expect("read the input");
        if n == 0 {
            return;
        }
        session
            .write(Bytes::copy_from_slice(&buf[..n]))
            .await
            .expect("the session takes the chunk");
        written(n);
    }
}

/// `S3cr` followed by every string of `min_len` to 4 characters over
/// URL and URI metacharacters (`/ ? @ : # %`) and two plain ones: the
/// passwords a connection-string parser must never show in an error,
/// `Display`, `Debug` or redaction.
pub fn hostile_secrets(min_len: usize) -> Vec<String> {
    let alphabet = ['/', '?', '@', ':', '#', '%', 'a', '1'];
    let mut passwords = vec![String::new()];
    for _ in 0..4 {
        let next: Vec<String> = passwords
            .iter()
            .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
            .collect();
        passwords.extend(next);
    }
    passwords
        .into_iter()
        .filter(|p| p.len() >= min_len)
        .map(|p| format!("S3cr{p}"))
        .collect()
}

/// Panics with the process's stderr unless it exited successfully.
pub fn assert_success(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
