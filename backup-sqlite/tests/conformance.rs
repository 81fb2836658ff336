//! The engine conformance suites of `backup_core::testing` against real
//! SQLite database files (the bundled library): "databases" are files in a
//! temporary directory, named by their paths.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use backup_core::testing::{
    EngineCapabilities, EngineHarness, source_conformance, target_conformance,
};
use backup_core::{DumpSource, Error, RestoreTarget, Result, Secret};
use backup_sqlite::{SqliteSource, SqliteTarget, table_checksums};
use rusqlite::Connection;

struct Harness {
    dir: tempfile::TempDir,
    spool: tempfile::TempDir,
}

fn harness_error(e: impl std::fmt::Display) -> Error {
    Error::Dump {
        engine: "sqlite",
        detail: format!("conformance harness: {e}"),
    }
}

/// About 4 MB over four tables, so the dump streams in many chunks.
fn fill(path: &Path, seed: u64) -> rusqlite::Result<()> {
    let mut db = Connection::open(path)?;
    let tx = db.transaction()?;
    for t in 0..4 {
        tx.execute_batch(&format!(
            "CREATE TABLE items_{t} (id INTEGER PRIMARY KEY, seed INTEGER, v TEXT, b BLOB)"
        ))?;
        let mut insert = tx.prepare(&format!(
            "INSERT INTO items_{t} (id, seed, v, b) VALUES (?1, ?2, ?3, ?4)"
        ))?;
        for id in 0..2000u64 {
            let v = format!("{:016x}", id.wrapping_mul(seed | 1) ^ seed ^ t).repeat(20);
            let b = v.as_bytes()[..160].to_vec();
            insert.execute(rusqlite::params![id as i64, seed as i64, v, b])?;
        }
    }
    tx.execute_batch("CREATE INDEX items_0_seed ON items_0 (seed, v)")?;
    tx.commit()
}

impl Harness {
    fn new() -> Harness {
        Harness {
            dir: tempfile::tempdir().expect("a directory for the databases"),
            spool: tempfile::tempdir().expect("a spool directory"),
        }
    }

    /// The spool files this process holds open, by descriptor.
    fn open_spools(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc/self/fd")
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(to) = std::fs::read_link(entry.path()) else {
                continue;
            };
            let shown = to.to_string_lossy();
            if to.starts_with(self.spool.path()) && shown.contains(".backup-sqlite-") {
                found.push(entry.path());
            }
        }
        found
    }
}

#[async_trait]
impl EngineHarness for Harness {
    async fn create_database(&self, seed: u64) -> Result<String> {
        let path = self
            .dir
            .path()
            .join(format!("conformance_{:08x}.db", rand::random::<u32>()));
        let p = path.clone();
        tokio::task::spawn_blocking(move || fill(&p, seed))
            .await
            .map_err(harness_error)?
            .map_err(harness_error)?;
        Ok(path.display().to_string())
    }

    async fn digest(&self, database: &str) -> Result<Option<String>> {
        let path = PathBuf::from(database);
        if !path.exists() {
            return Ok(None);
        }
        let sums = tokio::task::spawn_blocking(move || table_checksums(&path))
            .await
            .map_err(harness_error)??;
        Ok(Some(format!("{sums:?}")))
    }

    async fn drop_database(&self, database: &str) -> Result<()> {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(format!("{database}{suffix}"));
        }
        Ok(())
    }

    fn source(&self, database: &str) -> Box<dyn DumpSource> {
        Box::new(
            SqliteSource::new(database)
                .with_spool_dir(self.spool.path())
                .with_chunk_size(64 * 1024),
        )
    }

    fn source_with_bad_credentials(&self, _: &str) -> Option<(Box<dyn DumpSource>, Secret)> {
        None
    }

    fn target(&self) -> Box<dyn RestoreTarget> {
        Box::new(SqliteTarget::new(self.dir.path().join("default.db")))
    }

    /// Cuts the dump's spool short, as a failing disk or a stray
    /// `truncate` would: the spool is unlinked once the snapshot is
    /// complete, so it is reached through this process's descriptor.
    async fn kill_dump(&self, _database: &str) -> Result<()> {
        let spools = self.open_spools();
        if spools.is_empty() {
            return Err(harness_error("no open spool file to cut short"));
        }
        for fd in spools {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&fd)
                .and_then(|f| f.set_len(0))
                .map_err(harness_error)?;
        }
        Ok(())
    }

    /// Nothing runs on behalf of a restore: its temporary file is all.
    async fn kill_restore(&self, _target: &str) -> Result<()> {
        Ok(())
    }

    fn secrets(&self) -> Vec<Secret> {
        Vec::new()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_engine_conformance_suites() {
    let harness = Harness::new();
    let caps = EngineCapabilities::default();
    source_conformance(&harness, caps).await;
    target_conformance(&harness, caps).await;
    // Every spool is gone, and no restore left a temporary file.
    let spooled: Vec<_> = std::fs::read_dir(harness.spool.path()).unwrap().collect();
    assert!(spooled.is_empty(), "spool files left: {spooled:?}");
    let left: Vec<String> = std::fs::read_dir(harness.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".restore-"))
        .collect();
    assert!(left.is_empty(), "restore temporary files left: {left:?}");
}
