//! The PostgreSQL adapter against real servers: each test runs on
//! PostgreSQL 15 and 18 (`<test>::postgres_15`, `<test>::postgres_18`, see
//! `backup_postgres::each_major`), throwaway clusters started by the
//! tests or the servers named by `BACKUP_TEST_PG_URL` / `BACKUP_TEST_PG18_*`.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backup_core::prelude::*;
use backup_core::testing::{objects_besides_run_records, tamper_artifact};
use backup_core::{
    catalog::Catalog, key::Key, memory::InMemoryStore, pipeline::PipelineOptions,
    source::DumpOptions, store::GetResult, store::ObjectMeta, store::PutOptions, store::Upload,
};
use backup_postgres::{PgConnection, PgTools, PostgresSource, PostgresTarget, TestServer};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

async fn pgbench_db(server: &TestServer, prefix: &str, scale: u32) -> String {
    let db = server.create_database(prefix).await.unwrap();
    server.pgbench_init(&db, scale).await.unwrap();
    db
}

/// A logical source of `db` on `server`, with the tools of its version.
fn source(server: &TestServer, db: &str) -> PostgresSource {
    PostgresSource::new(server.connection(db)).with_tools(server.tools())
}

/// A restore target on `server` connected to `db`, with its tools.
fn target(server: &TestServer, db: &str) -> PostgresTarget {
    PostgresTarget::new(server.connection(db)).with_tools(server.tools())
}

fn engine(store: &Arc<InMemoryStore>) -> Engine {
    Engine::new(store.clone() as Arc<dyn Store>)
}

/// Objects other than run records (which note failures on purpose).
async fn object_count(store: &InMemoryStore) -> usize {
    objects_besides_run_records(store).await.len()
}

backup_postgres::each_major! {
    async fn pgbench_backup_restores_equal_into_a_new_database(server) {
        let source_db = pgbench_db(server, "e2e_src", 5).await;
        let store = Arc::new(InMemoryStore::new());
        let engine = engine(&store);
        let source = source(server, &source_db);
        let manifest = engine
            .backup(&source, &BackupRequest::new("pgbench").created_by("test"))
            .await
            .unwrap();
        assert_eq!(manifest.engine, "postgres");
        assert_eq!(manifest.format, "pgdump");
        assert!(
            manifest
                .versions
                .tool
                .as_deref()
                .unwrap()
                .contains("pg_dump")
        );
        assert!(manifest.versions.server.is_some());
        assert!(manifest.raw.size > 50_000_000, "raw {}", manifest.raw.size);
        assert!(manifest.stored.size < manifest.raw.size / 3);

        engine.verify(&manifest.id).await.unwrap();

        let target_db = format!("{source_db}_restored");
        let target = target(server, "postgres");
        let report = engine
            .restore(
                &manifest.id,
                &target,
                &RestoreOptions::into_database(&target_db).create(true),
            )
            .await
            .unwrap();
        assert_eq!(report.database, target_db);

        let before = server.fingerprint(&source_db).await.unwrap();
        let after = server.fingerprint(&target_db).await.unwrap();
        assert_eq!(before.len(), 4, "{before:?}");
        assert_eq!(
            before.iter().find(|t| t.0 == "pgbench_accounts").unwrap().1,
            500_000
        );
        assert_eq!(before, after);

        // Restoring again over the same database needs --clean.
        engine
            .restore(
                &manifest.id,
                &target,
                &RestoreOptions::into_database(&target_db).clean(true),
            )
            .await
            .unwrap();
        assert_eq!(server.fingerprint(&target_db).await.unwrap(), before);

        server.drop_database(&source_db).await.unwrap();
        server.drop_database(&target_db).await.unwrap();
    }
}

