//! The crash harness (issue #10): the real `backupctl` binary killed with
//! SIGKILL at random moments, then the library's promises checked.
//!
//! # What is killed
//!
//! - `backup --pg` into the fs store and into S3 (`s3s-fs`, started by the
//!   test), full and `--type incremental`, plain and `--encrypt-to` (age);
//! - `restore --create` into a new PostgreSQL database and `restore
//!   --clean` over an existing one; MongoDB restores (SecantusDB, a
//!   MongoDB stand-in) into a new database and with `--clean`;
//! - `gc`, `prune` and `sweep` with work to do (many small backups,
//!   deleted ones, leftovers).
//!
//! Each kind's typical duration is measured once per run (an unkilled run
//! of the same operation: for backups, the last unkilled backup of that
//! kind or else into that store, timed on a store's first round; for
//! restores, a restore into a new database; for gc, prune and sweep, the
//! same command on a copy of the store), then the victim is killed after a delay drawn uniformly over
//! it from a seeded RNG, either alone (`kill -9 PID`: its `pg_dump`,
//! `pg_restore` or `psql` live on as orphans) or with its whole process
//! group (`kill -9 -PGID`). The harness waits until every process of the
//! group is gone, then until the servers have closed every connection of
//! the dead (no `CLOSE_WAIT` socket on their ports in `/proc/net/tcp*`):
//! a server carries out what a killed client had already sent (a MongoDB
//! insert batch, an S3 PUT whose body had arrived), and a check made
//! before that would race with it. Victims get the database passwords in
//! `PGPASSWORD` / `MONGODB_PASSWORD` (URLs without them), S3 keys in
//! `AWS_*`, the age identity in an environment variable, and a fresh
//! `TMPDIR` and `HOME`.
//!
//! # What is checked after every kill
//!
//! - Every listed backup is one whose content the harness recorded (the
//!   source is only written between rounds, so a backup committed by a
//!   victim killed before it could print its id holds the source as it
//!   was), and `backupctl verify` accepts it; the backup a kill let
//!   commit, and a new backup, restore into new databases with the same
//!   content (per-table row count and ordered md5; MongoDB: per-collection
//!   count and CRC-64 in `_id` order).
//! - No file written during the round under `/tmp`, the victims' `TMPDIR`
//!   and `HOME` contains a password, the S3 secret or the age identity,
//!   and no `pgpass` file exists.
//! - A killed PostgreSQL `restore --create` leaves no target or the
//!   complete one; a killed `restore --clean` leaves exactly the old or
//!   exactly the new content. Every database named like a staging
//!   database is one `leftovers` reports, and `remove_leftovers`
//!   drops them all. MongoDB: the target is untouched or fully restored,
//!   or, for a kill while collections are moved into it (the documented
//!   non-atomic step), each collection is exactly old or exactly new;
//!   staging databases are found and dropped the same way.
//! - After time has passed, `sweep --grace-minutes 0` then `gc --grace
//!   0s` leave nothing: a second gc plans nothing, `check` reports every
//!   backup intact and no orphaned artifacts or packs, no stale markers,
//!   no temporary files, nothing in progress, and the store's files are
//!   exactly the listed backups' manifests and artifacts, run records,
//!   and packs with their indexes.
//! - The next backup and restore succeed.
//!
//! # Making time pass
//!
//! The core treats an in-progress marker or a temporary file as a crash's
//! leftover only once it is an hour old (chunk in-flight markers: a day),
//! whatever grace `sweep` is given: a running backup must never lose its
//! artifact. Rather than add a knob that would shorten that, the harness
//! moves every file of the store three days into the past (`mtime`)
//! before sweeping: the fs store reports file times as `last_modified`,
//! and so does `s3s-fs` for `LastModified` (checked by
//! `s3s_fs_reports_file_mtimes_as_last_modified`). Nothing runs at that
//! moment, so nothing is lost that was alive.
//!
//! # What it found
//!
//! - A `restore --create` killed between `CREATE DATABASE` and the
//!   statement marking the staging database left a database
//!   `leftovers` did not see (fixed in backup-postgres: staging
//!   databases are born refusing connections; see its `staging` module).
//! - A process killed mid-probe of conditional PUTs left the S3 store's
//!   `_probe/conditional-put-…` object forever (fixed in backup-store-s3:
//!   `sweep_temporary` reports and removes it).
//! - A `gc` killed mid-way (long variant, `CRASH_SEED=42`, round 13 of
//!   17) left a state where the settling `gc --grace 0s` did not converge:
//!   a second one still planned to delete a pack (one chunk, 16 KB;
//!   nothing missing, every backup verified). The killed gc had written a
//!   new pack holding the live chunks of several repacked packs and died
//!   before deleting all of them. In the settling gc a surviving old pack
//!   sorting first claimed its chunks (the first copy in pack id order is
//!   kept), the new pack lost them but stayed below the repack threshold,
//!   and the old pack was repacked: its chunks were copied once more, into
//!   a pack that sorted after the one already holding them, which the next
//!   gc then found to be garbage. Fixed in backup-core (`dedup::gc`): a
//!   repacked pack's chunks that a pack left in place also holds are not
//!   copied (that copy is kept; a repacked pack left with nothing to copy
//!   is deleted), so one pass converges. `backup-core/tests/gc_crash.rs`
//!   kills a gc after each of its store changes in turn and checks the
//!   settling gc leaves nothing to do and every backup restores; it failed
//!   before the fix.
//!
//! # Running it
//!
//! `cargo test -p backupctl --test crash` runs each kind once on
//! PostgreSQL 15 and the PostgreSQL operations once on PostgreSQL 18
//! (`BACKUP_TEST_PG18_BIN`; every `--pg` command gets its tools as
//! `--pg-bin`): a few minutes of wall time at most on two cores. The long
//! variant (PostgreSQL 15):
//!
//! ```text
//! CRASH_ROUNDS=300 CRASH_SEED=42 cargo test -p backupctl --test crash -- --ignored --nocapture
//! ```
//!
//! `CRASH_SEED` also reproduces the choices of the CI run (it prints its
//! seed); the moment a kill lands still depends on timing.

