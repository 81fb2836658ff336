//! Point-in-time restore across timelines, on PostgreSQL 15 (Debian) and
//! 18 (from `BACKUP_TEST_PG18_BIN`; skipped with a printed reason
//! without it).
//!
//! A base backup on timeline 1, transactions, a restore point `fork`,
//! more transactions (timeline 1's end). The base backup restored to
//! `fork` and promoted is timeline 2; it keeps the original's
//! `archive_command`, so it archives its segments and `00000002.history`
//! into the same archive; transactions, a restore point `tl2`, more
//! transactions (timeline 2's end). Restoring the base backup again:
//! `latest` ends with timeline 2's content, `current` with timeline 1's,
//! a restore point on timeline 2 is reached, and a timeline the archive
//! has no history for is refused before anything is written, and a gap
//! on timeline 2 is named. The same archive pushed into a store
//! ([`WalArchive`], as `wal-push` does) restores the same way, and its
//! PITR window has a range per timeline.

mod pitr_support;

use std::path::PathBuf;
use std::sync::Arc;

use backup_core::memory::InMemoryStore;
use backup_core::{BackupRequest, Engine};
use backup_postgres::{
    BaseBackupSource, RecoveryTarget, RecoveryTimeline, TestServer, WalArchive, pitr_window,
};
use pitr_support::{
    Recover, Restorer, archiving_cluster, assert_untouched, fingerprint, psql, push_dir, test_root,
};

/// Changes some accounts of `db` on a recovered server.
const UPDATE: &str = "UPDATE pgbench_accounts SET abalance = abalance + 7 WHERE aid % 13 = 0";

