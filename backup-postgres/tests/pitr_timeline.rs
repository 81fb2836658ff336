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
//! PITR window has a range per timeline, timeline 2's from its promotion.
//! An older base backup deleted, [`prune_wal`] removes only timeline 1's
//! WAL before the kept backup, which still restores to the end of both
//! timelines from the pruned store.

mod pitr_support;

use std::path::PathBuf;
use std::sync::Arc;

use backup_core::memory::InMemoryStore;
use backup_core::{BackupRequest, Engine};
use backup_postgres::{
    BaseBackupInfo, BaseBackupSource, RecoveryTarget, RecoveryTimeline, TestServer, WalArchive,
    pitr_window, prune_wal,
};
use pitr_support::{
    Recover, Restorer, archiving_cluster, assert_untouched, fingerprint, psql, push_dir, test_root,
};

/// The newest complete segment of a timeline (`prefix`, its 8 hex
/// digits) in a directory archive.
fn newest_segment(archive: &std::path::Path, prefix: &str) -> String {
    std::fs::read_dir(archive)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.len() == 24 && n.starts_with(prefix))
        .max()
        .unwrap_or_else(|| panic!("no segment of {prefix} in {}", archive.display()))
}

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
    let base_backup = || async {
        engine
            .backup(
                &BaseBackupSource::new(server.connection(&db)).with_tools(server.tools()),
                &BackupRequest::new("cluster"),
            )
            .await
            .unwrap()
    };
    let info = |m: &backup_core::manifest::Manifest| BaseBackupInfo::from_manifest(m).unwrap();
    // An older base backup, deleted before the WAL is pruned below.
    let older = base_backup().await;
    cluster.bench(&db, 20).await;
    cluster.switch().await;
    let manifest = base_backup().await;
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
    let before_promotion = chrono::Utc::now();
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
    // Timeline 1's WAL into the store now (it is complete: the original
    // is idle), then a base backup of the promoted copy, on timeline 2.
    let wal = WalArchive::new(engine.clone(), &manifest.tenant, &manifest.source_id).unwrap();
    for entry in std::fs::read_dir(&archive).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("00000001") {
            wal.push(&entry.path())
                .await
                .unwrap()
                .into_result()
                .unwrap();
        }
    }
    let tl2_server = tl2.server.as_ref().unwrap();
    let on_tl2 = backup_postgres::PgConnection::new(
        tl2_server.socket_dir.to_str().unwrap(),
        tl2_server.port,
        "postgres",
        &db,
    );
    let newer = engine
        .backup(
            &BaseBackupSource::new(on_tl2).with_tools(server.tools()),
            &BackupRequest::new("cluster"),
        )
        .await
        .unwrap();
    assert_eq!(info(&newer).timeline, 2);
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
    // A clean shutdown of an archiving server switches the segment when
    // it holds records (PostgreSQL logs running transactions in the
    // background every 15 s), so timeline 2 ends with `last2` or the one
    // after it; restores and windows must reach whichever is archived.
    let end2 = newest_segment(&archive, "00000002");
    assert!(
        end2 == last2 || end2 == pitr_support::next_segment(&last2, 1),
        "timeline 2 ends at {end2}, switched at {last2}"
    );
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
    assert_eq!(report.segments.1, end2);
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
    push_dir(&wal, &archive).await;
    // The older base backup deleted, the WAL pruned per timeline: only
    // timeline 1's segments before the kept backup's first go; timeline
    // 2 (reached from the kept backup at its switch point) and the
    // history file stay.
    let (tenant, source) = (&manifest.tenant, &manifest.source_id);
    let (older_first, kept_first) = (
        info(&older).wal_first_segment,
        info(&manifest).wal_first_segment,
    );
    assert!(older_first < kept_first, "{older_first} {kept_first}");
    let tl2_before = wal.list(2).await.unwrap();
    engine.catalog().delete(older.backup_ref()).await.unwrap();
    let pruned = prune_wal(&engine, &wal, tenant, source, None, false)
        .await
        .unwrap();
    assert!(
        pruned.removed.contains(&older_first),
        "{older_first}: {:?}",
        pruned.removed
    );
    assert!(
        pruned
            .removed
            .iter()
            .all(|n| n.starts_with("00000001") && n.as_str() < kept_first.as_str()),
        "only timeline 1 before {kept_first}: {:?}",
        pruned.removed
    );
    assert!(wal.list(1).await.unwrap().contains(&kept_first));
    assert_eq!(wal.list(2).await.unwrap(), tl2_before, "timeline 2 kept");
    assert!(tl2_before.contains(&"00000002.history".to_string()));
    // Keeping only the newer base backup (on timeline 2) would remove
    // timeline 2's segments before its first, and timeline 1's, which
    // it does not reach and which were archived before it started; not
    // the history file.
    let newer_first = info(&newer).wal_first_segment;
    let dry = prune_wal(
        &engine,
        &wal,
        tenant,
        source,
        Some(std::slice::from_ref(&newer.id)),
        true,
    )
    .await
    .unwrap();
    let tl1_left = wal.list(1).await.unwrap();
    assert!(
        tl1_left.iter().all(|n| dry.removed.contains(n)),
        "all of timeline 1 {tl1_left:?}: {:?}",
        dry.removed
    );
    assert!(
        dry.removed.iter().any(|n| n.starts_with("00000002"))
            && dry
                .removed
                .iter()
                .filter(|n| n.starts_with("00000002"))
                .all(|n| n.as_str() < newer_first.as_str() && !n.ends_with(".history")),
        "timeline 2 before {newer_first}: {:?}",
        dry.removed
    );
    assert_eq!(
        wal.list(1).await.unwrap(),
        tl1_left,
        "a dry run deletes nothing"
    );
    let mut window = pitr_window(&engine, &wal, &manifest.tenant, &manifest.source_id)
        .await
        .unwrap();
    let newer_ranges: Vec<_> = window
        .ranges
        .iter()
        .filter(|r| r.backup_id == newer.id)
        .map(|r| (r.timeline, r.to_segment.clone()))
        .collect();
    assert_eq!(newer_ranges, [(2, Some(end2.clone()))]);
    window.ranges.retain(|r| r.backup_id == manifest.id);
    let per_timeline: Vec<_> = window
        .ranges
        .iter()
        .map(|r| (r.timeline, r.to_segment.clone(), r.gap_at.clone()))
        .collect();
    assert_eq!(
        per_timeline,
        [(1, Some(last.clone()), None), (2, Some(end2.clone()), None)]
    );
    assert!(window.ranges[1].from_lsn > window.ranges[0].from_lsn);
    // Timeline 2 begins with the promotion, not with the base backup.
    assert_eq!(window.ranges[0].from_time, manifest.finished_at);
    let tl2_range = &window.ranges[1];
    assert!(
        tl2_range.from_time >= before_promotion
            && tl2_range.to_time.is_some_and(|t| tl2_range.from_time <= t),
        "timeline 2 from {} (promoted after {before_promotion}, to {:?})",
        tl2_range.from_time,
        tl2_range.to_time
    );
    assert_eq!(window.latest().unwrap().timeline, 2);
    let from_store = Recover {
        source: Arc::new(wal.clone()),
        target: RecoveryTarget::Latest,
        timeline: RecoveryTimeline::Latest,
        keep_archiving: false,
    };
    let (content, _, report) = restorer
        .content_with("store", from_store, &db, &at_fork)
        .await;
    assert_eq!(content, tl2_end, "latest from the store");
    assert_eq!(report.target_timeline, 2);
    // ... and timeline 1 to its end, from the pruned store too.
    let tl1_from_store = Recover {
        source: Arc::new(wal.clone()),
        target: RecoveryTarget::Latest,
        timeline: RecoveryTimeline::Current,
        keep_archiving: false,
    };
    let (content, _, report) = restorer
        .content_with("store-current", tl1_from_store, &db, &at_fork)
        .await;
    assert_eq!(content, tl1_end, "timeline 1's end from the pruned store");
    assert_eq!(report.target_timeline, 1);

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
