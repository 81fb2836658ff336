//! [`MysqlDrill`]: scratch databases for restore drills
//! ([`Engine::drill`](backup_core::Engine::drill)).
//!
//! A scratch database is named `_backup_drill_<8 hex>` and created with
//! a marker table ([`DRILL_MARKER_TABLE`]) holding the time its drill
//! last showed a sign of life (its creation, then refreshed every
//! [`DRILL_HEARTBEAT`]) before anything is restored into it; the restore
//! then goes through [`MysqlTarget`]'s staging database and moves the
//! tables in next to the marker. The scratch is dropped when the drill
//! ends, also when it failed, and in the background when the drill's
//! future is dropped or unwinds. What a killed process left is found by
//! [`MysqlDrill::leftovers`] and dropped by [`MysqlDrill::remove_leftovers`];
//! each new drill first drops the scratches silent for
//! [`DEFAULT_DRILL_GRACE`] that no connection uses. A look-alike without
//! the marker is reported, never dropped.
//!
//! The content is fingerprinted by dumping the scratch database with the
//! same tool and flags as the backup (without the marker table) and
//! counting the script's rows ([`crate::fingerprint`]).
//!
//! Events restored into the scratch database are live on the drill
//! server while the drill runs: point drills at a server whose event
//! scheduler is off (MariaDB's default) when the source has events.

use std::time::Duration;

use async_trait::async_trait;
#[cfg(doc)]
use backup_core::drill::DRILL_HEARTBEAT;
use backup_core::drill::{
    DEFAULT_DRILL_GRACE, DrillTarget, Heartbeat, Scratch, discard_in_background, log_leftover_sweep,
};
use backup_core::fingerprint::Fingerprint;
use backup_core::source::{Candidate, Leftover, LeftoverReport, Removal};
use backup_core::{Error, RestoreOptions, RestoreTarget, Result};

use crate::client::{ENGINE, MysqlTools, Side, quote_ident, quote_literal, run_sql};
use crate::conn::MysqlConnection;
use crate::leftovers::connections;
use crate::target::MysqlTarget;

/// The start of every scratch database's name.
pub const DRILL_PREFIX: &str = "_backup_drill_";

/// The table marking a scratch database as a drill's, with the time of
/// its drill's last sign of life; left out of the scratch's fingerprint.
pub const DRILL_MARKER_TABLE: &str = "__backup_drill_marker";

/// Restore drills on one MySQL or MariaDB server (the "drill server"):
/// `admin` connects as an account that may create and drop databases
/// (its database, if any, is not used).
#[derive(Debug, Clone)]
pub struct MysqlDrill {
    admin: MysqlConnection,
    tools: MysqlTools,
}

impl MysqlDrill {
    /// Drills on the server of `admin`.
    pub fn new(admin: MysqlConnection) -> Self {
        MysqlDrill {
            admin,
            tools: MysqlTools::auto(),
        }
    }

    /// Chooses where the tools come from.
    pub fn with_tools(mut self, tools: MysqlTools) -> Self {
        self.tools = tools;
        self
    }

    /// Scratch databases on the server (marked ones with the time since
    /// their drill's last sign of life: zero while a connection uses
    /// them).
    pub async fn leftovers(&self) -> Result<Vec<Leftover>> {
        Ok(Candidate::marked(self.find().await?))
    }

    /// Drops marked scratch databases silent for `older_than` or more (a
    /// drill killed with its process; a running one refreshes its mark
    /// every [`DRILL_HEARTBEAT`]) that no connection uses; unmarked
    /// look-alikes are reported only.
    pub async fn remove_leftovers(&self, older_than: Duration) -> Result<LeftoverReport> {
        let found = self.find().await?;
        Ok(
            LeftoverReport::apply(found, older_than, None, |scratch| async move {
                match self
                    .sql(&format!("DROP DATABASE {}", quote_ident(&scratch.name)))
                    .await
                {
                    Ok(_) => Removal::Removed,
                    Err(e) if e.to_string().contains("database doesn't exist") => Removal::Vanished,
                    Err(e) => Removal::Refused(e.to_string()),
                }
            })
            .await,
        )
    }

    async fn sql(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        run_sql(&self.tools, &self.admin, None, sql, Side::Restore).await
    }

