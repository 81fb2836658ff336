//! Restore-drill metrics: `backup_drill_total{source,tenant,status}` and
//! `backup_last_verified_timestamp_seconds{source,tenant}`, fed by
//! [`Event::DrillSucceeded`] and [`Event::DrillFailed`].

use std::sync::atomic::AtomicU64;

use backup_core::Event;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of `backup_last_verified_timestamp_seconds` (those of the other
/// per-source metrics).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerifiedLabels {
    /// Source (database) id.
    pub source: String,
    /// Tenant.
    pub tenant: String,
}

/// Labels of `backup_drill_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DrillLabels {
    /// Source (database) id.
    pub source: String,
    /// Tenant.
    pub tenant: String,
    /// `passed` or `failed`.
    pub status: String,
}

/// The drill metrics of [`crate::metrics::Metrics`].
#[derive(Debug, Default)]
pub struct DrillMetrics {
    total: Family<DrillLabels, Counter>,
    last_verified: Family<VerifiedLabels, Gauge<f64, AtomicU64>>,
}

impl DrillMetrics {
    /// Registers both metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let me = DrillMetrics::default();
        registry.register(
            "backup_drill",
            "Restore drills, by outcome",
            me.total.clone(),
        );
        registry.register(
            "backup_last_verified_timestamp_seconds",
            "Unix time of the latest passed restore drill",
            me.last_verified.clone(),
        );
        me
    }

    /// Updates the metrics from one event (drill events only).
    pub fn observe(&self, event: &Event) {
        let (tenant, source, status, at) = match event {
            Event::DrillSucceeded {
                tenant,
                source_id,
                at,
                ..
            } => (tenant, source_id, "passed", Some(at)),
            Event::DrillFailed {
                tenant, source_id, ..
            } => (tenant, source_id, "failed", None),
            _ => return,
        };
        self.total
            .get_or_create(&DrillLabels {
                source: source.clone(),
                tenant: tenant.clone(),
                status: status.to_string(),
            })
            .inc();
        if let Some(at) = at {
            self.last_verified
                .get_or_create(&VerifiedLabels {
                    source: source.clone(),
                    tenant: tenant.clone(),
                })
                .set(at.timestamp_millis() as f64 / 1000.0);
        }
    }
}