backup_postgres::each_major! {
    async fn corrupt_or_truncated_artifacts_change_nothing_in_the_target(server) {
        let source_db = pgbench_db(server, "corrupt_src", 1).await;
        type Damage = fn(&mut Vec<u8>);
        let damages: [(&str, Damage); 3] = [
            // Near the end: pg_restore has already received most of the dump
            // and applied it inside its transaction when the mismatch shows.
            ("flipped byte near the end", |b| {
                let i = b.len() - 2000;
                b[i] ^= 0x10
            }),
            ("flipped byte early", |b| b[5000] ^= 0x01),
            ("truncated", |b| b.truncate(b.len() * 3 / 4)),
        ];
        for compression in ["none", "zstd:3"] {
            for (what, damage) in damages {
                let store = Arc::new(InMemoryStore::new());
                let engine = engine(&store)
                    .with_compressor(Arc::new(compression.parse::<Compression>().unwrap()));
                let m = engine
                    .backup(
                        &source(server, &source_db),
                        &BackupRequest::new("src"),
                    )
                    .await
                    .unwrap();
                tamper_artifact(&*store, &m, damage).await;
                // The target exists and holds a marker table.
                let target_db = server
                    .create_database_with(
                        "corrupt_dst",
                        "CREATE TABLE marker(x int); INSERT INTO marker VALUES (42)",
                    )
                    .await
                    .unwrap();
                let before = server.fingerprint(&target_db).await.unwrap();
                let err = engine
                    .restore(
                        &m.id,
                        &target(server, &target_db),
                        &RestoreOptions::default(),
                    )
                    .await
                    .unwrap_err();
                assert!(
                    matches!(err, Error::Integrity { .. }),
                    "{compression}, {what}: {err}"
                );
                assert_eq!(
                    server.fingerprint(&target_db).await.unwrap(),
                    before,
                    "{compression}, {what}: the target changed"
                );
                let err = engine.verify(&m.id).await.unwrap_err();
                assert!(matches!(err, Error::Integrity { .. }), "{err}");
                server.drop_database(&target_db).await.unwrap();
            }
        }
        // A database created for a failed restore is dropped again.
        let store = Arc::new(InMemoryStore::new());
        let engine = engine(&store);
        let m = engine
            .backup(
                &source(server, &source_db),
                &BackupRequest::new("src"),
            )
            .await
            .unwrap();
        tamper_artifact(&*store, &m, |b| {
            let i = b.len() - 100;
            b[i] ^= 0xff
        })
        .await;
        let fresh = format!("{source_db}_never");
        engine
            .restore(
                &m.id,
                &target(server, "postgres"),
                &RestoreOptions::into_database(&fresh).create(true),
            )
            .await
            .unwrap_err();
        assert!(
            !server.database_exists(&fresh).await.unwrap(),
            "the database created for the failed restore remains"
        );
        server.drop_database(&source_db).await.unwrap();
    }
}

/// A store wrapper that slows uploads down, so a dump is still running
/// when the test interferes with it.
#[derive(Debug)]
struct SlowStore(Arc<InMemoryStore>);

impl std::fmt::Display for SlowStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("slow")
    }
}

#[derive(Debug)]
struct SlowUpload(Box<dyn Upload>);

#[async_trait]
impl Upload for SlowUpload {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.0.write(data).await
    }
    async fn complete(self: Box<Self>) -> Result<ObjectMeta> {
        self.0.complete().await
    }
    async fn abort(self: Box<Self>) -> Result<()> {
        self.0.abort().await
    }
}

#[async_trait]
impl Store for SlowStore {
    async fn put(&self, key: &Key, data: Bytes, opts: PutOptions) -> Result<ObjectMeta> {
        self.0.put(key, data, opts).await
    }
    async fn put_stream(&self, key: &Key) -> Result<Box<dyn Upload>> {
        Ok(Box::new(SlowUpload(self.0.put_stream(key).await?)))
    }
    async fn get(&self, key: &Key) -> Result<GetResult> {
        self.0.get(key).await
    }
    async fn get_range(&self, key: &Key, range: std::ops::Range<u64>) -> Result<Bytes> {
        self.0.get_range(key, range).await
    }
    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.0.head(key).await
    }
    fn list(&self, prefix: Option<&Key>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.0.list(prefix)
    }
    async fn delete(&self, key: &Key) -> Result<()> {
        self.0.delete(key).await
    }
    async fn delete_many(&self, keys: &[Key]) -> Result<()> {
        self.0.delete_many(keys).await
    }
}

