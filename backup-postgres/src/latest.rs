//! [`IncrementalOnLatest`]: a source that takes each backup as a
//! block-level incremental on the newest committed base backup of its
//! tenant and source, looked up when the dump starts; what a scheduler
//! runs for "a full weekly, incrementals daily".

use std::sync::Arc;

use async_trait::async_trait;
use backup_core::catalog::Filter;
use backup_core::manifest::Manifest;
use backup_core::source::{DumpOptions, DumpStream, SourceInfo};
use backup_core::{DumpSource, Engine, Error, Result};

use crate::incremental::ParentManifest;
use crate::physical::{BASEBACKUP_FORMAT, BaseBackupSource};

/// The newest committed base backup (full or incremental) of `tenant` and
/// `source_id` in `engine`'s catalog, if any: the parent the next
/// incremental backup of that source applies on top of.
pub async fn latest_base_backup(
    engine: &Engine,
    tenant: &str,
    source_id: &str,
) -> Result<Option<Arc<Manifest>>> {
    let backups = engine
        .catalog()
        .list(&Filter::tenant(tenant).source(source_id))
        .await?;
    Ok(backups
        .into_iter()
        .find(|m| m.engine == "postgres" && m.format == BASEBACKUP_FORMAT))
}

/// A [`BaseBackupSource`] that takes block-level incremental backups
/// (PostgreSQL 17+) on the newest committed base backup of its tenant and
/// source ([`latest_base_backup`]), found anew at each dump, so each
/// backup extends the chain the previous one ended (full or incremental).
///
/// Without any base backup of the source yet, or when the server's WAL
/// summaries no longer cover that parent, the dump fails with an error
/// that says so, unless [`IncrementalOnLatest::fallback_to_full`] allows a
/// full base backup instead (whose details then say why, under
/// [`FELL_BACK`](crate::FELL_BACK)). Every other refusal of
/// [`BaseBackupSource::incremental`] (a server older than 17,
/// `summarize_wal = off`, another cluster) fails the dump either way.
///
/// ```no_run
/// use backup_core::Engine;
/// use backup_postgres::{BaseBackupSource, IncrementalOnLatest, PgConnection};
///
/// # fn build(engine: Engine, conn: PgConnection) {
/// let source = IncrementalOnLatest::new(BaseBackupSource::new(conn), engine, "default", "main")
///     .fallback_to_full(true);
/// # let _ = source; }
/// ```
#[derive(Debug, Clone)]
pub struct IncrementalOnLatest {
    base: BaseBackupSource,
    engine: Engine,
    tenant: String,
    source_id: String,
    fallback_to_full: bool,
}

impl IncrementalOnLatest {
    /// Incrementals of `base`'s cluster on the newest base backup of
    /// `tenant` and `source_id` in `engine`'s store (the engine must be
    /// able to read it: its identities decrypt an encrypted parent).
    pub fn new(
        base: BaseBackupSource,
        engine: Engine,
        tenant: impl Into<String>,
        source_id: impl Into<String>,
    ) -> Self {
        IncrementalOnLatest {
            base,
            engine,
            tenant: tenant.into(),
            source_id: source_id.into(),
            fallback_to_full: false,
        }
    }

    /// Takes a full base backup instead of failing when there is no
    /// parent yet or the WAL summaries no longer cover it (default: fail).
    pub fn fallback_to_full(mut self, yes: bool) -> Self {
        self.fallback_to_full = yes;
        self
    }
}

#[async_trait]
impl DumpSource for IncrementalOnLatest {
    fn info(&self) -> SourceInfo {
        self.base.info()
    }

    async fn dump(&self, opts: &DumpOptions) -> Result<DumpStream> {
        let parent = latest_base_backup(&self.engine, &self.tenant, &self.source_id).await?;
        let Some(parent) = parent else {
            if !self.fallback_to_full {
                return Err(Error::Dump {
                    engine: "postgres",
                    detail: format!(
                        "cannot take an incremental base backup: tenant {}, source {} has no base backup to take it on; take a full base backup first (or allow a fallback to one)",
                        self.tenant, self.source_id
                    ),
                });
            }
            tracing::warn!(tenant = %self.tenant, source = %self.source_id, "no base backup to take an incremental on: taking a full one");
            return self
                .base
                .clone()
                .fell_back(format!(
                    "source {} had no base backup to take an incremental on",
                    self.source_id
                ))
                .dump(opts)
                .await;
        };
        let parent = ParentManifest::fetch(&self.engine, &parent).await?;
        let source = self
            .base
            .clone()
            .incremental(parent)
            .fallback_to_full(self.fallback_to_full);
        source.dump(opts).await
    }
}
