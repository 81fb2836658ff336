//! The engine conformance suites of `backup_core::testing` against a real
//! throwaway MariaDB (or the server `BACKUP_TEST_MYSQL_URL` names).

use async_trait::async_trait;
use backup_core::testing::{
    EngineCapabilities, EngineHarness, process_tree, source_conformance, target_conformance,
};
use backup_core::{DumpSource, Error, RestoreTarget, Result, Secret};
use backup_mysql::{MysqlSource, MysqlTarget, STAGING_PREFIX, TestServer};

struct Harness {
    server: &'static TestServer,
}

fn harness_error(e: impl std::fmt::Display) -> Error {
    Error::Dump {
        engine: "mysql",
        detail: format!("conformance harness: {e}"),
    }
}

/// Kills this process's descendants whose program is `name`.
fn kill_children(name: &str) -> usize {
    let mut killed = 0;
    for p in process_tree(std::process::id()) {
        if p.comm == name || p.argv.split(' ').next().is_some_and(|a| a.ends_with(name)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p.pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            killed += 1;
        }
    }
    killed
}

#[async_trait]
impl EngineHarness for Harness {
    /// About 3 MB over three tables (rows made by the server), so a dump
    /// outlasts the pipe and streams in many chunks.
    async fn create_database(&self, seed: u64) -> Result<String> {
        let db = self.server.create_database("conformance").await?;
        let mut sql = String::from(
            "CREATE TEMPORARY TABLE n (i INT PRIMARY KEY);
             INSERT INTO n VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9);",
        );
        for t in 0..3 {
            sql.push_str(&format!(
                "CREATE TABLE items_{t} (id INT PRIMARY KEY, seed BIGINT, v TEXT, b BLOB) ENGINE=InnoDB;
                 INSERT INTO items_{t} SELECT a.i + 10 * b.i + 100 * c.i + 1000 * d.i, {seed},
                     REPEAT(SHA2(CONCAT(a.i, b.i, c.i, d.i, {seed}, {t}), 256), 4), UNHEX(SHA2(CONCAT({seed}, a.i, b.i, c.i, d.i), 256))
                     FROM n a, n b, n c, n d WHERE a.i + 10 * b.i + 100 * c.i + 1000 * d.i < 4000;"
            ));
        }
        self.server.sql(Some(&db), &sql).await?;
        Ok(db)
    }

    async fn digest(&self, database: &str) -> Result<Option<String>> {
        if !self.server.exists(database).await? {
            return Ok(None);
        }
        let sums = self.server.table_checksums(database).await?;
        let objects = self.server.objects(database).await?;
        Ok(Some(format!("{sums:?} {objects:?}")))
    }

    async fn drop_database(&self, database: &str) -> Result<()> {
        self.server.drop_database(database).await
    }

    fn source(&self, database: &str) -> Box<dyn DumpSource> {
        Box::new(MysqlSource::new(self.server.connection(database)).with_tools(self.server.tools()))
    }

    fn source_with_bad_credentials(&self, database: &str) -> Option<(Box<dyn DumpSource>, Secret)> {
        let wrong = Secret::new(format!("wrong-{:016x}", rand::random::<u64>()));
        let conn = self
            .server
            .connection(database)
            .with_password(wrong.clone());
        Some((Box::new(MysqlSource::new(conn)), wrong))
    }

    fn target(&self) -> Box<dyn RestoreTarget> {
        Box::new(MysqlTarget::new(self.server.connection("mysql")).with_tools(self.server.tools()))
    }

    async fn kill_dump(&self, _database: &str) -> Result<()> {
        if kill_children("mariadb-dump") + kill_children("mysqldump") == 0 {
            return Err(harness_error("no dump tool running"));
        }
        Ok(())
    }

    async fn kill_restore(&self, _target: &str) -> Result<()> {
        kill_children("mariadb");
        kill_children("mysql");
        Ok(())
    }

    fn secrets(&self) -> Vec<Secret> {
        self.server.password().cloned().into_iter().collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_passes_the_engine_conformance_suites() {
    let harness = Harness {
        server: TestServer::shared(),
    };
    let caps = EngineCapabilities::default()
        .credentials(true)
        .children(true)
        .staging(true)
        .settle(std::time::Duration::from_secs(30));
    source_conformance(&harness, caps).await;
    target_conformance(&harness, caps).await;
    // Dropped sessions drop their staging database in the background.
    let mut left = Vec::new();
    for _ in 0..100 {
        left = harness.server.databases_like(STAGING_PREFIX).await.unwrap();
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(left.is_empty(), "staging databases left: {left:?}");
}
