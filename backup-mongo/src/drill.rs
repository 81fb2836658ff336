//! [`MongoDrill`]: scratch databases for restore drills
//! ([`Engine::drill`](backup_core::Engine::drill)).
//!
//! A scratch database is named `_backup_drill_<8 hex>` and marked the way
//! staging databases are (see [`MongoTarget`]'s docs): its collection
//! `_backup_drill_marker` holds a document with the server's time of
//! creation and a heartbeat the running drill refreshes every 30 s. It is
//! dropped when the drill ends, also when it failed, and in the background
//! when the drill's future is dropped or unwinds. What a killed process
//! left is found by [`MongoDrill::leftovers`] and dropped by
//! [`MongoDrill::remove_leftovers`]; each new drill first drops those
//! silent for [`DEFAULT_STAGING_GRACE`]. A database named like a scratch
//! database without the marker (a process killed between the creation
//! and the marker, which are one write here, or someone else's) is
//! reported, never dropped.

use std::time::Duration;

use async_trait::async_trait;
use backup_core::drill::{DrillTarget, Scratch, discard_in_background, log_leftover_sweep};
use backup_core::fingerprint::Fingerprint;
use backup_core::source::{Leftover, LeftoverReport};
use backup_core::{Error, RestoreOptions, RestoreTarget, Result};
use mongodb::Client;

use crate::conn::MongoConnection;
use crate::error::{Side, classify};
use crate::restore::staging::{self, DEFAULT_STAGING_GRACE, Heartbeat, Marking};
use crate::restore::{MongoTarget, RestoreStrategy};

/// The start of every scratch database's name.
pub const DRILL_PREFIX: &str = "_backup_drill_";

/// The collection of a scratch database holding its marker. It is left
/// out of the fingerprint; a backup holding a collection of that name
/// fails its drills (the restore refuses to overwrite it).
pub const DRILL_MARKER_COLLECTION: &str = "_backup_drill_marker";

/// Scratch databases: `_backup_drill_<8 lowercase hex>`.
static SCRATCH: Marking = Marking {
    collection: DRILL_MARKER_COLLECTION,
    id: "drill",
    is_name: is_scratch_name,
};

