//! Prometheus metrics, fed by the engine's events. The daemon owns the
//! registry; the library only emits events.

use std::path::PathBuf;
use std::sync::Mutex;

use backup_core::{Event, EventBus, Filter, Result, catalog::Catalog, manifest::BackupKind};
use backup_postgres::ArchiverStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use tokio::sync::broadcast;

/// Labels of per-source metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// Source (database) id.
    pub source: String,
    /// Tenant.
    pub tenant: String,
}

/// Labels of `backup_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// Source (database) id.
    pub source: String,
    /// Tenant.
    pub tenant: String,
    /// `manual` or `scheduled`.
    pub kind: String,
    /// `success` or `failure`.
    pub status: String,
}

/// Labels of package metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    /// Tenant.
    pub tenant: String,
}

/// Labels of the disk gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabels {
    /// Storage directory.
    pub path: String,
}

/// The daemon's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    backup_total: Family<OutcomeLabels, Counter>,
    failures: Family<SourceLabels, Counter>,
    duration: Family<SourceLabels, Histogram>,
    bytes: Family<SourceLabels, Gauge>,
    last_success: Family<SourceLabels, Gauge<f64, AtomicU64>>,
    packages: Family<TenantLabels, Counter>,
    disk: Family<PathLabels, Gauge>,
    wal_archived: Family<SourceLabels, Counter>,
    wal_errors: Family<SourceLabels, Counter>,
    wal_lag_bytes: Family<SourceLabels, Gauge>,
    wal_lag_seconds: Family<SourceLabels, Gauge<f64, AtomicU64>>,
    wal_last_archived: Family<SourceLabels, Gauge<f64, AtomicU64>>,
    drills: crate::drill_metrics::DrillMetrics,
    fs_root: Option<PathBuf>,
}

fn duration_histogram() -> Histogram {
    Histogram::new([
        1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0,
    ])
}

