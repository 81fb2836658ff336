//! The crash harness: the real `backupctl` killed with SIGKILL at random
//! moments of backups, restores, gc, prune and sweep, against a throwaway
//! PostgreSQL 15 (or 18), SecantusDB (a MongoDB stand-in) and an `s3s-fs` S3
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
    /// The PostgreSQL major version of the server (15: Debian's, 18: the
    /// one of `BACKUP_TEST_PG18_BIN`, whose tools every `--pg` command
    /// gets as `--pg-bin`).
    pub(crate) pg_major: u32,
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
            pg_major: 15,
            plan: Op::all(),
            pgbench_scale: 0,
            noise_rows: 20_000,
            mongo_docs: 4_000,
            keep_backups: 2,
        }
    }

    /// The bounded run on PostgreSQL 18: the operations whose outcome
    /// depends on the server and its tools, once each: a plain backup
    /// into the fs store (`pg_dump` 18 killed or orphaned mid-stream) and
    /// both PostgreSQL restores (`pg_restore` 18, the staging database's
    /// create, mark and rename, `--clean` in one transaction). The other
    /// kinds kill the same PostgreSQL work on another path (S3, age,
    /// deduplication: store and pipeline code, the same for every
    /// server) or none at all (MongoDB, gc, prune, sweep); the 15 run has
    /// them.
    pub(crate) fn ci_postgres_18(seed: u64) -> Config {
        Config {
            pg_major: 18,
            plan: vec![
                Op::Backup {
                    store: StoreId::Fs,
                    incremental: false,
                    encrypted: false,
                },
                Op::RestorePgCreate,
                Op::RestorePgClean,
            ],
            mongo_docs: 100,
            ..Config::ci(seed)
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
            pg_major: 15,
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
