//! WAL pruning after deleting old base backups keeps every remaining
//! backup restorable to its whole window (issue #14), on PostgreSQL 15
//! (Debian) and 18 (from `BACKUP_TEST_PG18_BIN`; skipped with a printed
//! reason without it).
//!
//! Three base backups with transactions between them, the cluster
//! archiving with `archive_command = cp` and every archived file pushed
//! into a store's [`WalArchive`] (as `wal-push` does). The oldest backup
//! is deleted and [`prune_wal`] run: it removes only segments before the
//! oldest kept backup's first (the archive listing says so), and each
//! remaining backup restores from the pruned archive to `latest` (the
//! final content) and to a time just after it was taken (the content
//! then).

mod pitr_support;

use std::path::PathBuf;
use std::sync::Arc;

use backup_core::memory::InMemoryStore;
use backup_core::{BackupRequest, Engine};
use backup_postgres::{
    BaseBackupInfo, BaseBackupSource, RecoveryTarget, RecoveryTimeline, TestServer, WalArchive,
    WalFileName, prune_wal,
};
use pitr_support::{Recover, Restorer, archiving_cluster, push_dir, test_root};

async fn scenario(bin: PathBuf) {
    let root = test_root("pitr-prune-");
    let archive = root.join("archive");
    let cluster = archiving_cluster(bin, &archive).await;
    let server = &cluster.server;
    let db = server.create_database("bench").await.unwrap();
    server.pgbench_init(&db, 1).await.unwrap();
    let engine = Arc::new(Engine::new(Arc::new(InMemoryStore::new())));
    // (manifest, content just after it, that time)
    let mut backups = Vec::new();
    for _ in 0..3 {
        cluster.bench(&db, 50).await;
        cluster.switch().await;
        let manifest = engine
            .backup(
                &BaseBackupSource::new(server.connection(&db)).with_tools(server.tools()),
                &BackupRequest::new("cluster"),
            )
            .await
            .unwrap();
        let content = server.fingerprint(&db).await.unwrap();
        let at = cluster.now().await;
        backups.push((manifest, content, at));
        cluster.bench(&db, 50).await;
        cluster.switch().await;
    }
    let last_content = server.fingerprint(&db).await.unwrap();
    let last = cluster.switch().await;
    cluster.wait_archived(&last).await;

    let (tenant, source) = (backups[0].0.tenant.clone(), backups[0].0.source_id.clone());
    let wal = WalArchive::new(engine.clone(), &tenant, &source).unwrap();
    push_dir(&wal, &archive).await;
    let before = wal.list(1).await.unwrap();

    let (oldest, _, _) = backups.remove(0);
    engine.catalog().delete(oldest.backup_ref()).await.unwrap();
    let report = prune_wal(&engine, &wal, &tenant, &source, None, false)
        .await
        .unwrap();
    let info = |m: &backup_core::manifest::Manifest| BaseBackupInfo::from_manifest(m).unwrap();
    let kept_first = info(&backups[0].0).wal_first_segment;
    let oldest_first = info(&oldest).wal_first_segment;
    assert!(!report.removed.is_empty(), "nothing pruned");
    assert!(
        report.removed.contains(&oldest_first),
        "{oldest_first} kept: {:?}",
        report.removed
    );
    let after = wal.list(1).await.unwrap();
    for name in &before {
        let segment = WalFileName::parse(name)
            .unwrap()
            .segment()
            .map(str::to_string);
        let needed = segment.is_none_or(|s| s >= kept_first);
        assert_eq!(
            after.contains(name),
            needed,
            "{name} (the oldest kept backup starts at {kept_first})"
        );
        assert_eq!(report.removed.contains(name), !needed, "{name}");
    }
    let size = info(&backups[0].0).wal_segment_size;
    assert!(
        wal.missing_between(&kept_first, &last, size)
            .await
            .unwrap()
            .is_empty()
    );

    for (i, (manifest, content, at)) in backups.iter().enumerate() {
        let restorer = Restorer {
            engine: &engine,
            manifest,
            cluster: &cluster,
            root: &root,
        };
        for (label, target, want) in [
            ("latest", RecoveryTarget::Latest, &last_content),
            ("after", at.clone(), content),
        ] {
            let how = Recover {
                source: Arc::new(wal.clone()),
                target,
                timeline: RecoveryTimeline::Latest,
                keep_archiving: false,
            };
            let label = format!("b{i}-{label}");
            let (got, _, report) = restorer.content_with(&label, how, &db, &last_content).await;
            assert_eq!(&got, want, "{label}");
            assert_eq!(report.segments.0, info(manifest).wal_first_segment);
        }
    }

    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_then_restore_on_postgres_15() {
    scenario(TestServer::bin_of_major(15).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_then_restore_on_postgres_18() {
    match TestServer::bin_of_major(18).await {
        Ok(bin) => scenario(bin).await,
        Err(e) => eprintln!("skipped: {e}"),
    }
}