/// Whether `name` has the shape of a scratch database name.
fn is_scratch_name(name: &str) -> bool {
    name.strip_prefix(DRILL_PREFIX).is_some_and(|hex| {
        hex.len() == 8 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Restore drills on one MongoDB deployment (the "drill server"). The
/// connection's user must be allowed to create, write, list and drop any
/// database (e.g. the `restore` role plus `dropDatabase`, or `root`); its
/// database, if any, is not used.
///
/// Each drill restores with [`MongoTarget`] and
/// [`RestoreStrategy::Direct`] into its scratch database: staging inside a
/// database that is itself thrown away would only add a second copy of
/// the data (a cross-database rename copies it); a failed restore is
/// undone by dropping the scratch database.
///
/// Cost on the drill server: the restore (inserts and index builds) and
/// one full read of every restored collection for the fingerprint.
#[derive(Debug, Clone)]
pub struct MongoDrill {
    conn: MongoConnection,
    target: MongoTarget,
}

impl MongoDrill {
    /// Drills on the deployment of `conn`.
    pub fn new(conn: MongoConnection) -> Self {
        let target = MongoTarget::new(conn.clone()).with_strategy(RestoreStrategy::Direct);
        MongoDrill { conn, target }
    }

    /// Scratch databases on the server with our marker, with the time
    /// since their drill last showed a sign of life.
    pub async fn leftovers(&self) -> Result<Vec<Leftover>> {
        let client = self.conn.client().await?;
        staging::find(&client, &self.conn, &SCRATCH).await
    }

    /// Drops marked scratch databases whose drill has been silent for
    /// `older_than` or more (a drill killed with its process; a running
    /// one refreshes its heartbeat every 30 s). Unmarked look-alikes are
    /// reported only.
    pub async fn remove_leftovers(&self, older_than: Duration) -> Result<LeftoverReport> {
        let client = self.conn.client().await?;
        staging::cleanup(&client, &self.conn, &SCRATCH, older_than, None).await
    }
}

#[async_trait]
impl DrillTarget for MongoDrill {
    fn engine(&self) -> &str {
        "mongodb"
    }

    async fn remove_leftovers(&self, older_than: Duration) -> Result<LeftoverReport> {
        MongoDrill::remove_leftovers(self, older_than).await
    }

    async fn scratch(&self) -> Result<Box<dyn Scratch>> {
        let client = self.conn.client().await?;
        log_leftover_sweep(
            "mongodb",
            staging::cleanup(&client, &self.conn, &SCRATCH, DEFAULT_STAGING_GRACE, None).await,
        );
        let name = format!("{DRILL_PREFIX}{:08x}", rand::random::<u32>());
        let existing = client
            .list_database_names()
            .await
            .map_err(|e| classify(&e, Side::Restore, "listing databases", &self.conn))?;
        if existing.contains(&name) {
            return Err(Error::AlreadyExists {
                key: format!("mongodb database {name:?}"),
            });
        }
        let token = format!("{:016x}", rand::random::<u64>());
        // Creating the marker creates the database: one write, so nothing
        // unmarked is left if the process dies here.
        staging::mark(&client, &self.conn, &SCRATCH, &name, None, &token).await?;
        let heartbeat = Heartbeat::start(client.clone(), &SCRATCH, name.clone());
        tracing::info!(scratch = %name, "created drill scratch database");
        Ok(Box::new(MongoScratch {
            target: self.target.clone(),
            conn: self.conn.clone(),
            client,
            name,
            heartbeat: Some(heartbeat),
            discarded: false,
        }))
    }
}

/// One scratch database; dropping it undiscarded drops the database in
/// the background.
#[derive(Debug)]
struct MongoScratch {
    target: MongoTarget,
    conn: MongoConnection,
    client: Client,
    name: String,
    /// Stopped before the database is dropped.
    heartbeat: Option<Heartbeat>,
    discarded: bool,
}

#[async_trait]
impl Scratch for MongoScratch {
    fn name(&self) -> &str {
        &self.name
    }

    fn restore_target(&self) -> (&dyn RestoreTarget, RestoreOptions) {
        (
            &self.target,
            RestoreOptions::into_database(self.name.clone()),
        )
    }

    async fn fingerprint(&self) -> Result<Fingerprint> {
        crate::fingerprint::of_database(
            &self.client,
            &self.conn,
            &self.name,
            &[DRILL_MARKER_COLLECTION],
        )
        .await
    }

    async fn discard(mut self: Box<Self>) -> Result<()> {
        self.discarded = true;
        self.heartbeat = None;
        drop_scratch(&self.client, &self.conn, &self.name).await
    }
}

impl Drop for MongoScratch {
    fn drop(&mut self) {
        if self.discarded {
            return;
        }
        self.heartbeat = None;
        let (client, conn, name) = (self.client.clone(), self.conn.clone(), self.name.clone());
        discard_in_background(&self.name, "MongoDrill::remove_leftovers", async move {
            drop_scratch(&client, &conn, &name).await
        });
    }
}

async fn drop_scratch(client: &Client, conn: &MongoConnection, name: &str) -> Result<()> {
    client
        .database(name)
        .drop()
        .await
        .map_err(|e| classify(&e, Side::Restore, &format!("dropping {name}"), conn))?;
    tracing::info!(scratch = %name, "dropped drill scratch database");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_names() {
        assert!(is_scratch_name("_backup_drill_0a1b2c3d"));
        assert!(!is_scratch_name("_backup_drill_0A1B2C3D"));
        assert!(!is_scratch_name("_backup_drill_0a1b2c3"));
        assert!(!is_scratch_name("x_backup_drill_0a1b2c3d"));
        assert!(!is_scratch_name("_backup_drill_0a1b2c3d__restore_00000000"));
    }
}
