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

use std::path::Path;
use std::process::{Command, Output};

use backup_postgres::TestServer;
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

/// The `--pg-bin` directory for PostgreSQL `server`: its own client tools
/// when they are a directory of their own (the PostgreSQL 18 of the test
/// matrix, which discovery under /usr/lib/postgresql would not find),
/// `None` for discovered ones.
pub fn pg_bin(server: &TestServer) -> Option<String> {
    server
        .tools()
        .bin_dir()
        .map(|dir| dir.to_str().expect("a UTF-8 bin directory").to_string())
}

/// `args` followed by `--pg-bin DIR` when `bin` (see [`pg_bin`]) names one.
pub fn with_pg_bin<'a>(args: &[&'a str], bin: &'a Option<String>) -> Vec<&'a str> {
    let mut out = args.to_vec();
    if let Some(dir) = bin {
        out.extend(["--pg-bin", dir.as_str()]);
    }
    out
}

/// The arguments of a physical restore: `restore ID --store STORE
/// --datadir DATA`, then `--pg-bin BIN` when given, then `extra` (the
/// `--target-*` and `--timeline` flags of the case).
pub fn datadir_restore<'a>(
    id: &'a str,
    store: &'a str,
    data: &'a Path,
    bin: Option<&'a str>,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let data = data.to_str().expect("a UTF-8 data directory");
    let mut args = vec!["restore", id, "--store", store, "--datadir", data];
    if let Some(bin) = bin {
        args.extend(["--pg-bin", bin]);
    }
    args.extend(extra);
    args
}

/// The arguments of a logical restore: `restore ID --store STORE --pg
/// URL`, `--pg-bin DIR` when `bin` (see [`pg_bin`]) names one, then
/// `extra` (`--create`, `--clean`).
pub fn into_database<'a>(
    id: &'a str,
    store: &'a str,
    url: &'a str,
    bin: &'a Option<String>,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = with_pg_bin(&["restore", id, "--store", store, "--pg", url], bin);
    args.extend(extra);
    args
}
