//! [`MongoTarget`]: restoring a mongodump archive natively (or through
//! `mongorestore`), staged so that a late mismatch leaves the target
//! untouched.

mod mongorestore;
mod native;
mod promote;
pub(crate) mod staging;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backup_core::{
    Error, RestoreOptions, RestoreTarget, Result, source::Leftover, source::LeftoverReport,
    source::RestoreSession,
};

use crate::archive::{ArchiveError, CollectionType, MetadataDocument, Namespace, Prelude};
use crate::conn::MongoConnection;
use crate::dump::FORMAT;
use crate::error::{Side, classify};
use crate::server::{check_not_system, server_info, validate_database_name};
use crate::tools::Method;

/// Default size of one unordered insert batch (the driver splits it
/// further to fit the server's message limit).
pub const DEFAULT_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Default most documents in one insert batch.
pub const DEFAULT_BATCH_DOCUMENTS: usize = 50_000;

/// Default number of insert batches in flight at once.
pub const DEFAULT_INSERT_CONCURRENCY: usize = 2;

/// Where a restore writes while the archive is still being verified.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestoreStrategy {
    /// Restore into a staging database `<target>__restore_<8 hex>`; on
    /// commit move each collection into the target with
    /// `renameCollection` (`dropTarget` when cleaning) and drop the
    /// staging database; on abort drop the staging database. The target
    /// is untouched until every digest has matched.
    #[default]
    Staging,
    /// Restore straight into the target database, as `mongorestore`
    /// does: faster (no rename), but a mismatch found late is undone only
    /// by dropping the collections the restore created, and with
    /// [`RestoreOptions::clean`] the collections it replaces are dropped
    /// *before* the archive is verified.
    Direct,
}

/// Restores mongodump archives into a MongoDB database.
///
/// The archive is parsed as it arrives ([`crate::ArchiveReader`]):
/// collections are created with their stored options (capped, validator,
/// collation, ...), documents are inserted as raw BSON in large unordered
/// batches with document validation bypassed (as mongorestore does),
/// indexes are built once a collection's data is complete, and views are
/// recreated from their definitions. Each collection's CRC-64 is checked
/// when its data ends and the archive's completeness when the input ends.
///
/// # Options
///
/// - [`RestoreOptions::database`]: the target database (default: the
///   connection's). The archive must hold one database; its collections
///   keep their names.
/// - [`RestoreOptions::only`]: restore only these collections or views
///   (names absent from the archive are an error).
/// - [`RestoreOptions::clean`]: replace collections that already exist in
///   the target. Without it, a restore that would overwrite an existing
///   collection or view fails before writing anything.
/// - [`RestoreOptions::create`] and [`RestoreOptions::no_owner`] have no
///   effect: MongoDB creates databases implicitly and has no ownership.
///
/// # What a failure leaves behind
///
/// MongoDB restores are not transactional. With the default
/// [`RestoreStrategy::Staging`], every byte is written to a staging
/// database first, so a corrupt or truncated artifact (a CRC mismatch, a
/// digest mismatch found by the pipeline at the very end, a truncated
/// archive) only costs the staging database, which the abort drops: the
/// target database is not modified at all. Once everything matched,
/// [`RestoreSession::commit`] moves the collections one by one: each
/// `renameCollection` is atomic, the group is not, so a reader of the
/// target can briefly see some collections restored and others not yet;
/// if the server fails midway the error lists the collections already
/// moved and those left in the staging database. Renaming across
/// databases copies the data on the server (the cost of a second write
/// pass) and is not available for sharded collections; the user needs
/// rights on the staging database (e.g. the `restore` role). Use
/// [`RestoreStrategy::Direct`] where those costs matter more than the
/// guarantee.
///
/// # Staging databases left behind
///
/// A staging database holds a marker collection (`_backup_mongo_staging`:
/// target, creation time, and a heartbeat the running restore refreshes
/// every 30 s). A restore killed midway leaves its staging database;
/// [`RestoreTarget::leftovers`] lists such databases and
/// [`RestoreTarget::remove_leftovers`] drops those whose heartbeat has been
/// silent for a given time (a hosting application calls it at start-up).
/// Each staged restore first drops the leftovers of its own target silent
/// for [`DEFAULT_STAGING_GRACE`](crate::DEFAULT_STAGING_GRACE) (see
/// [`MongoTarget::with_staging_grace`]). A restore whose staging database
/// was dropped under it fails at commit without moving anything.
///
/// # Reserved databases
///
/// `admin`, `local` and `config` (in any case) are refused as targets
/// unless [`MongoTarget::allow_system_databases`] says otherwise.
#[derive(Debug, Clone)]
pub struct MongoTarget {
    conn: MongoConnection,
    strategy: RestoreStrategy,
    method: Method,
    tuning: Tuning,
    allow_system: bool,
    staging_grace: Duration,
}

