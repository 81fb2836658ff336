//! The property suite: random sequences of backups (full and incremental,
//! plain and encrypted), restores, verifies, deletes, sweeps, garbage
//! collections and prunes against a store that fails at random
//! ([`FaultyStore`]), checking after every step, with the faults off, that
//!
//! - every listed backup verifies and restores to exactly what was dumped;
//! - every backup that returned `Ok` is listed until something deleted it
//!   (a delete or prune that failed may or may not have);
//! - a restore that succeeded, faults and all, restored the right bytes;
//!
//! and, at the end of each case, that a sweep and a GC past every grace
//! leave nothing orphaned (`check` finds no garbage and no damage).

use crate::backup_ref::BackupRef;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::faults::{Faults, FaultyStore};
use super::fixtures::{RecordingTarget, ScriptedSource};
use crate::catalog::Filter;
use crate::compression::Compression;
use crate::crypto::{AgeIdentities, AgeRecipients};
use crate::dedup::DedupOptions;
use crate::engine::{BackupRequest, Engine};
use crate::manifest::{BackupKind, BackupType, Manifest};
use crate::retention::{KeepLast, PlanOptions};
use crate::source::RestoreOptions;
use crate::store::Store;

/// How many random cases [`backup_properties`] runs, and how.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PropertyOptions {
    /// Cases (independent random sequences, each under its own tenant).
    pub cases: usize,
    /// Steps per case.
    pub steps: usize,
    /// Seed of the first case; case `n` uses `seed + n`.
    pub seed: u64,
    /// Probability of each fault per store call.
    pub fault_rate: f64,
    /// Largest dump (dumps are 1 byte to this).
    pub max_dump: usize,
}

impl Default for PropertyOptions {
    fn default() -> Self {
        PropertyOptions {
            cases: 100,
            steps: 12,
            seed: 1,
            fault_rate: 0.03,
            max_dump: 16 * 1024,
        }
    }
}

impl PropertyOptions {
    /// Sets [`PropertyOptions::cases`] and [`PropertyOptions::steps`].
    pub fn cases(mut self, cases: usize, steps: usize) -> Self {
        self.cases = cases;
        self.steps = steps.max(1);
        self
    }

    /// Sets [`PropertyOptions::seed`].
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets [`PropertyOptions::fault_rate`].
    pub fn fault_rate(mut self, rate: f64) -> Self {
        self.fault_rate = rate.clamp(0.0, 1.0);
        self
    }
}

/// What the cases did, for the test to print.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PropertyReport {
    /// Cases run.
    pub cases: usize,
    /// Steps run.
    pub steps: usize,
    /// Backups that returned `Ok` / an error.
    pub backups_ok: usize,
    /// Backups that failed (mostly injected faults).
    pub backups_failed: usize,
    /// Restores that returned `Ok` under faults (and restored the right
    /// bytes).
    pub restores_ok: usize,
    /// Faults injected.
    pub faults: u64,
}

/// One step of a case.
#[derive(Debug, Clone, Copy)]
enum Step {
    Backup {
        incremental: bool,
        encrypted: bool,
        source: usize,
        size: usize,
        seed: u64,
    },
    Restore,
    Verify,
    Delete,
    Sweep,
    Gc,
    Prune {
        keep: usize,
    },
}

fn pick(rng: &mut StdRng, max_dump: usize) -> Step {
    match rng.random_range(0..20) {
        0..=7 => Step::Backup {
            incremental: rng.random_bool(0.5),
            encrypted: rng.random_bool(0.3),
            source: rng.random_range(0..3),
            size: rng.random_range(1..=max_dump.max(1)),
            // Few distinct contents, so incremental backups share chunks.
            seed: rng.random_range(1..=4),
        },
        8..=9 => Step::Restore,
        10..=11 => Step::Verify,
        12..=13 => Step::Delete,
        14..=15 => Step::Sweep,
        16..=17 => Step::Gc,
        _ => Step::Prune {
            keep: rng.random_range(1..=3),
        },
    }
}

