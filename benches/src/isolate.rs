//! Running one variant of a benchmark in a fresh process, so its peak RSS
//! is its own and not memory the allocator kept from an earlier variant.

use std::io;
use std::process::{Command, Stdio};

use crate::report::Measurement;

/// Prefix of the line carrying a child's result on its stdout.
const RESULT_PREFIX: &str = "BENCH-RESULT ";

/// Runs this benchmark executable again as `EXE --isolated SPEC` with `env`
/// added, and returns the [`Measurement`] the child reported with
/// [`report_isolated`]. The child's stderr is passed through; its exit
/// status must be 0.
///
/// `SPEC` is whatever the benchmark needs to know which variant to run
/// (JSON, say); it is on the child's command line, so it must hold no
/// secrets — hand those over in a file named in `env`.
pub fn run_isolated(spec: &str, env: &[(String, String)]) -> io::Result<Measurement> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args(["--isolated", spec])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "isolated run {spec} failed: {}",
            out.status
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(RESULT_PREFIX))
        .ok_or_else(|| io::Error::other(format!("isolated run {spec} reported nothing")))?;
    serde_json::from_str(line).map_err(io::Error::other)
}

/// In a child started by [`run_isolated`]: hands `m` to the parent.
pub fn report_isolated(m: &Measurement) {
    let json = serde_json::to_string(m).expect("a measurement serializes");
    println!("{RESULT_PREFIX}{json}");
}
