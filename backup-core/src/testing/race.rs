//! The race suite: sweep, prune and garbage collection looping with no
//! grace at all against concurrent backups (full and incremental),
//! restores, verifies and deletes, on a real store.
//!
//! It checks the promises a store's users rely on, whatever runs at once:
//!
//! - every backup that returned `Ok` is listed at the end and restores to
//!   exactly what was dumped, unless retention or a delete removed it (then
//!   it is not listed);
//! - nothing listed ever lacks its artifact: a reader looping over the
//!   catalog heads every listed backup's artifact and verifies some; a
//!   missing artifact or a failed verification of a backup whose manifest
//!   still exists is a violation.

use crate::backup_ref::BackupRef;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use super::fixtures::{RecordingTarget, ScriptedSource};
use crate::catalog::Filter;
use crate::dedup::DedupOptions;
use crate::engine::{BackupRequest, Engine};
use crate::error::{Error, Result};
use crate::events::{Event, EventBus};
use crate::manifest::{BackupKind, BackupType, Manifest};
use crate::retention::{KeepLast, PlanOptions};
use crate::source::RestoreOptions;
use crate::store::{Store, StoreExt};

/// How hard [`race_cleanup_against_backups`] pushes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RaceOptions {
    /// Backups taken in total.
    pub backups: usize,
    /// Backups running at once.
    pub parallel: usize,
    /// Sources the backups are spread over (retention works per source).
    pub sources: usize,
    /// Bytes per dump (each backup's size varies a little around it).
    pub dump_size: usize,
    /// Make every other backup incremental (deduplicated).
    pub incremental: bool,
    /// Seed of the reader's and the deleter's choices.
    pub seed: u64,
}

impl Default for RaceOptions {
    fn default() -> Self {
        RaceOptions {
            backups: 24,
            parallel: 4,
            sources: 3,
            dump_size: 192 * 1024,
            incremental: true,
            seed: 1,
        }
    }
}

impl RaceOptions {
    /// Sets [`RaceOptions::backups`] and [`RaceOptions::parallel`].
    pub fn backups(mut self, total: usize, parallel: usize) -> Self {
        self.backups = total.max(1);
        self.parallel = parallel.max(1);
        self
    }

    /// Sets [`RaceOptions::dump_size`].
    pub fn dump_size(mut self, bytes: usize) -> Self {
        self.dump_size = bytes.max(1);
        self
    }

    /// Sets [`RaceOptions::incremental`].
    pub fn incremental(mut self, yes: bool) -> Self {
        self.incremental = yes;
        self
    }

    /// Sets [`RaceOptions::seed`].
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// What a race run did, for the test to print.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RaceReport {
    /// Backups that returned `Ok`.
    pub committed: usize,
    /// Backups that returned an error (allowed: a cleanup may make one
    /// fail, never make a committed one lose data).
    pub failed: Vec<String>,
    /// Committed backups removed by retention.
    pub pruned: usize,
    /// Committed backups removed by the deleter.
    pub deleted: usize,
    /// Sweeps that ran.
    pub sweeps: usize,
    /// Orphaned artifacts the sweeps removed (of failed backups).
    pub swept: usize,
    /// Orphans the sweeps left because their backup was running.
    pub spared: usize,
    /// Garbage collections that ran.
    pub gcs: usize,
    /// Packs the garbage collections deleted or repacked.
    pub gc_packs: usize,
    /// Prunes that ran.
    pub prunes: usize,
    /// Artifacts headed and backups verified by the reader.
    pub reads: usize,
}

/// Content of the dumps: a few seeds, so incremental backups share chunks.
fn source_for(i: usize, size: usize) -> ScriptedSource {
    let seed = (i % 4) as u64 + 1;
    ScriptedSource {
        len: size + (seed as usize) * 97,
        chunk: 32 * 1024,
        seed,
        ..ScriptedSource::ok(0)
    }
}

