//! What a database holds, read from `information_schema` and the
//! `SHOW CREATE` statements: its tables, and the definitions of its
//! views, triggers, routines and events, to recreate them elsewhere.

use backup_core::{Error, Result};

use crate::client::{ENGINE, MysqlTools, Side, quote_ident, quote_literal, run_sql};
use crate::conn::MysqlConnection;

/// A view, trigger, routine or event, as `SHOW CREATE` gives it: the
/// statement (names unqualified: it was read with its database as the
/// default) and the session settings it was created under.
#[derive(Debug, Clone)]
pub(crate) struct Definition {
    /// `VIEW`, `TRIGGER`, `PROCEDURE`, `FUNCTION` or `EVENT`.
    pub(crate) kind: &'static str,
    pub(crate) name: String,
    /// For a trigger, its table.
    pub(crate) table: Option<String>,
    pub(crate) create: String,
    pub(crate) sql_mode: Option<String>,
    pub(crate) time_zone: Option<String>,
    pub(crate) charset: String,
    pub(crate) collation: String,
}

impl Definition {
    /// A client script creating this object in the default database,
    /// under its settings, with a delimiter no statement contains.
    pub(crate) fn script(&self) -> String {
        // The client keeps at most 15 bytes of a delimiter.
        let mut delimiter = format!("$$bk{:08x}$$", rand::random::<u32>());
        while self.create.contains(&delimiter) {
            delimiter = format!("$$bk{:08x}$$", rand::random::<u32>());
        }
        let mut s = format!(
            "SET NAMES {} COLLATE {};\n",
            quote_literal(&self.charset),
            quote_literal(&self.collation)
        );
        if let Some(mode) = &self.sql_mode {
            s.push_str(&format!(
                "SET SESSION sql_mode = {};\n",
                quote_literal(mode)
            ));
        }
        if let Some(tz) = &self.time_zone {
            s.push_str(&format!("SET SESSION time_zone = {};\n", quote_literal(tz)));
        }
        s.push_str(&format!(
            "DELIMITER {delimiter}\n{}{delimiter}\nDELIMITER ;\n",
            self.create
        ));
        s
    }

    /// `DROP <kind> IF EXISTS <name>`.
    pub(crate) fn drop_statement(&self) -> String {
        format!(
            "DROP {} IF EXISTS {};\n",
            self.kind,
            quote_ident(&self.name)
        )
    }
}

/// A database's contents.
#[derive(Debug, Clone, Default)]
pub(crate) struct Catalog {
    /// Base tables (and sequences), by name.
    pub(crate) tables: Vec<String>,
    pub(crate) views: Vec<Definition>,
    pub(crate) triggers: Vec<Definition>,
    pub(crate) routines: Vec<Definition>,
    pub(crate) events: Vec<Definition>,
}

/// The names and types of the tables and views of `database`.
pub(crate) async fn relations(
    tools: &MysqlTools,
    admin: &MysqlConnection,
    database: &str,
) -> Result<Vec<(String, bool)>> {
    let rows = run_sql(
        tools,
        admin,
        None,
        &format!(
            "SELECT TABLE_NAME, TABLE_TYPE = 'VIEW' FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} ORDER BY TABLE_NAME",
            quote_literal(database)
        ),
        Side::Restore,
    )
    .await?;
    rows.into_iter()
        .map(|row| match row.as_slice() {
            [Some(name), Some(view)] => Ok((name.clone(), view == "1")),
            _ => Err(unexpected("information_schema.TABLES", &row)),
        })
        .collect()
}

/// Whether `database` exists.
pub(crate) async fn database_exists(
    tools: &MysqlTools,
    admin: &MysqlConnection,
    database: &str,
    side: Side,
) -> Result<bool> {
    let rows = run_sql(
        tools,
        admin,
        None,
        &format!(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}",
            quote_literal(database)
        ),
        side,
    )
    .await?;
    Ok(!rows.is_empty())
}

fn unexpected(what: &str, row: &[Option<String>]) -> Error {
    Error::Restore {
        engine: ENGINE,
        detail: format!("unexpected row from {what}: {} columns", row.len()),
    }
}

