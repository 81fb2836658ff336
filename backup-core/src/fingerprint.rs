//! Content fingerprints: per table (collection) row counts and an
//! order-independent checksum, recorded in the manifest at dump time
//! ([`Manifest::fingerprint`](crate::manifest::Manifest::fingerprint)) and
//! recomputed by a restore drill ([`Engine::drill`](crate::Engine::drill))
//! in the scratch database the backup was restored into.

use serde::{Deserialize, Serialize};

/// Most tables one fingerprint may list: it goes into every manifest.
pub const MAX_FINGERPRINT_TABLES: usize = 100_000;

/// What a source counted, inside the same snapshot as its dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// How it was computed (`postgres.hashtextextended.v1`); fingerprints
    /// of different methods are never compared.
    pub method: String,
    /// One entry per table, sorted by name.
    pub tables: Vec<TableFingerprint>,
}

/// The fingerprint of one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableFingerprint {
    /// Qualified name, quoted where needed (`public."Order Lines"`).
    pub name: String,
    /// Rows.
    pub rows: u64,
    /// Order-independent checksum of the rows' content, as the method
    /// prints it (PostgreSQL: the decimal sum of 64-bit row hashes).
    pub checksum: String,
}

/// One table of a drill's comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCheck {
    /// Table name as in the fingerprint.
    pub name: String,
    /// Rows recorded at dump time (0 for a table only the restore has).
    pub expected_rows: u64,
    /// Rows found after the restore (`None`: the table is missing).
    pub restored_rows: Option<u64>,
    /// Whether rows and checksum are equal.
    pub matches: bool,
}

/// The result of [`compare`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// Every table of either side, sorted by name.
    pub tables: Vec<TableCheck>,
    /// What differs, one sentence per difference (empty when equal).
    pub differences: Vec<String>,
}

impl Comparison {
    /// Whether both sides are equal.
    pub fn matches(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Compares the fingerprint recorded at dump time with the one of a
/// restored copy: every table must be on both sides with the same row
/// count and checksum, and both must use the same method.
pub fn compare(expected: &Fingerprint, restored: &Fingerprint) -> Comparison {
    let mut differences = Vec::new();
    if expected.method != restored.method {
        differences.push(format!(
            "fingerprint methods differ: recorded {:?}, recomputed {:?}",
            expected.method, restored.method
        ));
    }
    let mut found: std::collections::BTreeMap<&str, &TableFingerprint> = restored
        .tables
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let mut tables = Vec::with_capacity(expected.tables.len());
    for want in &expected.tables {
        let got = found.remove(want.name.as_str());
        let matches = got.is_some_and(|g| g.rows == want.rows && g.checksum == want.checksum);
        match got {
            None => differences.push(format!("table {} is missing after the restore", want.name)),
            Some(g) if g.rows != want.rows => differences.push(format!(
                "table {}: {} rows recorded, {} restored",
                want.name, want.rows, g.rows
            )),
            Some(g) if g.checksum != want.checksum => differences.push(format!(
                "table {}: content checksum differs ({} rows on both sides)",
                want.name, g.rows
            )),
            Some(_) => {}
        }
        tables.push(TableCheck {
            name: want.name.clone(),
            expected_rows: want.rows,
            restored_rows: got.map(|g| g.rows),
            matches,
        });
    }
    for (name, extra) in found {
        differences.push(format!(
            "table {name} was not recorded at dump time but exists after the restore"
        ));
        tables.push(TableCheck {
            name: name.to_string(),
            expected_rows: 0,
            restored_rows: Some(extra.rows),
            matches: false,
        });
    }
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    Comparison {
        tables,
        differences,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(tables: &[(&str, u64, &str)]) -> Fingerprint {
        Fingerprint {
            method: "m".into(),
            tables: tables
                .iter()
                .map(|(n, r, c)| TableFingerprint {
                    name: n.to_string(),
                    rows: *r,
                    checksum: c.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn equal_fingerprints_match() {
        let a = fp(&[("a", 3, "10"), ("b", 0, "0")]);
        let c = compare(&a, &a.clone());
        assert!(c.matches(), "{:?}", c.differences);
        assert!(c.tables.iter().all(|t| t.matches));
    }

    #[test]
    fn every_kind_of_mismatch_is_reported() {
        let want = fp(&[("a", 3, "10"), ("b", 2, "7"), ("c", 1, "1")]);
        let got = fp(&[("a", 2, "10"), ("b", 2, "8"), ("d", 5, "5")]);
        let c = compare(&want, &got);
        assert!(!c.matches());
        let text = c.differences.join("\n");
        assert!(
            text.contains("table a: 3 rows recorded, 2 restored"),
            "{text}"
        );
        assert!(text.contains("table b: content checksum differs"), "{text}");
        assert!(text.contains("table c is missing"), "{text}");
        assert!(text.contains("table d was not recorded"), "{text}");
        let names: Vec<_> = c.tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        assert!(c.tables.iter().all(|t| !t.matches));
        assert_eq!(c.tables[2].restored_rows, None);
        let mut other = want.clone();
        other.method = "n".into();
        assert!(!compare(&want, &other).matches());
    }
}
