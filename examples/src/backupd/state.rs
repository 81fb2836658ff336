//! The daemon's state: the engine, the scheduler, the registered databases
//! and the asynchronous operations the API started.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use backup_core::{
    BackupJob, BackupKind, BackupRequest, DumpSource, Engine, Error, EventBus, Filter,
    HealthOptions, Job, JobOutcome, JobSpec, KeepLast, KeepWithin, PlanOptions, PruneReport,
    RestoreOptions, RestoreTarget, Result, RetentionPolicy, Scheduler, Store, Trigger,
};
use backup_postgres::{PgConnection, PostgresSource, PostgresTarget};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::auth::{Audit, Tokens};
use super::config::{Config, DatabaseConfig, Engine as DbEngine};
use super::metrics::Metrics;
use super::packages;

/// Scheduler job id of the package builder (`_` ids are reserved, so no
/// database can take it).
pub const PACKAGE_JOB: &str = "_packages";

/// State of an asynchronous operation started through the API.
#[derive(Debug, Clone, Serialize)]
pub struct Operation {
    /// Operation id.
    pub id: String,
    /// `backup`, `restore` or `package`.
    pub kind: String,
    /// Tenant it belongs to (`None`: started by a token without a tenant,
    /// possibly spanning tenants; visible to such tokens only).
    pub tenant: Option<String>,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// What it produced (backup id, restore report...).
    pub result: Option<serde_json::Value>,
    /// Why it failed.
    pub error: Option<String>,
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
    /// API-started operations by id.
    pub operations: Mutex<HashMap<String, Operation>>,
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
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// Builds the source for a database entry.
pub fn make_source(db: &DatabaseConfig) -> Result<Arc<dyn DumpSource>> {
    match db.engine {
        DbEngine::Postgres => Ok(Arc::new(PostgresSource::new(pg_connection(
            db,
            &db.database_name,
        )))),
        DbEngine::Mongodb => crate::backupd::mongo::source(db),
    }
}

/// Builds the restore target for a database entry.
pub fn make_target(db: &DatabaseConfig) -> Result<Arc<dyn RestoreTarget>> {
    match db.engine {
        DbEngine::Postgres => Ok(Arc::new(PostgresTarget::new(pg_connection(
            db,
            &db.database_name,
        )))),
        DbEngine::Mongodb => crate::backupd::mongo::target(db),
    }
}

fn pg_connection(db: &DatabaseConfig, database: &str) -> PgConnection {
    let mut conn = PgConnection::new(
        db.host.clone(),
        db.port,
        db.username.clone().unwrap_or_else(|| "postgres".into()),
        database,
    );
    if let Some(p) = &db.password {
        conn = conn.with_password(p.clone());
    }
    if let Some(mode) = &db.sslmode {
        conn = conn.with_sslmode(mode.clone());
    }
    conn
}

/// Retention policies of a database entry.
pub fn retention(db: &DatabaseConfig) -> Vec<Arc<dyn RetentionPolicy>> {
    let mut out: Vec<Arc<dyn RetentionPolicy>> = Vec::new();
    if let Some(n) = db.max_backups {
        out.push(Arc::new(KeepLast(n)));
    }
    if let Some(days) = db.retention_days {
        out.push(Arc::new(KeepWithin::days(days)));
    }
    out
}

impl App {
    /// The engine for one database (its own compression).
    pub fn engine_for(&self, db: &DatabaseConfig) -> Engine {
        self.engine
            .clone()
            .with_compressor(Arc::new(db.compression))
    }

    /// Registers or replaces a database and its scheduler job. The last
    /// scheduled backup in the catalog drives the misfire check.
    pub async fn register(&self, db: DatabaseConfig) -> Result<()> {
        let source = make_source(&db)?;
        let mut filter = Filter::tenant(&db.tenant).source(&db.id);
        filter.kind = Some(BackupKind::Scheduled);
        let last_run = self
            .engine
            .catalog()
            .list(&filter)
            .await
            .ok()
            .and_then(|l| l.first().map(|m| m.started_at));
        let job = BackupJob {
            engine: self.engine_for(&db),
            source,
            request: BackupRequest::new(&db.id).tenant(&db.tenant),
            retention: retention(&db),
        };
        self.scheduler.upsert(
            JobSpec::new(&db.id, db.schedule.clone(), Arc::new(job))
                .last_run(last_run.or(Some(Utc::now()))),
        )?;
        self.metrics.touch(&db.tenant, &db.id);
        self.databases
            .write()
            .expect("databases lock")
            .insert(db.id.clone(), db);
        Ok(())
    }

    /// Removes a database and its job (its backups stay).
    pub fn unregister(&self, id: &str) -> bool {
        self.scheduler.remove(id);
        self.databases
            .write()
            .expect("databases lock")
            .remove(id)
            .is_some()
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
    /// their own thresholds.
    pub fn health_options(&self, tenant: Option<&str>) -> HealthOptions {
        let dbs = self.databases_for(tenant);
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
        }
    }

