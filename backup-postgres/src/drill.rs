//! [`PostgresDrill`]: scratch databases for restore drills
//! ([`Engine::drill`](backup_core::Engine::drill)).
//!
//! A scratch database is named `_backup_drill_<8 hex>` and marked by a
//! database comment (`backup-postgres drill scratch; alive=<epoch>`)
//! right after `CREATE DATABASE`, which the running drill refreshes every
//! [`DRILL_HEARTBEAT`]; it is dropped when the drill ends, also when it
//! failed, and in the background when the drill's future is dropped or
//! unwinds. What a killed process left is found by
//! [`PostgresDrill::leftovers`] and dropped by
//! [`PostgresDrill::remove_leftovers`]; each new drill first drops the
//! scratches whose mark went unrefreshed for [`DEFAULT_DRILL_GRACE`] and
//! that no session uses. A process killed between `CREATE DATABASE` and
//! the comment leaves an empty, unmarked database: reported, never
//! dropped (it could be someone else's).

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

use crate::conn::PgConnection;
use crate::restore::PostgresTarget;
use crate::staging::maintenance;
use crate::tools::{PgTools, quote_ident, quote_literal};

/// The start of every scratch database's name.
pub const DRILL_PREFIX: &str = "_backup_drill_";

/// The regular expression (PostgreSQL's `~`) scratch names match.
const NAME_PATTERN: &str = "^_backup_drill_[0-9a-f]{8}$";

/// The comment marking a scratch database, before the time its drill
/// last showed a sign of life (its creation, then every heartbeat).
const MARKER: &str = "backup-postgres drill scratch; alive=";

/// Restore drills on one PostgreSQL server (the "drill server"): `admin`
/// connects as a role that may create databases; its database is the
/// maintenance database used to create and drop scratch databases.
#[derive(Debug, Clone)]
pub struct PostgresDrill {
    admin: PgConnection,
    tools: PgTools,
}

impl PostgresDrill {
    /// Drills on the server of `admin`.
    pub fn new(admin: PgConnection) -> Self {
        PostgresDrill {
            admin,
            tools: PgTools::auto(),
        }
    }

    /// Chooses where the tools come from.
    pub fn with_tools(mut self, tools: PgTools) -> Self {
        self.tools = tools;
        self
    }

    /// Scratch databases on the server (marked ones with the time since
    /// their drill's last sign of life: zero while a session uses them).
    pub async fn leftovers(&self) -> Result<Vec<Leftover>> {
        Ok(Candidate::marked(self.find().await?))
    }

    /// Drops marked scratch databases silent for `older_than` or more (a
    /// drill killed with its process; a running one refreshes its mark
    /// every [`DRILL_HEARTBEAT`]) that no session uses; unmarked
    /// look-alikes are reported only.
    pub async fn remove_leftovers(&self, older_than: Duration) -> Result<LeftoverReport> {
        let found = self.find().await?;
        let (tools, admin) = (&self.tools, &self.admin);
        Ok(
            LeftoverReport::apply(found, older_than, None, |scratch| async move {
                let sql = format!("DROP DATABASE {}", quote_ident(&scratch.name));
                match maintenance(tools, admin, &[&sql]).await {
                    Ok(_) => Removal::Removed,
                    Err(e) if e.to_string().contains("does not exist") => Removal::Vanished,
                    Err(e) => Removal::Refused(e.to_string()),
                }
            })
            .await,
        )
    }

    async fn find(&self) -> Result<Vec<Candidate>> {
        let sql = format!(
            "SELECT coalesce(json_agg(json_build_array(d.datname, shobj_description(d.oid, 'pg_database'), extract(epoch from now())::bigint, (SELECT count(*) FROM pg_stat_activity a WHERE a.datid = d.oid)) ORDER BY d.datname), '[]') FROM pg_database d WHERE d.datname ~ {}",
            quote_literal(NAME_PATTERN)
        );
        let out = maintenance(&self.tools, &self.admin, &[&sql]).await?;
        let rows: Vec<(String, Option<String>, i64, i64)> =
            serde_json::from_str(&out).map_err(|e| Error::Restore {
                engine: "postgres",
                detail: format!("unexpected answer listing drill scratch databases: {e}"),
            })?;
        Ok(rows
            .into_iter()
            .map(|(name, comment, now, sessions)| {
                let alive = comment
                    .as_deref()
                    .and_then(|c| c.strip_prefix(MARKER))
                    .and_then(|c| c.parse::<i64>().ok());
                match alive {
                    Some(_) if sessions > 0 => {
                        Candidate::Marked(Leftover::new(name, None, Some(Duration::ZERO)))
                    }
                    Some(alive) => {
                        let idle = now
                            .checked_sub(alive)
                            .and_then(|s| u64::try_from(s).ok())
                            .map(Duration::from_secs);
                        Candidate::Marked(Leftover::new(name, None, idle))
                    }
                    None => Candidate::Unmarked(name),
                }
            })
            .collect())
    }
}

