//! Content fingerprints of MySQL dumps, counted from the dump stream
//! itself: `mysqldump --single-transaction` reads in a snapshot of its
//! own that no other session can share, so a count taken by a second
//! connection (before, during or after the dump) could describe other
//! data than the dump holds. The dump's text is the only exact account.
//!
//! [`DumpScanner`] reads the script as it streams past and keeps, per
//! table, the number of row tuples of its `INSERT INTO` statements and the
//! wrapping sum of a 64-bit hash of each tuple's text (the first 8 bytes
//! of its SHA-256), so the checksum does not depend on row order. Tables
//! are named by their `CREATE TABLE` statements (so empty tables are
//! listed with 0 rows); text between `DELIMITER ;;` and `DELIMITER ;`
//! (trigger and routine bodies) is skipped. A drill recomputes the same
//! by dumping the scratch database with the same tool and flags
//! ([`crate::MysqlDrill`]): both sides must print values the same way, so
//! the drill server should run the same server and tool versions as the
//! source.
//!
//! The scanner is a byte state machine that keeps no more than a table
//! name and one hasher, whatever the dump's size. Script text it does not
//! understand (another tool's output, `--complete-insert`-style column
//! lists are fine) makes it give up: the backup is then recorded without
//! a fingerprint rather than with a wrong one.

use std::collections::BTreeMap;

use backup_core::fingerprint::{Fingerprint, MAX_FINGERPRINT_TABLES, TableFingerprint};
use sha2::{Digest, Sha256};

/// The method recorded in fingerprints of this module.
pub(crate) const METHOD: &str = "mysql.dump-rows-sha256.v1";

/// Longest line start the scanner looks at.
const LINE_START: usize = 16;
const INSERT: &[u8] = b"INSERT INTO `";
const CREATE: &[u8] = b"CREATE TABLE `";
const DELIMITER_BLOCK: &[u8] = b"DELIMITER ;;";
const DELIMITER_END: &[u8] = b"DELIMITER ;";
/// Longest table name, in bytes (MySQL allows 64 characters).
const MAX_NAME: usize = 256;
/// Most bytes between a table name and `VALUES` (a column list).
const MAX_BEFORE_VALUES: usize = 1 << 20;

/// Where the scanner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting the first bytes of a line.
    LineStart,
    /// Skipping to the end of the line.
    RestOfLine,
    /// Inside the backquoted table name of an `INSERT` or `CREATE`.
    Name { insert: bool },
    /// A backquote in a name: its end or the first of a doubled one.
    NameQuote { insert: bool },
    /// Between an `INSERT`'s table name and `VALUES`.
    BeforeValues { backquoted: bool, matched: usize },
    /// Between the tuples of an `INSERT`.
    Values,
    /// Inside a tuple, outside strings.
    Tuple,
    /// Inside a quoted string of a tuple.
    Str,
    /// After a backslash in a string.
    StrEscape,
    /// After a quote in a string: its end or a doubled quote.
    StrQuote,
}

impl State {
    fn in_tuple(self) -> bool {
        matches!(
            self,
            State::Tuple | State::Str | State::StrEscape | State::StrQuote
        )
    }
}

/// Rows and checksum of one table so far.
#[derive(Debug, Default, Clone, Copy)]
struct Count {
    rows: u64,
    sum: u64,
}

/// Reads a `mariadb-dump`/`mysqldump` script chunk by chunk and counts
/// the rows of every table. See the module docs.
#[derive(Debug)]
pub(crate) struct DumpScanner {
    state: State,
    line: Vec<u8>,
    delimiter_block: bool,
    name: Vec<u8>,
    before_values: usize,
    /// The table of the current `INSERT` and its counts so far.
    table: String,
    current: Count,
    depth: u32,
    hasher: Sha256,
    tables: BTreeMap<String, Count>,
    broken: Option<String>,
}

