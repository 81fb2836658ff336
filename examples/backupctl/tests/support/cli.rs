//! [`Cli`]: the `backupctl` binary of this package, started from a cleared
//! environment plus exactly the variables a test gives it.

use std::ffi::OsString;
use std::process::{Command, Output};

use serde_json::Value;

/// How to run `backupctl`: the environment it gets (nothing else from the
/// test process leaks in: no stray `PGPASSWORD`, `AWS_*` or `TMPDIR`).
#[derive(Debug, Clone)]
pub struct Cli {
    env: Vec<(String, OsString)>,
}

impl Cli {
    /// `backupctl` with `PATH` only.
    pub fn new() -> Cli {
        let mut env = Vec::new();
        if let Some(path) = std::env::var_os("PATH") {
            env.push(("PATH".to_string(), path));
        }
        Cli { env }
    }

    /// Adds (or replaces) one variable.
    pub fn env(mut self, name: &str, value: impl Into<OsString>) -> Cli {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_string(), value.into()));
        self
    }

    /// A command for `backupctl args...` with this environment, not started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_backupctl"));
        cmd.env_clear().args(args);
        for (name, value) in &self.env {
            cmd.env(name, value);
        }
        cmd
    }

    /// Runs `backupctl args...` to its end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run backupctl")
    }

    /// Runs `backupctl args...`, which must succeed, and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "backupctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("backupctl prints UTF-8")
    }

    /// Runs `backupctl args...` (give it `--json`), which must succeed, and
    /// parses its stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("backupctl {args:?} printed no JSON ({e}): {text}"))
    }
}
