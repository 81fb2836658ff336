//! The daemon's state: the engine, the scheduler, the registered databases
//! and the asynchronous operations the API started.

use backup_core::backup_ref::BackupRef;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use backup_core::{
    Engine, Error, EventBus, Filter, RestoreOptions, Result, RetentionPolicy, Scheduler, Store,
    catalog::HealthOptions, engine::PruneReport, retention::PlanOptions,
};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::auth::{Audit, Tokens};
use super::config::{BackupMode, Config, DatabaseConfig};
use super::error::ApiError;
use super::leftovers::Leftovers;
use super::metrics::Metrics;
use super::packages;
use super::tenancy;

pub mod drills;
pub mod entries;
pub mod jobs;
pub mod operations;
pub mod progress;
pub mod turns;
pub mod wal;
pub mod windows;

pub use entries::{make_source, make_target, pg_connection, pg_tools, retention};
pub use operations::{JOB_PREFIX, Operation};

/// Scheduler job id of the package builder (`_` ids are reserved, so no
/// database can take it).
pub const PACKAGE_JOB: &str = "_packages";

/// What a restore asks for.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// The source's own database or a new one.
    pub target_database: String,
    /// Drop what exists first (own database only).
    pub clean: bool,
    /// The caller's tenant when its token is bound to one.
    pub caller_tenant: Option<String>,
}

