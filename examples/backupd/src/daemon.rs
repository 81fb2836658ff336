//! The daemon's start-up and shutdown: the store, the scheduler, the
//! notifiers and the listeners, composed from the validated configuration.

use std::future::IntoFuture;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use backup_core::clock::SystemClock;
use backup_core::events::{LogNotifier, Notifier, RetryPolicy, spawn_notifier};
use backup_core::health::spawn_health_monitor;
use backup_core::scheduler::Shutdown;
use backup_core::webhook::{WebhookFormat, WebhookNotifier};
use backup_core::{Engine, EventBus, JobSpec, Result, Scheduler, SchedulerConfig, Store};
use backup_examples::{
    S3Credentials, S3Settings, StoreLocation, open_store, open_store_for_writing,
};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Replicas, StorageConfig};
use crate::state::jobs::PackageJob;
use crate::state::{App, PACKAGE_JOB};
use crate::{auth, http, leftovers, metrics, state};

/// Opens the configured store and marks it (`_store.json`, created with
/// the directory if needed) as `backupctl backup` does, so `backupctl
/// list` on it finds a store, not a mistyped path. Storage the daemon
/// cannot write to yet (refused keys, a server down) does not stop it:
/// the mark is left for later, a warning says why, and `/readyz` and
/// every storage call report the problem with its code.
pub async fn open_storage(storage: &StorageConfig) -> Result<Arc<dyn Store>> {
    let (location, settings) = storage_location(storage);
    match open_store_for_writing(location.clone(), &settings).await {
        Ok(store) => Ok(store),
        Err(e @ backup_core::Error::Config(_)) => Err(e),
        Err(e) => {
            tracing::warn!(error = %e, "could not mark the store; continuing (backups will report the storage error)");
            open_store(location, &settings)
        }
    }
}

/// Where the configured store lives, and its S3 settings.
fn storage_location(storage: &StorageConfig) -> (StoreLocation, S3Settings) {
    match storage {
        StorageConfig::Fs(path) => (StoreLocation::Dir(path.clone()), S3Settings::default()),
        StorageConfig::S3 {
            bucket,
            prefix,
            endpoint,
            region,
            access_key,
            secret_key,
            path_style,
            allow_http,
        } => (
            StoreLocation::s3(bucket.clone(), prefix.clone()),
            S3Settings {
                endpoint: endpoint.clone(),
                region: region.clone(),
                path_style: Some(*path_style),
                allow_http: Some(*allow_http),
                credentials: match (access_key, secret_key) {
                    (Some(a), Some(s)) => Some(S3Credentials {
                        access_key_id: a.clone(),
                        secret_access_key: s.clone(),
                    }),
                    _ => None,
                },
            },
        ),
    }
}

/// A webhook notifier limited to the configured event names.
#[derive(Debug)]
struct FilteredNotifier {
    inner: WebhookNotifier,
    events: Vec<String>,
}

#[async_trait::async_trait]
impl Notifier for FilteredNotifier {
    fn wants(&self, event: &backup_core::Event) -> bool {
        self.events.iter().any(|e| e == event.name())
    }
    async fn notify(&self, event: &backup_core::Event) -> Result<()> {
        self.inner.notify(event).await
    }
}

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    /// Shared state.
    pub app: Arc<App>,
    background: Vec<tokio::task::JoinHandle<()>>,
    stop_monitor: CancellationToken,
}

