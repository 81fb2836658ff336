//! Timing external commands: wall time and peak RSS of a shell pipeline.

use std::io;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `GNU time`, which reports the peak RSS of what it runs.
const TIME: &str = "/usr/bin/time";

/// A shell pipeline to time, run as `/usr/bin/time -f '%e %M %U %S' bash -o
/// pipefail -c SCRIPT` so that a failure anywhere in the pipeline fails the
/// run.
///
/// The script's stdin is `/dev/null` and its stdout is discarded (redirect
/// inside the script to keep output); its stderr is kept for the error
/// message. Variables set with [`ShellCommand::env`] are added to this
/// process's environment, those named in [`ShellCommand::env_remove`] are
/// removed: pass connection settings and secrets this way (a `PGPASSFILE`,
/// never a password on the command line).
///
/// ```no_run
/// use backup_benches::ShellCommand;
/// let run = ShellCommand::new("zstd -3 -T0 -c big.txt | sha256sum").run()?;
/// println!("{:?}, largest process {} bytes", run.wall, run.peak_rss);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ShellCommand {
    script: String,
    env: Vec<(String, String)>,
    env_remove: Vec<String>,
}

/// What one timed run took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShellRun {
    /// Wall time measured around the whole run (includes starting `time`
    /// and `bash`, about a millisecond).
    pub wall: Duration,
    /// `%M` of GNU time, in bytes: the peak RSS of the *largest single
    /// process* of the pipeline (the kernel keeps the maximum over reaped
    /// descendants, not their sum).
    pub peak_rss: u64,
    /// User + system CPU time of the whole pipeline (`%U + %S`).
    pub cpu: Duration,
}

impl ShellCommand {
    /// A pipeline in bash syntax.
    pub fn new(script: impl Into<String>) -> Self {
        ShellCommand {
            script: script.into(),
            env: Vec::new(),
            env_remove: Vec::new(),
        }
    }

    /// Sets an environment variable for the pipeline.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets several environment variables.
    pub fn envs<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Removes an inherited environment variable.
    pub fn env_remove(mut self, key: impl Into<String>) -> Self {
        self.env_remove.push(key.into());
        self
    }

    /// The script, for printing.
    pub fn script(&self) -> &str {
        &self.script
    }

    /// Runs the pipeline once (blocking) and fails if it exits non-zero,
    /// with the end of its stderr in the error.
    pub fn run(&self) -> io::Result<ShellRun> {
        let report = tempfile::NamedTempFile::new()?;
        let mut cmd = Command::new(TIME);
        cmd.args(["-f", "%e %M %U %S", "-o"])
            .arg(report.path())
            .args(["bash", "-o", "pipefail", "-c", &self.script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for key in &self.env_remove {
            cmd.env_remove(key);
        }
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        let started = Instant::now();
        let out = cmd.output().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run {TIME} (apt-get install time): {e}"),
            )
        })?;
        let wall = started.elapsed();
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: String = stderr
                .chars()
                .rev()
                .take(2000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(io::Error::other(format!(
                "`{}` failed ({}): {}",
                self.script,
                out.status,
                tail.trim()
            )));
        }
        let report = std::fs::read_to_string(report.path())?;
        // The last line; earlier ones are time's own notes.
        let fields: Vec<&str> = report
            .lines()
            .last()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let parsed = match fields[..] {
            [_, kib, user, sys] => kib
                .parse::<u64>()
                .ok()
                .zip(user.parse::<f64>().ok())
                .zip(sys.parse::<f64>().ok()),
            _ => None,
        };
        let ((kib, user), sys) =
            parsed.ok_or_else(|| io::Error::other(format!("unexpected time report {report:?}")))?;
        Ok(ShellRun {
            wall,
            peak_rss: kib * 1024,
            cpu: Duration::from_secs_f64(user + sys),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_a_pipeline_and_reports_failures() {
        if !std::path::Path::new(TIME).exists() {
            eprintln!("skipped: {TIME} missing");
            return;
        }
        let run = ShellCommand::new("head -c 1000000 /dev/zero | sha256sum")
            .env("X", "1")
            .run()
            .unwrap();
        assert!(run.peak_rss > 0);
        let err = ShellCommand::new("echo oops >&2; false | cat")
            .run()
            .unwrap_err();
        assert!(err.to_string().contains("oops"), "{err}");
    }
}
