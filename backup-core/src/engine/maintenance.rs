//! The maintenance side of [`Engine`]: retention (prune), garbage
//! collection, sweeping leftovers and checking a whole store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::setup::Engine;
use crate::catalog::{Filter, SweepReport};
use crate::dedup::{CheckReport, GcReport, check, collect, inflight_markers, sweep_chunk_store};
use crate::duration::to_chrono;
use crate::error::Result;
use crate::events::Event;
use crate::inflight::{INFLIGHT_DIR, INFLIGHT_STALE_AFTER, parse_marker_key};
use crate::key::Key;
use crate::manifest::{Layout, Manifest};
use crate::retention::{PlanOptions, RetentionPlan, RetentionPolicy, plan};
use crate::store::{StoreExt, TemporarySweep};

/// What a prune run did (or, for a dry run, would do), per source.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PruneReport {
    /// Whether anything was actually deleted.
    pub dry_run: bool,
    /// The plan per `tenant/source_id`.
    pub sources: BTreeMap<String, RetentionPlan>,
    /// Garbage collection per tenant, when asked for with
    /// [`PlanOptions::collect_garbage`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gc: BTreeMap<String, GcReport>,
}

impl Engine {
    /// Collects the garbage of `tenant`'s chunk store: deletes packs no
    /// incremental backup references any more and repacks mostly-garbage
    /// ones, leaving packs younger than `grace` alone. Backs off (reported
    /// in [`GcReport::skipped`], nothing deleted) while a deduplicating
    /// backup of the tenant is in flight; see the protocol in
    /// [`DedupOptions`](crate::dedup::DedupOptions)' module docs. `dry_run` only reports the plan.
    ///
    /// Needs no key: encrypted chunks are copied as they are.
    pub async fn gc(&self, tenant: &str, grace: Duration, dry_run: bool) -> Result<GcReport> {
        self.dedup.validate()?;
        to_chrono(grace, "gc grace")?;
        let report = collect(
            self.store.as_ref(),
            &self.catalog,
            tenant,
            grace,
            dry_run,
            &self.dedup,
        )
        .await?;
        tracing::info!(
            %tenant,
            deleted = report.deleted_packs.len(),
            repacked = report.repacked_packs.len(),
            freed = report.freed_bytes,
            skipped = report.skipped.as_deref().unwrap_or("no"),
            "garbage collection done"
        );
        Ok(report)
    }

    /// Reads everything of one tenant (or, with `None`, of every tenant in
    /// the store) and reports missing, corrupt and orphaned objects: every
    /// chunk of every pack is decoded and hashed (encrypted chunks only
    /// with the engine's identities, else they are counted as unverified),
    /// every chunk list and full artifact is checked against its manifest.
    /// Changes nothing.
    pub async fn check(&self, tenant: Option<&str>) -> Result<CheckReport> {
        let mut report = check(&self.store, &self.catalog, tenant, &self.identities).await?;
        self.check_leftovers(tenant, &mut report).await?;
        Ok(report)
    }

    /// Adds to `report` what a sweep would look at: in-progress markers
    /// (fresh ones make their artifacts "in progress" rather than orphans;
    /// stale ones are garbage), expired chunk-store markers, and the
    /// store's temporary objects.
    async fn check_leftovers(&self, tenant: Option<&str>, report: &mut CheckReport) -> Result<()> {
        let now = Utc::now();
        let held = to_chrono(INFLIGHT_STALE_AFTER, "marker age")?;
        let mut running = std::collections::HashSet::new();
        for t in report.tenants.clone() {
            let prefix = Key::new(format!("{t}/{INFLIGHT_DIR}"))?;
            for meta in self.store.list_all(Some(&prefix)).await? {
                match parse_marker_key(&meta.key) {
                    Some((_, id)) if now - meta.last_modified < held => {
                        running.insert(id.to_string());
                    }
                    Some(_) => report.stale_markers.push(meta.key.to_string()),
                    None => {}
                }
            }
            let (_, expired) =
                inflight_markers(self.store.as_ref(), &t, self.dedup.inflight_expiry).await?;
            report
                .stale_markers
                .extend(expired.into_iter().map(|m| m.key.to_string()));
        }
        let orphans = std::mem::take(&mut report.orphaned_artifacts);
        for key in orphans {
            if Layout::from_artifact(&key).is_some_and(|l| running.contains(l.id())) {
                report.in_progress.push(key);
            } else {
                report.orphaned_artifacts.push(key);
            }
        }
        let temporary = self
            .store
            .sweep_temporary(&TemporarySweep::report_only())
            .await?;
        report.temporary_objects = temporary
            .into_iter()
            .filter(|t| tenant.is_none_or(|tn| t.location.starts_with(&format!("{tn}/"))))
            .collect();
        Ok(())
    }