    async fn find(&self) -> Result<Vec<Candidate>> {
        let pattern = quote_literal(&format!("{}%", DRILL_PREFIX.replace('_', "\\_")));
        let names = self
            .sql(&format!(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE {pattern} ORDER BY SCHEMA_NAME"
            ))
            .await?;
        let mut found = Vec::new();
        for name in names
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
        {
            let age = self
                .sql(&format!(
                    "SELECT TIMESTAMPDIFF(SECOND, alive, UTC_TIMESTAMP()) FROM {}.{}",
                    quote_ident(&name),
                    quote_ident(DRILL_MARKER_TABLE)
                ))
                .await;
            match age.as_deref() {
                Ok([row]) => {
                    let idle = if connections(&self.tools, &self.admin, &name).await? > 0 {
                        Some(Duration::ZERO)
                    } else {
                        row.first()
                            .cloned()
                            .flatten()
                            .and_then(|s| s.parse::<u64>().ok())
                            .map(Duration::from_secs)
                    };
                    found.push(Candidate::Marked(Leftover::new(name, None, idle)));
                }
                _ => found.push(Candidate::Unmarked(name)),
            }
        }
        Ok(found)
    }
}

#[async_trait]
impl DrillTarget for MysqlDrill {
    fn engine(&self) -> &str {
        ENGINE
    }

    async fn remove_leftovers(&self, older_than: Duration) -> Result<LeftoverReport> {
        MysqlDrill::remove_leftovers(self, older_than).await
    }

    async fn scratch(&self) -> Result<Box<dyn Scratch>> {
        log_leftover_sweep(ENGINE, self.remove_leftovers(DEFAULT_DRILL_GRACE).await);
        let name = format!("{DRILL_PREFIX}{:08x}", rand::random::<u32>());
        let db = quote_ident(&name);
        self.sql(&format!("CREATE DATABASE {db} CHARACTER SET utf8mb4"))
            .await?;
        let mut scratch = MysqlScratch {
            target: MysqlTarget::new(self.admin.with_database(&name))
                .with_tools(self.tools.clone()),
            drill: self.clone(),
            name,
            heartbeat: None,
            discarded: false,
        };
        // Dropped again on failure, by the guard.
        let marker = quote_ident(DRILL_MARKER_TABLE);
        // The heartbeat's statement runs once here too, so that a
        // statement the server refuses fails the drill at once.
        let beat = format!("UPDATE {db}.{marker} SET alive = UTC_TIMESTAMP()");
        self.sql(&format!(
            "CREATE TABLE {db}.{marker} (alive DATETIME NOT NULL); \
             INSERT INTO {db}.{marker} VALUES (UTC_TIMESTAMP()); {beat}"
        ))
        .await?;
        let drill = self.clone();
        scratch.heartbeat = Some(Heartbeat::start(&scratch.name, move || {
            let (drill, beat) = (drill.clone(), beat.clone());
            async move { drill.sql(&beat).await.map(|_| ()) }
        }));
        tracing::info!(scratch = %scratch.name, "created drill scratch database");
        Ok(Box::new(scratch))
    }
}

/// One scratch database; dropping it undiscarded drops the database in
/// the background.
#[derive(Debug)]
struct MysqlScratch {
    target: MysqlTarget,
    drill: MysqlDrill,
    name: String,
    /// Refreshes the mark while the drill runs; stopped before the drop.
    heartbeat: Option<Heartbeat>,
    discarded: bool,
}

#[async_trait]
impl Scratch for MysqlScratch {
    fn name(&self) -> &str {
        &self.name
    }

    fn restore_target(&self) -> (&dyn RestoreTarget, RestoreOptions) {
        // Into the existing scratch database, next to its marker.
        (
            &self.target,
            RestoreOptions::into_database(self.name.clone()),
        )
    }

    async fn fingerprint(&self) -> Result<Fingerprint> {
        let conn = self.drill.admin.with_database(&self.name);
        crate::source::fingerprint_of(&self.drill.tools, &conn, Some(DRILL_MARKER_TABLE)).await
    }

    async fn discard(mut self: Box<Self>) -> Result<()> {
        self.discarded = true;
        self.heartbeat = None;
        drop_scratch(&self.drill, &self.name).await
    }
}

impl Drop for MysqlScratch {
    fn drop(&mut self) {
        if self.discarded {
            return;
        }
        self.heartbeat = None;
        let (drill, name) = (self.drill.clone(), self.name.clone());
        discard_in_background(&self.name, "MysqlDrill::remove_leftovers", async move {
            drop_scratch(&drill, &name).await
        });
    }
}

async fn drop_scratch(drill: &MysqlDrill, name: &str) -> Result<()> {
    drill
        .sql(&format!("DROP DATABASE IF EXISTS {}", quote_ident(name)))
        .await
        .map_err(|e| Error::Restore {
            engine: ENGINE,
            detail: format!("dropping the drill scratch database {name}: {e}"),
        })?;
    tracing::info!(scratch = %name, "dropped drill scratch database");
    Ok(())
}
