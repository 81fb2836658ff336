//! Tables for a person at a terminal (`list`, `stats`): columns as wide
//! as their widest cell, sizes in binary units and times as ages. Pipes
//! and files keep the fixed, machine-readable layout; `--json` is the
//! format for scripts.

use std::io::IsTerminal;
use std::sync::Arc;

use backup_core::catalog::{Stats, StatsReport};
use backup_core::format::{human_age, human_bytes};
use backup_core::manifest::Manifest;
use chrono::{DateTime, Utc};

/// Whether stdout is a terminal (tables for people) rather than a pipe or
/// a file (the layout scripts and tests read).
pub(crate) fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// Rows of text cells under a header, rendered with every column padded
/// to its widest cell (counted in characters) and two spaces between
/// columns; the last column is not padded.
#[derive(Debug)]
struct Table {
    header: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: Vec<(&'static str, Align)>) -> Self {
        Table {
            header,
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|(h, _)| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.header.iter().map(|(h, _)| h.to_string()).collect();
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let last = row.len().saturating_sub(1);
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let width = widths.get(i).copied().unwrap_or(0);
                let align = self.header.get(i).map_or(Align::Left, |(_, a)| *a);
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = " ".repeat(width.saturating_sub(cell.chars().count()));
                match align {
                    Align::Right => {
                        line.push_str(&pad);
                        line.push_str(cell);
                    }
                    Align::Left if i == last => line.push_str(cell),
                    Align::Left => {
                        line.push_str(cell);
                        line.push_str(&pad);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

fn time_and_age(t: DateTime<Utc>, now: DateTime<Utc>) -> (String, String) {
    (t.format("%Y-%m-%d %H:%M").to_string(), human_age(t, now))
}

/// `list` on a terminal: one row per backup, newest first, with its age.
pub(crate) fn backups(backups: &[Arc<Manifest>], now: DateTime<Utc>) -> String {
    use Align::{Left, Right};
    let mut t = Table::new(vec![
        ("ID", Left),
        ("TENANT", Left),
        ("SOURCE", Left),
        ("TYPE", Left),
        ("KIND", Left),
        ("STARTED (UTC)", Left),
        ("AGE", Right),
        ("SIZE", Right),
        ("STORED", Right),
        ("ENGINE", Left),
    ]);
    for m in backups {
        let (started, age) = time_and_age(m.started_at, now);
        t.row(vec![
            m.id.clone(),
            m.tenant.clone(),
            m.source_id.clone(),
            m.backup_type.to_string(),
            m.kind.to_string(),
            started,
            age,
            human_bytes(m.raw.size),
            human_bytes(m.bytes_stored()),
            m.engine.clone(),
        ]);
    }
    t.render()
}

/// `stats` on a terminal: totals per scope, then one row per backup.
pub(crate) fn stats(report: &StatsReport, backups: &[Arc<Manifest>], now: DateTime<Utc>) -> String {
    use Align::{Left, Right};
    let mut scopes = Table::new(vec![
        ("SCOPE", Left),
        ("BACKUPS", Right),
        ("STORED", Right),
        ("NEWEST", Right),
        ("OLDEST", Right),
    ]);
    let age = |t: Option<DateTime<Utc>>| t.map_or("-".to_string(), |t| human_age(t, now));
    let mut scope = |name: String, s: &Stats| {
        scopes.row(vec![
            name,
            s.count.to_string(),
            human_bytes(s.total_bytes),
            age(s.last_success),
            age(s.oldest),
        ]);
    };
    scope("total".into(), &report.total);
    for (tenant, s) in &report.tenants {
        scope(format!("tenant {tenant}"), s);
    }
    for (source, s) in &report.sources {
        scope(format!("source {source}"), s);
    }
    let mut rows = Table::new(vec![
        ("BACKUP", Left),
        ("TYPE", Left),
        ("AGE", Right),
        ("SIZE", Right),
        ("STORED", Right),
        ("CHUNKS (NEW/ALL)", Right),
    ]);
    for m in backups {
        rows.row(vec![
            m.id.clone(),
            m.backup_type.to_string(),
            human_age(m.started_at, now),
            human_bytes(m.raw.size),
            human_bytes(m.bytes_stored()),
            m.dedup
                .as_ref()
                .map_or("-".into(), |d| format!("{}/{}", d.new_chunks, d.chunks)),
        ]);
    }
    format!("{}\n{}", scopes.render(), rows.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_whatever_the_cell_widths() {
        let mut t = Table::new(vec![("NAME", Align::Left), ("SIZE", Align::Right)]);
        t.row(vec!["a".into(), "1.0 KiB".into()]);
        t.row(vec!["a-much-longer-näme".into(), "0 B".into()]);
        let out = t.render();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                "NAME                   SIZE",
                "a                   1.0 KiB",
                "a-much-longer-näme      0 B",
            ]
        );
    }

    #[test]
    fn an_empty_table_is_its_header() {
        let t = Table::new(vec![("ID", Align::Left), ("AGE", Align::Right)]);
        assert_eq!(t.render(), "ID  AGE\n");
    }
}
