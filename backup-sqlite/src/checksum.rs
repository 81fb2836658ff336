//! Content fingerprints of a database: one ordered checksum per table, to
//! tell whether a restore holds what was backed up.

use std::collections::BTreeMap;
use std::path::Path;

use backup_core::Result;
use backup_core::fingerprint::{Fingerprint, TableFingerprint};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};

use crate::error::{Side, sqlite_error};

/// What [`table_checksums`] found in one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableChecksum {
    /// Rows in the table.
    pub rows: u64,
    /// SHA-256 (hex) of every row in order (by `rowid`, or by every
    /// column for a `WITHOUT ROWID` table), each value with its type.
    pub sha256: String,
}

/// The checksum of each table of the database at `path` (opened
/// read-only), keyed by table name, plus `sqlite_schema`: the schema
/// itself (tables, indexes, views, triggers and their SQL). Two
/// databases with equal maps hold the same rows in the same tables,
/// whatever their page layout. Virtual tables are left out (their
/// content is in their shadow tables, which are counted).
///
/// ```no_run
/// let before = backup_sqlite::table_checksums("/var/lib/app/app.db".as_ref())?;
/// let after = backup_sqlite::table_checksums("/tmp/restored.db".as_ref())?;
/// assert_eq!(before, after);
/// # Ok::<(), backup_core::Error>(())
/// ```
pub fn table_checksums(path: &Path) -> Result<BTreeMap<String, TableChecksum>> {
    let db = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sqlite_error(Side::Dump, "cannot open", path, &e))?;
    checksums_of(&db, path)
}

/// [`table_checksums`] of an open database (`path` names it in errors).
fn checksums_of(db: &Connection, path: &Path) -> Result<BTreeMap<String, TableChecksum>> {
    let failed = |e: rusqlite::Error| sqlite_error(Side::Dump, "checksumming", path, &e);
    // One read transaction: every table as of the same commit.
    db.execute_batch("BEGIN").map_err(failed)?;
    let mut out = BTreeMap::new();
    out.insert(
        "sqlite_schema".to_string(),
        checksum(
            db,
            "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name",
        )
        .map_err(failed)?,
    );
    let tables: Vec<(String, bool)> = db
        .prepare(
            "SELECT name, sql LIKE '%WITHOUT ROWID%' FROM sqlite_schema \
             WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL%' ORDER BY name",
        )
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(failed)?;
    for (table, without_rowid) in tables {
        let quoted = format!("\"{}\"", table.replace('"', "\"\""));
        let order = if without_rowid {
            let columns: i64 = db
                .query_row(
                    "SELECT count(*) FROM pragma_table_info(?1)",
                    [&table],
                    |r| r.get(0),
                )
                .map_err(failed)?;
            (1..=columns.max(1))
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            "rowid".to_string()
        };
        let sum =
            checksum(db, &format!("SELECT * FROM {quoted} ORDER BY {order}")).map_err(failed)?;
        out.insert(table, sum);
    }
    db.execute_batch("COMMIT").map_err(failed)?;
    Ok(out)
}

fn checksum(db: &Connection, sql: &str) -> rusqlite::Result<TableChecksum> {
    let mut stmt = db.prepare(sql)?;
    let columns = stmt.column_count();
    let mut rows = stmt.query([])?;
    let mut hasher = Sha256::new();
    let mut count = 0u64;
    while let Some(row) = rows.next()? {
        count += 1;
        for i in 0..columns {
            match row.get_ref(i)? {
                ValueRef::Null => hasher.update([0u8]),
                ValueRef::Integer(v) => {
                    hasher.update([1u8]);
                    hasher.update(v.to_be_bytes());
                }
                ValueRef::Real(v) => {
                    hasher.update([2u8]);
                    hasher.update(v.to_bits().to_be_bytes());
                }
                ValueRef::Text(v) => {
                    hasher.update([3u8]);
                    hasher.update((v.len() as u64).to_be_bytes());
                    hasher.update(v);
                }
                ValueRef::Blob(v) => {
                    hasher.update([4u8]);
                    hasher.update((v.len() as u64).to_be_bytes());
                    hasher.update(v);
                }
            }
        }
    }
    Ok(TableChecksum {
        rows: count,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// How [`content_fingerprint`] computes: [`table_checksums`] (the rows of
/// each table in `rowid` order, each value with its type, SHA-256).
pub const FINGERPRINT_METHOD: &str = "sqlite.sha256-ordered.v1";

/// The content [`Fingerprint`] of the database at `path`:
/// [`table_checksums`] as a manifest records it. A restore of a SQLite
/// backup is a copy of its pages, so rows keep their `rowid` order and
/// an ordered checksum compares exactly.
pub(crate) fn content_fingerprint(path: &Path) -> Result<Fingerprint> {
    Ok(fingerprint_from(table_checksums(path)?))
}

/// [`content_fingerprint`] of an open database (`path` names it in
/// errors): a dump's spool, read while it streams.
pub(crate) fn content_fingerprint_of(db: &Connection, path: &Path) -> Result<Fingerprint> {
    Ok(fingerprint_from(checksums_of(db, path)?))
}

fn fingerprint_from(checksums: BTreeMap<String, TableChecksum>) -> Fingerprint {
    let tables = checksums
        .into_iter()
        .map(|(name, sum)| TableFingerprint {
            name,
            rows: sum.rows,
            checksum: sum.sha256,
        })
        .collect();
    Fingerprint {
        method: FINGERPRINT_METHOD.into(),
        tables,
    }
}