impl Daemon {
    /// Opens the store, starts the scheduler, registers the configured
    /// databases and the package job.
    pub async fn start(config: Config) -> Result<Daemon> {
        let store = open_storage(&config.storage).await?;
        let events = EventBus::default();
        let mut engine = Engine::new(Arc::clone(&store))
            .with_events(events.clone())
            .with_compressor(Arc::new(config.defaults.compression));
        if let Some(r) = &config.recipients {
            engine = engine.with_encryption(r.clone());
        }
        if let Some(i) = &config.identities {
            engine = engine.with_identities(i.clone());
        }
        let mut scheduler_config = SchedulerConfig::default()
            .tz(config.tz)
            .max_parallel_jobs(config.max_parallel_jobs);
        if config.replicas == Replicas::Many {
            scheduler_config = scheduler_config.leases(Arc::clone(&store));
        }
        // With leases, refuse to start on storage whose create-only writes
        // are not exclusive: two replicas could both run a trigger.
        let scheduler =
            Scheduler::try_start(scheduler_config, Arc::new(SystemClock), events.clone())
                .await
                .map_err(|e| {
                    backup_core::Error::Config(format!(
                        "{e}; if this is the only backupd using this storage, set `replicas: one` \
                     (no leases) in the configuration"
                    ))
                })?;
        let fs_root = match &config.storage {
            StorageConfig::Fs(p) => Some(p.clone()),
            StorageConfig::S3 { .. } => None,
        };
        let metrics = Arc::new(metrics::Metrics::new(fs_root));
        // Before any backup runs, so no newer event is overwritten.
        if let Err(e) = metrics.seed(engine.catalog()).await {
            tracing::warn!(error = %e, "could not read the catalog: backup_bytes and backup_last_success_timestamp_seconds start empty");
        }
        let audit = auth::Audit::open(config.audit_log.clone()).map_err(|e| {
            backup_core::Error::io(
                format!("opening the audit log {}", config.audit_log.display()),
                e,
            )
        })?;
        let mut background = vec![
            metrics.subscribe(&events),
            spawn_notifier(&events, Arc::new(LogNotifier), RetryPolicy::default()),
        ];
        for hook in &config.webhooks {
            let format = if hook.slack {
                WebhookFormat::Slack
            } else {
                WebhookFormat::Json
            };
            let inner = WebhookNotifier::new(hook.url.expose(), format)?;
            background.push(spawn_notifier(
                &events,
                Arc::new(FilteredNotifier {
                    inner,
                    events: hook.events.clone(),
                }),
                RetryPolicy::default(),
            ));
        }
        let wal = state::wal::WalArchivers::new(&events);
        let app = Arc::new(App {
            tokens: auth::Tokens::new(&config.tokens),
            store,
            engine: engine.clone(),
            scheduler,
            databases: RwLock::new(Default::default()),
            operations: Default::default(),
            metrics,
            audit,
            events,
            stopping: CancellationToken::new(),
            registration: tokio::sync::Mutex::new(()),
            tracker: tokio_util::task::TaskTracker::new(),
            leftovers: Default::default(),
            wal,
            turns: Default::default(),
            manual_runs: Default::default(),
            config,
        });
        for (i, db) in app.config.databases.clone().into_iter().enumerate() {
            let id = db.id.clone();
            app.register_checked(db, None)
                .await
                .map_err(|e| backup_core::Error::Config(format!("databases[{i}] ({id}): {e}")))?;
        }
        if let Err(e) = app.forget_removed_sources().await {
            tracing::warn!(error = %e, "could not read the run records to forget those of removed databases");
        }
        if let Some(pc) = &app.config.packages {
            app.scheduler.upsert(
                JobSpec::new(
                    PACKAGE_JOB,
                    pc.schedule.clone(),
                    Arc::new(PackageJob {
                        app: Arc::downgrade(&app),
                    }),
                )
                .last_run(Some(chrono::Utc::now())),
            )?;
        }
        // Staging databases of restores killed before this start: removed
        // once idle for the grace, reported in /status meanwhile.
        let databases = app
            .databases
            .read()
            .expect("databases lock")
            .values()
            .map(|db| (db.clone(), state::make_target(db)))
            .collect();
        background.push(leftovers::spawn_startup_scan(
            databases,
            Arc::clone(&app.leftovers),
        ));
        // Scratches of drills killed with an earlier process.
        let drills = app
            .databases
            .read()
            .expect("databases lock")
            .values()
            .filter(|db| db.drill.is_some())
            .filter_map(|db| {
                state::drills::drill_target(db)
                    .ok()
                    .map(|target| (db.id.clone(), target))
            })
            .collect();
        background.push(leftovers::spawn_drill_sweeps(drills));
        let stop_monitor = CancellationToken::new();
        let options = app.health_options(None);
        background.push(spawn_health_monitor(
            engine,
            options,
            Arc::new(SystemClock),
            Duration::from_secs(600),
            stop_monitor.clone(),
        ));
        Ok(Daemon {
            app,
            background,
            stop_monitor,
        })
    }

    /// Serves the API on `listener` (and metrics and probes on
    /// `metrics_listener`) until `shutdown` resolves; then drains: the
    /// listeners keep answering probes, metrics and reads while changes
    /// are refused with 503, running backups and API operations get up to
    /// the configured timeout to finish, the rest is cancelled cleanly,
    /// and the listeners close.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        metrics_listener: Option<tokio::net::TcpListener>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = Arc::clone(&self.app);
        let close = CancellationToken::new();
        let mut main = tokio::spawn(
            axum::serve(listener, http::router(Arc::clone(&app)))
                .with_graceful_shutdown(close.clone().cancelled_owned())
                .into_future(),
        );
        let mut side = metrics_listener.map(|l| {
            tokio::spawn(
                axum::serve(l, http::metrics_router(Arc::clone(&app)))
                    .with_graceful_shutdown(close.clone().cancelled_owned())
                    .into_future(),
            )
        });
        let early = tokio::select! {
            _ = shutdown => None,
            r = &mut main => Some(r),
        };
        app.stopping.cancel();
        if early.is_none() {
            tracing::info!(
                "shutting down: refusing changes; letting running backups and restores finish"
            );
        }
        let drain = app.config.shutdown_timeout;
        let started = tokio::time::Instant::now();
        app.scheduler.shutdown(Shutdown::Drain(drain)).await;
        app.wal.stop_all().await;
        app.tracker.close();
        let left = drain.saturating_sub(started.elapsed());
        if tokio::time::timeout(left, app.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown timeout: API operations still running are abandoned");
        }
        self.stop_monitor.cancel();
        for task in self.background {
            task.abort();
        }
        close.cancel();
        // Open requests (a download) get a little time, then are cut.
        let grace = Duration::from_secs(10);
        let result = match early {
            Some(r) => r,
            None => match tokio::time::timeout(grace, &mut main).await {
                Ok(r) => r,
                Err(_) => {
                    main.abort();
                    Ok(Ok(()))
                }
            },
        };
        if let Some(side) = side.as_mut()
            && tokio::time::timeout(grace, &mut *side).await.is_err()
        {
            side.abort();
        }
        tracing::info!("stopped");
        match result {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_daemon_marks_the_store_it_writes_to() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        open_storage(&StorageConfig::Fs(root.clone()))
            .await
            .unwrap();
        assert!(root.join(backup_examples::STORE_MARKER).is_file());
        // A second start finds the mark and leaves it.
        open_storage(&StorageConfig::Fs(root.clone()))
            .await
            .unwrap();
        let existing =
            backup_examples::open_existing_store(StoreLocation::Dir(root), &S3Settings::default())
                .await;
        assert!(existing.is_ok(), "backupctl's read-only open: {existing:?}");
    }
}
