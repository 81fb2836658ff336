//! `backupd`: the standalone backupper.
//!
//! ```text
//! cargo run --release -p backupd -- --config config.yaml [--listen 127.0.0.1:8000]
//! ```
//!
//! See `examples/backupd/config.example.yaml` and the README. Logs go to
//! stderr (`BACKUP_LOG=debug` for more); an invalid configuration prints
//! one line per problem and exits with status 2, as does any other failure
//! to start (storage, audit log, listen addresses); 1 is a server error
//! after start.

use std::process::ExitCode;

fn main() -> ExitCode {
    backupd::main_with_args(std::env::args_os())
}