impl Metrics {
    /// Registers every metric; `fs_root` enables the disk-space gauge.
    pub fn new(fs_root: Option<PathBuf>) -> Self {
        let mut registry = Registry::default();
        let backup_total = Family::<OutcomeLabels, Counter>::default();
        let failures = Family::<SourceLabels, Counter>::default();
        let duration = Family::<SourceLabels, Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        let bytes = Family::<SourceLabels, Gauge>::default();
        let last_success = Family::<SourceLabels, Gauge<f64, AtomicU64>>::default();
        let packages = Family::<TenantLabels, Counter>::default();
        let disk = Family::<PathLabels, Gauge>::default();
        let wal_archived = Family::<SourceLabels, Counter>::default();
        let wal_errors = Family::<SourceLabels, Counter>::default();
        let wal_lag_bytes = Family::<SourceLabels, Gauge>::default();
        let wal_lag_seconds = Family::<SourceLabels, Gauge<f64, AtomicU64>>::default();
        let wal_last_archived = Family::<SourceLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "backup_wal_archived",
            "WAL files archived (segments and history files)",
            wal_archived.clone(),
        );
        registry.register(
            "backup_wal_archive_errors",
            "WAL archiving errors (a segment refused, the receiver failing)",
            wal_errors.clone(),
        );
        registry.register(
            "backup_wal_archive_lag_bytes",
            "WAL the server has flushed beyond the newest archived segment",
            wal_lag_bytes.clone(),
        );
        registry.register(
            "backup_wal_archive_lag_seconds",
            "Seconds since the archive last covered the server's flush position",
            wal_lag_seconds.clone(),
        );
        registry.register(
            "backup_wal_last_archived_timestamp_seconds",
            "Unix time the newest WAL file was archived",
            wal_last_archived.clone(),
        );
        registry.register(
            "backup",
            "Backups attempted, by outcome",
            backup_total.clone(),
        );
        registry.register("backup_failures", "Failed backups", failures.clone());
        registry.register(
            "backup_duration_seconds",
            "Wall time of backups",
            duration.clone(),
        );
        registry.register(
            "backup_bytes",
            "Stored size of the latest backup",
            bytes.clone(),
        );
        registry.register(
            "backup_last_success_timestamp_seconds",
            "Unix time of the latest successful backup",
            last_success.clone(),
        );
        registry.register("backup_package", "Packages built", packages.clone());
        registry.register(
            "available_disk_space_bytes",
            "Free space where backups are stored (fs storage)",
            disk.clone(),
        );
        let drills = crate::drill_metrics::DrillMetrics::register(&mut registry);
        Metrics {
            drills,
            registry: Mutex::new(registry),
            backup_total,
            failures,
            duration,
            bytes,
            last_success,
            packages,
            disk,
            wal_archived,
            wal_errors,
            wal_lag_bytes,
            wal_lag_seconds,
            wal_last_archived,
            fs_root,
        }
    }

    /// Sets the WAL archive gauges of one source from its archiver.
    pub fn wal_status(&self, tenant: &str, source: &str, status: &ArchiverStatus) {
        let labels = SourceLabels {
            source: source.to_string(),
            tenant: tenant.to_string(),
        };
        if let Some(bytes) = status.lag_bytes {
            self.wal_lag_bytes
                .get_or_create(&labels)
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        if let Some(seconds) = status.lag_seconds {
            self.wal_lag_seconds.get_or_create(&labels).set(seconds);
        }
        if let Some(at) = status.last_archived_at {
            self.wal_last_archived
                .get_or_create(&labels)
                .set(at.timestamp_millis() as f64 / 1000.0);
        }
    }

    /// Updates metrics from one event.
    pub fn observe(&self, event: &Event) {
        self.drills.observe(event);
        match event {
            Event::WalArchived {
                tenant, source_id, ..
            } => {
                self.wal_archived
                    .get_or_create(&SourceLabels {
                        source: source_id.clone(),
                        tenant: tenant.clone(),
                    })
                    .inc();
            }
            Event::WalArchiveError {
                tenant, source_id, ..
            } => {
                self.wal_errors
                    .get_or_create(&SourceLabels {
                        source: source_id.clone(),
                        tenant: tenant.clone(),
                    })
                    .inc();
            }
            Event::Succeeded {
                tenant,
                source_id,
                kind,
                bytes,
                duration_seconds,
                at,
                ..
            } => {
                let labels = SourceLabels {
                    source: source_id.clone(),
                    tenant: tenant.clone(),
                };
                self.backup_total
                    .get_or_create(&outcome(tenant, source_id, *kind, "success"))
                    .inc();
                self.duration
                    .get_or_create(&labels)
                    .observe(*duration_seconds);
                self.bytes.get_or_create(&labels).set(*bytes as i64);
                self.last_success
                    .get_or_create(&labels)
                    .set(at.timestamp_millis() as f64 / 1000.0);
            }
            Event::Failed {
                tenant,
                source_id,
                kind,
                duration_seconds,
                ..
            } => {
                let labels = SourceLabels {
                    source: source_id.clone(),
                    tenant: tenant.clone(),
                };
                self.backup_total
                    .get_or_create(&outcome(tenant, source_id, *kind, "failure"))
                    .inc();
                self.failures.get_or_create(&labels).inc();
                self.duration
                    .get_or_create(&labels)
                    .observe(*duration_seconds);
            }
            _ => {}
        }
    }

    /// Creates a source's series at zero, so dashboards and alerts see
    /// them before the first backup (or failure) happens.
    pub fn touch(&self, tenant: &str, source: &str) {
        let labels = SourceLabels {
            source: source.to_string(),
            tenant: tenant.to_string(),
        };
        let _ = self.failures.get_or_create(&labels);
        for kind in [BackupKind::Manual, BackupKind::Scheduled] {
            for status in ["success", "failure"] {
                let _ = self
                    .backup_total
                    .get_or_create(&outcome(tenant, source, kind, status));
            }
        }
        let _ = self.packages.get_or_create(&TenantLabels {
            tenant: tenant.to_string(),
        });
    }

    /// Sets `backup_bytes` and `backup_last_success_timestamp_seconds` of
    /// every source from its newest backup in `catalog` (a committed backup
    /// is a successful one), so they survive a restart instead of staying
    /// absent until the next backup. Call before backups start: a newer
    /// event is not looked at.
    pub async fn seed(&self, catalog: &Catalog) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        // Newest first: the first backup of each source is its latest.
        for m in catalog.list(&Filter::all()).await? {
            if !seen.insert((m.tenant.clone(), m.source_id.clone())) {
                continue;
            }
            let labels = SourceLabels {
                source: m.source_id.clone(),
                tenant: m.tenant.clone(),
            };
            self.bytes
                .get_or_create(&labels)
                .set(i64::try_from(m.bytes_stored()).unwrap_or(i64::MAX));
            self.last_success
                .get_or_create(&labels)
                .set(m.finished_at.timestamp_millis() as f64 / 1000.0);
        }
        Ok(())
    }

    /// Counts a built package.
    pub fn package_built(&self, tenant: &str) {
        self.packages
            .get_or_create(&TenantLabels {
                tenant: tenant.to_string(),
            })
            .inc();
    }

    /// Feeds every event of `bus` to [`Metrics::observe`] until the bus
    /// closes.
    pub fn subscribe(self: &std::sync::Arc<Self>, bus: &EventBus) -> tokio::task::JoinHandle<()> {
        let mut rx = bus.subscribe();
        let me = std::sync::Arc::clone(self);
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(event) => me.observe(&event),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        if let Some(root) = &self.fs_root
            && let Ok(free) = fs4::available_space(root)
        {
            self.disk
                .get_or_create(&PathLabels {
                    path: root.display().to_string(),
                })
                .set(free as i64);
        }
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics lock");
        encode(&mut out, &registry).expect("metrics encode");
        out
    }
}

fn outcome(tenant: &str, source: &str, kind: BackupKind, status: &str) -> OutcomeLabels {
    OutcomeLabels {
        source: source.to_string(),
        tenant: tenant.to_string(),
        kind: kind.to_string(),
        status: status.to_string(),
    }
}