backup_postgres::each_major! {
    async fn dump_killed_mid_stream_leaves_no_backup_and_no_artifact(server) {
        let db = pgbench_db(server, "killed_src", 2).await;
        let store = Arc::new(InMemoryStore::new());
        let engine = Engine::new(Arc::new(SlowStore(store.clone())))
            .with_compressor(Arc::new(Compression::none()))
            .with_options(PipelineOptions::default().buffering(64 * 1024, 1));
        let source = source(server, &db);
        let backup =
            tokio::spawn(async move { engine.backup(&source, &BackupRequest::new("k")).await });
        // Wait until pg_dump is connected and streaming, then kill its backend.
        let mut killed = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let n = server
                .psql(
                    "postgres",
                    &format!(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                         WHERE datname = '{db}' AND application_name = 'backup-postgres' AND query ILIKE 'COPY%'"
                    ),
                )
                .await
                .unwrap();
            if n != "0" {
                killed = true;
                break;
            }
        }
        assert!(killed, "pg_dump never showed up in pg_stat_activity");
        let err = backup.await.unwrap().unwrap_err();
        assert!(
            matches!(err, Error::Connection { .. } | Error::Dump { .. }),
            "{err}"
        );
        assert_eq!(object_count(&store).await, 0, "a failed dump left objects");
        let catalog = Catalog::new(store.clone());
        assert!(catalog.list(&Filter::all()).await.unwrap().is_empty());
        let swept = catalog
            .sweep(Duration::ZERO, chrono::Utc::now())
            .await
            .unwrap();
        assert!(swept.removed.is_empty());
        server.drop_database(&db).await.unwrap();
    }
}

backup_postgres::each_major! {
    async fn password_is_never_on_a_command_line_nor_in_errors(server) {
        let db = pgbench_db(server, "argv_src", 1).await;
        let conn = server.connection(&db);
        let password = conn.password().expect("test server has a password").clone();
        let source = PostgresSource::new(conn.clone()).with_tools(server.tools());
        assert!(!format!("{source:?}").contains(password.expose()));

        // Start a dump and leave it blocked on its stdout pipe.
        let mut dump = source.dump(&DumpOptions::default()).await.unwrap();
        let first = dump.stream.next().await.unwrap().unwrap();
        assert!(first.starts_with(b"PGDMP"), "custom-format magic");
        let mut seen = 0;
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if !cmdline.contains("pg_dump") {
                continue;
            }
            seen += 1;
            assert!(
                !cmdline.contains(password.expose()),
                "password in argv: {cmdline}"
            );
            if let Ok(environ) = std::fs::read(entry.path().join("environ")) {
                let environ = String::from_utf8_lossy(&environ);
                assert!(
                    !environ.contains(password.expose()),
                    "password in the environment"
                );
                assert!(!environ.contains("PGPASSWORD"), "PGPASSWORD forwarded");
                let passfile = environ
                    .split('\0')
                    .find_map(|v| v.strip_prefix("PGPASSFILE="))
                    .expect("pg_dump gets a PGPASSFILE");
                // `/dev/fd/N`: the child's own descriptor N.
                let fd = passfile.strip_prefix("/dev/fd/").expect("an inherited fd");
                let passfile = entry.path().join("fd").join(fd);
                let mode = std::fs::metadata(passfile).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "password file mode");
            }
        }
        assert!(seen >= 1, "no running pg_dump found in /proc");
        drop(dump);

        // A wrong password: the error says so, without any password.
        let wrong = Secret::new("definitely-wrong-pw-123");
        let bad = PostgresSource::new(conn.clone().with_password(wrong.clone())).with_tools(server.tools());
        let err = bad.dump(&DumpOptions::default()).await.unwrap_err();
        assert!(matches!(err, Error::Authentication { .. }), "{err}");
        let shown = format!("{err} {err:?} {bad:?}");
        assert!(
            !shown.contains(wrong.expose()) && !shown.contains(password.expose()),
            "{shown}"
        );
        server.drop_database(&db).await.unwrap();
    }
}

