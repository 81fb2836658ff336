//! [`spawn_health_monitor`]: stale-source alerts on an [`Engine`]'s event
//! bus. A module of its own, so that `events` (which the engine uses) does
//! not depend on the engine.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::catalog::{Filter, HealthOptions, HealthStatus};
use crate::clock::Clock;
use crate::duration::{MAX_DURATION, to_chrono};
use crate::engine::Engine;
use crate::events::Event;

/// Checks the health of every source in `engine`'s catalog every `every`
/// and emits [`Event::Stale`] when a source turns stale (again after it
/// recovered; not on every check). Ends when `stop` is cancelled.
pub fn spawn_health_monitor(
    engine: Engine,
    options: HealthOptions,
    clock: Arc<dyn Clock>,
    every: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut alerted: HashSet<String> = HashSet::new();
        loop {
            let now = clock.now();
            match engine.catalog().health(&Filter::all(), &options, now).await {
                Ok(report) => {
                    for h in report {
                        let key = format!("{}/{}", h.tenant, h.source_id);
                        if h.status == HealthStatus::Stale {
                            if alerted.insert(key) {
                                engine.events().emit(Event::Stale {
                                    tenant: h.tenant,
                                    source_id: h.source_id,
                                    hours_since_success: h.hours_since_success,
                                    at: now,
                                });
                            }
                        } else {
                            alerted.remove(&key);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "health check failed"),
            }
            // An interval beyond 1000 years means "not again": cap it there,
            // where the conversion and the addition are exact.
            let next = now
                + to_chrono(every.min(MAX_DURATION), "health interval")
                    .expect("MAX_DURATION fits a chrono::Duration");
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = clock.sleep_until(next) => {}
            }
        }
    })
}
