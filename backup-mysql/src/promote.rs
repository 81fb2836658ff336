//! Moving a verified restore from its staging database into the target:
//! one `RENAME TABLE` for every table, then the views, triggers, routines
//! and events recreated.

use backup_core::{Error, Result};

use crate::catalog::{self, Catalog, Definition};
use crate::client::{ENGINE, MysqlTools, Side, quote_ident, run_sql};
use crate::conn::MysqlConnection;
use crate::leftovers::{MARKER_TABLE, STAGING_PREFIX};

/// Prefix of the databases a clean restore moves replaced tables into
/// (dropped right after).
pub(crate) const TRASH_PREFIX: &str = "_backup_replaced_";

/// What to promote where.
#[derive(Debug)]
pub(crate) struct Promotion<'a> {
    pub(crate) tools: &'a MysqlTools,
    pub(crate) admin: &'a MysqlConnection,
    pub(crate) staging: &'a str,
    pub(crate) target: &'a str,
    pub(crate) clean: bool,
    pub(crate) must_be_new: bool,
    pub(crate) only: &'a [String],
}

fn restore_error(detail: String) -> Error {
    Error::Restore {
        engine: ENGINE,
        detail,
    }
}

/// Promotes the staging database; returns warnings. Before the
/// `RENAME TABLE` nothing in the target has changed when this fails
/// (except, for a clean restore, the triggers of tables about to be
/// replaced); after it, the error says what is missing.
pub(crate) async fn promote(p: &Promotion<'_>) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let mut staged = catalog::read(p.tools, p.admin, p.staging).await?;
    staged.tables.retain(|t| t != MARKER_TABLE);
    if !p.only.is_empty() {
        select(&mut staged, p.only, &mut warnings)?;
    }

    // The target: created new (refused if it appeared meanwhile and must
    // be new), or checked for collisions.
    let exists = catalog::database_exists(p.tools, p.admin, p.target, Side::Restore).await?;
    if exists && p.must_be_new {
        return Err(Error::AlreadyExists {
            key: format!("mysql database {:?}", p.target),
        });
    }
    let mut replaced_tables = Vec::new();
    let mut replaced_views = Vec::new();
    if !exists {
        if let Err(e) = exec(
            p,
            None,
            format!("CREATE DATABASE {}", quote_ident(p.target)),
        )
        .await
        {
            if catalog::database_exists(p.tools, p.admin, p.target, Side::Restore).await? {
                return Err(Error::AlreadyExists {
                    key: format!(
                        "mysql database {:?} (created while the restore ran)",
                        p.target
                    ),
                });
            }
            return Err(e);
        }
    } else {
        let restored: Vec<&str> = staged
            .tables
            .iter()
            .map(String::as_str)
            .chain(staged.views.iter().map(|v| v.name.as_str()))
            .collect();
        for (name, is_view) in catalog::relations(p.tools, p.admin, p.target).await? {
            if restored.iter().any(|r| r.eq_ignore_ascii_case(&name)) {
                if is_view {
                    replaced_views.push(name);
                } else {
                    replaced_tables.push(name);
                }
            }
        }
        let mut names = replaced_tables.clone();
        names.extend(replaced_views.iter().cloned());
        if !p.clean {
            // Triggers, routines and events are recreated after the
            // rename: a clash must show before it.
            let existing = catalog::read(p.tools, p.admin, p.target).await?;
            let defs = |c: &Catalog| -> Vec<(&'static str, String)> {
                c.triggers
                    .iter()
                    .chain(&c.routines)
                    .chain(&c.events)
                    .map(|d| (d.kind, d.name.to_lowercase()))
                    .collect()
            };
            let there = defs(&existing);
            for (kind, name) in defs(&staged) {
                if there.contains(&(kind, name.clone())) {
                    names.push(format!("{} {name}", kind.to_lowercase()));
                }
            }
        }
        if !names.is_empty() && !p.clean {
            return Err(restore_error(format!(
                "database {:?} already has {}; restore with clean to replace them, or into a new database",
                p.target,
                names.join(", ")
            )));
        }
    }

    // Tables with triggers cannot move to another database: the staged
    // ones lose theirs (recreated below), the replaced ones too.
    let mut drops = String::new();
    for t in &staged.triggers {
        drops.push_str(&t.drop_statement());
    }
    if !drops.is_empty() {
        exec(p, Some(p.staging), drops).await?;
    }
    let trash = if replaced_tables.is_empty() {
        None
    } else {
        let target_catalog = catalog::read(p.tools, p.admin, p.target).await?;
        let mut drops = String::new();
        for t in target_catalog.triggers.iter().filter(|t| {
            t.table
                .as_ref()
                .is_some_and(|table| replaced_tables.contains(table))
        }) {
            drops.push_str(&t.drop_statement());
        }
        if !drops.is_empty() {
            exec(p, Some(p.target), drops).await?;
        }
        let trash = format!("{TRASH_PREFIX}{}", &p.staging[STAGING_PREFIX.len()..]);
        exec(p, None, format!("CREATE DATABASE {}", quote_ident(&trash))).await?;
        Some(trash)
    };

    // The one atomic step: every table in one statement.
    let mut pairs = Vec::new();
    if let Some(trash) = &trash {
        for t in &replaced_tables {
            pairs.push(format!(
                "{}.{} TO {}.{}",
                quote_ident(p.target),
                quote_ident(t),
                quote_ident(trash),
                quote_ident(t)
            ));
        }
    }
    for t in &staged.tables {
        pairs.push(format!(
            "{}.{} TO {}.{}",
            quote_ident(p.staging),
            quote_ident(t),
            quote_ident(p.target),
            quote_ident(t)
        ));
    }
    if !pairs.is_empty() {
        let renamed = exec(p, None, format!("RENAME TABLE {}", pairs.join(", "))).await;
        if let Err(e) = renamed {
            if let Some(trash) = &trash {
                let _ = exec(
                    p,
                    None,
                    format!("DROP DATABASE IF EXISTS {}", quote_ident(trash)),
                )
                .await;
            }
            return Err(e);
        }
    }
    tracing::debug!(
        target = p.target,
        tables = staged.tables.len(),
        "mysql tables moved into place"
    );

    // Not atomic from here: the objects that cannot move.
    let failed = recreate(p, &staged, &replaced_views).await;
    if let Some(trash) = &trash
        && let Err(e) = exec(p, None, format!("DROP DATABASE {}", quote_ident(trash))).await
    {
        warnings.push(format!("could not drop {trash} (the replaced tables): {e}"));
    }
    if !failed.is_empty() {
        return Err(restore_error(format!(
            "the tables of {:?} are restored, but these objects could not be recreated: {}",
            p.target,
            failed.join("; ")
        )));
    }
    Ok(warnings)
}

