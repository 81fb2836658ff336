//! One module per subcommand: its arguments and what it does.

pub(crate) mod backup;
pub(crate) mod check;
pub(crate) mod delete;
pub(crate) mod gc;
pub(crate) mod health;
pub(crate) mod init;
pub(crate) mod list;
pub(crate) mod prune;
pub(crate) mod restore;
pub(crate) mod stats;
pub(crate) mod sweep;
pub(crate) mod verify;

use std::time::Duration;

use backup_core::{Engine, Result};

use crate::options::{CryptoOptions, S3Options};

/// The global options every subcommand sees.
#[derive(Debug)]
pub(crate) struct Context<'a> {
    pub(crate) s3: &'a S3Options,
    pub(crate) crypto: &'a CryptoOptions,
}

impl Context<'_> {
    /// An engine over the store named by `--store`, which must exist (a
    /// mistyped store is an error, never an empty listing), with the
    /// encryption flags applied.
    pub(crate) async fn engine(&self, spec: &str) -> Result<Engine> {
        self.crypto
            .apply(Engine::new(self.s3.open_existing(spec).await?))
    }

    /// An engine over the store named by `--store`, created if missing:
    /// only `backup` creates a store.
    pub(crate) async fn engine_creating_store(&self, spec: &str) -> Result<Engine> {
        self.crypto
            .apply(Engine::new(self.s3.open_for_writing(spec).await?))
    }
}

/// What a subcommand wants the process to exit with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Status 0.
    Ok,
    /// Status 1 without an error (`check`, `health`).
    Unhealthy,
}

pub(crate) fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serialisable output")
    );
}

pub(crate) fn parse_duration_arg(s: &str) -> std::result::Result<Duration, String> {
    backup_core::duration::parse_duration(s).map_err(|e| e.to_string())
}
