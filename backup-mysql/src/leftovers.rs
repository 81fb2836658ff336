//! Staging databases: created with a marker table naming their target,
//! and found again ([`scan`]) and removed ([`remove`]) when a restore
//! died without dropping its own.

use std::time::Duration;

use backup_core::Result;
use backup_core::source::{Candidate, Leftover, Removal};

use crate::client::{MysqlTools, Side, quote_ident, quote_literal, run_sql};
use crate::conn::MysqlConnection;

/// Prefix of the staging databases restores load into.
pub const STAGING_PREFIX: &str = "_backup_staging_";

/// The table in every staging database that marks it as this library's:
/// the target database and the restore's last sign of life. Never moved
/// into the target.
pub const MARKER_TABLE: &str = "__backup_restore_marker";

/// How long a staging database whose loader has no connection open may
/// sit idle before [`MysqlTarget::remove_leftovers`](crate::MysqlTarget)
/// with this grace drops it (a restore between loading and promoting
/// refreshes its mark).
pub const DEFAULT_STAGING_GRACE: Duration = Duration::from_secs(10 * 60);

/// Creates `staging` (utf8mb4) with its marker naming `target`.
pub(crate) async fn create_staging(
    tools: &MysqlTools,
    admin: &MysqlConnection,
    staging: &str,
    target: &str,
) -> Result<()> {
    let db = quote_ident(staging);
    run_sql(
        tools,
        admin,
        None,
        &format!(
            "CREATE DATABASE {db} CHARACTER SET utf8mb4;
             CREATE TABLE {db}.{marker} (target VARCHAR(64) CHARACTER SET utf8mb4 NOT NULL, beat DATETIME NOT NULL);
             INSERT INTO {db}.{marker} VALUES ({target}, UTC_TIMESTAMP());",
            marker = quote_ident(MARKER_TABLE),
            target = quote_literal(target),
        ),
        Side::Restore,
    )
    .await
    .map(|_| ())
}

/// Refreshes the mark of `staging`: its restore is alive.
pub(crate) async fn heartbeat(
    tools: &MysqlTools,
    admin: &MysqlConnection,
    staging: &str,
) -> Result<()> {
    run_sql(
        tools,
        admin,
        None,
        &format!(
            "UPDATE {}.{} SET beat = UTC_TIMESTAMP()",
            quote_ident(staging),
            quote_ident(MARKER_TABLE)
        ),
        Side::Restore,
    )
    .await
    .map(|_| ())
}

/// How many connections use `database` as their default database.
pub(crate) async fn connections(
    tools: &MysqlTools,
    admin: &MysqlConnection,
    database: &str,
) -> Result<u64> {
    let rows = run_sql(
        tools,
        admin,
        None,
        &format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = {}",
            quote_literal(database)
        ),
        Side::Restore,
    )
    .await?;
    Ok(rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX))
}

/// The databases named like staging databases: marked ones with their
/// target and idle time (zero while a connection uses them, else the time
/// since their mark), unmarked ones by name.
pub(crate) async fn scan(tools: &MysqlTools, admin: &MysqlConnection) -> Result<Vec<Candidate>> {
    let rows = run_sql(
        tools,
        admin,
        None,
        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME",
        Side::Restore,
    )
    .await?;
    let mut found = Vec::new();
    for name in rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
    {
        if !name.starts_with(STAGING_PREFIX) {
            continue;
        }
        let marker = run_sql(
            tools,
            admin,
            None,
            &format!(
                "SELECT target, TIMESTAMPDIFF(SECOND, beat, UTC_TIMESTAMP()) FROM {}.{}",
                quote_ident(&name),
                quote_ident(MARKER_TABLE)
            ),
            Side::Restore,
        )
        .await;
        let (target, since) = match marker.as_deref() {
            Ok([row]) => match row.as_slice() {
                [Some(target), Some(since)] => (target.clone(), since.parse::<u64>().ok()),
                _ => {
                    found.push(Candidate::Unmarked(name));
                    continue;
                }
            },
            _ => {
                found.push(Candidate::Unmarked(name));
                continue;
            }
        };
        let idle = if connections(tools, admin, &name).await? > 0 {
            Some(Duration::ZERO)
        } else {
            since.map(Duration::from_secs)
        };
        found.push(Candidate::Marked(Leftover::new(name, Some(target), idle)));
    }
    Ok(found)
}

/// Drops the leftover unless a connection still uses it.
pub(crate) async fn remove(
    tools: &MysqlTools,
    admin: &MysqlConnection,
    leftover: &Leftover,
) -> Removal {
    match connections(tools, admin, &leftover.name).await {
        Ok(0) => {}
        Ok(_) => return Removal::Refused("a connection still uses it".into()),
        Err(e) => return Removal::Refused(e.to_string()),
    }
    let dropped = run_sql(
        tools,
        admin,
        None,
        &format!("DROP DATABASE IF EXISTS {}", quote_ident(&leftover.name)),
        Side::Restore,
    )
    .await;
    match dropped {
        Ok(_) => Removal::Removed,
        Err(e) => Removal::Refused(e.to_string()),
    }
}
