//! gc, prune and sweep rounds, on a store of many small backups of the
//! small source, with something to do: deleted backups' chunks, backups
//! beyond the policy, and leftovers.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use rand::Rng;
use rand::seq::IndexedRandom;

use crate::support::files;

use super::store::{Object, classify};
use super::victim;
use super::world::World;
use super::{Op, StoreId, TIME_TRAVEL};

/// Backups the maintenance store holds before each round.
const STOCK: usize = 8;

/// Kill `gc --grace 0s` after most backups were deleted.
pub(crate) async fn gc(w: &mut World) {
    stock(w).await;
    let spec = w.spec(StoreId::Maint);
    for m in w.list(StoreId::Maint).iter().skip(3) {
        w.ctl_ok(&["delete", m["id"].as_str().expect("id"), "--store", &spec]);
    }
    kill_and_check(w, Op::Gc, &["gc", "--grace", "0s", "--json"]).await;
}

/// Kill `prune --keep-last 2` (sometimes collecting garbage too).
pub(crate) async fn prune(w: &mut World) {
    stock(w).await;
    let mut args = vec!["prune", "--keep-last", "2", "--include-manual", "--json"];
    if w.rng.random_bool(0.5) {
        args.extend(["--gc-grace", "0s"]);
    }
    kill_and_check(w, Op::Prune, &args).await;
}

/// Kill `sweep --grace 0s` over many leftovers: artifacts whose
/// manifest is gone (the state a crash between artifact and manifest
/// leaves) and old temporary files of killed uploads.
pub(crate) async fn sweep(w: &mut World) {
    stock(w).await;
    let listed = w.list(StoreId::Maint);
    let root = w.stores[&StoreId::Maint].root.clone();
    // Orphans: a few backups (never the newest) lose their manifest.
    let older: Vec<&serde_json::Value> = listed.iter().skip(1).collect();
    for m in older.choose_multiple(&mut w.rng, 5) {
        let artifact = PathBuf::from(m["artifact"].as_str().expect("artifact"));
        let dir = root.join(artifact.parent().expect("a month directory"));
        for entry in std::fs::read_dir(&dir).expect("month directory").flatten() {
            let rel = artifact.with_file_name(entry.file_name());
            if classify(&rel) == Object::Manifest(m["id"].as_str().expect("id").to_string()) {
                std::fs::remove_file(entry.path()).expect("remove a manifest");
            }
        }
    }
    // Temporary files of uploads killed with their process.
    for _ in 0..40 {
        let m = listed.choose(&mut w.rng).expect("backups");
        let artifact = root.join(m["artifact"].as_str().expect("artifact"));
        let name = artifact
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let temp = artifact.with_file_name(format!(".{name}.tmp-{:016x}", w.rng.random::<u64>()));
        let mut file = std::fs::File::create(&temp).expect("temporary file");
        let block: Vec<u8> = (0..64 * 1024).map(|_| w.rng.random()).collect();
        file.write_all(&block).expect("write");
    }
    files::backdate(&root, TIME_TRAVEL);
    kill_and_check(w, Op::Sweep, &["sweep", "--grace", "0s", "--json"]).await;
}

/// Fills the maintenance store up to [`STOCK`] backups (incremental,
/// every third one full), touching the small source before each.
async fn stock(w: &mut World) {
    let mut n = w.ids(StoreId::Maint).len();
    while n < STOCK {
        take_small_backup(w, n.is_multiple_of(3)).await;
        n += 1;
    }
    w.lap("stock");
}

/// One backup of the small source into the maintenance store; its id.
async fn take_small_backup(w: &mut World, full: bool) -> String {
    w.touch_small_source().await;
    let source = w.small_source.clone();
    let args = w.pg_backup_args(StoreId::Maint, &source, !full, false);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = w.ctl_ok(&args);
    let digest = w.small_digest.clone();
    w.record(&out, digest)
}

/// Measures `backupctl <args> --store <copy>` on a copy of the store, then
/// kills the same on the store itself after a random delay, classifies
/// where the kill landed, and checks every invariant.
async fn kill_and_check(w: &mut World, op: Op, args: &[&str]) {
    let name = op.name();
    let root = w.stores[&StoreId::Maint].root.clone();
    let spec = w.spec(StoreId::Maint);
    let before = w.stores[&StoreId::Maint].files();

    // The typical duration, on an identical copy.
    let copy = w.scratch_path("maint-copy");
    files::copy_tree(&root, &copy);
    let copy_spec = copy.to_str().expect("UTF-8").to_string();
    let mut measured: Vec<&str> = args.to_vec();
    measured.extend(["--store", &copy_spec]);
    let dir = w.victim_dir();
    let (_, typical) = victim::run_timed(w.command(&measured), &dir);
    let complete: BTreeSet<PathBuf> = files::walk(&copy).into_iter().collect();
    std::fs::remove_dir_all(&copy).expect("remove the copy");
    w.figures.typical(&name, typical.as_millis());

    let mut killed_args: Vec<&str> = args.to_vec();
    killed_args.extend(["--store", &spec]);
    // Half the kills after a delay over the whole run; the other half
    // after a delay over half of it, counted from the first change to the
    // store (the start-up of these short commands takes most of their
    // time, so kills timed from their start rarely land mid-way).
    let mode = w.pick_mode();
    let dir = w.victim_dir();
    let ports = w.server_ports();
    let outcome = if w.rng.random_bool(0.5) {
        let delay = w.pick_delay(typical);
        victim::run_and_kill(w.command(&killed_args), &dir, delay, mode, &ports)
    } else {
        let delay = w.pick_delay(typical / 2);
        let cmd = w.command(&killed_args);
        let store = &w.stores[&StoreId::Maint];
        let mut changed = || store.files() != before;
        victim::run_and_kill_after(cmd, &dir, &mut changed, delay, mode, &ports)
    };
    w.victim_ended(&name, &outcome);
    let after = w.stores[&StoreId::Maint].files();
    let removed = before.difference(&after).count();
    let added = after.difference(&before).count();
    let full_removed = before.difference(&complete).count();
    let full_added = complete.difference(&before).count();
    let phase = if !outcome.killed {
        "finished first"
    } else if removed == 0 && added == 0 {
        "before any change"
    } else if removed == full_removed && added == full_added {
        "after the work"
    } else {
        "mid-way"
    };
    eprintln!(
        "  {phase}: removed {removed} of {full_removed} files, added {added} of {full_added}"
    );
    w.figures.record(&name, &outcome, phase);
    w.count_leftovers(StoreId::Maint);

    // Invariants, then the next backup and restore.
    w.verify_all(StoreId::Maint);
    w.settle(StoreId::Maint);
    let listed = w.ids(StoreId::Maint);
    let sample: Vec<&String> = listed.iter().collect();
    let sample = (*sample.choose(&mut w.rng).expect("backups survive")).clone();
    w.restore_and_compare(StoreId::Maint, &sample).await;
    let full = w.rng.random_bool(0.5);
    let next = take_small_backup(w, full).await;
    w.restore_and_compare(StoreId::Maint, &next).await;
}