/// Batching of the native restore.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuning {
    pub(crate) batch_bytes: usize,
    pub(crate) batch_documents: usize,
    pub(crate) concurrency: usize,
}

impl MongoTarget {
    /// A target on the deployment of `conn`, restoring into
    /// `conn.database()` unless the options name another database.
    pub fn new(conn: MongoConnection) -> Self {
        MongoTarget {
            conn,
            strategy: RestoreStrategy::Staging,
            method: Method::Driver,
            tuning: Tuning {
                batch_bytes: DEFAULT_BATCH_BYTES,
                batch_documents: DEFAULT_BATCH_DOCUMENTS,
                concurrency: DEFAULT_INSERT_CONCURRENCY,
            },
            allow_system: false,
            staging_grace: staging::DEFAULT_STAGING_GRACE,
        }
    }

    /// Allows restoring into `admin`, `local` and `config` (refused by
    /// default).
    pub fn allow_system_databases(mut self, yes: bool) -> Self {
        self.allow_system = yes;
        self
    }

    /// How long a leftover staging database of the same target must have
    /// been silent before a staged restore drops it (default
    /// [`DEFAULT_STAGING_GRACE`](crate::DEFAULT_STAGING_GRACE)).
    pub fn with_staging_grace(mut self, grace: Duration) -> Self {
        self.staging_grace = grace;
        self
    }

    /// Chooses staging (default) or direct restores.
    pub fn with_strategy(mut self, strategy: RestoreStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Restores natively (default) or with `mongorestore --archive`.
    pub fn with_method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// Sets the insert batch limits (bytes, documents) and how many
    /// batches may be in flight; memory is about `bytes × (concurrency +
    /// 1)`.
    pub fn with_batching(mut self, bytes: usize, documents: usize, concurrency: usize) -> Self {
        self.tuning = Tuning {
            batch_bytes: bytes.max(1),
            batch_documents: documents.max(1),
            concurrency: concurrency.max(1),
        };
        self
    }

    /// The connection parameters (credentials hidden in `Debug`).
    pub fn connection(&self) -> &MongoConnection {
        &self.conn
    }
}

/// The name of a staging database for `target`: `<target>__restore_<8
/// hex>`, with `target` shortened so the whole stays under MongoDB's 64
/// bytes.
pub(crate) fn staging_name(target: &str) -> String {
    let suffix = format!("__restore_{:08x}", rand::random::<u32>());
    let mut keep = 63 - suffix.len();
    keep = keep.min(target.len());
    while !target.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{suffix}", &target[..keep])
}

#[async_trait]
impl RestoreTarget for MongoTarget {
    fn engine(&self) -> &str {
        "mongodb"
    }

    fn accepts_format(&self, format: &str) -> bool {
        format == FORMAT
    }

    /// Staging databases of restores on this deployment (any target),
    /// with their target and how long their restore has been silent.
    async fn leftovers(&self) -> Result<Vec<Leftover>> {
        let client = self.conn.client().await?;
        staging::find(&client, &self.conn, &staging::STAGING).await
    }

    /// Drops the staging databases whose restore has been silent for
    /// `older_than` or more; databases named like staging databases but
    /// without our marker are reported, never dropped. Needs the
    /// `listDatabases` privilege.
    async fn remove_leftovers(&self, older_than: Duration) -> Result<LeftoverReport> {
        let client = self.conn.client().await?;
        staging::cleanup(&client, &self.conn, &staging::STAGING, older_than, None).await
    }

