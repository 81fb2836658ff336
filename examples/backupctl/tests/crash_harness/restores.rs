//! Restore rounds: `backupctl restore` into a new database or over an
//! existing one, PostgreSQL and MongoDB, killed at a random moment.

use std::collections::BTreeSet;
use std::time::Duration;

use backup_core::RestoreTarget;
use backup_mongo::MongoTarget;
use backup_postgres::PostgresTarget;
use rand::seq::IndexedRandom;

use super::victim::{self, Outcome};
use super::world::{Digest, World};
use super::{Op, StoreId};

/// Bytes the victim must have written into `pg_restore`'s stdin for a
/// kill to count as mid-stream. (MongoDB inserts go out through `send`,
/// which the counters do not see: there the documents found in the
/// staging database tell.)
const STREAMING_BYTES: u64 = 1 << 20;

/// Kill a `restore --create` into a new PostgreSQL database: afterwards
/// the target does not exist or holds exactly the backup, and no staging
/// database is left that `remove_leftovers` would not drop.
pub(crate) async fn pg_create(w: &mut World) {
    let name = Op::RestorePgCreate.name();
    let (store, backup) = pick_pg_backup(w, None);
    let digest = w.digests[&backup].clone();
    let typical = typical_restore(w, &name, store, &backup).await;
    let target = w.unique("crash_rc");
    let spec = w.spec(store);
    let url = w.pg_url(&target);
    let outcome = kill_restore(
        w,
        typical,
        &[
            "restore", &backup, "--store", &spec, "--pg", &url, "--create",
        ],
    );
    let exists = w.pg_exists(&target).await;
    assert!(
        exists || !outcome.success,
        "restore succeeded but {target} does not exist"
    );
    if exists {
        assert_eq!(
            w.content(&digest, &target).await,
            digest,
            "a killed restore --create left {target} half restored"
        );
    }
    let staged = pg_staging_cleanup(w).await;
    let phase = if !outcome.killed {
        "finished first"
    } else if exists {
        "after commit"
    } else if streamed(&outcome) {
        "mid-stream"
    } else if staged > 0 {
        "staging created, no data yet"
    } else {
        "before writing"
    };
    w.figures.record(&name, &outcome, phase);
    // The next restore succeeds.
    if !exists {
        w.ctl_ok(&[
            "restore", &backup, "--store", &spec, "--pg", &url, "--create",
        ]);
        assert_eq!(w.content(&digest, &target).await, digest);
        w.figures.restores_compared += 1;
    }
    w.pg.drop_database(&target).await.expect("drop");
}

/// Kill a `restore --clean` over an existing PostgreSQL database holding
/// another backup: afterwards it holds exactly the old content or exactly
/// the new, never a mix.
pub(crate) async fn pg_clean(w: &mut World) {
    let name = Op::RestorePgClean.name();
    let (store_a, old) = pick_pg_backup(w, None);
    let old_digest = w.digests[&old].clone();
    let (store, new) = pick_pg_backup(w, Some(&old_digest));
    let new_digest = w.digests[&new].clone();
    let typical = typical_restore(w, &Op::RestorePgCreate.name(), store, &new).await;
    w.figures.typical(&name, typical.as_millis());
    let target = w.unique("crash_rcl");
    let url = w.pg_url(&target);
    let spec_a = w.spec(store_a);
    w.ctl_ok(&[
        "restore", &old, "--store", &spec_a, "--pg", &url, "--create",
    ]);
    assert_eq!(w.content(&old_digest, &target).await, old_digest);
    let spec = w.spec(store);
    let outcome = kill_restore(
        w,
        typical,
        &["restore", &new, "--store", &spec, "--pg", &url, "--clean"],
    );
    let now = w.content(&new_digest, &target).await;
    assert!(
        now == old_digest || now == new_digest,
        "a killed restore --clean left {target} neither old nor new: {now:?}"
    );
    assert!(!outcome.success || now == new_digest);
    pg_staging_cleanup(w).await;
    let phase = if !outcome.killed {
        "finished first"
    } else if now == new_digest {
        "after commit"
    } else if streamed(&outcome) {
        "mid-stream"
    } else {
        "before writing"
    };
    w.figures.record(&name, &outcome, phase);
    // The next restore succeeds.
    w.ctl_ok(&["restore", &new, "--store", &spec, "--pg", &url, "--clean"]);
    assert_eq!(w.content(&new_digest, &target).await, new_digest);
    w.figures.restores_compared += 1;
    w.pg.drop_database(&target).await.expect("drop");
}

