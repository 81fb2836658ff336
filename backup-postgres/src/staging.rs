//! Staging databases of `restore --create`: created under a marked
//! temporary name, renamed to the target at commit, and found and dropped
//! when a killed restore left one behind.
//!
//! `CREATE DATABASE` cannot run in a transaction, so the marker (a
//! database comment) is set by a second statement. A process killed
//! between the two leaves a database without comment; so that it is still
//! recognisably ours, it is created refusing connections and the marking
//! statement opens it in the same transaction as it writes the comment. A
//! database named like a staging database that refuses connections and has
//! no comment is one such "unborn" staging database: empty (nobody could
//! connect to it) and found, aged and dropped like the others.

use std::time::Duration;

use backup_core::{
    Error, Result, source::Candidate, source::Leftover, source::LeftoverReport, source::Removal,
};

use crate::conn::PgConnection;
use crate::tools::{PgTools, psql_all, quote_ident, quote_literal};

/// How old a leftover staging database must be before a restore creating
/// the same target drops it: long enough to cover the moments when a
/// running restore has no connection to its staging database (just after
/// creating it, just before renaming it). A staging database in use is
/// never dropped, whatever its age.
pub const DEFAULT_STAGING_GRACE: Duration = Duration::from_secs(10 * 60);

/// The start of the database comment marking a staging database as ours.
const MARKER: &str = "backup-postgres restore staging";

/// `<target>__restore_<8 hex>`: the suffix.
const SUFFIX: &str = "__restore_";

/// The regular expression (PostgreSQL's `~`) staging names match.
const NAME_PATTERN: &str = "__restore_[0-9a-f]{8}$";

/// A staging name for `target`, shortened so the whole fits PostgreSQL's
/// 63 bytes.
pub(crate) fn staging_name(target: &str) -> String {
    let suffix = format!("{SUFFIX}{:08x}", rand::random::<u32>());
    let mut keep = (63 - suffix.len()).min(target.len());
    while !target.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{suffix}", &target[..keep])
}

/// Runs SQL in the maintenance database (`postgres`, or `template1` where
/// there is none).
pub(crate) async fn maintenance(
    tools: &PgTools,
    admin: &PgConnection,
    sqls: &[&str],
) -> Result<String> {
    match psql_all(tools, &admin.with_database("postgres"), sqls).await {
        Err(Error::DatabaseMissing { .. }) => {
            psql_all(tools, &admin.with_database("template1"), sqls).await
        }
        other => other,
    }
}

/// Creates a marked staging database for `target` and returns its name.
pub(crate) async fn create(tools: &PgTools, admin: &PgConnection, target: &str) -> Result<String> {
    let name = staging_name(target);
    // The marker's time is the server's, so ages never depend on the
    // clocks of the hosts running restores.
    let tag = loop {
        let tag = format!("$backup_{:016x}$", rand::random::<u64>());
        if !target.contains(&tag) {
            break tag;
        }
    };
    let mark = format!(
        "DO {tag} BEGIN EXECUTE format('COMMENT ON DATABASE %I IS %L', {name_lit}, {} || extract(epoch from now())::bigint || {}); EXECUTE format('ALTER DATABASE %I ALLOW_CONNECTIONS true', {name_lit}); END {tag}",
        quote_literal(&format!("{MARKER}; created=")),
        quote_literal(&format!("; target={target}")),
        name_lit = quote_literal(&name),
    );
    // Refusing connections until marked: see the module docs.
    let create = format!(
        "CREATE DATABASE {} ALLOW_CONNECTIONS false",
        quote_ident(&name)
    );
    if let Err(e) = maintenance(tools, admin, &[&create, &mark]).await {
        drop_quietly(tools, admin, Some(&name)).await;
        return Err(e);
    }
    tracing::info!(%target, staging = %name, "created staging database for restore");
    Ok(name)
}

/// Renames `staging` to `target` and removes the marker, in one
/// transaction.
pub(crate) async fn promote(
    tools: &PgTools,
    admin: &PgConnection,
    staging: &str,
    target: &str,
) -> Result<()> {
    let sql = format!(
        "ALTER DATABASE {} RENAME TO {}; COMMENT ON DATABASE {} IS NULL",
        quote_ident(staging),
        quote_ident(target),
        quote_ident(target)
    );
    match maintenance(tools, admin, &[&sql]).await {
        Ok(_) => {
            tracing::info!(%target, %staging, "restored database renamed into place");
            Ok(())
        }
        Err(Error::Dump { detail, .. } | Error::Restore { detail, .. })
            if detail.contains("already exists") =>
        {
            Err(Error::AlreadyExists {
                key: format!("postgres database {target:?} (created while the restore ran)"),
            })
        }
        Err(e) => Err(e),
    }
}

/// Drops `staging` if given; failures are logged, not returned (the
/// caller is already reporting another error).
pub(crate) async fn drop_quietly(tools: &PgTools, admin: &PgConnection, staging: Option<&str>) {
    let Some(staging) = staging else {
        return;
    };
    let sql = format!("DROP DATABASE IF EXISTS {}", quote_ident(staging));
    match maintenance(tools, admin, &[&sql]).await {
        Ok(_) => tracing::info!(%staging, "staging database dropped"),
        Err(e) => {
            tracing::warn!(%staging, error = %e, "could not drop the staging database of a failed restore; RestoreTarget::remove_leftovers drops it later")
        }
    }
}

