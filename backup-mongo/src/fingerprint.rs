//! Content fingerprints of MongoDB collections ([`FINGERPRINT_METHOD`]):
//! per collection the number of documents and the sum of a 64-bit hash of
//! each document's raw BSON bytes.
//!
//! The hash of a document is the first 8 bytes of the SHA-256 of its BSON
//! encoding, read as a big-endian `u64`; the checksum is the sum of those
//! hashes over the collection, as a `u128` (no overflow before 2^64
//! documents) printed in decimal. A sum does not depend on the order the
//! documents are read in, and a duplicated document adds its hash twice
//! (unlike XOR, where two copies cancel out).
//!
//! What is counted: every collection but views and `system.*` ones,
//! under its unqualified name (a restore may go into another database).
//! The dump counts the bytes it writes into the archive, in the same
//! cursor pass (no second read, nothing buffered); a restore drill reads
//! every restored collection again. Both sides must see the same bytes:
//! MongoDB stores and returns a document's BSON as inserted (field order
//! and numeric types included), so any difference is a real one.

use backup_core::Result;
use backup_core::fingerprint::{Fingerprint, TableFingerprint};
use bson::{RawDocumentBuf, doc};
use mongodb::Client;
use sha2::{Digest, Sha256};

use crate::conn::MongoConnection;
use crate::error::{Side, classify};
use crate::server::list_collections;

/// The method recorded in MongoDB fingerprints: the sum of the first 8
/// bytes (big-endian) of each document's SHA-256.
pub const FINGERPRINT_METHOD: &str = "mongodb.bson-sha256-sum.v1";

/// The hash of one document's raw BSON bytes.
pub(crate) fn document_hash(raw: &[u8]) -> u64 {
    let digest = Sha256::digest(raw);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Counts one collection's documents and sums their hashes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Accumulator {
    documents: u64,
    sum: u128,
}

impl Accumulator {
    /// Adds one document.
    pub(crate) fn add(&mut self, raw: &[u8]) {
        self.documents = self.documents.wrapping_add(1);
        // Cannot wrap before 2^64 documents, which `documents` counts.
        self.sum = self.sum.wrapping_add(u128::from(document_hash(raw)));
    }

    /// The collection's entry in a fingerprint.
    pub(crate) fn finish(self, name: &str) -> TableFingerprint {
        TableFingerprint {
            name: name.to_string(),
            rows: self.documents,
            checksum: self.sum.to_string(),
        }
    }
}

/// Whether a collection of this name and `listCollections` type is part
/// of a fingerprint: not a view, not `system.*`.
pub(crate) fn counted(name: &str, kind: &crate::archive::CollectionType) -> bool {
    *kind != crate::archive::CollectionType::View && !name.starts_with("system.")
}

/// A fingerprint of `tables`, sorted by name as [`Fingerprint`] wants.
pub(crate) fn fingerprint(mut tables: Vec<TableFingerprint>) -> Fingerprint {
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    Fingerprint {
        method: FINGERPRINT_METHOD.to_string(),
        tables,
    }
}

/// The fingerprint of database `db` as it is now: every counted
/// collection but those named in `skip` (a drill's marker), read with
/// plain reads.
pub(crate) async fn of_database(
    client: &Client,
    conn: &MongoConnection,
    db: &str,
    skip: &[&str],
) -> Result<Fingerprint> {
    let database = client.database(db);
    let mut tables = Vec::new();
    for info in list_collections(&database, conn, Side::Restore).await? {
        let Ok(name) = info.get_str("name") else {
            continue;
        };
        let kind =
            crate::archive::CollectionType::parse(info.get_str("type").unwrap_or("collection"));
        if !counted(name, &kind) || skip.contains(&name) {
            continue;
        }
        let context = format!("reading {db}.{name}");
        let mut cursor = database
            .collection::<RawDocumentBuf>(name)
            .find(doc! {})
            .await
            .map_err(|e| classify(&e, Side::Restore, &context, conn))?;
        let mut sum = Accumulator::default();
        while cursor
            .advance()
            .await
            .map_err(|e| classify(&e, Side::Restore, &context, conn))?
        {
            sum.add(cursor.current().as_bytes());
        }
        tables.push(sum.finish(name));
    }
    Ok(fingerprint(tables))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    fn sum_of(docs: &[RawDocumentBuf]) -> TableFingerprint {
        let mut acc = Accumulator::default();
        for d in docs {
            acc.add(d.as_bytes());
        }
        acc.finish("c")
    }

    #[test]
    fn the_hash_is_the_first_eight_bytes_of_sha256() {
        // SHA-256("abc") = ba7816bf 8f01cfea ...
        assert_eq!(document_hash(b"abc"), 0xba78_16bf_8f01_cfea);
    }

    #[test]
    fn order_does_not_matter_content_does() {
        let docs: Vec<RawDocumentBuf> = (0..50).map(|i| rawdoc! { "_id": i, "v": i * 3 }).collect();
        let forward = sum_of(&docs);
        let mut reversed = docs.clone();
        reversed.reverse();
        assert_eq!(sum_of(&reversed), forward);
        assert_eq!(forward.rows, 50);

        // One value changed: same count, another checksum.
        let mut changed = docs.clone();
        changed[17] = rawdoc! { "_id": 17, "v": 52 };
        let c = sum_of(&changed);
        assert_eq!(c.rows, 50);
        assert_ne!(c.checksum, forward.checksum);

        // The same fields in another order, or another numeric type, are
        // other bytes: a restore must give back exactly what was dumped.
        let mut reordered = docs.clone();
        reordered[3] = rawdoc! { "v": 9, "_id": 3 };
        assert_ne!(sum_of(&reordered).checksum, forward.checksum);
        let mut widened = docs.clone();
        widened[3] = rawdoc! { "_id": 3, "v": 9_i64 };
        assert_ne!(sum_of(&widened).checksum, forward.checksum);

        // A duplicate does not cancel out; a missing document shows.
        let mut doubled = docs.clone();
        doubled.push(docs[0].clone());
        let d = sum_of(&doubled);
        assert_eq!(d.rows, 51);
        assert_ne!(d.checksum, forward.checksum);
        assert_eq!(sum_of(&[]).checksum, "0");
    }

    #[test]
    fn sums_do_not_wrap_at_64_bits() {
        let mut acc = Accumulator::default();
        for _ in 0..4 {
            acc.add(b"abc");
        }
        let want = 4 * u128::from(0xba78_16bf_8f01_cfea_u64);
        assert!(want > u128::from(u64::MAX));
        assert_eq!(acc.finish("c").checksum, want.to_string());
    }

    #[test]
    fn views_and_system_collections_are_not_counted() {
        use crate::archive::CollectionType;
        assert!(counted("orders", &CollectionType::Collection));
        assert!(!counted("recent", &CollectionType::View));
        assert!(!counted("system.js", &CollectionType::Collection));
        let fp = fingerprint(vec![
            Accumulator::default().finish("b"),
            Accumulator::default().finish("a"),
        ]);
        assert_eq!(fp.method, FINGERPRINT_METHOD);
        assert_eq!(fp.tables[0].name, "a");
    }
}