/// Kill a MongoDB restore into a new database: afterwards the target is
/// untouched (no collection) or fully restored, or, when the kill landed
/// while collections were being moved into it, each collection there is
/// the backup's; the staging database is found and dropped.
pub(crate) async fn mongo_new(w: &mut World) {
    let name = Op::RestoreMongoNew.name();
    let (backup, _) = mongo_backups(w).await;
    let digest = w.digests[&backup].clone();
    let typical = typical_restore(w, &name, StoreId::Mongo, &backup).await;
    let target = w.unique("crash_mn");
    let spec = w.spec(StoreId::Mongo);
    let uri = w.mongo_uri("admin");
    let outcome = kill_restore(
        w,
        typical,
        &[
            "restore",
            &backup,
            "--store",
            &spec,
            "--mongo",
            &uri,
            "--target-db",
            &target,
        ],
    );
    let empty = Digest::Mongo(Default::default());
    let kill = MongoKill {
        name: &name,
        backup: &backup,
        target: &target,
        old: &empty,
        new: &digest,
    };
    settle_mongo_kill(w, kill, outcome).await;
}

/// Kill a MongoDB `--clean` restore over a database holding another
/// backup: afterwards it is exactly old or exactly new, or (a kill while
/// collections were being moved) every collection is old or new.
pub(crate) async fn mongo_clean(w: &mut World) {
    let name = Op::RestoreMongoClean.name();
    let (new, old) = mongo_backups(w).await;
    let (old_digest, new_digest) = (w.digests[&old].clone(), w.digests[&new].clone());
    let typical = typical_restore(w, &Op::RestoreMongoNew.name(), StoreId::Mongo, &new).await;
    w.figures.typical(&name, typical.as_millis());
    let target = w.unique("crash_mcl");
    let spec = w.spec(StoreId::Mongo);
    let uri = w.mongo_uri("admin");
    w.ctl_ok(&[
        "restore",
        &old,
        "--store",
        &spec,
        "--mongo",
        &uri,
        "--target-db",
        &target,
    ]);
    assert_eq!(w.content(&old_digest, &target).await, old_digest);
    let outcome = kill_restore(
        w,
        typical,
        &[
            "restore",
            &new,
            "--store",
            &spec,
            "--mongo",
            &uri,
            "--target-db",
            &target,
            "--clean",
        ],
    );
    let kill = MongoKill {
        name: &name,
        backup: &new,
        target: &target,
        old: &old_digest,
        new: &new_digest,
    };
    settle_mongo_kill(w, kill, outcome).await;
}

/// A killed MongoDB restore: `backup` (content `new`) into `target`, which
/// held `old` before.
struct MongoKill<'a> {
    name: &'a str,
    backup: &'a str,
    target: &'a str,
    old: &'a Digest,
    new: &'a Digest,
}

