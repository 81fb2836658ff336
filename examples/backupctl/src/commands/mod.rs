//! One module per subcommand: its arguments and what it does.

pub(crate) mod backup;
pub(crate) mod check;
pub(crate) mod delete;
pub(crate) mod drill;
pub(crate) mod forget_source;
pub(crate) mod gc;
pub(crate) mod health;
pub(crate) mod init;
pub(crate) mod list;
pub(crate) mod pitr_window;
pub(crate) mod prune;
pub(crate) mod restore;
pub(crate) mod show;
pub(crate) mod stats;
pub(crate) mod sweep;
pub(crate) mod verify;
pub(crate) mod wal_archive;
pub(crate) mod wal_fetch;
pub(crate) mod wal_push;

use std::sync::Arc;
use std::time::Duration;

use backup_core::manifest::is_backup_id;
use backup_core::meter::{Meter, MeteredStore};
use backup_core::store::Store;
use backup_core::{Engine, Error, Filter, Result};

use crate::options::{CryptoOptions, S3Options};
use crate::progress::{Bar, Work};

/// The WAL archive a command works on: `--store`, `--tenant`, `--source`.
#[derive(Debug, clap::Args)]
pub(crate) struct WalSourceArgs {
    /// Store: a directory or s3://bucket/prefix (must exist: `backupctl init` creates one).
    #[arg(long)]
    pub(crate) store: String,
    /// Tenant the archive belongs to.
    #[arg(long, default_value = backup_core::manifest::DEFAULT_TENANT)]
    pub(crate) tenant: String,
    /// Source id of the cluster (the same as its base backups').
    #[arg(long = "source")]
    pub(crate) source_id: String,
}

/// The global options every subcommand sees.
#[derive(Debug)]
pub(crate) struct Context<'a> {
    pub(crate) s3: &'a S3Options,
    pub(crate) crypto: &'a CryptoOptions,
    /// `--quiet`: no progress bar and no success summary lines.
    pub(crate) quiet: bool,
    /// What the command's store (and a backup's source) moved so far, for
    /// the progress bar.
    pub(crate) meter: Arc<Meter>,
}

impl Context<'_> {
    /// An engine over the store named by `--store`, which must exist (a
    /// mistyped store is an error, never an empty listing), with the
    /// encryption flags applied.
    pub(crate) async fn engine(&self, spec: &str) -> Result<Engine> {
        let store = self.s3.open_existing(spec).await?;
        self.crypto.apply(Engine::new(self.metered(store)))
    }

    /// An engine over the store named by `--store`, created if missing:
    /// only `backup` creates a store.
    pub(crate) async fn engine_creating_store(&self, spec: &str) -> Result<Engine> {
        let store = self.s3.open_for_writing(spec).await?;
        self.crypto.apply(Engine::new(self.metered(store)))
    }

    /// `store`, counting its bytes into [`Context::meter`].
    fn metered(&self, store: Arc<dyn Store>) -> Arc<dyn Store> {
        Arc::new(MeteredStore::new(store, Arc::clone(&self.meter)))
    }

    /// A progress bar labelled `label` over this command's meter: drawn
    /// only on a terminal, never with `--json` or `--quiet`.
    pub(crate) fn progress(&self, label: &'static str, work: Work, json: bool) -> Bar {
        Bar::start(!json && !self.quiet, label, work, &self.meter)
    }
}

/// The backup an `<ID>` argument names: a full id; `latest` (the newest
/// backup in the store); or a unique prefix of an id (at least 4
/// characters, e.g. `20250101T03`). An ambiguous prefix is refused with the
/// candidates; anything else is passed on as given, so the engine refuses
/// it precisely (an invalid key, a backup not found).
pub(crate) async fn resolve_id(engine: &Engine, arg: &str) -> Result<String> {
    if is_backup_id(arg) {
        return Ok(arg.to_string());
    }
    let id_like = arg.len() >= 4
        && arg
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'T' | b'Z' | b'-' | b'a'..=b'f'));
    if arg != "latest" && !id_like {
        return Ok(arg.to_string());
    }
    let backups = engine.catalog().list(&Filter::all()).await?;
    if arg == "latest" {
        return backups
            .first()
            .map(|m| m.id.clone())
            .ok_or_else(|| Error::not_found("latest backup: the store holds none"));
    }
    let matching: Vec<&str> = backups
        .iter()
        .map(|m| m.id.as_str())
        .filter(|id| id.starts_with(arg))
        .collect();
    match matching.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(Error::not_found(format!(
            "backup {arg} (no backup id starts with it)"
        ))),
        many => Err(Error::Config(format!(
            "backup id prefix {arg} is ambiguous: {} backups start with it ({}{}); give more characters",
            many.len(),
            many.iter().take(5).copied().collect::<Vec<_>>().join(", "),
            if many.len() > 5 { ", ..." } else { "" }
        ))),
    }
}

/// What a subcommand wants the process to exit with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Status 0.
    Ok,
    /// Status 1 without an error (`check`, `health`).
    Unhealthy,
    /// Status 126, the error already printed: a failure that must stop
    /// the caller rather than read as "not found" (`wal-fetch` under
    /// PostgreSQL's `restore_command`, which aborts recovery on a status
    /// above 125).
    Fatal,
}

/// One line with a base backup's physical facts (timeline, start and stop
/// LSN, the WAL segments it needs); `None` for other backups. A base
/// backup whose facts do not parse says so rather than hiding it.
pub(crate) fn physical_line(m: &backup_core::manifest::Manifest) -> Option<String> {
    if m.format != backup_postgres::BASEBACKUP_FORMAT {
        return None;
    }
    Some(match backup_postgres::BaseBackupInfo::from_manifest(m) {
        Ok(i) => format!(
            "{}: base backup of system {}, timeline {}, start LSN {}, stop LSN {}, WAL {}..{}",
            m.id,
            i.system_identifier,
            i.timeline,
            i.start_lsn,
            i.stop_lsn,
            i.wal_first_segment,
            i.wal_last_segment
        ),
        Err(e) => format!(
            "{}: base backup without readable physical facts ({e})",
            m.id
        ),
    })
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