    /// Starts an operation and returns its id; `work` runs in the
    /// background and its outcome is recorded.
    pub fn start_operation<F>(self: &Arc<Self>, kind: &str, tenant: Option<&str>, work: F) -> String
    where
        F: std::future::Future<Output = Result<serde_json::Value>> + Send + 'static,
    {
        let id = backup_core::new_backup_id(Utc::now());
        let op = Operation {
            id: id.clone(),
            kind: kind.to_string(),
            tenant: tenant.map(str::to_string),
            status: "running".into(),
            started_at: Utc::now(),
            finished_at: None,
            result: None,
            error: None,
        };
        {
            let mut ops = self.operations.lock().expect("operations lock");
            // Keep the table bounded: forget the oldest finished ones.
            if ops.len() >= 10_000 {
                let mut finished: Vec<(DateTime<Utc>, String)> = ops
                    .values()
                    .filter(|o| o.finished_at.is_some())
                    .map(|o| (o.started_at, o.id.clone()))
                    .collect();
                finished.sort();
                for (_, old) in finished.into_iter().take(1000) {
                    ops.remove(&old);
                }
            }
            ops.insert(id.clone(), op);
        }
        let me = Arc::clone(self);
        let op_id = id.clone();
        tokio::spawn(async move {
            let outcome = work.await;
            let mut ops = me.operations.lock().expect("operations lock");
            if let Some(op) = ops.get_mut(&op_id) {
                op.finished_at = Some(Utc::now());
                match outcome {
                    Ok(v) => {
                        op.status = "succeeded".into();
                        op.result = Some(v);
                    }
                    Err(e) => {
                        op.status = "failed".into();
                        op.error = Some(e.to_string());
                    }
                }
            }
        });
        id
    }

    /// Restores backup `id` (visible to `tenant`) into its database's
    /// server, into `target_database` or the original one.
    pub async fn restore(
        &self,
        id: &str,
        tenant: Option<&str>,
        target_database: Option<String>,
        clean: bool,
    ) -> Result<serde_json::Value> {
        let manifest = self.engine.catalog().get(id, tenant).await?;
        let db = self
            .database(&manifest.source_id, Some(&manifest.tenant))
            .ok_or_else(|| {
                Error::Config(format!(
                    "backup {id} belongs to database {:?}, which is not registered: register it to restore",
                    manifest.source_id
                ))
            })?;
        let target = make_target(&db)?;
        let database = target_database.unwrap_or_else(|| db.database_name.clone());
        let own = database == db.database_name;
        if !own {
            // A restore lands either in the source's own database or in a
            // new one: never in another tenant's database or a system one.
            const RESERVED: [&str; 6] = [
                "postgres",
                "template0",
                "template1",
                "admin",
                "local",
                "config",
            ];
            if RESERVED.contains(&database.as_str()) {
                return Err(Error::Config(format!(
                    "cannot restore into the system database {database:?}"
                )));
            }
            let taken = self
                .databases
                .read()
                .expect("databases lock")
                .values()
                .any(|d| d.database_name == database);
            if taken {
                return Err(Error::Config(format!(
                    "{database:?} is a registered database: restore into the source's own database or a new one"
                )));
            }
            if clean {
                return Err(Error::Config(
                    "clean applies only to restoring over the source's own database".into(),
                ));
            }
        }
        let options = RestoreOptions::into_database(&database)
            .new_database_only(!own)
            .clean(clean);
        let report = self
            .engine
            .restore(id, Some(&manifest.tenant), target.as_ref(), &options)
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
                    PlanOptions::default(),
                    dry_run,
                )
                .await?;
            report.sources.extend(part.sources);
        }
        if !dry_run && let Some(pc) = &self.config.packages {
            let tenants: std::collections::BTreeSet<String> = self
                .databases_for(tenant)
                .into_iter()
                .map(|d| d.tenant)
                .collect();
            for t in tenants {
                packages::prune(
                    &self.store,
                    &t,
                    pc.max_backups,
                    pc.retention_days,
                    Utc::now(),
                )
                .await?;
            }
        }
        Ok(report)
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
        let mut by_tenant: BTreeMap<String, Vec<Arc<backup_core::Manifest>>> = BTreeMap::new();
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
            if let Some(pc) = &self.config.packages {
                packages::prune(
                    &self.store,
                    &t,
                    pc.max_backups,
                    pc.retention_days,
                    Utc::now(),
                )
                .await?;
            }
            built.push(p);
        }
        Ok(built)
    }
}

/// The scheduler job that builds packages on `package-conf.schedule`.
#[derive(Debug)]
pub struct PackageJob {
    /// The daemon (weak, so the scheduler does not keep it alive).
    pub app: std::sync::Weak<App>,
}

#[async_trait]
impl Job for PackageJob {
    async fn run(&self, trigger: &Trigger, _cancel: CancellationToken) -> Result<JobOutcome> {
        let app = self.app.upgrade().ok_or(Error::Cancelled)?;
        let built = app.build_packages(None, trigger.kind.as_str()).await?;
        Ok(JobOutcome {
            backup_id: built.first().map(|p| p.id.clone()),
        })
    }
}