    /// Removes what failed and crashed backups left behind: everything
    /// [`Catalog::sweep`](crate::catalog::Catalog::sweep) removes (orphaned artifacts of backups no longer
    /// running, stale in-progress markers, the store's temporary objects),
    /// plus, in every tenant's chunk store, packs without an index older
    /// than `grace` and expired in-flight markers. The chunk stores are
    /// swept under the GC marker, so that part backs off (reported in
    /// [`ChunkSweep::skipped`](crate::catalog::ChunkSweep::skipped)) while an
    /// incremental backup or a GC of the tenant runs. `now` is the time
    /// ages are measured against (`Utc::now()` outside tests).
    pub async fn sweep(&self, grace: Duration, now: DateTime<Utc>) -> Result<SweepReport> {
        self.dedup.validate()?;
        let grace_c = to_chrono(grace, "sweep grace")?;
        let mut report = self.catalog.sweep(grace, now).await?;
        let mut tenants = std::collections::BTreeSet::new();
        for meta in self.store.list_all(None).await? {
            let mut segments = meta.key.segments();
            if let (Some(tenant), Some("_chunks")) = (segments.next(), segments.next())
                && !tenant.starts_with('_')
            {
                tenants.insert(tenant.to_string());
            }
        }
        for tenant in tenants {
            let chunks =
                sweep_chunk_store(self.store.as_ref(), &tenant, grace_c, now, &self.dedup).await?;
            report.freed_bytes = report.freed_bytes.saturating_add(chunks.freed_bytes);
            report.chunk_stores.push(chunks);
        }
        Ok(report)
    }

    /// Applies retention to every source matching `filter`: plans with
    /// [`plan`], then (unless `dry_run`) deletes each doomed backup manifest
    /// first, artifact second. With [`PlanOptions::collect_garbage`] it
    /// then runs [`Engine::gc`] on each tenant it pruned (never implicitly:
    /// chunks of deleted incremental backups otherwise stay until a GC).
    pub async fn prune(
        &self,
        filter: &Filter,
        policies: &[&dyn RetentionPolicy],
        opts: PlanOptions,
        dry_run: bool,
    ) -> Result<PruneReport> {
        let mut groups: BTreeMap<String, Vec<Arc<Manifest>>> = BTreeMap::new();
        for m in self.catalog.list(filter).await? {
            groups
                .entry(format!("{}/{}", m.tenant, m.source_id))
                .or_default()
                .push(m);
        }
        let now = Utc::now();
        let mut report = PruneReport {
            dry_run,
            ..PruneReport::default()
        };
        for (source, backups) in groups {
            let verified = self.verified_policy(&backups, opts).await?;
            let mut all: Vec<&dyn RetentionPolicy> = policies.to_vec();
            if let Some(v) = &verified {
                all.push(v);
            }
            let p = plan(&backups, &all, now, opts);
            if !dry_run {
                for doomed in &p.delete {
                    let m = backups
                        .iter()
                        .find(|m| m.id == doomed.id)
                        .expect("plan only names listed backups");
                    self.catalog.delete_manifest(m).await?;
                    tracing::info!(id = %m.id, %source, "pruned backup");
                    self.events.emit(Event::Pruned {
                        tenant: m.tenant.clone(),
                        source_id: m.source_id.clone(),
                        backup_id: m.id.clone(),
                        at: Utc::now(),
                    });
                }
            }
            report.sources.insert(source, p);
        }
        if let (Some(grace), false) = (opts.collect_garbage, dry_run) {
            let tenants: std::collections::BTreeSet<String> = report
                .sources
                .keys()
                .filter_map(|s| s.split_once('/').map(|(t, _)| t.to_string()))
                .collect();
            for tenant in tenants {
                let gc = self.gc(&tenant, grace, false).await?;
                report.gc.insert(tenant, gc);
            }
        }
        Ok(report)
    }
}