impl Default for DumpScanner {
    fn default() -> Self {
        DumpScanner {
            state: State::LineStart,
            line: Vec::with_capacity(LINE_START),
            delimiter_block: false,
            name: Vec::new(),
            before_values: 0,
            table: String::new(),
            current: Count::default(),
            depth: 0,
            hasher: Sha256::new(),
            tables: BTreeMap::new(),
            broken: None,
        }
    }
}

impl DumpScanner {
    /// A scanner at the start of a script.
    pub(crate) fn new() -> Self {
        DumpScanner::default()
    }

    /// Reads the next bytes of the script.
    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        if self.broken.is_some() {
            return;
        }
        let mut span = self.state.in_tuple().then_some(0);
        let mut i = 0;
        while i < chunk.len() {
            let b = chunk[i];
            match self.state {
                State::LineStart => self.line_start(b),
                State::RestOfLine => match memchr::memchr(b'\n', &chunk[i..]) {
                    Some(at) => {
                        i += at;
                        self.state = State::LineStart;
                        self.line.clear();
                    }
                    None => return,
                },
                State::Name { insert } => {
                    if b == b'`' {
                        self.state = State::NameQuote { insert };
                    } else {
                        self.push_name(b);
                    }
                }
                State::NameQuote { insert } => {
                    if b == b'`' {
                        self.push_name(b);
                        self.state = State::Name { insert };
                    } else {
                        self.end_name(insert);
                        continue; // `b` belongs to the next state
                    }
                }
                State::BeforeValues {
                    backquoted,
                    matched,
                } => self.before_values(b, backquoted, matched),
                State::Values => match b {
                    b' ' | b'\n' | b'\r' | b'\t' | b',' => {}
                    b'(' => {
                        self.state = State::Tuple;
                        self.depth = 1;
                        span = Some(i);
                    }
                    b';' => {
                        self.end_insert();
                        self.state = State::RestOfLine;
                        continue; // finds the line's end
                    }
                    other => self.give_up(format!(
                        "unexpected byte 0x{other:02x} between the rows of table {:?}",
                        self.table
                    )),
                },
                State::Tuple => match b {
                    b'\'' => self.state = State::Str,
                    b'(' => self.depth = self.depth.saturating_add(1),
                    b')' => {
                        self.depth -= 1;
                        if self.depth == 0 {
                            let start = span.take().unwrap_or(0);
                            self.hasher.update(&chunk[start..=i]);
                            self.end_tuple();
                            self.state = State::Values;
                        }
                    }
                    _ => {}
                },
                State::Str => match memchr::memchr2(b'\'', b'\\', &chunk[i..]) {
                    Some(at) => {
                        i += at;
                        self.state = if chunk[i] == b'\\' {
                            State::StrEscape
                        } else {
                            State::StrQuote
                        };
                    }
                    None => break,
                },
                State::StrEscape => self.state = State::Str,
                State::StrQuote => {
                    if b == b'\'' {
                        self.state = State::Str;
                    } else {
                        self.state = State::Tuple;
                        continue; // `b` is tuple text
                    }
                }
            }
            if self.broken.is_some() {
                return;
            }
            i += 1;
        }
        if let Some(start) = span
            && self.state.in_tuple()
        {
            self.hasher.update(&chunk[start..]);
        }
    }

    /// The fingerprint of the whole script, or why there is none.
    pub(crate) fn finish(mut self) -> Result<Fingerprint, String> {
        if let Some(why) = self.broken.take() {
            return Err(why);
        }
        if !matches!(self.state, State::LineStart | State::RestOfLine) {
            return Err("the dump ended inside a statement".into());
        }
        if self.tables.len() > MAX_FINGERPRINT_TABLES {
            return Err(format!(
                "{} tables, more than a fingerprint lists ({MAX_FINGERPRINT_TABLES})",
                self.tables.len()
            ));
        }
        Ok(Fingerprint {
            method: METHOD.into(),
            tables: self
                .tables
                .into_iter()
                .map(|(name, count)| TableFingerprint {
                    name,
                    rows: count.rows,
                    checksum: count.sum.to_string(),
                })
                .collect(),
        })
    }

    fn give_up(&mut self, why: String) {
        self.broken.get_or_insert(why);
    }

    fn line_start(&mut self, b: u8) {
        if b == b'\n' {
            if self.line == DELIMITER_BLOCK {
                self.delimiter_block = true;
            } else if self.line == DELIMITER_END {
                self.delimiter_block = false;
            }
            self.line.clear();
            return;
        }
        self.line.push(b);
        if !self.delimiter_block && self.line == INSERT {
            self.name.clear();
            self.state = State::Name { insert: true };
        } else if !self.delimiter_block && self.line == CREATE {
            self.name.clear();
            self.state = State::Name { insert: false };
        } else if self.line.len() >= LINE_START
            || ![INSERT, CREATE, DELIMITER_BLOCK]
                .iter()
                .any(|p| p.starts_with(&self.line))
        {
            self.state = State::RestOfLine;
        }
    }

    fn push_name(&mut self, b: u8) {
        if self.name.len() >= MAX_NAME {
            self.give_up("a table name longer than MySQL allows".into());
        } else {
            self.name.push(b);
        }
    }

    fn end_name(&mut self, insert: bool) {
        let name = match String::from_utf8(std::mem::take(&mut self.name)) {
            Ok(name) => name,
            Err(_) => return self.give_up("a table name that is not UTF-8".into()),
        };
        if insert {
            self.table = name;
            self.current = Count::default();
            self.before_values = 0;
            self.state = State::BeforeValues {
                backquoted: false,
                matched: 0,
            };
        } else {
            self.tables.entry(name).or_default();
            self.state = State::RestOfLine;
        }
    }

    fn before_values(&mut self, b: u8, backquoted: bool, matched: usize) {
        const VALUES: &[u8] = b"VALUES";
        self.before_values += 1;
        if self.before_values > MAX_BEFORE_VALUES {
            return self.give_up(format!("no VALUES after INSERT INTO {:?}", self.table));
        }
        self.state = if b == b'`' {
            State::BeforeValues {
                backquoted: !backquoted,
                matched: 0,
            }
        } else if backquoted {
            State::BeforeValues {
                backquoted,
                matched: 0,
            }
        } else if b == VALUES[matched] {
            if matched + 1 == VALUES.len() {
                State::Values
            } else {
                State::BeforeValues {
                    backquoted,
                    matched: matched + 1,
                }
            }
        } else {
            State::BeforeValues {
                backquoted,
                matched: usize::from(b == VALUES[0]),
            }
        };
    }

    fn end_tuple(&mut self) {
        let digest = self.hasher.finalize_reset();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        self.current.rows = self.current.rows.saturating_add(1);
        self.current.sum = self.current.sum.wrapping_add(u64::from_le_bytes(first));
    }

    fn end_insert(&mut self) {
        let count = self
            .tables
            .entry(std::mem::take(&mut self.table))
            .or_default();
        count.rows = count.rows.saturating_add(self.current.rows);
        count.sum = count.sum.wrapping_add(self.current.sum);
        self.current = Count::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What mariadb-dump 10.11 printed for a small database (abridged).
    const DUMP: &str = "/*M!999999\\- enable the sandbox mode */ \n\
-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB\n\
/*!40101 SET NAMES utf8mb4 */;\n\
DROP TABLE IF EXISTS `empty`;\n\
CREATE TABLE `empty` (\n  `x` int(11) DEFAULT NULL\n) ENGINE=InnoDB;\n\
LOCK TABLES `empty` WRITE;\nUNLOCK TABLES;\n\
DELIMITER ;;\n\
/*!50003 CREATE*/ /*!50003 TRIGGER tr BEFORE INSERT ON empty FOR EACH ROW SET NEW.x = 1 \n\
CREATE TABLE `not_a_table` (x int);\n\
INSERT INTO `not_a_table` VALUES (1);\n\
*/;;\n\
DELIMITER ;\n\
CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `s` varchar(50)\n);\n\
INSERT INTO `t` VALUES\n\
(1,'it\\'s a \\\\ test\\n);(',0x00FF27,'{\\\"a\\\":\\\"x\\\\\\\"y\\\"}',2,3,1.50,'2024-01-01 00:00:00.123456',0.1),\n\
(2,NULL,NULL,NULL,4,6,NULL,NULL,1e300),\n\
(3,'\u{1F600}','','[]',6,9,-3.00,'2026-12-03 06:20:58.236361',0);\n\
UNLOCK TABLES;\n\
/*!50001 CREATE VIEW `v` AS SELECT\n 1 AS `id` */;\n\
CREATE TABLE `we``ird` (\n  `x` int(11) DEFAULT NULL\n);\n\
INSERT INTO `we``ird` VALUES (1),(2);\n\
INSERT INTO `we``ird` (`a VALUES`, `b`) VALUES (3,'x''y');\n\
-- Dump completed on 2026-12-03  6:20:53\n";

    fn scan(chunks: &[&[u8]]) -> Result<Fingerprint, String> {
        let mut scanner = DumpScanner::new();
        for chunk in chunks {
            scanner.feed(chunk);
        }
        scanner.finish()
    }

    fn rows(fp: &Fingerprint) -> Vec<(&str, u64)> {
        fp.tables
            .iter()
            .map(|t| (t.name.as_str(), t.rows))
            .collect()
    }

    #[test]
    fn counts_rows_of_every_table_and_skips_routine_bodies() {
        let fp = scan(&[DUMP.as_bytes()]).unwrap();
        assert_eq!(fp.method, METHOD);
        assert_eq!(rows(&fp), [("empty", 0), ("t", 3), ("we`ird", 3)]);
        assert_eq!(fp.tables[0].checksum, "0");
    }

    #[test]
    fn any_split_of_the_stream_gives_the_same_fingerprint() {
        let whole = scan(&[DUMP.as_bytes()]).unwrap();
        let bytes = DUMP.as_bytes();
        for at in 0..bytes.len() {
            let (a, b) = bytes.split_at(at);
            assert_eq!(scan(&[a, b]).unwrap(), whole, "split at {at}");
        }
        let ones: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(scan(&ones).unwrap(), whole);
    }

    #[test]
    fn the_checksum_follows_content_not_order() {
        let a = "CREATE TABLE `t` (x int);\nINSERT INTO `t` VALUES (1,'a'),(2,'b');\n";
        let b = "CREATE TABLE `t` (x int);\nINSERT INTO `t` VALUES (2,'b');\nINSERT INTO `t` VALUES (1,'a');\n";
        let c = "CREATE TABLE `t` (x int);\nINSERT INTO `t` VALUES (1,'a'),(2,'c');\n";
        let (a, b, c) = (
            scan(&[a.as_bytes()]).unwrap(),
            scan(&[b.as_bytes()]).unwrap(),
            scan(&[c.as_bytes()]).unwrap(),
        );
        assert_eq!(a, b);
        assert_eq!(rows(&a), rows(&c));
        assert_ne!(a.tables[0].checksum, c.tables[0].checksum);
    }

    #[test]
    fn text_it_cannot_read_gives_no_fingerprint() {
        let garbled = "CREATE TABLE `t` (x int);\nINSERT INTO `t` VALUES (1),x(2);\n";
        assert!(
            scan(&[garbled.as_bytes()])
                .unwrap_err()
                .contains("unexpected byte")
        );
        let cut = "CREATE TABLE `t` (x int);\nINSERT INTO `t` VALUES (1,'abc";
        assert!(
            scan(&[cut.as_bytes()])
                .unwrap_err()
                .contains("ended inside")
        );
        let long = format!("INSERT INTO `{}` VALUES (1);\n", "n".repeat(300));
        assert!(scan(&[long.as_bytes()]).unwrap_err().contains("longer"));
    }
}
