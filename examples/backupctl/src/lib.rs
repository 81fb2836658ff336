//! `backupctl`: one-shot backup, list, verify, restore, delete, sweep,
//! prune, gc and check over the backup library, for operators and cron
//! jobs. The binary is a thin `main` over [`main_with_args`]; each
//! subcommand is one module of `commands/` (its arguments and its `run`).
#![warn(missing_docs, unreachable_pub)]

mod cli;
mod commands;
mod connect;
mod options;
mod progress;
mod table;

pub use cli::main_with_args;
pub use options::{CryptoOptions, S3Options};