/// Runs `opts.cases` random cases against `store` and panics with the case,
/// seed and steps on the first violated property (rerun one with
/// `PropertyOptions::default().seed(seed).cases(1, steps)`).
pub async fn backup_properties(store: Arc<dyn Store>, opts: PropertyOptions) -> PropertyReport {
    let (identities, recipient, _) = AgeIdentities::generate();
    let recipients = AgeRecipients::parse([recipient]).expect("generated recipient");
    let mut report = PropertyReport::default();
    for case in 0..opts.cases {
        let seed = opts.seed.wrapping_add(case as u64);
        let faulty = Arc::new(FaultyStore::new(
            Arc::clone(&store),
            Faults::everywhere(seed, opts.fault_rate),
        ));
        let mut dedup = DedupOptions::default()
            .chunk_sizes(512, 2048, 8 * 1024)
            .pack_size(16 * 1024)
            .repack_threshold(0.0)
            .gc_wait(Duration::from_secs(5), Duration::from_millis(1))
            // One GC at a time here: taking over a stale marker need not
            // wait for another GC to show up.
            .gc_lock_settle(Duration::from_millis(1));
        // One step at a time: a marker left by a failed delete must not make
        // the next GC or backup wait for a day.
        dedup.inflight_expiry = Duration::ZERO;
        dedup.gc_marker_expiry = Duration::ZERO;
        // Small dumps: compression on the calling task (no zstd workers to
        // start per backup); the encrypted engine uses gzip, so both
        // algorithms are restored.
        let plain = Engine::new(Arc::clone(&faulty) as Arc<dyn Store>)
            .with_dedup(dedup)
            .with_compressor(Arc::new(Compression::zstd(1).with_workers(0)))
            .with_identities(identities.clone());
        let encrypted = plain
            .clone()
            .with_compressor(Arc::new(Compression::gzip(1)))
            .with_encryption(recipients.clone());
        let mut case = Case {
            tenant: format!("prop{seed:x}"),
            rng: StdRng::seed_from_u64(seed),
            faulty,
            plain,
            encrypted,
            contents: HashMap::new(),
            expected: HashSet::new(),
            steps: Vec::new(),
            seed,
        };
        for _ in 0..opts.steps {
            let step = pick(&mut case.rng, opts.max_dump);
            case.steps.push(step);
            case.faulty.set_enabled(true);
            case.run(step, &mut report).await;
            case.faulty.set_enabled(false);
            case.check_listed(false).await;
            report.steps += 1;
        }
        case.check_cleanup().await;
        case.remove_all().await;
        report.faults += case.faulty.injected();
        report.cases += 1;
    }
    report
}

struct Case {
    tenant: String,
    rng: StdRng,
    faulty: Arc<FaultyStore>,
    plain: Engine,
    encrypted: Engine,
    /// Every dump attempted, by the SHA-256 of its content.
    contents: HashMap<String, ScriptedSource>,
    /// Backups that returned `Ok` and nothing may have deleted since.
    expected: HashSet<String>,
    steps: Vec<Step>,
    seed: u64,
}

impl Case {
    fn fail(&self, what: String) -> ! {
        panic!(
            "property violated in case seed {} after steps {:?}: {what}",
            self.seed, self.steps
        )
    }

    fn filter(&self) -> Filter {
        Filter::tenant(&self.tenant)
    }

    async fn listed(&self) -> Vec<Arc<Manifest>> {
        match self.plain.catalog().list(&self.filter()).await {
            Ok(listed) => listed,
            Err(e) => self.fail(format!("listing without faults failed: {e}")),
        }
    }

    async fn random_listed(&mut self) -> Option<Arc<Manifest>> {
        // The listing itself may fail under faults: then there is nothing to pick.
        let listed = self.plain.catalog().list(&self.filter()).await.ok()?;
        (!listed.is_empty()).then(|| Arc::clone(&listed[self.rng.random_range(0..listed.len())]))
    }

    async fn run(&mut self, step: Step, report: &mut PropertyReport) {
        match step {
            Step::Backup {
                incremental,
                encrypted,
                source,
                size,
                seed,
            } => {
                let dump = ScriptedSource {
                    len: size,
                    chunk: 8 * 1024,
                    seed,
                    ..ScriptedSource::ok(0)
                };
                let digest = crate::pipeline::sha256_hex(&dump.content());
                self.contents.insert(digest, dump.clone());
                let engine = if encrypted {
                    &self.encrypted
                } else {
                    &self.plain
                };
                let request = BackupRequest::new(format!("src{source}"))
                    .tenant(&self.tenant)
                    .kind(BackupKind::Scheduled)
                    .backup_type(if incremental {
                        BackupType::Incremental
                    } else {
                        BackupType::Full
                    });
                match engine.backup(&dump, &request).await {
                    Ok(m) => {
                        report.backups_ok += 1;
                        self.expected.insert(m.id);
                    }
                    Err(_) => report.backups_failed += 1,
                }
            }
            Step::Restore => {
                let Some(m) = self.random_listed().await else {
                    return;
                };
                let target = RecordingTarget::default();
                if self
                    .plain
                    .restore(
                        BackupRef::in_tenant(&self.tenant, &m.id),
                        &target,
                        &RestoreOptions::default(),
                    )
                    .await
                    .is_ok()
                {
                    report.restores_ok += 1;
                    self.same_content(&m, target.recording().committed.as_deref(), "under faults");
                }
            }
            Step::Verify => {
                if let Some(m) = self.random_listed().await {
                    let _ = self
                        .plain
                        .verify(BackupRef::in_tenant(&self.tenant, &m.id))
                        .await;
                }
            }
            Step::Delete => {
                if let Some(m) = self.random_listed().await {
                    // Gone or not, it is no longer owed.
                    self.expected.remove(&m.id);
                    let _ = self
                        .plain
                        .catalog()
                        .delete(BackupRef::in_tenant(&self.tenant, &m.id))
                        .await;
                }
            }
            Step::Sweep => {
                let _ = self.plain.sweep(Duration::ZERO, Utc::now()).await;
            }
            Step::Gc => {
                let _ = self.plain.gc(&self.tenant, Duration::ZERO, false).await;
            }
            Step::Prune { keep } => {
                let policy = KeepLast(keep);
                match self
                    .plain
                    .prune(&self.filter(), &[&policy], PlanOptions::default(), false)
                    .await
                {
                    Ok(pruned) => {
                        for plan in pruned.sources.values() {
                            for d in &plan.delete {
                                self.expected.remove(&d.id);
                            }
                        }
                    }
                    // Which backups went before the failure is unknown.
                    Err(_) => self.expected.clear(),
                }
            }
        }
    }

