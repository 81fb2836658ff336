//! Backup rounds: `backupctl backup --pg` into the fs store or S3, full or
//! incremental, plain or age-encrypted, killed at a random moment.

use std::time::Duration;

use super::StoreId;
use super::victim;
use super::world::World;

/// Bytes a victim must have read (through `read` calls: `pg_dump`'s
/// output pipe; its own start-up reads about 100 KiB) for a kill to count
/// as mid-stream.
const STREAMING_BYTES: u64 = 1 << 20;

/// One round: measure the kind once, kill one backup, check everything,
/// then take and restore a backup of the same kind.
pub(crate) async fn round(w: &mut World, store: StoreId, incremental: bool, encrypted: bool) {
    let name = super::Op::Backup {
        store,
        incremental,
        encrypted,
    }
    .name();
    let source = w.pg_source.clone();
    let args = w.pg_backup_args(store, &source, incremental, encrypted);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    // The typical duration: of the last unkilled backup of this kind, or
    // else of any kind into this store (every unkilled backup records
    // both), measured now on the first round of a store.
    let per_store = store_key(store);
    let typical = match w.typical.get(&name).or_else(|| w.typical.get(&per_store)) {
        Some(t) => *t,
        None => take_backup(w, store, &args).await.1,
    };
    w.figures.typical(&name, typical.as_millis());

    let before = w.ids(store);
    let digest = w.pg_digest.clone();
    let outcome = w.kill_run("backup", typical, &args);

    // A backup the victim committed before it died (or finished) is
    // listed: its content is the source's, which nobody wrote meanwhile.
    let after = w.ids(store);
    let new: Vec<String> = after.difference(&before).cloned().collect();
    assert!(
        before.is_subset(&after),
        "a killed backup removed listed backups: {before:?} -> {after:?}"
    );
    assert!(new.len() <= 1, "one backup listed more than one: {new:?}");
    if outcome.success {
        let printed = w.record(&outcome.stdout, digest.clone());
        assert_eq!(new, vec![printed], "the printed backup is the one listed");
    }
    for id in &new {
        w.digests.insert(id.clone(), digest.clone());
    }
    let left = w.count_leftovers(store);
    let dumping = outcome.io.is_some_and(|io| io.read >= STREAMING_BYTES);
    let phase = if !outcome.killed {
        "finished first"
    } else if !new.is_empty() {
        "after commit"
    } else if dumping {
        "mid-stream"
    } else if left > 0 {
        "marker written, no data yet"
    } else {
        "before writing"
    };
    w.figures.record(&name, &outcome, phase);

    // Invariants: everything listed verifies, a sweep after the grace
    // leaves only committed backups, the backup a kill let commit
    // restores to the source's content.
    w.verify_all(store);
    w.settle(store);
    for id in &new {
        w.restore_and_compare(store, id).await;
    }
    // The next backup and restore succeed.
    let (next, took) = take_backup(w, store, &args).await;
    w.typical.insert(name, took);
    w.restore_and_compare(store, &next).await;
    let keep = w.cfg.keep_backups;
    w.housekeep(store, keep);
}

/// The key of [`World::typical`] holding the duration of the last
/// unkilled backup of any kind into `store`.
fn store_key(store: StoreId) -> String {
    format!("backup into {store:?}")
}

/// Takes a backup to its end (after touching the source, so that it
/// differs from the previous one) and records its content; returns its
/// id and how long it took (also recorded as the store's typical backup
/// duration).
pub(crate) async fn take_backup(
    w: &mut World,
    store: StoreId,
    args: &[&str],
) -> (String, Duration) {
    w.touch_pg_source().await;
    let dir = w.victim_dir();
    let (stdout, took) = victim::run_timed(w.command(args), &dir);
    let digest = w.pg_digest.clone();
    let id = w.record(&stdout, digest);
    w.lap("backup");
    assert!(w.ids(store).contains(&id), "backup {id} is not listed");
    w.typical.insert(store_key(store), took);
    (id, took)
}
