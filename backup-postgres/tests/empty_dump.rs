//! Issue #10, finding 5: a `pg_dump` that exits 0 without writing anything
//! (or writes something that is not a custom-format dump) was committed as
//! a 13-byte backup. Against the real server, with a stand-in `pg_dump`
//! that reports the real version and then misbehaves, on PostgreSQL 15
//! and 18 (`<test>::postgres_15`, `<test>::postgres_18`).

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use backup_core::memory::InMemoryStore;
use backup_core::prelude::*;
use backup_core::testing::assert_nothing_left;
use backup_postgres::{PgTools, PostgresSource, TestServer};

/// A bin directory with `server`'s psql and a `pg_dump` that reports the
/// version of `server`'s and runs `body` instead of dumping.
fn tools_with_fake_pg_dump(server: &TestServer, dir: &std::path::Path, body: &str) -> PgTools {
    let tools = server.tools();
    let bin = tools
        .bin_dir()
        .map(|d| d.display().to_string())
        .or_else(|| {
            ["/usr/lib/postgresql/15/bin", "/usr/bin"]
                .into_iter()
                .find(|d| std::path::Path::new(d).join("pg_dump").exists())
                .map(String::from)
        })
        .expect("PostgreSQL client tools");
    std::os::unix::fs::symlink(format!("{bin}/psql"), dir.join("psql")).unwrap();
    let fake = dir.join("pg_dump");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then exec {bin}/pg_dump --version; fi\n{body}\nexit 0\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    PgTools::in_dir(dir)
}

backup_postgres::each_major! {
    async fn a_pg_dump_that_succeeds_without_a_dump_commits_nothing(server) {
        let db = server.create_database("empty_dump").await.unwrap();
        for (body, needle) in [
            ("", "empty"),
            ("echo 'pg_dump: warning: nothing to do'", "PGDMP"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let source = PostgresSource::new(server.connection(&db))
                .with_tools(tools_with_fake_pg_dump(server, dir.path(), body));
            let store = Arc::new(InMemoryStore::new());
            let engine = Engine::new(store.clone());
            let err = engine
                .backup(&source, &BackupRequest::new("db"))
                .await
                .unwrap_err();
            assert!(matches!(err, Error::InvalidDump { .. }), "{err:?}");
            assert!(err.to_string().contains(needle), "{err}");
            assert_nothing_left(&engine, needle).await;
        }
        server.drop_database(&db).await.unwrap();
    }
}
