//! `cargo run --release --example backupd -- --config config.yaml`: the
//! daemon under the name it had before it became the `backupd` package
//! (`cargo run --release -p backupd -- --config config.yaml`).

use std::process::ExitCode;

fn main() -> ExitCode {
    backupd::main_with_args(std::env::args_os())
}
