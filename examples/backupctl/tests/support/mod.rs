//! Shared by the backupctl test binaries (`mod support;`): running the
//! real binary of this package and checking its exit status and output;
//! for the crash harness also running it with exactly the environment a
//! test chooses ([`cli`]), watching and killing its process group
//! ([`procs`]), scanning the disk for leaked secrets ([`secrets`]), and
//! walking (and ageing) directory trees ([`files`]).
#![allow(dead_code, unreachable_pub)]

pub mod cli;
pub mod files;
pub mod procs;
pub mod secrets;

use std::process::{Command, Output};

use serde_json::Value;

/// The `backupctl` binary of this package (`cargo test -p backupctl`
/// builds it), without `PGPASSWORD` from the test's environment.
pub fn backupctl_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_backupctl"));
    command.env_remove("PGPASSWORD");
    command
}

/// Runs `backupctl args`.
pub fn backupctl(args: &[&str]) -> Output {
    backupctl_command()
        .args(args)
        .output()
        .expect("run backupctl")
}

/// The standard output of a run that must have succeeded. Only the
/// subcommand is shown on failure: other arguments may hold a URI.
pub fn succeeded(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "backupctl {:?} failed: {}",
        args.first(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The error of a run that must have failed with a one-line message.
pub fn failed(args: &[&str], out: Output) -> String {
    assert!(
        !out.status.success(),
        "backupctl {:?} succeeded",
        args.first()
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one-line error expected: {stderr}"
    );
    stderr
}

/// Runs `backupctl args`, which must succeed; its standard output.
pub fn ok(args: &[&str]) -> String {
    succeeded(args, backupctl(args))
}

/// Runs `backupctl args`, which must fail with a one-line error; the error.
pub fn fails(args: &[&str]) -> String {
    failed(args, backupctl(args))
}

/// Runs `backupctl args`, which must succeed and print JSON; the JSON.
pub fn json(args: &[&str]) -> Value {
    serde_json::from_str(&ok(args)).unwrap()
}