/// Reads everything in `database`.
pub(crate) async fn read(
    tools: &MysqlTools,
    admin: &MysqlConnection,
    database: &str,
) -> Result<Catalog> {
    let lit = quote_literal(database);
    let mut catalog = Catalog::default();
    let mut views = Vec::new();
    for (name, is_view) in relations(tools, admin, database).await? {
        if is_view {
            views.push(name);
        } else {
            catalog.tables.push(name);
        }
    }
    let names = |sql: String| async move {
        let rows = run_sql(tools, admin, None, &sql, Side::Restore).await?;
        rows.into_iter()
            .map(|row| match row.as_slice() {
                [Some(a), Some(b)] => Ok((a.clone(), b.clone())),
                _ => Err(unexpected("information_schema", &row)),
            })
            .collect::<Result<Vec<(String, String)>>>()
    };
    let triggers = names(format!(
        "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {lit} ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER"
    ))
    .await?;
    let routines = names(format!(
        "SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {lit} ORDER BY ROUTINE_TYPE, ROUTINE_NAME"
    ))
    .await?;
    let events = names(format!(
        "SELECT EVENT_NAME, EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {lit} ORDER BY EVENT_NAME"
    ))
    .await?;

    // One client run for all the SHOW CREATE statements; each answer is
    // one row, in order.
    let mut sql = String::new();
    for v in &views {
        sql.push_str(&format!("SHOW CREATE VIEW {};\n", quote_ident(v)));
    }
    for (t, _) in &triggers {
        sql.push_str(&format!("SHOW CREATE TRIGGER {};\n", quote_ident(t)));
    }
    for (r, kind) in &routines {
        let kind = routine_kind(kind)?;
        sql.push_str(&format!("SHOW CREATE {kind} {};\n", quote_ident(r)));
    }
    for (e, _) in &events {
        sql.push_str(&format!("SHOW CREATE EVENT {};\n", quote_ident(e)));
    }
    if sql.is_empty() {
        return Ok(catalog);
    }
    let rows = run_sql(tools, admin, Some(database), &sql, Side::Restore).await?;
    let expected = views.len() + triggers.len() + routines.len() + events.len();
    if rows.len() != expected {
        return Err(Error::Restore {
            engine: ENGINE,
            detail: format!(
                "SHOW CREATE answered {} rows for {expected} objects (a definition with a line break the client did not escape?)",
                rows.len()
            ),
        });
    }
    let mut rows = rows.into_iter();
    let mut next = || rows.next().unwrap_or_default();
    let field = |row: &[Option<String>], i: usize| -> Result<String> {
        row.get(i)
            .cloned()
            .flatten()
            .ok_or_else(|| unexpected("SHOW CREATE", row))
    };
    for name in views {
        // View, Create View, character_set_client, collation_connection
        let row = next();
        catalog.views.push(Definition {
            kind: "VIEW",
            name,
            table: None,
            create: field(&row, 1)?,
            sql_mode: None,
            time_zone: None,
            charset: field(&row, 2)?,
            collation: field(&row, 3)?,
        });
    }
    for (name, table) in triggers {
        // Trigger, sql_mode, SQL Original Statement, character_set_client,
        // collation_connection, Database Collation, Created
        let row = next();
        catalog.triggers.push(Definition {
            kind: "TRIGGER",
            name,
            table: Some(table),
            create: field(&row, 2)?,
            sql_mode: Some(field(&row, 1)?),
            time_zone: None,
            charset: field(&row, 3)?,
            collation: field(&row, 4)?,
        });
    }
    for (name, kind) in routines {
        // Name, sql_mode, Create Procedure, character_set_client,
        // collation_connection, Database Collation
        let row = next();
        catalog.routines.push(Definition {
            kind: routine_kind(&kind)?,
            name,
            table: None,
            create: field(&row, 2)?,
            sql_mode: Some(field(&row, 1)?),
            time_zone: None,
            charset: field(&row, 3)?,
            collation: field(&row, 4)?,
        });
    }
    for (name, _) in events {
        // Event, sql_mode, time_zone, Create Event, character_set_client,
        // collation_connection, Database Collation
        let row = next();
        catalog.events.push(Definition {
            kind: "EVENT",
            name,
            table: None,
            create: field(&row, 3)?,
            sql_mode: Some(field(&row, 1)?),
            time_zone: Some(field(&row, 2)?),
            charset: field(&row, 4)?,
            collation: field(&row, 5)?,
        });
    }
    Ok(catalog)
}

fn routine_kind(kind: &str) -> Result<&'static str> {
    match kind {
        "PROCEDURE" => Ok("PROCEDURE"),
        "FUNCTION" => Ok("FUNCTION"),
        "PACKAGE" | "PACKAGE BODY" => Err(Error::Restore {
            engine: ENGINE,
            detail: format!("stored {kind} objects (Oracle mode) are not supported"),
        }),
        other => Err(Error::Restore {
            engine: ENGINE,
            detail: format!("unknown routine type {other:?}"),
        }),
    }
}