    async fn begin(&self, opts: &RestoreOptions) -> Result<Box<dyn RestoreSession>> {
        let target = match &opts.database {
            Some(db) => db.clone(),
            None => self.conn.require_database("a MongoDB restore")?.to_string(),
        };
        validate_database_name(&target)?;
        if !self.allow_system {
            check_not_system(&target, "restore into")?;
        }
        let client = self.conn.client().await?;
        let server = server_info(&client, &self.conn, Side::Restore).await?;
        if opts.must_be_new {
            let existing = client
                .list_database_names()
                .await
                .map_err(|e| classify(&e, Side::Restore, "listing databases", &self.conn))?;
            if existing.contains(&target) {
                return Err(Error::AlreadyExists {
                    key: format!("mongodb database {target:?}"),
                });
            }
        }
        let (staging, token, heartbeat) = match self.strategy {
            RestoreStrategy::Staging => {
                let cleaned = staging::cleanup(
                    &client,
                    &self.conn,
                    &staging::STAGING,
                    self.staging_grace,
                    Some(&target),
                )
                .await;
                match cleaned {
                    Ok(report) => {
                        for line in report.describe() {
                            tracing::warn!(%target, "{line}");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%target, error = %e, "could not look for leftover staging databases")
                    }
                }
                let name = staging_name(&target);
                if !promote::existing_names(&client, &name, &self.conn)
                    .await?
                    .is_empty()
                {
                    return Err(Error::Restore {
                        engine: "mongodb",
                        detail: format!("staging database {name:?} already has collections"),
                    });
                }
                let token = format!("{:016x}", rand::random::<u64>());
                staging::mark(
                    &client,
                    &self.conn,
                    &staging::STAGING,
                    &name,
                    Some(&target),
                    &token,
                )
                .await?;
                let heartbeat =
                    staging::Heartbeat::start(client.clone(), &staging::STAGING, name.clone());
                (Some(name), Some(token), Some(Arc::new(heartbeat)))
            }
            RestoreStrategy::Direct => (None, None, None),
        };
        tracing::info!(%target, staging = ?staging, server = %server.version, "mongodb restore started");
        let plan = SessionPlan {
            client,
            conn: self.conn.clone(),
            target,
            staging,
            token,
            _heartbeat: heartbeat,
            clean: opts.clean,
            only: opts.only.clone(),
        };
        match &self.method {
            Method::Driver => Ok(Box::new(native::NativeSession::new(plan, self.tuning))),
            Method::Tools(tools) => mongorestore::begin(tools, plan).await,
        }
    }
}

/// What every restore session needs to know.
#[derive(Debug, Clone)]
pub(crate) struct SessionPlan {
    pub(crate) client: mongodb::Client,
    pub(crate) conn: MongoConnection,
    pub(crate) target: String,
    /// The staging database, or `None` for a direct restore.
    pub(crate) staging: Option<String>,
    /// This restore's token in the staging database's marker.
    pub(crate) token: Option<String>,
    /// Keeps the staging database's heartbeat going while the plan lives.
    pub(crate) _heartbeat: Option<Arc<staging::Heartbeat>>,
    pub(crate) clean: bool,
    pub(crate) only: Vec<String>,
}

impl SessionPlan {
    /// Where collections are created and documents inserted.
    pub(crate) fn data_db(&self) -> &str {
        self.staging.as_deref().unwrap_or(&self.target)
    }