/// Every database named like a staging database, with its marker parsed.
/// Each with whether it is unborn: it refuses connections and has no
/// comment, so a restore was killed before it could mark it (see the
/// module docs).
async fn find_all(tools: &PgTools, admin: &PgConnection) -> Result<Vec<(Candidate, bool)>> {
    let sql = format!(
        "SELECT coalesce(json_agg(json_build_object('name', datname, 'comment', shobj_description(oid, 'pg_database'), 'allow_connections', datallowconn, 'now', extract(epoch from now())::bigint) ORDER BY datname), '[]') FROM pg_database WHERE datname ~ {}",
        quote_literal(NAME_PATTERN)
    );
    let out = maintenance(tools, admin, &[&sql]).await?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).map_err(|e| Error::Restore {
        engine: "postgres",
        detail: format!("unexpected answer listing staging databases: {e}"),
    })?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let name = row.get("name")?.as_str()?.to_string();
            let now = row.get("now").and_then(serde_json::Value::as_i64);
            let comment = row.get("comment").and_then(serde_json::Value::as_str);
            let marked = comment.and_then(|c| parse_marker(&name, c, now));
            let unborn = comment.is_none()
                && row.get("allow_connections") == Some(&serde_json::Value::Bool(false));
            let marked = marked.or_else(|| unborn.then(|| Leftover::new(&name, None, None)));
            Some((
                marked.map_or(Candidate::Unmarked(name), Candidate::Marked),
                unborn,
            ))
        })
        .collect())
}

/// `backup-postgres restore staging; created=<epoch>; target=<name>`.
fn parse_marker(name: &str, comment: &str, now: Option<i64>) -> Option<Leftover> {
    let rest = comment.strip_prefix(MARKER)?.strip_prefix("; created=")?;
    let (created, target) = rest.split_once("; target=")?;
    let created: i64 = created.parse().ok()?;
    let age = now
        .and_then(|now| now.checked_sub(created))
        .and_then(|secs| u64::try_from(secs).ok())
        .map(Duration::from_secs);
    // Empty: an unborn staging database adopted by a cleanup.
    let target = (!target.is_empty()).then(|| target.to_string());
    Some(Leftover::new(name, target, age))
}

/// Marks an unborn staging database (see the module docs) as created now,
/// still refusing connections.
async fn adopt(tools: &PgTools, admin: &PgConnection, name: &str) -> Result<()> {
    let tag = loop {
        let tag = format!("$backup_{:016x}$", rand::random::<u64>());
        if !name.contains(&tag) {
            break tag;
        }
    };
    let sql = format!(
        "DO {tag} BEGIN EXECUTE format('COMMENT ON DATABASE %I IS %L', {}, {} || extract(epoch from now())::bigint || {}); END {tag}",
        quote_literal(name),
        quote_literal(&format!("{MARKER}; created=")),
        quote_literal("; target="),
    );
    match maintenance(tools, admin, &[&sql]).await {
        Err(e) if e.to_string().contains("does not exist") => Ok(()),
        other => other.map(|_| ()),
    }
}

/// The marked staging databases on the server.
pub(crate) async fn find(tools: &PgTools, admin: &PgConnection) -> Result<Vec<Leftover>> {
    let found = find_all(tools, admin).await?;
    Ok(Candidate::marked(
        found.into_iter().map(|(candidate, _)| candidate).collect(),
    ))
}

/// Drops marked staging databases older than `older_than` (only those of
/// `target`, if given). An age the server could not tell (a clock step
/// back) counts as young.
pub(crate) async fn cleanup(
    tools: &PgTools,
    admin: &PgConnection,
    older_than: Duration,
    target: Option<&str>,
) -> Result<LeftoverReport> {
    let mut found = find_all(tools, admin).await?;
    // An unborn staging database has no creation time: a cleanup of every
    // target gives it one now (a restore still between its two statements
    // overwrites it), so that it expires after the grace like the others;
    // with a zero grace it goes at once.
    if target.is_none() {
        for (candidate, unborn) in &mut found {
            if let (Candidate::Marked(leftover), true) = (candidate, *unborn) {
                if older_than.is_zero() {
                    leftover.idle = Some(Duration::ZERO);
                } else {
                    adopt(tools, admin, &leftover.name).await?;
                }
            }
        }
    }
    let found = found.into_iter().map(|(candidate, _)| candidate).collect();
    Ok(
        LeftoverReport::apply(found, older_than, target, |staging| async move {
            let sql = format!("DROP DATABASE {}", quote_ident(&staging.name));
            match maintenance(tools, admin, &[&sql]).await {
                Ok(_) => Removal::Removed,
                Err(e) => {
                    let text = e.to_string();
                    if text.contains("being accessed by other users") {
                        Removal::Refused("in use (a restore may still be running)".to_string())
                    } else if text.contains("does not exist") {
                        Removal::Vanished
                    } else {
                        Removal::Refused(text)
                    }
                }
            }
        })
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_match_the_pattern() {
        let name = staging_name("sales");
        assert!(
            name.starts_with("sales__restore_") && name.len() == 5 + 18,
            "{name}"
        );
        assert_eq!(staging_name(&"x".repeat(63)).len(), 63);
        assert!(staging_name(&"é".repeat(40)).len() <= 63);
    }

    #[test]
    fn markers_parse() {
        let s = parse_marker(
            "a__restore_00000000",
            "backup-postgres restore staging; created=100; target=we; ird",
            Some(160),
        )
        .unwrap();
        assert_eq!(s.target.as_deref(), Some("we; ird"));
        assert_eq!(s.idle, Some(Duration::from_secs(60)));
        assert!(parse_marker("x", "someone else's comment", Some(1)).is_none());
        let future = parse_marker(
            "x",
            "backup-postgres restore staging; created=100; target=t",
            Some(50),
        );
        assert_eq!(future.unwrap().idle, None);
    }
}