/// After a killed MongoDB restore: the target is old, new or (a kill while
/// collections were being moved) every collection old or new; a restore
/// that reported success left it new; its staging databases are found and
/// dropped; the phase is recorded. Then the same restore with `--clean`
/// (a mid-commit kill left some collections in the target) succeeds and
/// the target is dropped.
async fn settle_mongo_kill(w: &mut World, kill: MongoKill<'_>, outcome: Outcome) {
    let now = w.content(kill.new, kill.target).await;
    let mixed = check_mongo_target(kill.target, &now, kill.old, kill.new);
    assert!(!outcome.success || now == *kill.new);
    let staged = mongo_staging_cleanup(w).await;
    w.figures.mongo_mid_commit += usize::from(mixed);
    let phase = if !outcome.killed {
        "finished first"
    } else if now == *kill.new {
        "after commit"
    } else if mixed {
        "mid-commit"
    } else if staged.1 > 0 {
        "mid-stream"
    } else if staged.0 > 0 {
        "staging created, no data yet"
    } else {
        "before writing"
    };
    w.figures.record(kill.name, &outcome, phase);
    let spec = w.spec(StoreId::Mongo);
    let uri = w.mongo_uri("admin");
    w.ctl_ok(&[
        "restore",
        kill.backup,
        "--store",
        &spec,
        "--mongo",
        &uri,
        "--target-db",
        kill.target,
        "--clean",
    ]);
    assert_eq!(w.content(kill.new, kill.target).await, *kill.new);
    w.figures.restores_compared += 1;
    w.mongo.drop_database(kill.target).await.expect("drop");
}

/// A listed PostgreSQL backup of the fs or S3 store, at random; with
/// `unlike`, one whose content differs from it.
fn pick_pg_backup(w: &mut World, unlike: Option<&Digest>) -> (StoreId, String) {
    let mut candidates = Vec::new();
    for store in [StoreId::Fs, StoreId::S3] {
        for id in w.ids(store) {
            let d = &w.digests[&id];
            if matches!(d, Digest::Pg(_)) && unlike.is_none_or(|u| u != d) {
                candidates.push((store, id));
            }
        }
    }
    candidates
        .choose(&mut w.rng)
        .cloned()
        .expect("the backup rounds left PostgreSQL backups to restore")
}

/// Two MongoDB backups with different content (taken on first use):
/// (newer, older).
async fn mongo_backups(w: &mut World) -> (String, String) {
    let spec = w.spec(StoreId::Mongo);
    while w.ids(StoreId::Mongo).len() < 2 {
        let digest = w.touch_mongo_source().await;
        let uri = w.mongo_uri(&w.mongo_source.clone());
        let out = w.ctl_ok(&["backup", "--mongo", &uri, "--store", &spec, "--json"]);
        w.record(&out, digest);
    }
    let listed = w.list(StoreId::Mongo);
    let id = |i: usize| listed[i]["id"].as_str().expect("id").to_string();
    let (newer, older) = (id(0), id(1));
    assert_ne!(w.digests[&newer], w.digests[&older]);
    (newer, older)
}

/// How long a restore of `backup` takes, measured once per run (`key`)
/// by restoring it unkilled into a new database and comparing.
async fn typical_restore(w: &mut World, key: &str, store: StoreId, backup: &str) -> Duration {
    if let Some(t) = w.typical.get(key) {
        return *t;
    }
    let digest = w.digests[backup].clone();
    let spec = w.spec(store);
    let target = w.unique("crash_measure");
    let args: Vec<String> = match digest {
        Digest::Pg(_) => [
            "restore",
            backup,
            "--store",
            &spec,
            "--pg",
            &w.pg_url(&target),
            "--create",
        ]
        .map(str::to_string)
        .to_vec(),
        Digest::Mongo(_) => [
            "restore",
            backup,
            "--store",
            &spec,
            "--mongo",
            &w.mongo_uri("admin"),
            "--target-db",
            &target,
        ]
        .map(str::to_string)
        .to_vec(),
    };
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let dir = w.victim_dir();
    let (_, took) = victim::run_timed(w.command(&refs), &dir);
    assert_eq!(w.content(&digest, &target).await, digest);
    w.figures.restores_compared += 1;
    match digest {
        Digest::Pg(_) => w.pg.drop_database(&target).await.expect("drop"),
        Digest::Mongo(_) => w.mongo.drop_database(&target).await.expect("drop"),
    }
    w.typical.insert(key.to_string(), took);
    w.figures.typical(key, took.as_millis());
    w.lap("measure restore");
    took
}

/// Runs a restore as the victim and kills it after a random delay.
fn kill_restore(w: &mut World, typical: Duration, args: &[&str]) -> Outcome {
    w.kill_run("restore", typical, args)
}

