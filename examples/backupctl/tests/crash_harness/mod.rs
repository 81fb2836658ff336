//! The crash harness: the real `backupctl` killed with SIGKILL at random
//! moments of backups, restores, gc, prune and sweep, against a throwaway
//! PostgreSQL 15, SecantusDB (a MongoDB stand-in) and an `s3s-fs` S3
//! server; after every kill the invariants of the library are checked
//! (see `crash.rs` for the list and for how time is made to pass).

mod backups;
mod figures;
mod maintenance;
mod restores;
mod store;
mod victim;
mod world;

use std::time::Duration;

pub(crate) use world::World;

/// What a run does.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Seeds the random choices (operations, kill delays, kill modes).
    pub(crate) seed: u64,
    /// The operations to kill, in order.
    pub(crate) plan: Vec<Op>,
    /// `pgbench -i -s` scale of the PostgreSQL source (0: no pgbench
    /// tables; three small tables are always there).
    pub(crate) pgbench_scale: u32,
    /// Rows of incompressible text added to the PostgreSQL source (about
    /// 180 bytes each), so that stores receive real volume.
    pub(crate) noise_rows: u32,
    /// Documents of the MongoDB source.
    pub(crate) mongo_docs: u64,
    /// Backups kept per PostgreSQL store between rounds (older ones are
    /// deleted, so every round can verify everything listed).
    pub(crate) keep_backups: usize,
}

impl Config {
    /// The bounded run of `cargo test` (CI): every operation once.
    pub(crate) fn ci(seed: u64) -> Config {
        Config {
            seed,
            plan: Op::all(),
            pgbench_scale: 0,
            noise_rows: 20_000,
            mongo_docs: 4_000,
            keep_backups: 2,
        }
    }

    /// `rounds` operations drawn at random (after one of each).
    pub(crate) fn long(seed: u64, rounds: usize) -> Config {
        use rand::SeedableRng;
        use rand::seq::IndexedRandom;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x0005_eed0_f0b5);
        let all = Op::all();
        let mut plan = all.clone();
        while plan.len() < rounds {
            plan.push(*all.choose(&mut rng).expect("operations"));
        }
        plan.truncate(rounds.max(1));
        Config {
            seed,
            plan,
            pgbench_scale: 2,
            noise_rows: 120_000,
            mongo_docs: 15_000,
            keep_backups: 3,
        }
    }
}

/// Where a PostgreSQL backup goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum StoreId {
    /// A directory (`backup-store-fs`).
    Fs,
    /// A bucket prefix on `s3s-fs` (`backup-store-s3`).
    S3,
    /// A directory holding the MongoDB source's backups.
    Mongo,
    /// A directory with many small backups, for gc, prune and sweep.
    Maint,
}

/// One kind of operation the harness kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Op {
    /// `backupctl backup --pg ...`.
    Backup {
        /// Fs or S3.
        store: StoreId,
        /// `--type incremental`.
        incremental: bool,
        /// `--encrypt-to`.
        encrypted: bool,
    },
    /// `backupctl restore --pg ... --create` into a new database.
    RestorePgCreate,
    /// `backupctl restore --pg ... --clean` over an existing database.
    RestorePgClean,
    /// `backupctl restore --mongo ... --target-db new`.
    RestoreMongoNew,
    /// `backupctl restore --mongo ... --clean` over an existing database.
    RestoreMongoClean,
    /// `backupctl gc --grace 0s` with deleted backups' chunks to collect.
    Gc,
    /// `backupctl prune --keep-last 2` over many backups.
    Prune,
    /// `backupctl sweep --grace 0s` over many leftovers.
    Sweep,
}

impl Op {
    /// Every kind, backups first (restores need backups), then restores,
    /// then maintenance.
    pub(crate) fn all() -> Vec<Op> {
        let mut all = Vec::new();
        for store in [StoreId::Fs, StoreId::S3] {
            for incremental in [false, true] {
                for encrypted in [false, true] {
                    all.push(Op::Backup {
                        store,
                        incremental,
                        encrypted,
                    });
                }
            }
        }
        all.extend([
            Op::RestorePgCreate,
            Op::RestorePgClean,
            Op::RestoreMongoNew,
            Op::RestoreMongoClean,
            Op::Gc,
            Op::Prune,
            Op::Sweep,
        ]);
        all
    }

    /// A short name for logs and figures.
    pub(crate) fn name(&self) -> String {
        match self {
            Op::Backup {
                store,
                incremental,
                encrypted,
            } => format!(
                "backup {} {} {}",
                match store {
                    StoreId::S3 => "s3",
                    _ => "fs",
                },
                if *incremental { "incremental" } else { "full" },
                if *encrypted { "age" } else { "plain" }
            ),
            Op::RestorePgCreate => "restore pg --create".into(),
            Op::RestorePgClean => "restore pg --clean".into(),
            Op::RestoreMongoNew => "restore mongo new db".into(),
            Op::RestoreMongoClean => "restore mongo --clean".into(),
            Op::Gc => "gc".into(),
            Op::Prune => "prune".into(),
            Op::Sweep => "sweep".into(),
        }
    }
}

/// How long a victim's tools may outlive it before the harness calls them
/// hung.
const GROUP_EXIT_LIMIT: Duration = Duration::from_secs(120);

/// How far the harness moves store files into the past before the final
/// sweep of a round: beyond every expiry the core knows (in-progress
/// markers and temporary files 1 h, GC marker 1 h, chunk in-flight markers
/// 24 h).
const TIME_TRAVEL: Duration = Duration::from_secs(3 * 24 * 3600);

/// The environment variable the age identity reaches `backupctl` in.
const IDENTITY_VAR: &str = "CRASH_AGE_IDENTITY";