/// Runs backups against looping cleanups on `store` (under a fresh tenant)
/// and panics with every violation found. See the module docs.
pub async fn race_cleanup_against_backups(store: Arc<dyn Store>, opts: RaceOptions) -> RaceReport {
    let tenant = format!("race{:08x}", rand::random::<u32>());
    let events = EventBus::new(1 << 16);
    let mut pruned_events = events.subscribe();
    let engine = Engine::new(Arc::clone(&store))
        .with_events(events)
        .with_dedup(
            DedupOptions::default()
                .chunk_sizes(4 * 1024, 16 * 1024, 64 * 1024)
                .pack_size(128 * 1024)
                .gc_wait(Duration::from_secs(300), Duration::from_millis(10)),
        );
    let done = CancellationToken::new();
    let violations: Arc<Mutex<Vec<String>>> = Arc::default();
    // Backup id -> seed of its content, once its backup returned.
    let committed: Arc<Mutex<HashMap<String, ScriptedSource>>> = Arc::default();
    let deleted: Arc<Mutex<HashSet<String>>> = Arc::default();
    let filter = Filter::tenant(&tenant);

    let backups = {
        let (engine, tenant, opts) = (engine.clone(), tenant.clone(), opts.clone());
        let committed = Arc::clone(&committed);
        async move {
            let results: Vec<(usize, Result<Manifest>)> = futures::stream::iter(0..opts.backups)
                .map(|i| {
                    let (engine, tenant, committed) =
                        (engine.clone(), tenant.clone(), Arc::clone(&committed));
                    let size = opts.dump_size;
                    let sources = opts.sources.max(1);
                    let incremental = opts.incremental && i % 2 == 1;
                    async move {
                        let source = source_for(i, size);
                        let request = BackupRequest::new(format!("src{}", i % sources))
                            .tenant(&tenant)
                            .kind(BackupKind::Scheduled)
                            .backup_type(if incremental {
                                BackupType::Incremental
                            } else {
                                BackupType::Full
                            });
                        let result = engine.backup(&source, &request).await;
                        if let Ok(m) = &result {
                            committed
                                .lock()
                                .expect("race lock")
                                .insert(m.id.clone(), source);
                        }
                        (i, result)
                    }
                })
                .buffer_unordered(opts.parallel)
                .collect()
                .await;
            results
        }
    };

    let sweeper = {
        let (engine, done) = (engine.clone(), done.clone());
        async move {
            let (mut runs, mut swept, mut spared) = (0, 0, 0);
            while !done.is_cancelled() {
                match engine.sweep(Duration::ZERO, Utc::now()).await {
                    Ok(report) => {
                        swept += report.removed.len();
                        spared += report.in_progress.len();
                    }
                    Err(e) => tracing::info!(error = %e, "sweep failed"),
                }
                runs += 1;
                tokio::task::yield_now().await;
            }
            (runs, swept, spared)
        }
    };

    let pruner = {
        let (engine, done, filter) = (engine.clone(), done.clone(), filter.clone());
        async move {
            let mut runs = 0;
            while !done.is_cancelled() {
                let keep = KeepLast(2);
                if let Err(e) = engine
                    .prune(&filter, &[&keep], PlanOptions::default(), false)
                    .await
                {
                    tracing::info!(error = %e, "prune failed");
                }
                runs += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            runs
        }
    };

    let collector = {
        let (engine, done, tenant) = (engine.clone(), done.clone(), tenant.clone());
        async move {
            let (mut runs, mut packs) = (0, 0);
            while !done.is_cancelled() {
                match engine.gc(&tenant, Duration::ZERO, false).await {
                    Ok(gc) => packs += gc.deleted_packs.len() + gc.repacked_packs.len(),
                    Err(e) => tracing::info!(error = %e, "gc failed"),
                }
                runs += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (runs, packs)
        }
    };

    let reader = {
        let (engine, done, filter) = (engine.clone(), done.clone(), filter.clone());
        let (violations, deleted, committed) = (
            Arc::clone(&violations),
            Arc::clone(&deleted),
            Arc::clone(&committed),
        );
        let seed = opts.seed;
        async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut reads = 0;
            while !done.is_cancelled() {
                let listed = match engine.catalog().list(&filter).await {
                    Ok(listed) => listed,
                    Err(e) => {
                        tracing::info!(error = %e, "listing failed");
                        continue;
                    }
                };
                for m in &listed {
                    reads += 1;
                    if let Some(problem) = lacks_data(&engine, m).await {
                        violations.lock().expect("race lock").push(problem);
                    }
                }
                if let Some(m) =
                    (!listed.is_empty()).then(|| &listed[rng.random_range(0..listed.len())])
                {
                    let expected = committed.lock().expect("race lock").get(&m.id).cloned();
                    if let Some(problem) = read_back(&engine, m, expected.as_ref()).await {
                        violations.lock().expect("race lock").push(problem);
                    }
                    // Now and then delete one outright, racing everything else.
                    if rng.random_range(0..8) == 0 {
                        deleted.lock().expect("race lock").insert(m.id.clone());
                        if let Err(e) = engine
                            .catalog()
                            .delete(BackupRef::in_tenant(&m.tenant, &m.id))
                            .await
                            && !matches!(e, Error::NotFound { .. })
                        {
                            tracing::info!(error = %e, "delete failed");
                        }
                    }
                }
                tokio::task::yield_now().await;
            }
            reads
        }
    };

    let cleanups = async {
        let results = tokio::join!(sweeper, pruner, collector, reader);
        results
    };
    let run_backups = async {
        let results = backups.await;
        done.cancel();
        results
    };
    let (results, ((sweeps, swept, spared), prunes, (gcs, gc_packs), reads)) =
        tokio::join!(run_backups, cleanups);

    let mut pruned = HashSet::new();
    loop {
        match pruned_events.try_recv() {
            Ok(Event::Pruned { backup_id, .. }) => {
                pruned.insert(backup_id);
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::TryRecvError::Empty)
            | Err(tokio::sync::broadcast::error::TryRecvError::Closed) => break,
            Err(e) => panic!("race suite lost events ({e}): raise the bus capacity"),
        }
    }

    // Final state: every committed backup is listed and restores, or was
    // removed on purpose.
    let mut report = RaceReport {
        sweeps,
        swept,
        spared,
        prunes,
        gcs,
        gc_packs,
        reads,
        ..RaceReport::default()
    };
    let listed: HashMap<String, Arc<Manifest>> = engine
        .catalog()
        .list(&filter)
        .await
        .expect("final listing")
        .into_iter()
        .map(|m| (m.id.clone(), m))
        .collect();
    let deleted = deleted.lock().expect("race lock").clone();
    let committed = committed.lock().expect("race lock").clone();
    let mut problems = violations.lock().expect("race lock").clone();
    let mut seen = HashSet::new();
    problems.retain(|p| seen.insert(p.clone()));
    for (i, result) in results {
        match result {
            Ok(m) => {
                report.committed += 1;
                match listed.get(&m.id) {
                    Some(m) => {
                        if let Some(problem) = read_back(&engine, m, committed.get(&m.id)).await {
                            problems.push(format!("at the end: {problem}"));
                        }
                    }
                    None if pruned.contains(&m.id) => report.pruned += 1,
                    None if deleted.contains(&m.id) => report.deleted += 1,
                    None => problems.push(format!(
                        "backup {} (#{i}) returned Ok but is not listed, and neither retention nor a delete removed it",
                        m.id
                    )),
                }
            }
            Err(e) => report.failed.push(format!("#{i}: {e}")),
        }
    }
    for (id, m) in &listed {
        if !committed.contains_key(id) {
            problems.push(format!(
                "backup {id} of {} is listed but no backup returned it",
                m.source_id
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} violation(s) on {store}:\n{}\n({report:?})",
        problems.len(),
        problems.join("\n")
    );
    report
}

/// `Some(problem)` if `m`'s artifact is missing while its manifest still
/// exists (checked in that order, so a delete in between is not blamed).
async fn lacks_data(engine: &Engine, m: &Manifest) -> Option<String> {
    let (Ok(artifact), Ok(manifest)) = (m.artifact_key(), m.manifest_key()) else {
        return Some(format!("backup {} has invalid keys", m.id));
    };
    match engine.store().head(&artifact).await {
        Ok(_) => None,
        Err(Error::NotFound { .. }) => match engine.store().exists(&manifest).await {
            Ok(true) => Some(format!(
                "backup {} is listed but its artifact {artifact} is gone",
                m.id
            )),
            _ => None,
        },
        Err(_) => None,
    }
}

/// Verifies `m` and restores it (comparing with `expected` when known);
/// a failure is a problem only if the backup is still listed afterwards.
async fn read_back(
    engine: &Engine,
    m: &Manifest,
    expected: Option<&ScriptedSource>,
) -> Option<String> {
    let target = RecordingTarget::default();
    let result = async {
        engine
            .verify(BackupRef::in_tenant(&m.tenant, &m.id))
            .await?;
        engine
            .restore(
                BackupRef::in_tenant(&m.tenant, &m.id),
                &target,
                &RestoreOptions::default(),
            )
            .await
    }
    .await;
    let still_listed = || async {
        match m.manifest_key() {
            Ok(key) => engine.store().exists(&key).await.unwrap_or(true),
            Err(_) => true,
        }
    };
    match result {
        Ok(_) => {
            let got = target.recording().committed;
            match expected {
                Some(source) if got.as_deref() != Some(&source.content()[..]) => Some(format!(
                    "backup {} restored {} bytes that differ from its dump ({} bytes)",
                    m.id,
                    got.map_or(0, |g| g.len()),
                    source.len
                )),
                _ => None,
            }
        }
        Err(e) if still_listed().await => {
            Some(format!("backup {} is listed but cannot be read: {e}", m.id))
        }
        Err(_) => None,
    }
}