/// Whether a PostgreSQL restore was feeding `pg_restore`.
fn streamed(outcome: &Outcome) -> bool {
    outcome.io.is_some_and(|io| io.written >= STREAMING_BYTES)
}

/// Every database named like a staging database is marked as one (so
/// `RestoreTarget::leftovers` sees it), and `remove_leftovers` drops them all; returns
/// how many there were.
async fn pg_staging_cleanup(w: &mut World) -> usize {
    let admin = PostgresTarget::new(w.pg.connection("postgres")).with_tools(w.pg.tools());
    let found: BTreeSet<String> = admin
        .leftovers()
        .await
        .expect("leftovers")
        .into_iter()
        .map(|s| s.name)
        .collect();
    let named: BTreeSet<String> =
        w.pg.psql(
            "postgres",
            "SELECT datname FROM pg_database WHERE datname ~ '__restore_[0-9a-f]{8}$'",
        )
        .await
        .expect("list databases")
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    assert_eq!(
        named, found,
        "staging databases that leftovers() does not see (remove_leftovers never drops them)"
    );
    let report = admin
        .remove_leftovers(Duration::ZERO)
        .await
        .expect("remove_leftovers");
    let dropped: BTreeSet<String> = report.removed.iter().map(|s| s.name.clone()).collect();
    assert_eq!(dropped, found, "remove_leftovers left some: {report:?}");
    assert!(
        admin.leftovers().await.expect("leftovers").is_empty(),
        "staging databases survive remove_leftovers"
    );
    w.figures.pg_staging_dropped += found.len();
    found.len()
}

/// The MongoDB counterpart of [`pg_staging_cleanup`]; returns how many
/// staging databases there were and how many documents they held.
async fn mongo_staging_cleanup(w: &mut World) -> (usize, u64) {
    let admin = MongoTarget::new(w.mongo.connection("admin"));
    let found: BTreeSet<String> = admin
        .leftovers()
        .await
        .expect("leftovers")
        .into_iter()
        .map(|s| s.name)
        .collect();
    let client = w.mongo.client().await.expect("client");
    let mut documents = 0;
    for name in &found {
        let db = client.database(name);
        for collection in db.list_collection_names().await.expect("collections") {
            if !collection.starts_with("_backup_mongo") && !collection.starts_with("system.") {
                documents += db
                    .collection::<bson::Document>(&collection)
                    .estimated_document_count()
                    .await
                    .unwrap_or(0);
            }
        }
    }
    let named: BTreeSet<String> = client
        .list_database_names()
        .await
        .expect("list databases")
        .into_iter()
        .filter(|n| n.contains("__restore_"))
        .collect();
    assert_eq!(
        named, found,
        "staging databases that leftovers() does not see (remove_leftovers never drops them)"
    );
    let report = admin
        .remove_leftovers(Duration::ZERO)
        .await
        .expect("remove_leftovers");
    let dropped: BTreeSet<String> = report.removed.iter().map(|s| s.name.clone()).collect();
    assert_eq!(dropped, found, "remove_leftovers left some: {report:?}");
    assert!(
        admin.leftovers().await.expect("leftovers").is_empty(),
        "staging databases survive remove_leftovers"
    );
    w.figures.mongo_staging_dropped += found.len();
    (found.len(), documents)
}

/// Checks a MongoDB target after a killed restore: every collection in it
/// is as before (`old`) or as in the backup (`new`). Returns whether it is
/// a mix of both (a kill while collections were being moved in).
fn check_mongo_target(target: &str, now: &Digest, old: &Digest, new: &Digest) -> bool {
    let (Digest::Mongo(now_c), Digest::Mongo(old_c), Digest::Mongo(new_c)) = (now, old, new) else {
        panic!("MongoDB digests expected");
    };
    for (name, value) in now_c {
        assert!(
            old_c.get(name) == Some(value) || new_c.get(name) == Some(value),
            "a killed restore left collection {target}.{name} neither as before nor as in the backup"
        );
    }
    for name in old_c.keys() {
        assert!(
            now_c.contains_key(name),
            "a killed restore removed {target}.{name} without replacing it"
        );
    }
    now != old && now != new
}