    fn same_content(&self, m: &Manifest, restored: Option<&[u8]>, when: &str) {
        let Some(source) = self.contents.get(&m.raw.sha256) else {
            self.fail(format!("backup {} records a dump digest no dump had", m.id));
        };
        if restored != Some(&source.content()[..]) {
            self.fail(format!(
                "backup {} restored {} bytes {when}, not its {} byte dump",
                m.id,
                restored.map_or(0, <[u8]>::len),
                source.len
            ));
        }
    }

    /// With faults off: every listed backup restores exactly (a restore
    /// checks every digest a verify does) and, with `verify`, verifies;
    /// every backup owed is listed.
    async fn check_listed(&self, verify: bool) {
        let listed = self.listed().await;
        let ids: HashSet<&str> = listed.iter().map(|m| m.id.as_str()).collect();
        for id in &self.expected {
            if !ids.contains(id.as_str()) {
                self.fail(format!(
                    "backup {id} returned Ok, was never deleted, and is not listed"
                ));
            }
        }
        for m in &listed {
            if verify
                && let Err(e) = self
                    .plain
                    .verify(BackupRef::in_tenant(&self.tenant, &m.id))
                    .await
            {
                self.fail(format!("listed backup {} does not verify: {e}", m.id));
            }
            let target = RecordingTarget::default();
            if let Err(e) = self
                .plain
                .restore(
                    BackupRef::in_tenant(&self.tenant, &m.id),
                    &target,
                    &RestoreOptions::default(),
                )
                .await
            {
                self.fail(format!("listed backup {} does not restore: {e}", m.id));
            }
            self.same_content(m, target.recording().committed.as_deref(), "");
        }
    }

    /// Removes the case's tenant, so later cases list a small store.
    async fn remove_all(&self) {
        let store = self.faulty.inner();
        let prefix = crate::key::Key::new(self.tenant.as_str()).expect("tenant key");
        let keys: Vec<crate::key::Key> =
            match crate::store::StoreExt::list_all(store.as_ref(), Some(&prefix)).await {
                Ok(objects) => objects.into_iter().map(|o| o.key).collect(),
                Err(e) => self.fail(format!("listing the tenant failed: {e}")),
            };
        if let Err(e) = store.delete_many(&keys).await {
            self.fail(format!("removing the tenant failed: {e}"));
        }
    }

    /// With faults off, past every grace: a sweep and a GC leave nothing
    /// orphaned, and nothing listed is damaged.
    async fn check_cleanup(&self) {
        let later = Utc::now() + chrono::Duration::days(2);
        if let Err(e) = self.plain.sweep(Duration::ZERO, later).await {
            self.fail(format!("sweep without faults failed: {e}"));
        }
        match self.plain.gc(&self.tenant, Duration::ZERO, false).await {
            Ok(gc) if gc.skipped.is_some() => {
                self.fail(format!("gc without faults skipped: {:?}", gc.skipped))
            }
            Ok(_) => {}
            Err(e) => self.fail(format!("gc without faults failed: {e}")),
        }
        let check = match self.plain.check(Some(&self.tenant)).await {
            Ok(check) => check,
            Err(e) => self.fail(format!("check failed: {e}")),
        };
        if !check.is_ok() || check.has_garbage() || !check.in_progress.is_empty() {
            self.fail(format!("after sweep and gc: {check:?}"));
        }
        self.check_listed(true).await;
    }
}
