//! Content fingerprints of a database: per table `count(*)` and the sum of
//! `hashtextextended(row::text, 0)`, taken by one `psql` held open in a
//! `REPEATABLE READ` transaction. For a dump, that transaction exports
//! its snapshot and `pg_dump --snapshot` dumps exactly what is counted;
//! the transaction stays open until `pg_dump` is done with the snapshot.
//!
//! Cost: one sequential scan of every table (plus the text conversion and
//! hash of every row) on the source, concurrently with the dump, and the
//! same on the drill server. Row text depends on output settings, fixed
//! here for both sides (UTC, ISO dates, hex bytea, `extra_float_digits`).

use std::process::Stdio;

use backup_core::fingerprint::{Fingerprint, TableFingerprint};
use backup_core::{Error, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::task::JoinHandle;

use crate::conn::PgConnection;
use crate::tools::{PassFile, PgTools, Step, classify, drain_stderr, pg_command};

/// The method recorded in fingerprints of this module.
pub(crate) const METHOD: &str = "postgres.hashtextextended.v1";

/// The oldest server with `hashtextextended` (PostgreSQL 11).
pub(crate) const MIN_MAJOR: u32 = 11;

/// Output settings both sides use, so a row prints the same way.
const SETTINGS: &str = "SET TimeZone = 'UTC';\nSET DateStyle = 'ISO, YMD';\n\
SET IntervalStyle = 'postgres';\nSET extra_float_digits = 3;\nSET bytea_output = 'hex';\n\
BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\n";

/// Ends the answer to [`COUNT_TABLES`].
const END: &str = "fingerprint-end";

/// One query per table pg_dump dumps the data of (ordinary tables and
/// partitions outside the system schemas, not members of extensions),
/// run by psql's `\gexec`; each prints a JSON array
/// `[name, rows, checksum]`.
const COUNT_TABLES: &str = "SELECT format('SELECT json_build_array(%L, count(*), \
coalesce(sum(hashtextextended(ROW(r.*)::text, 0)::numeric), 0)::text) FROM ONLY %I.%I r', \
quote_ident(n.nspname) || '.' || quote_ident(c.relname), n.nspname, c.relname) \
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
WHERE c.relkind = 'r' AND c.relpersistence <> 't' \
AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)' \
AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
AND d.objid = c.oid AND d.deptype = 'e') \
ORDER BY n.nspname, c.relname \\gexec\nSELECT 'fingerprint-end';\n";

/// A `psql` inside a `REPEATABLE READ, READ ONLY` transaction. Dropping
/// it kills psql, which ends the transaction.
pub(crate) struct Session {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: Option<JoinHandle<String>>,
    conn: PgConnection,
}

impl Session {
    /// Starts psql on `conn` and opens the transaction.
    pub(crate) async fn open(tools: &PgTools, conn: &PgConnection) -> Result<Session> {
        let mut session = Session::connect(tools, conn).await?;
        session.send(SETTINGS).await?;
        Ok(session)
    }