mod crash_harness;
mod support;

use tokio::sync::Mutex;

use crash_harness::{Config, World};

/// The harness runs drop every staging database they find: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

fn seed() -> u64 {
    match std::env::var("CRASH_SEED") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("CRASH_SEED={s:?} is not a number")),
        Err(_) => rand::random(),
    }
}

async fn run(config: Config) {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut world = World::start(config).await;
    world.run().await;
    let figures = world.finish().await;
    eprintln!("{figures}");
    assert_eq!(figures.broken_backups, 0);
}

/// Every kind of operation killed once, every invariant checked after
/// each kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_harness_kills_every_operation_once_on_postgres_15() {
    run(Config::ci(seed())).await;
}

/// The PostgreSQL operations (a backup into the fs store, both restores)
/// killed once on PostgreSQL 18 (see `Config::ci_postgres_18` for why
/// these), every invariant checked after each kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_harness_kills_the_postgres_operations_on_postgres_18() {
    run(Config::ci_postgres_18(seed())).await;
}

/// The long variant: `CRASH_ROUNDS` (default 200) random rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: CRASH_ROUNDS=300 CRASH_SEED=42 cargo test -p backupctl --test crash -- --ignored --nocapture"]
async fn crash_harness_long() {
    let rounds = match std::env::var("CRASH_ROUNDS") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("CRASH_ROUNDS={s:?} is not a number")),
        Err(_) => 200,
    };
    run(Config::long(seed(), rounds)).await;
}

/// The harness ages S3 objects by setting their files' mtimes: `s3s-fs`
/// must report those as `LastModified` in listings and HEAD.
#[tokio::test]
async fn s3s_fs_reports_file_mtimes_as_last_modified() {
    use backup_core::{Store, key::Key, store::PutOptions};
    use futures::StreamExt;
    let s3 = backup_store_s3::S3TestServer::start().expect("s3s-fs");
    let builder = s3.store_builder().prefix("mtime-check");
    let store = builder.build().expect("store");
    let key = Key::new("t/s/2025/01/object.bin").unwrap();
    store
        .put(&key, bytes::Bytes::from_static(b"x"), PutOptions::default())
        .await
        .unwrap();
    let file = s3
        .data_dir()
        .unwrap()
        .join(s3.bucket())
        .join("mtime-check")
        .join(key.as_str());
    let two_days = std::time::Duration::from_secs(2 * 24 * 3600);
    support::files::backdate(file.parent().unwrap(), two_days);
    let mtime: chrono::DateTime<chrono::Utc> =
        std::fs::metadata(&file).unwrap().modified().unwrap().into();
    let head = store.head(&key).await.unwrap();
    let listed = store.list(None).next().await.unwrap().unwrap();
    for seen in [head.last_modified, listed.last_modified] {
        assert!(
            (seen - mtime).num_seconds().abs() <= 1,
            "s3s-fs reports {seen}, the file says {mtime}"
        );
        assert!(chrono::Utc::now() - seen > chrono::Duration::days(1));
    }
}