backup_postgres::each_major! {
    async fn clear_errors_for_common_mistakes(server) {
        let conn = server.connection("postgres");
        let store = Arc::new(InMemoryStore::new());
        let engine = engine(&store);

        let missing_db = PostgresSource::new(conn.with_database("no_such_db_here")).with_tools(server.tools());
        let err = engine
            .backup(&missing_db, &BackupRequest::new("x"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::DatabaseMissing { database, .. } if database == "no_such_db_here"),
            "{err}"
        );

        let refused = PostgresSource::new(PgConnection::new("127.0.0.1", 1, "postgres", "postgres"));
        let err = engine
            .backup(&refused, &BackupRequest::new("x"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Connection { .. }), "{err}");

        let no_tools =
            PostgresSource::new(conn.clone()).with_tools(PgTools::in_dir("/nonexistent/bin"));
        let err = engine
            .backup(&no_tools, &BackupRequest::new("x"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ToolNotFound { .. }), "{err}");

        // A pg_dump older than the server is refused before dumping.
        let dir = tempfile::tempdir().unwrap();
        let real_psql = ["/usr/lib/postgresql/15/bin/psql", "/usr/bin/psql"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap();
        std::os::unix::fs::symlink(real_psql, dir.path().join("psql")).unwrap();
        let fake = dir.path().join("pg_dump");
        std::fs::write(&fake, "#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n").unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let old = PostgresSource::new(conn.clone()).with_tools(PgTools::in_dir(dir.path()));
        let err = engine
            .backup(&old, &BackupRequest::new("x"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ToolTooOld { .. }), "{err}");

        // Restoring into a missing database without `create` is refused.
        let src = server.create_database("err_src").await.unwrap();
        let m = engine
            .backup(
                &source(server, &src),
                &BackupRequest::new("x"),
            )
            .await
            .unwrap();
        let err = engine
            .restore(
                &m.id,
                &PostgresTarget::new(conn.clone()).with_tools(server.tools()),
                &RestoreOptions::into_database("no_such_target_db"),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DatabaseMissing { .. }), "{err}");
        assert_eq!(
            engine.catalog().list(&Filter::all()).await.unwrap().len(),
            1,
            "only the one good backup is listed"
        );
        server.drop_database(&src).await.unwrap();
    }
}

backup_postgres::each_major! {
    async fn selected_tables_dump_and_restore(server) {
        let db = pgbench_db(server, "tables_src", 1).await;
        let store = Arc::new(InMemoryStore::new());
        let engine = engine(&store);
        let m = engine
            .backup(
                &source(server, &db),
                &BackupRequest::new("t"),
            )
            .await
            .unwrap();
        let target_db = format!("{db}_only");
        engine
            .restore(
                &m.id,
                &target(server, "postgres"),
                &RestoreOptions::into_database(&target_db)
                    .create(true)
                    .only(vec!["pgbench_branches".into(), "pgbench_tellers".into()]),
            )
            .await
            .unwrap();
        let tables: Vec<String> = server
            .fingerprint(&target_db)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.0)
            .collect();
        assert_eq!(tables, ["pgbench_branches", "pgbench_tellers"]);
        server.drop_database(&db).await.unwrap();
        server.drop_database(&target_db).await.unwrap();
    }
}