    /// Starts psql on `conn`, outside any transaction.
    pub(crate) async fn connect(tools: &PgTools, conn: &PgConnection) -> Result<Session> {
        let psql = tools.resolve("psql", None).await?;
        let passfile = PassFile::create(conn)?;
        let mut cmd = pg_command(&psql.path, conn, &passfile)?;
        cmd.args(["-X", "-A", "-t", "-q", "-w", "-v", "ON_ERROR_STOP=1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("starting {}", psql.path.display()), e))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(Error::Dump {
                engine: "postgres",
                detail: "psql started without its pipes".into(),
            });
        };
        Ok(Session {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            stderr: Some(drain_stderr(stderr)),
            conn: conn.clone(),
        })
    }

    /// Exports the transaction's snapshot, for `pg_dump --snapshot`.
    pub(crate) async fn export_snapshot(&mut self) -> Result<String> {
        self.send("SELECT 'snapshot ' || pg_export_snapshot();\n")
            .await?;
        let line = self.line().await?;
        let id = line.strip_prefix("snapshot ").unwrap_or_default();
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == '-' || c == '_')
        {
            return Err(self.unexpected(&line));
        }
        Ok(id.to_string())
    }

    /// Counts and hashes every table, in the transaction's snapshot.
    pub(crate) async fn count(&mut self) -> Result<Fingerprint> {
        self.send(COUNT_TABLES).await?;
        let mut tables = Vec::new();
        loop {
            let line = self.line().await?;
            if line == END {
                break;
            }
            let table = parse_table(&line).ok_or_else(|| self.unexpected(&line))?;
            tables.push(table);
        }
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Fingerprint {
            method: METHOD.to_string(),
            tables,
        })
    }

    /// Ends the transaction and psql.
    pub(crate) async fn finish(mut self) -> Result<()> {
        self.send("COMMIT;\n").await?;
        drop(self.stdin);
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| Error::io("waiting for psql", e))?;
        if status.success() {
            return Ok(());
        }
        let stderr = match self.stderr.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => String::new(),
        };
        Err(classify(
            Step::Connect,
            &stderr,
            &format!("psql {status}"),
            &self.conn,
        ))
    }

    /// Sends SQL to psql.
    pub(crate) async fn send(&mut self, sql: &str) -> Result<()> {
        match self.stdin.write_all(sql.as_bytes()).await {
            Ok(()) => self
                .stdin
                .flush()
                .await
                .map_err(|e| Error::io("writing to psql", e)),
            Err(_) => Err(self.failed().await),
        }
    }

    /// The next line psql prints; an error with its stderr when it ended.
    pub(crate) async fn line(&mut self) -> Result<String> {
        match self.lines.next_line().await {
            Ok(Some(line)) => Ok(line),
            Ok(None) | Err(_) => Err(self.failed().await),
        }
    }

    /// Why psql stopped answering.
    async fn failed(&mut self) -> Error {
        let status = self.child.wait().await.map(|s| s.to_string());
        let stderr = match self.stderr.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => String::new(),
        };
        classify(
            Step::Connect,
            &stderr,
            &format!("psql {}", status.unwrap_or_else(|e| e.to_string())),
            &self.conn,
        )
    }

    fn unexpected(&self, line: &str) -> Error {
        Error::Dump {
            engine: "postgres",
            detail: format!(
                "unexpected answer while fingerprinting: {:?}",
                line.chars().take(200).collect::<String>()
            ),
        }
    }
}

/// `["name", rows, "checksum"]`.
fn parse_table(line: &str) -> Option<TableFingerprint> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let [name, rows, checksum] = value.as_array()?.as_slice() else {
        return None;
    };
    let checksum = checksum.as_str()?;
    let digits = checksum.strip_prefix('-').unwrap_or(checksum);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(TableFingerprint {
        name: name.as_str()?.to_string(),
        rows: rows.as_u64()?,
        checksum: checksum.to_string(),
    })
}

/// The fingerprint of the database `conn` names, in one snapshot.
/// [`of_database`] with `search_path` set to `pg_catalog` first, for a
/// database whose role or database settings are not trusted (a restored
/// cluster): no schema of its own shadows the functions counting.
pub(crate) async fn of_database_pinned(
    tools: &PgTools,
    conn: &PgConnection,
) -> Result<Fingerprint> {
    let mut session = Session::connect(tools, conn).await?;
    session
        .send("SET search_path = pg_catalog, pg_temp;\n")
        .await?;
    session.send(SETTINGS).await?;
    count_and_finish(session).await
}

pub(crate) async fn of_database(tools: &PgTools, conn: &PgConnection) -> Result<Fingerprint> {
    count_and_finish(Session::open(tools, conn).await?).await
}

/// Counts every table in `session`, then ends it.
async fn count_and_finish(mut session: Session) -> Result<Fingerprint> {
    let fingerprint = session.count().await?;
    session.finish().await?;
    Ok(fingerprint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_table_lines_strictly() {
        let t = parse_table(r#"["\"public\".\"a|b\"", 3, "-123"]"#).unwrap();
        assert_eq!(
            (t.name.as_str(), t.rows, t.checksum.as_str()),
            ("\"public\".\"a|b\"", 3, "-123")
        );
        assert!(parse_table(r#"["a", 3, "12x"]"#).is_none());
        assert!(parse_table(r#"["a", -1, "1"]"#).is_none());
        assert!(parse_table(r#"["a", 3]"#).is_none());
        assert!(parse_table("fingerprint").is_none());
    }
}