#[async_trait]
impl DrillTarget for PostgresDrill {
    fn engine(&self) -> &str {
        "postgres"
    }

    async fn remove_leftovers(&self, older_than: Duration) -> Result<LeftoverReport> {
        PostgresDrill::remove_leftovers(self, older_than).await
    }

    async fn scratch(&self) -> Result<Box<dyn Scratch>> {
        log_leftover_sweep("postgres", self.remove_leftovers(DEFAULT_DRILL_GRACE).await);
        let name = format!("{DRILL_PREFIX}{:08x}", rand::random::<u32>());
        let create = format!("CREATE DATABASE {}", quote_ident(&name));
        let mark = format!(
            "DO $backup_drill$ BEGIN EXECUTE format('COMMENT ON DATABASE %I IS %L', {}, {} || extract(epoch from now())::bigint); END $backup_drill$",
            quote_literal(&name),
            quote_literal(MARKER)
        );
        maintenance(&self.tools, &self.admin, &[&create]).await?;
        let mut scratch = PgScratch {
            target: PostgresTarget::new(self.admin.clone()).with_tools(self.tools.clone()),
            drill: self.clone(),
            name,
            heartbeat: None,
            discarded: false,
        };
        // Dropped again on failure, by the guard.
        maintenance(&self.tools, &self.admin, &[&mark]).await?;
        let (tools, admin) = (self.tools.clone(), self.admin.clone());
        scratch.heartbeat = Some(Heartbeat::start(&scratch.name, move || {
            let (tools, admin, mark) = (tools.clone(), admin.clone(), mark.clone());
            async move { maintenance(&tools, &admin, &[&mark]).await.map(|_| ()) }
        }));
        tracing::info!(scratch = %scratch.name, "created drill scratch database");
        Ok(Box::new(scratch))
    }
}

/// One scratch database; dropping it unscratched drops the database in
/// the background.
#[derive(Debug)]
struct PgScratch {
    target: PostgresTarget,
    drill: PostgresDrill,
    name: String,
    /// Refreshes the mark while the drill runs; stopped before the drop.
    heartbeat: Option<Heartbeat>,
    discarded: bool,
}

#[async_trait]
impl Scratch for PgScratch {
    fn name(&self) -> &str {
        &self.name
    }

    fn restore_target(&self) -> (&dyn RestoreTarget, RestoreOptions) {
        // Ownership is not restored: the drill server need not have the
        // source's roles.
        (
            &self.target,
            RestoreOptions::into_database(self.name.clone()).no_owner(true),
        )
    }

    async fn fingerprint(&self) -> Result<Fingerprint> {
        let conn = self.drill.admin.with_database(&self.name);
        crate::fingerprint::of_database(&self.drill.tools, &conn).await
    }

    async fn discard(mut self: Box<Self>) -> Result<()> {
        self.discarded = true;
        self.heartbeat = None;
        drop_scratch(&self.drill, &self.name).await
    }
}

impl Drop for PgScratch {
    fn drop(&mut self) {
        if self.discarded {
            return;
        }
        self.heartbeat = None;
        let (drill, name) = (self.drill.clone(), self.name.clone());
        discard_in_background(&self.name, "PostgresDrill::remove_leftovers", async move {
            drop_scratch(&drill, &name).await
        });
    }
}

async fn drop_scratch(drill: &PostgresDrill, name: &str) -> Result<()> {
    let sql = format!("DROP DATABASE IF EXISTS {}", quote_ident(name));
    maintenance(&drill.tools, &drill.admin, &[&sql]).await?;
    tracing::info!(scratch = %name, "dropped drill scratch database");
    Ok(())
}