/// Everything the API handlers share.
pub struct App {
    /// Validated configuration.
    pub config: Config,
    /// The store.
    pub store: Arc<dyn Store>,
    /// Engine with the global compression.
    pub engine: Engine,
    /// The scheduler.
    pub scheduler: Scheduler,
    /// Registered databases by id.
    pub databases: RwLock<BTreeMap<String, DatabaseConfig>>,
    /// The job table: API-started operations and scheduled runs by id
    /// ([`operations`]).
    pub operations: operations::JobTable,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Tokens.
    pub tokens: Tokens,
    /// Audit log.
    pub audit: Audit,
    /// Events.
    pub events: EventBus,
    /// Set once shutdown begins (readiness turns false).
    pub stopping: CancellationToken,
    /// Held while a database is checked and registered, so two requests
    /// cannot both claim one database for different tenants.
    pub registration: tokio::sync::Mutex<()>,
    /// API-started operations (restores, packages) still running; a
    /// draining shutdown waits for them as for scheduled backups.
    pub tracker: TaskTracker,
    /// What the start-up scan for leftovers of interrupted restores found,
    /// by database id (see [`crate::leftovers`]).
    pub leftovers: Arc<Leftovers>,
    /// The WAL archivers of `wal_archiving` entries.
    pub wal: wal::WalArchivers,
    /// The entries' turn locks: one run of an entry at a time, across
    /// its jobs and its re-registrations.
    pub turns: turns::Turns,
    /// The counters API-started backups hand to their runs.
    pub manual_runs: operations::ManualRuns,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl App {
    /// The engine for one database (its own compression).
    pub fn engine_for(&self, db: &DatabaseConfig) -> Engine {
        self.engine
            .clone()
            .with_compressor(Arc::new(db.compression))
    }

    /// Refuses `db` when another tenant has a registered database that may
    /// be the same one (entry `replacing` excepted: the one being changed).
    pub async fn check_owner(
        &self,
        db: &DatabaseConfig,
        replacing: Option<&str>,
    ) -> std::result::Result<(), ApiError> {
        let entries: Vec<DatabaseConfig> = self
            .databases
            .read()
            .expect("databases lock")
            .values()
            .filter(|d| Some(d.id.as_str()) != replacing)
            .cloned()
            .collect();
        // Another tenant's entry that may name the same database, or the
        // same server when either backs up the whole cluster (physical).
        let mut owned_elsewhere = None;
        for e in &entries {
            let whole_server = e.mode == BackupMode::Physical || db.mode == BackupMode::Physical;
            if e.tenant != db.tenant
                && e.engine == db.engine
                && e.port == db.port
                && (whole_server || tenancy::same_name(&e.database_name, &db.database_name))
                && tenancy::may_be_same_host(&e.host, &db.host, db.port).await
            {
                owned_elsewhere = Some(whole_server);
                break;
            }
        }
        match owned_elsewhere {
            None => return Ok(()),
            Some(true) => {
                return Err(ApiError::forbidden(
                    "database_not_allowed",
                    format!(
                        "the server {}:{} has a physical (whole cluster) entry and entries of another tenant: tenant {} may not use it",
                        db.host, db.port, db.tenant
                    ),
                ));
            }
            Some(false) => {}
        }
        Err(ApiError::forbidden(
            "database_not_allowed",
            format!(
                "database {:?} on {}:{} belongs to another tenant: tenant {} may not use it",
                db.database_name, db.host, db.port, db.tenant
            ),
        ))
    }

    /// Checks `db` against every other tenant's databases, then registers
    /// it (replacing entry `replacing`), atomically with respect to other
    /// registrations.
    pub async fn register_checked(
        self: &Arc<Self>,
        db: DatabaseConfig,
        replacing: Option<&str>,
    ) -> std::result::Result<(), ApiError> {
        db.check_database_name()
            .map_err(|e| ApiError::bad_request(format!("database_name: {e}")))?;
        let _guard = self.registration.lock().await;
        self.check_owner(&db, replacing).await?;
        self.register(db).await.map_err(ApiError::from)
    }

    /// Removes a database and its job, and forgets its run record so
    /// health does not keep reporting its last attempt (its backups stay).
    /// A run still in progress forgets the record when it ends
    /// ([`GuardedJob`](jobs::GuardedJob)).
    pub async fn unregister(&self, id: &str) -> bool {
        self.scheduler.remove(id);
        self.wal.stop(id).await;
        let removed = self.databases.write().expect("databases lock").remove(id);
        match removed {
            Some(db) => {
                self.scheduler.remove(&db.incremental_job_id());
                self.scheduler.remove(&db.drill_job_id());
                self.forget_run_record(&db.tenant, &db.id).await;
                true
            }
            None => false,
        }
    }

    /// Forgets the run record of a source that is no longer registered
    /// (none is fine); a store failure is logged, not fatal.
    async fn forget_run_record(&self, tenant: &str, id: &str) {
        match self.engine.catalog().forget_source(tenant, id).await {
            Ok(_) => tracing::info!(
                tenant,
                source = id,
                "run record of a removed database forgotten"
            ),
            Err(Error::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(tenant, source = id, error = %e, "could not forget the run record of a removed database")
            }
        }
    }

    /// At start: forgets the run records a scheduler wrote for databases
    /// that are no longer configured (removed from the configuration, or
    /// registered through the API before a restart), in the tenants this
    /// daemon has databases or a policy in, so their last attempt (a run
    /// cancelled by the shutdown) does not stay `failing`. Records without
    /// a schedule time (`backupctl`, manual runs) are kept, and so are all
    /// backups.
    pub async fn forget_removed_sources(&self) -> Result<()> {
        let configured: std::collections::BTreeSet<(String, String)> = self
            .databases_for(None)
            .into_iter()
            .map(|d| (d.tenant, d.id))
            .collect();
        let tenants: std::collections::BTreeSet<&str> = configured
            .iter()
            .map(|(t, _)| t.as_str())
            .chain(self.config.tenants.keys().map(String::as_str))
            .collect();
        let records = self.engine.catalog().run_records(&Filter::all()).await?;
        for r in records.into_values() {
            if r.scheduled_for.is_some()
                && tenants.contains(r.tenant.as_str())
                && !configured.contains(&(r.tenant.clone(), r.source_id.clone()))
            {
                self.forget_run_record(&r.tenant, &r.source_id).await;
            }
        }
        Ok(())
    }

    /// A database visible to `tenant` (every one when `None`).
    pub fn database(&self, id: &str, tenant: Option<&str>) -> Option<DatabaseConfig> {
        self.databases
            .read()
            .expect("databases lock")
            .get(id)
            .filter(|d| tenant.is_none_or(|t| t == d.tenant))
            .cloned()
    }

    /// Databases visible to `tenant`.
    pub fn databases_for(&self, tenant: Option<&str>) -> Vec<DatabaseConfig> {
        self.databases
            .read()
            .expect("databases lock")
            .values()
            .filter(|d| tenant.is_none_or(|t| t == d.tenant))
            .cloned()
            .collect()
    }

    /// Health options: the registered databases are expected sources with
    /// their own thresholds, `pending` until their first scheduled run is
    /// overdue (their job's next run stands for it while they have never
    /// run).
    pub fn health_options(&self, tenant: Option<&str>) -> HealthOptions {
        let dbs = self.databases_for(tenant);
        let next_runs: HashMap<String, DateTime<Utc>> = self
            .scheduler
            .jobs()
            .into_iter()
            .filter_map(|j| Some((j.id, j.next_run?)))
            .collect();
        let first_due: HashMap<String, DateTime<Utc>> = dbs
            .iter()
            .filter_map(|d| Some((format!("{}/{}", d.tenant, d.id), *next_runs.get(&d.id)?)))
            .collect();
        HealthOptions {
            stale_after: self.config.stale_after,
            per_source: dbs
                .iter()
                .map(|d| (format!("{}/{}", d.tenant, d.id), d.stale_after))
                .collect(),
            expected: dbs
                .iter()
                .map(|d| (d.tenant.clone(), d.id.clone()))
                .collect(),
            first_due,
        }
    }

    /// Restores `backup` (within the caller's tenant, for a tenant-bound
    /// caller) into the target database on its database's server: the
    /// source's own database, or a new one.
    /// Never a system database, another registered database, or one of
    /// another tenant; `clean` only over the source's own database. A
    /// tenant-bound caller also stays within its tenant's
    /// `allowed_databases`. The bytes read from the store count into
    /// `meter` (the job's progress).
    pub async fn restore(
        &self,
        backup: BackupRef,
        request: RestoreRequest,
        meter: Arc<backup_core::meter::Meter>,
    ) -> std::result::Result<serde_json::Value, ApiError> {
        let id = backup.id().to_string();
        let RestoreRequest {
            target_database,
            clean,
            caller_tenant,
        } = request;
        let manifest = self.engine.catalog().get(backup).await?;
        let db = self
            .database(&manifest.source_id, Some(&manifest.tenant))
            .ok_or_else(|| {
                ApiError::new(
                    axum::http::StatusCode::CONFLICT,
                    "database_not_registered",
                    format!(
                        "backup {id} belongs to database {:?}, which is not registered: register it to restore",
                        manifest.source_id
                    ),
                )
            })?;
        let database = target_database;
        tenancy::check_database_name(db.engine, &database)
            .map_err(|e| ApiError::bad_request(format!("target_database: {e}")))?;
        let mut target_db = db.clone();
        target_db.database_name = database.clone();
        // Checked again here: whatever happened since registration, never
        // over another tenant's database.
        self.check_owner(&target_db, None).await?;
        let own = database == db.database_name;
        if !own {
            let taken = self
                .databases
                .read()
                .expect("databases lock")
                .values()
                .any(|d| tenancy::same_name(&d.database_name, &database));
            if taken {
                return Err(ApiError::new(
                    axum::http::StatusCode::CONFLICT,
                    "target_registered",
                    format!(
                        "{database:?} is a registered database: restore into the source's own database or a new one"
                    ),
                ));
            }
            if clean {
                return Err(ApiError::bad_request(
                    "clean applies only to restoring over the source's own database",
                ));
            }
            if let Some(t) = caller_tenant.as_deref()
                && !self
                    .config
                    .tenants
                    .get(t)
                    .is_some_and(|p| p.allows_database(&database))
            {
                return Err(ApiError::forbidden(
                    "database_not_allowed",
                    format!(
                        "tenant {t} may not create database {database:?} (tenants.{t}.allowed_databases)"
                    ),
                ));
            }
        }
        let target = make_target(&db)?;
        let options = RestoreOptions::into_database(entries::restore_database(&db, &database))
            .new_database_only(!own)
            .clean(clean);
        let report = self
            .engine
            .metered(meter)
            .restore(
                BackupRef::in_tenant(&manifest.tenant, id),
                target.as_ref(),
                &options,
            )
            .await?;
        Ok(serde_json::to_value(report).expect("reports serialise"))
    }

    /// Runs retention for every registered database visible to `tenant`,
    /// and package retention.
    pub async fn cleanup(&self, tenant: Option<&str>, dry_run: bool) -> Result<PruneReport> {
        let mut report = PruneReport {
            dry_run,
            ..PruneReport::default()
        };
        for db in self.databases_for(tenant) {
            let policies = retention(&db);
            if policies.is_empty() {
                continue;
            }
            let refs: Vec<&dyn RetentionPolicy> = policies.iter().map(|p| p.as_ref()).collect();
            let part = self
                .engine
                .prune(
                    &Filter::tenant(&db.tenant).source(&db.id),
                    &refs,
                    PlanOptions::default().keep_newest_verified(db.keep_newest_verified),
                    dry_run,
                )
                .await?;
            // The WAL of a `wal_archiving` entry follows its base backups.
            if let Some(plan) = part.sources.get(&format!("{}/{}", db.tenant, db.id)) {
                let kept: Vec<String> = plan.keep.iter().map(|d| d.id.clone()).collect();
                self.wal.prune(&db.id, Some(&kept), dry_run).await?;
            }
            report.sources.extend(part.sources);
        }
        if !dry_run && self.config.packages.is_some() {
            let tenants: BTreeSet<String> = self
                .databases_for(tenant)
                .into_iter()
                .map(|d| d.tenant)
                .collect();
            for t in tenants {
                self.prune_packages(&t).await?;
            }
        }
        Ok(report)
    }

    /// Applies `packages`' retention to `tenant`'s packages, if configured.
    async fn prune_packages(&self, tenant: &str) -> Result<()> {
        let Some(pc) = &self.config.packages else {
            return Ok(());
        };
        let keep = &pc.retention;
        packages::prune(
            &self.store,
            tenant,
            keep.keep_last,
            keep.max_age,
            Utc::now(),
        )
        .await?;
        Ok(())
    }

    /// Builds one package per tenant (within `tenant` if given) from the
    /// newest backup of each `package: true` database.
    pub async fn build_packages(
        &self,
        tenant: Option<&str>,
        kind: &str,
    ) -> Result<Vec<packages::PackageManifest>> {
        let format = self
            .config
            .packages
            .as_ref()
            .map(|p| p.format)
            .unwrap_or(packages::PackageFormat::Zip);
        let mut by_tenant: BTreeMap<String, Vec<Arc<backup_core::manifest::Manifest>>> =
            BTreeMap::new();
        for db in self.databases_for(tenant).into_iter().filter(|d| d.package) {
            let latest = self
                .engine
                .catalog()
                .list(&Filter::tenant(&db.tenant).source(&db.id))
                .await?;
            let entry = by_tenant.entry(db.tenant.clone()).or_default();
            if let Some(m) = latest.into_iter().next() {
                entry.push(m);
            }
        }
        if by_tenant.is_empty() {
            return Err(Error::Config(
                "no database is marked `package: true`".into(),
            ));
        }
        let mut built = Vec::new();
        for (t, latest) in by_tenant {
            let p = packages::build(&self.engine, &t, format, kind, latest).await?;
            self.metrics.package_built(&t);
            self.prune_packages(&t).await?;
            built.push(p);
        }
        Ok(built)
    }
}