    /// What happens to the target if the session is aborted, for messages.
    pub(crate) fn abort_note(&self) -> String {
        match &self.staging {
            Some(_) => format!(
                "the restore is aborted and database {:?} is left untouched",
                self.target
            ),
            None => format!(
                "the restore is aborted and the collections it created in {:?} are dropped",
                self.target
            ),
        }
    }
}

/// One collection or view of an archive's prelude, and whether this
/// restore takes it.
#[derive(Debug, Clone)]
pub(crate) struct SelectedEntry {
    pub(crate) name: String,
    pub(crate) kind: CollectionType,
    pub(crate) metadata: MetadataDocument,
    pub(crate) selected: bool,
}

/// What a prelude holds, checked against the options.
#[derive(Debug, Clone)]
pub(crate) struct Selection {
    /// The one database the archive was dumped from.
    pub(crate) source_db: String,
    /// Every entry, in prelude order.
    pub(crate) items: Vec<SelectedEntry>,
}

impl Selection {
    /// What promotion moves: the selected entries.
    pub(crate) fn staged_items(&self) -> Vec<promote::StagedItem> {
        self.items
            .iter()
            .filter(|i| i.selected)
            .map(|i| promote::StagedItem {
                name: i.name.clone(),
                kind: i.kind.clone(),
                options: i.metadata.options.clone(),
            })
            .collect()
    }
}

/// Checks a prelude: one database, every name of `only` present, no
/// selected timeseries collection.
pub(crate) fn select(plan: &SessionPlan, prelude: &Prelude) -> Result<Selection> {
    let databases: BTreeSet<&str> = prelude
        .collections
        .iter()
        .map(|c| c.namespace.db.as_str())
        .collect();
    if databases.len() > 1 {
        return Err(Error::Restore {
            engine: "mongodb",
            detail: format!(
                "the archive holds several databases ({}); restore archives of one database",
                databases.into_iter().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    let source_db = databases.into_iter().next().unwrap_or_default().to_string();
    if plan.staging.is_some()
        && let Some(clash) = prelude
            .collections
            .iter()
            .find(|c| c.namespace.collection == staging::MARKER_COLLECTION)
    {
        return Err(Error::Restore {
            engine: "mongodb",
            detail: format!(
                "the archive holds {}, the name of the staging marker; restore it with RestoreStrategy::Direct",
                clash.namespace
            ),
        });
    }
    let wanted: BTreeSet<&str> = plan.only.iter().map(String::as_str).collect();
    let mut items = Vec::new();
    for entry in &prelude.collections {
        let name = entry.namespace.collection.clone();
        let selected = wanted.is_empty() || wanted.contains(name.as_str());
        if selected && entry.collection_type == CollectionType::Timeseries {
            return Err(Error::Restore {
                engine: "mongodb",
                detail: format!(
                    "{} is a timeseries collection, which the native restore does not support; leave it out with RestoreOptions::only or use Method::Tools (mongorestore)",
                    entry.namespace
                ),
            });
        }
        items.push(SelectedEntry {
            name,
            kind: entry.collection_type.clone(),
            metadata: entry.parse_metadata()?,
            selected,
        });
    }
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|n| !items.iter().any(|i| i.name == **n))
        .copied()
        .collect();
    if !missing.is_empty() {
        return Err(Error::Config(format!(
            "not in the backup: {}",
            missing.join(", ")
        )));
    }
    Ok(Selection { source_db, items })
}

/// Before any data moves: without `clean`, fail if a selected name exists
/// in the target; for a direct restore with `clean`, drop them now.
pub(crate) async fn prepare_target(
    client: &mongodb::Client,
    plan: &SessionPlan,
    target: &str,
    selected: &[String],
) -> Result<()> {
    if !plan.clean {
        promote::check_conflicts(
            client,
            target,
            selected.iter().map(String::as_str),
            &plan.conn,
        )
        .await
    } else if plan.staging.is_none() {
        for name in selected {
            promote::drop_if_exists(client, target, name, &plan.conn).await?;
        }
        Ok(())
    } else {
        Ok(())
    }
}

/// An archive error as the caller should see it: corruption becomes
/// [`Error::Integrity`] naming the collections affected and what happens
/// to the target.
pub(crate) fn integrity_error(err: ArchiveError, plan: &SessionPlan) -> Error {
    if !err.is_corruption() {
        return err.into();
    }
    let affected: Vec<String> = match &err {
        ArchiveError::CrcMismatch { namespace, .. } => vec![namespace.to_string()],
        ArchiveError::Truncated { namespaces, .. } => {
            namespaces.iter().map(Namespace::to_string).collect()
        }
        ArchiveError::InvalidLength { namespace, .. }
        | ArchiveError::InvalidDocument { namespace, .. } => {
            namespace.iter().map(Namespace::to_string).collect()
        }
        _ => Vec::new(),
    };
    let affected = if affected.is_empty() {
        "unknown (the archive framing is damaged)".to_string()
    } else {
        affected.join(", ")
    };
    Error::Integrity {
        what: "mongodump archive".to_string(),
        detail: format!(
            "{err}; collections affected: {affected}; {}",
            plan.abort_note()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names_fit() {
        let name = staging_name("sales");
        assert!(
            name.starts_with("sales__restore_") && name.len() == 5 + 18,
            "{name}"
        );
        let long = "x".repeat(63);
        let name = staging_name(&long);
        assert_eq!(name.len(), 63);
        validate_database_name(&name).unwrap();
        let name = staging_name(&"é".repeat(30));
        assert!(name.len() <= 63);
    }
}