async fn scenario(bin: PathBuf) {
    let root = test_root("pitr-tl-");
    let archive = root.join("archive");
    let cluster = archiving_cluster(bin, &archive).await;
    let server = &cluster.server;
    let db = server.create_database("bench").await.unwrap();
    server.pgbench_init(&db, 1).await.unwrap();
    let engine = Arc::new(Engine::new(Arc::new(InMemoryStore::new())));
    let manifest = engine
        .backup(
            &BaseBackupSource::new(server.connection(&db)).with_tools(server.tools()),
            &BackupRequest::new("cluster"),
        )
        .await
        .unwrap();
    cluster.bench(&db, 100).await;
    cluster.switch().await;
    let at_fork = server.fingerprint(&db).await.unwrap();
    server
        .psql("postgres", "SELECT pg_create_restore_point('fork')")
        .await
        .unwrap();
    cluster.bench(&db, 100).await;
    let tl1_end = server.fingerprint(&db).await.unwrap();
    let last = cluster.switch().await;
    cluster.wait_archived(&last).await;
    assert_ne!(at_fork, tl1_end);

    let restorer = Restorer {
        engine: &engine,
        manifest: &manifest,
        cluster: &cluster,
        root: &root,
    };
    // Timeline 2: the base backup to `fork`, promoted, archiving on.
    let mut fork = Recover::from_dir(&archive, RecoveryTarget::name("fork").unwrap());
    fork.keep_archiving = true;
    let (_, result) = restorer.restore_with("tl2", fork).await;
    let mut tl2 = result.unwrap();
    assert_eq!((tl2.timeline, tl2.target_timeline), (1, 1));
    let bin = &cluster.bin;
    let sql = |sql: &str| psql(bin, &tl2, &db, sql).unwrap();
    assert_eq!(
        sql("SELECT timeline_id FROM pg_control_checkpoint()"),
        "2",
        "the restored copy was promoted to timeline 2"
    );
    assert_eq!(fingerprint(bin, &tl2, &db, &at_fork).unwrap(), at_fork);
    sql(UPDATE);
    sql("SELECT pg_switch_wal()");
    let at_tl2 = fingerprint(bin, &tl2, &db, &at_fork).unwrap();
    sql("SELECT pg_create_restore_point('tl2')");
    sql(UPDATE);
    sql(UPDATE);
    let tl2_end = fingerprint(bin, &tl2, &db, &at_fork).unwrap();
    let last2 = sql("SELECT pg_walfile_name(pg_switch_wal())");
    assert!(last2.starts_with("00000002"), "{last2}");
    let mut archived = false;
    for _ in 0..1200 {
        let done = sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver");
        if done >= last2 && archive.join("00000002.history").is_file() {
            archived = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(archived, "timeline 2 up to {last2} was not archived");
    tl2.server.as_mut().unwrap().stop().await.unwrap();
    for other in [&at_fork, &tl1_end, &at_tl2] {
        assert_ne!(other, &tl2_end);
    }

    // The old base backup follows timeline 2 by default...
    let latest = Recover::from_dir(&archive, RecoveryTarget::Latest);
    let (content, amcheck, report) = restorer.content_with("latest", latest, &db, &at_fork).await;
    assert_eq!(content, tl2_end, "latest ends with timeline 2's content");
    amcheck.unwrap();
    assert_eq!((report.timeline, report.target_timeline), (1, 2));
    assert!(report.segments.0.starts_with("00000001"), "{report:?}");
    assert_eq!(report.segments.1, last2);
    assert!(
        report
            .history_files
            .contains(&"00000002.history".to_string())
    );
    // ... and so does a restore point made there.
    let to_tl2 = Recover::from_dir(&archive, RecoveryTarget::name("tl2").unwrap());
    let (content, _, report) = restorer
        .content_with("tl2-point", to_tl2, &db, &at_fork)
        .await;
    assert_eq!(content, at_tl2, "the restore point on timeline 2");
    assert_eq!(report.target_timeline, 2);
    // `current` stays on timeline 1 to its end.
    let current =
        Recover::from_dir(&archive, RecoveryTarget::Latest).timeline(RecoveryTimeline::Current);
    let (content, _, report) = restorer
        .content_with("current", current, &db, &at_fork)
        .await;
    assert_eq!(content, tl1_end, "current ends with timeline 1's content");
    assert_eq!(report.target_timeline, 1);
    assert_eq!(report.segments.1, last);
    // The same by number.
    let two = Recover::from_dir(&archive, RecoveryTarget::Latest).timeline(RecoveryTimeline::Id(2));
    let (content, _, _) = restorer.content_with("by-number", two, &db, &at_fork).await;
    assert_eq!(content, tl2_end);
    // A timeline without a history file: refused, nothing written.
    let three =
        Recover::from_dir(&archive, RecoveryTarget::Latest).timeline(RecoveryTimeline::Id(3));
    let (dir, result) = restorer.restore_with("tl3", three).await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("00000003.history") && err.contains("nothing was written"),
        "{err}"
    );
    assert_untouched(&dir);
    // A gap on timeline 2 (its first segment after the switch missing):
    // refused, naming it.
    let first2 = std::fs::read_dir(&archive)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.len() == 24 && n.starts_with("00000002"))
        .min()
        .unwrap();
    assert!(first2 < last2, "{first2} {last2}");
    let gap = root.join("archive-gap");
    pitr_support::copy_dir(&archive, &gap);
    let next = pitr_support::next_segment(&first2, 1);
    std::fs::remove_file(gap.join(&next)).unwrap();
    let (dir, result) = restorer
        .restore_with("tl2-gap", Recover::from_dir(&gap, RecoveryTarget::Latest))
        .await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains(&next) && err.contains("nothing was written"),
        "{err}"
    );
    assert_untouched(&dir);

    // The archive in a store: every file pushed (no `.partial`).
    let wal = WalArchive::new(engine.clone(), &manifest.tenant, &manifest.source_id).unwrap();
    push_dir(&wal, &archive).await;
    let window = pitr_window(&engine, &wal, &manifest.tenant, &manifest.source_id)
        .await
        .unwrap();
    let per_timeline: Vec<_> = window
        .ranges
        .iter()
        .map(|r| (r.timeline, r.to_segment.clone(), r.gap_at.clone()))
        .collect();
    assert_eq!(
        per_timeline,
        [
            (1, Some(last.clone()), None),
            (2, Some(last2.clone()), None)
        ]
    );
    assert!(window.ranges[1].from_lsn > window.ranges[0].from_lsn);
    assert_eq!(window.latest().unwrap().timeline, 2);
    let from_store = Recover {
        source: Arc::new(wal),
        target: RecoveryTarget::Latest,
        timeline: RecoveryTimeline::Latest,
        keep_archiving: false,
    };
    let (content, _, report) = restorer
        .content_with("store", from_store, &db, &at_fork)
        .await;
    assert_eq!(content, tl2_end, "latest from the store");
    assert_eq!(report.target_timeline, 2);

    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timelines_on_postgres_15() {
    scenario(TestServer::bin_of_major(15).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timelines_on_postgres_18() {
    match TestServer::bin_of_major(18).await {
        Ok(bin) => scenario(bin).await,
        Err(e) => eprintln!("skipped: {e}"),
    }
}