/// Runs `text` as the admin, in `db`.
async fn exec(
    p: &Promotion<'_>,
    db: Option<&str>,
    text: String,
) -> Result<Vec<Vec<Option<String>>>> {
    run_sql(p.tools, p.admin, db, &text, Side::Restore).await
}

/// Keeps the tables in `only` and their triggers; views, routines and
/// events are left out (with a warning): they may need tables that are.
fn select(staged: &mut Catalog, only: &[String], warnings: &mut Vec<String>) -> Result<()> {
    if let Some(missing) = only.iter().find(|o| !staged.tables.contains(o)) {
        return Err(restore_error(format!(
            "table {missing:?} is not in the backup"
        )));
    }
    staged.tables.retain(|t| only.contains(t));
    staged
        .triggers
        .retain(|t| t.table.as_ref().is_some_and(|table| only.contains(table)));
    let left_out = staged.views.len() + staged.routines.len() + staged.events.len();
    if left_out > 0 {
        warnings.push(format!(
            "{left_out} views, routines and events were not restored: only tables were selected"
        ));
    }
    staged.views.clear();
    staged.routines.clear();
    staged.events.clear();
    Ok(())
}

/// Creates the staged views (in dependency order, found by retrying),
/// triggers, routines and events in the target, replacing same-named
/// ones; returns what failed and why.
async fn recreate(p: &Promotion<'_>, staged: &Catalog, replaced_views: &[String]) -> Vec<String> {
    let run = |text: String| async move {
        run_sql(p.tools, p.admin, Some(p.target), &text, Side::Restore).await
    };
    let mut failed = Vec::new();
    if !replaced_views.is_empty() {
        let drops: String = replaced_views
            .iter()
            .map(|v| format!("DROP VIEW IF EXISTS {};\n", quote_ident(v)))
            .collect();
        if let Err(e) = run(drops).await {
            failed.push(format!("dropping the replaced views: {e}"));
        }
    }
    let mut pending: Vec<&Definition> = staged.views.iter().collect();
    while !pending.is_empty() {
        let mut left = Vec::new();
        let mut last_error = None;
        for view in &pending {
            if let Err(e) = run(view.script()).await {
                last_error = Some(format!("view {}: {e}", view.name));
                left.push(*view);
            }
        }
        if left.len() == pending.len() {
            failed.extend(last_error);
            break;
        }
        pending = left;
    }
    for def in staged
        .triggers
        .iter()
        .chain(&staged.routines)
        .chain(&staged.events)
    {
        let text = if p.clean {
            format!("{}{}", def.drop_statement(), def.script())
        } else {
            def.script()
        };
        if let Err(e) = run(text).await {
            failed.push(format!("{} {}: {e}", def.kind.to_lowercase(), def.name));
        }
    }
    failed
}

/// Drops `database`, logging (not returning) a failure.
pub(crate) async fn drop_quietly(tools: &MysqlTools, admin: &MysqlConnection, database: &str) {
    let dropped = run_sql(
        tools,
        admin,
        None,
        &format!("DROP DATABASE IF EXISTS {}", quote_ident(database)),
        Side::Restore,
    )
    .await;
    if let Err(e) = dropped {
        tracing::warn!(database, error = %e, "could not drop a mysql staging database");
    }
}
