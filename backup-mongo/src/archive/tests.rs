//! Writer and reader against each other, against the mongo-tools layout,
//! and against damaged input.

use bson::spec::ElementType;
use bson::{RawDocument, doc, oid::ObjectId, rawdoc};
use bytes::{Bytes, BytesMut};

use super::header::NamespaceHeader;
use super::*;

// ---------------------------------------------------------------------------
// Helpers

fn ns(db: &str, collection: &str) -> Namespace {
    Namespace::new(db, collection)
}

fn entry(db: &str, collection: &str, kind: CollectionType) -> CollectionMetadata {
    let meta = MetadataDocument::new(collection, kind.clone());
    CollectionMetadata::new(ns(db, collection), kind, meta.to_extended_json())
}

fn header() -> ArchiveHeader {
    ArchiveHeader::new("7.0.14", "backup-mongo test")
}

/// Feeds `archive` in chunks whose sizes cycle through `sizes`, collecting
/// every event, then finishes. Also returns the most bytes the reader ever
/// held.
fn read_with(archive: &[u8], sizes: &[usize]) -> (Result<Vec<ArchiveEvent>, ArchiveError>, usize) {
    let mut reader = ArchiveReader::new();
    let mut events = Vec::new();
    let mut max_buffered = 0;
    let mut rest = archive;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        i += 1;
        reader.feed(&rest[..n]);
        rest = &rest[n..];
        max_buffered = max_buffered.max(reader.buffered());
        loop {
            match reader.next_event() {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(e) => return (Err(e), max_buffered),
            }
        }
    }
    (reader.finish().map(|()| events), max_buffered)
}

fn read_all(archive: &[u8]) -> Result<Vec<ArchiveEvent>, ArchiveError> {
    read_with(archive, &[archive.len().max(1)]).0
}

/// A document whose `pad` string makes it `size` bytes long.
fn padded_doc(id: i32, size: usize) -> Vec<u8> {
    let base = rawdoc! { "_id": id, "pad": "" }.into_bytes();
    let pad = "x".repeat(size - base.len());
    let doc = rawdoc! { "_id": id, "pad": pad }.into_bytes();
    assert_eq!(doc.len(), size);
    doc
}

struct Sample {
    bytes: Vec<u8>,
    orders: Vec<Vec<u8>>,
    /// Offset of the `shop.orders` segment header.
    orders_start: u64,
    /// Offset just after the `shop.orders` EOF header.
    orders_eof_end: u64,
}

/// Five collections: documents of several sizes, an empty collection, a
/// view, a timeseries collection, a second database.
fn sample() -> Sample {
    let mut bytes = Vec::new();
    let collections = [
        entry("shop", "orders", CollectionType::Collection),
        entry("shop", "empty", CollectionType::Collection),
        entry("shop", "recent", CollectionType::View),
        entry("metrics", "cpu", CollectionType::Timeseries),
        entry("other", "items", CollectionType::Collection),
    ];
    let mut writer = ArchiveWriter::new(&header(), &collections).unwrap();
    let orders = vec![padded_doc(1, 40), padded_doc(2, 10_000), padded_doc(3, 24)];

    let orders_start = writer.position();
    writer.begin_namespace("shop", "orders").unwrap();
    for doc in &orders {
        writer.document(doc).unwrap();
        bytes.extend_from_slice(&writer.take());
    }
    let before_eof = writer.position() + TERMINATOR.len() as u64;
    writer.end_namespace().unwrap();
    let orders_eof_end = writer.position() - TERMINATOR.len() as u64;
    assert!(orders_eof_end > before_eof);

    for (db, coll) in [("shop", "empty"), ("shop", "recent")] {
        writer.begin_namespace(db, coll).unwrap();
        writer.end_namespace().unwrap();
    }
    writer
        .begin_namespace("metrics", "system.buckets.cpu")
        .unwrap();
    writer.document(&padded_doc(10, 64)).unwrap();
    writer.document(&padded_doc(11, 65)).unwrap();
    writer.end_namespace().unwrap();
    writer.begin_namespace("other", "items").unwrap();
    writer.document(&padded_doc(20, 30)).unwrap();
    writer.end_namespace().unwrap();
    bytes.extend_from_slice(&writer.finish().unwrap());
    assert_eq!(bytes.len() as u64, writer.position());
    Sample {
        bytes,
        orders,
        orders_start,
        orders_eof_end,
    }
}

/// A tiny BSON encoder, independent of the `bson` crate, for layout checks.
mod hand {
    pub(super) fn string(s: &str) -> Vec<u8> {
        let mut v = ((s.len() + 1) as i32).to_le_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        v
    }

    pub(super) fn doc(elements: &[(u8, &str, Vec<u8>)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (kind, key, value) in elements {
            body.push(*kind);
            body.extend_from_slice(key.as_bytes());
            body.push(0);
            body.extend_from_slice(value);
        }
        let mut v = ((body.len() + 5) as i32).to_le_bytes().to_vec();
        v.extend_from_slice(&body);
        v.push(0);
        v
    }

    pub(super) fn ns_header(db: &str, coll: &str, eof: bool, crc: u64) -> Vec<u8> {
        doc(&[
            (0x02, "db", string(db)),
            (0x02, "collection", string(coll)),
            (0x08, "EOF", vec![u8::from(eof)]),
            (0x12, "CRC", crc.to_le_bytes().to_vec()),
        ])
    }
}

fn encoded_ns_header(namespace: Namespace, eof: bool, crc: u64) -> Vec<u8> {
    let mut out = BytesMut::new();
    NamespaceHeader {
        namespace,
        eof,
        crc: crc as i64,
    }
    .encode(&mut out)
    .unwrap();
    out.to_vec()
}

fn prelude_bytes(collections: &[CollectionMetadata]) -> Vec<u8> {
    ArchiveWriter::new(&header(), collections)
        .unwrap()
        .take()
        .to_vec()
}

// ---------------------------------------------------------------------------
// Layout against mongo-tools

/// mongodump 100.5.2 against MongoDB 5.0.6, dumping `test2.Users` holding
/// `{_id: ObjectId("623f23928e7f1feed4d5e3e1"), name: "John", age: 42}`,
/// wrote a 543-byte archive whose EOF block carries this CRC.
const MONGODUMP_USERS_CRC: u64 = 0x6E6E_C8C3_DE87_2AFF;

#[test]
fn crc_of_a_document_matches_mongodump() {
    let doc = rawdoc! {
        "_id": ObjectId::parse_str("623f23928e7f1feed4d5e3e1").unwrap(),
        "name": "John",
        "age": 42,
    };
    assert_eq!(doc.as_bytes().len(), 0x2e);
    assert_eq!(crc64(doc.as_bytes()), MONGODUMP_USERS_CRC);
}

#[test]
fn writer_reproduces_a_mongodump_archive_byte_for_byte() {
    let users_meta = MetadataDocument {
        indexes: vec![doc! { "v": 2, "key": { "_id": 1 }, "name": "_id_" }],
        uuid: Some("720e1aa22b1745d79f19750bab293087".into()),
        ..MetadataDocument::new("Users", CollectionType::Collection)
    };
    let archive_header = ArchiveHeader {
        concurrent_collections: 4,
        ..ArchiveHeader::new("5.0.6", "100.5.2")
    };
    let users = CollectionMetadata::new(
        ns("test2", "Users"),
        CollectionType::Collection,
        users_meta.to_extended_json(),
    );
    let doc = rawdoc! {
        "_id": ObjectId::parse_str("623f23928e7f1feed4d5e3e1").unwrap(),
        "name": "John",
        "age": 42,
    };
    let mut writer = ArchiveWriter::new(&archive_header, &[users]).unwrap();
    writer.begin_namespace("test2", "Users").unwrap();
    writer.document(doc.as_bytes()).unwrap();
    writer.end_namespace().unwrap();
    let written = writer.finish().unwrap();

    let mut expected = vec![0x6d, 0xe2, 0x99, 0x81];
    expected.extend(hand::doc(&[
        (0x10, "concurrent_collections", 4i32.to_le_bytes().to_vec()),
        (0x02, "version", hand::string("0.1")),
        (0x02, "server_version", hand::string("5.0.6")),
        (0x02, "tool_version", hand::string("100.5.2")),
    ]));
    expected.extend(hand::doc(&[
        (0x02, "db", hand::string("test2")),
        (0x02, "collection", hand::string("Users")),
        (
            0x02,
            "metadata",
            hand::string(&users_meta.to_extended_json()),
        ),
        (0x10, "size", 0i32.to_le_bytes().to_vec()),
        (0x02, "type", hand::string("collection")),
    ]));
    expected.extend([0xff; 4]);
    expected.extend(hand::ns_header("test2", "Users", false, 0));
    expected.extend(doc.as_bytes());
    expected.extend([0xff; 4]);
    expected.extend(hand::ns_header("test2", "Users", true, MONGODUMP_USERS_CRC));
    expected.extend([0xff; 4]);

    assert_eq!(written.len(), 543, "the size of mongodump's archive");
    assert_eq!(&written[..], &expected[..]);
}

#[test]
fn header_field_types_follow_the_spec() {
    let big = CollectionMetadata {
        size: 5_000_000_000,
        ..entry("d", "big", CollectionType::Collection)
    };
    let small = CollectionMetadata {
        size: 1234,
        ..entry("d", "small", CollectionType::View)
    };
    let mut writer = ArchiveWriter::new(&header(), &[big, small]).unwrap();
    let bytes = writer.take();
    assert_eq!(&bytes[..4], &[0x6d, 0xe2, 0x99, 0x81]);

    let mut at = 4;
    let mut next = |bytes: &Bytes| {
        let len = i32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let doc = RawDocument::from_bytes(&bytes[at..at + len])
            .unwrap()
            .to_raw_document_buf();
        at += len;
        doc
    };
    let types = |doc: &bson::RawDocumentBuf| -> Vec<(String, ElementType)> {
        doc.iter()
            .map(|e| {
                let (k, v) = e.unwrap();
                (k.to_string(), v.element_type())
            })
            .collect()
    };
    let prelude = next(&bytes);
    assert_eq!(
        types(&prelude),
        [
            ("concurrent_collections".into(), ElementType::Int32),
            ("version".into(), ElementType::String),
            ("server_version".into(), ElementType::String),
            ("tool_version".into(), ElementType::String),
        ]
    );
    assert_eq!(prelude.get_str("version").unwrap(), "0.1");
    let big = next(&bytes);
    let names: Vec<_> = types(&big).into_iter().map(|(k, _)| k).collect();
    assert_eq!(names, ["db", "collection", "metadata", "size", "type"]);
    assert_eq!(big.get_i64("size").unwrap(), 5_000_000_000);
    let small = next(&bytes);
    assert_eq!(small.get_i32("size").unwrap(), 1234);
    assert_eq!(small.get_str("type").unwrap(), "view");
    assert_eq!(
        &bytes[at..],
        &TERMINATOR,
        "prelude ends with the terminator"
    );

    writer.begin_namespace("d", "big").unwrap();
    let start = writer.take();
    assert_eq!(&start[..], &hand::ns_header("d", "big", false, 0)[..]);
    assert_eq!(start.len(), 50 + "d".len() + "big".len());
}

#[test]
fn empty_collection_and_view_are_written_like_mongodump() {
    let mut writer =
        ArchiveWriter::new(&header(), &[entry("d", "v", CollectionType::View)]).unwrap();
    let prelude_len = writer.take().len();
    writer.begin_namespace("d", "v").unwrap();
    let summary = writer.end_namespace().unwrap();
    assert_eq!(summary.crc, 0);
    let blocks = writer.finish().unwrap();
    let mut expected = hand::ns_header("d", "v", false, 0);
    expected.extend(TERMINATOR);
    expected.extend(hand::ns_header("d", "v", true, 0));
    expected.extend(TERMINATOR);
    assert_eq!(&blocks[..], &expected[..]);
    assert!(prelude_len > 0);
}

// ---------------------------------------------------------------------------
// Round trips

#[test]
fn round_trip_whole_buffer() {
    let sample = sample();
    let events = read_all(&sample.bytes).unwrap();

    let ArchiveEvent::Prelude(prelude) = &events[0] else {
        panic!("first event is {:?}", events[0]);
    };
    assert_eq!(prelude.header, header());
    assert_eq!(prelude.collections.len(), 5);
    assert_eq!(prelude.collections[2].collection_type, CollectionType::View);
    let meta = prelude.collections[2].parse_metadata().unwrap();
    assert_eq!(meta.collection_name, "recent");

    let mut expected = vec![ArchiveEvent::NamespaceStart {
        namespace: ns("shop", "orders"),
        resumed: false,
    }];
    expected.extend(
        sample
            .orders
            .iter()
            .map(|d| ArchiveEvent::Document(Bytes::copy_from_slice(d))),
    );
    let mut order_bytes = Vec::new();
    sample.orders.iter().for_each(|d| order_bytes.extend(d));
    expected.push(ArchiveEvent::NamespaceEnd(NamespaceSummary {
        namespace: ns("shop", "orders"),
        documents: 3,
        bytes: order_bytes.len() as u64,
        crc: crc64(&order_bytes),
    }));
    for coll in ["empty", "recent"] {
        expected.push(ArchiveEvent::NamespaceStart {
            namespace: ns("shop", coll),
            resumed: false,
        });
        expected.push(ArchiveEvent::NamespaceEnd(NamespaceSummary {
            namespace: ns("shop", coll),
            documents: 0,
            bytes: 0,
            crc: 0,
        }));
    }
    assert_eq!(&events[1..1 + expected.len()], &expected[..]);

    let ends: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            ArchiveEvent::NamespaceEnd(s) => Some((s.namespace.to_string(), s.documents)),
            _ => None,
        })
        .collect();
    assert_eq!(
        ends,
        [
            ("shop.orders".to_string(), 3),
            ("shop.empty".to_string(), 0),
            ("shop.recent".to_string(), 0),
            ("metrics.system.buckets.cpu".to_string(), 2),
            ("other.items".to_string(), 1),
        ]
    );
}

#[test]
fn chunking_does_not_change_the_events() {
    let sample = sample();
    let whole = read_all(&sample.bytes).unwrap();

    let (one_byte, max_buffered) = read_with(&sample.bytes, &[1]);
    assert_eq!(one_byte.unwrap(), whole);
    // Fed a byte at a time, the reader never holds more than one item.
    assert!(max_buffered <= 10_000, "held {max_buffered} bytes");

    let mut state = 7u32;
    let sizes: Vec<usize> = (0..50)
        .map(|_| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            1 + (state >> 16) as usize % 97
        })
        .collect();
    assert_eq!(read_with(&sample.bytes, &sizes).0.unwrap(), whole);
    assert_eq!(read_with(&sample.bytes, &[4096]).0.unwrap(), whole);
}

#[test]
fn reader_follows_interleaved_and_empty_segments() {
    let a = ns("d", "a");
    let b = ns("d", "b");
    let c = ns("d", "c");
    let (d1, d2, d3) = (padded_doc(1, 30), padded_doc(2, 31), padded_doc(3, 32));
    let mut archive = prelude_bytes(&[
        entry("d", "a", CollectionType::Collection),
        entry("d", "b", CollectionType::Collection),
        entry("d", "c", CollectionType::Collection),
    ]);
    fn segment(archive: &mut Vec<u8>, namespace: &Namespace, docs: &[&Vec<u8>]) {
        archive.extend(encoded_ns_header(namespace.clone(), false, 0));
        for doc in docs {
            archive.extend(doc.iter());
        }
        archive.extend(TERMINATOR);
    }
    segment(&mut archive, &a, &[&d1]);
    segment(&mut archive, &b, &[&d2]);
    segment(&mut archive, &a, &[]); // mongodump can flush an empty buffer
    segment(&mut archive, &a, &[&d3]);
    let a_crc = crc64(&[d1.clone(), d3.clone()].concat());
    archive.extend(encoded_ns_header(a.clone(), true, a_crc));
    archive.extend(TERMINATOR);
    archive.extend(encoded_ns_header(b.clone(), true, crc64(&d2)));
    archive.extend(TERMINATOR);
    // An EOF block alone, with no segment before it.
    archive.extend(encoded_ns_header(c.clone(), true, 0));
    archive.extend(TERMINATOR);

    let events = read_all(&archive).unwrap();
    let start = |namespace: &Namespace, resumed| ArchiveEvent::NamespaceStart {
        namespace: namespace.clone(),
        resumed,
    };
    let document = |d: &Vec<u8>| ArchiveEvent::Document(Bytes::copy_from_slice(d));
    let end = |namespace: &Namespace, documents, bytes, crc| {
        ArchiveEvent::NamespaceEnd(NamespaceSummary {
            namespace: namespace.clone(),
            documents,
            bytes,
            crc,
        })
    };
    assert_eq!(
        &events[1..],
        &[
            start(&a, false),
            document(&d1),
            start(&b, false),
            document(&d2),
            start(&a, true),
            start(&a, true),
            document(&d3),
            end(&a, 2, 62, a_crc),
            end(&b, 1, 31, crc64(&d2)),
            start(&c, false),
            end(&c, 0, 0, 0),
        ]
    );
}

#[test]
fn current_namespace_tracks_segments() {
    let sample = sample();
    let mut reader = ArchiveReader::new();
    reader.feed(&sample.bytes);
    let mut seen = Vec::new();
    while let Some(event) = reader.next_event().unwrap() {
        if let ArchiveEvent::Document(_) = event {
            seen.push(reader.current_namespace().unwrap().to_string());
        }
    }
    reader.finish().unwrap();
    assert_eq!(seen.len(), 6);
    assert_eq!(seen[0], "shop.orders");
    assert_eq!(seen[5], "other.items");
    assert_eq!(reader.header().unwrap().server_version, "7.0.14");
}

// ---------------------------------------------------------------------------
// Damaged input

#[test]
fn flipped_byte_in_a_document_is_a_crc_error_naming_the_collection() {
    let sample = sample();
    let mut bytes = sample.bytes.clone();
    // Inside the padding string of the second order.
    let at = sample.orders_start as usize + 200;
    bytes[at] ^= 0x01;
    let err = read_all(&bytes).unwrap_err();
    match &err {
        ArchiveError::CrcMismatch {
            namespace,
            expected,
            actual,
        } => {
            assert_eq!(namespace, &ns("shop", "orders"));
            assert_ne!(expected, actual);
        }
        other => panic!("expected a CRC mismatch, got {other:?}"),
    }
    assert!(err.to_string().contains("shop.orders"), "{err}");
    assert!(err.is_corruption());
    let core: backup_core::Error = err.into();
    assert!(
        matches!(core, backup_core::Error::Integrity { .. }),
        "{core:?}"
    );
}

#[test]
fn wrong_crc_in_the_eof_block_is_detected() {
    let doc = padded_doc(1, 30);
    let mut archive = prelude_bytes(&[entry("d", "a", CollectionType::Collection)]);
    archive.extend(encoded_ns_header(ns("d", "a"), false, 0));
    archive.extend(&doc);
    archive.extend(TERMINATOR);
    archive.extend(encoded_ns_header(ns("d", "a"), true, crc64(&doc) ^ 1));
    archive.extend(TERMINATOR);
    let err = read_all(&archive).unwrap_err();
    assert!(matches!(err, ArchiveError::CrcMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("d.a"), "{err}");
}

#[test]
fn every_truncation_is_an_error_naming_the_unfinished_collection() {
    let sample = sample();
    for cut in 0..sample.bytes.len() {
        let err = match read_all(&sample.bytes[..cut]) {
            Ok(_) => panic!("a cut at {cut} of {} was accepted", sample.bytes.len()),
            Err(e) => e,
        };
        assert!(
            matches!(err, ArchiveError::Truncated { offset, .. } if offset == cut as u64),
            "cut at {cut}: {err:?}"
        );
        if cut as u64 >= sample.orders_start && (cut as u64) < sample.orders_eof_end {
            let message = err.to_string();
            assert!(message.contains("shop.orders"), "cut at {cut}: {message}");
        }
        if cut as u64 > sample.orders_start && (cut as u64) < sample.orders_eof_end {
            let ArchiveError::Truncated { namespaces, .. } = &err else {
                unreachable!()
            };
            assert_eq!(namespaces[0], ns("shop", "orders"), "cut at {cut}");
        }
    }
}

#[test]
fn truncation_inside_a_document_says_so() {
    let sample = sample();
    let cut = sample.orders_start as usize + 101;
    let err = read_all(&sample.bytes[..cut]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "archive truncated at byte {cut} while reading a document; incomplete: \
             shop.orders, shop.empty, shop.recent, other.items"
        )
    );
}

#[test]
fn archive_without_a_listed_collection_is_truncated() {
    let mut archive = prelude_bytes(&[
        entry("d", "a", CollectionType::Collection),
        entry("d", "b", CollectionType::Collection),
        entry("d", "ts", CollectionType::Timeseries),
    ]);
    archive.extend(encoded_ns_header(ns("d", "a"), false, 0));
    archive.extend(TERMINATOR);
    archive.extend(encoded_ns_header(ns("d", "a"), true, 0));
    archive.extend(TERMINATOR);
    let err = read_all(&archive).unwrap_err();
    match err {
        ArchiveError::Truncated {
            reading,
            namespaces,
            ..
        } => {
            assert_eq!(reading, "the next namespace block");
            assert_eq!(namespaces, [ns("d", "b")], "timeseries data is optional");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn garbage_is_not_an_archive() {
    for garbage in [
        &b"PK\x03\x04 a zip file"[..],
        &[0x1f, 0x8b, 0x08, 0x00, 0, 0][..],
        &[0x81, 0x99, 0xe2, 0x6d, 0, 0][..], // the magic number big-endian
    ] {
        let err = read_all(garbage).unwrap_err();
        assert!(matches!(err, ArchiveError::BadMagic { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with("not a mongodump archive"),
            "{err}"
        );
    }
    let err = read_all(b"").unwrap_err();
    assert!(
        matches!(err, ArchiveError::Truncated { offset: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn invalid_document_lengths_are_reported_with_the_collection() {
    let sample = sample();
    let first_doc = sample.orders_start as usize + 50 + "shop".len() + "orders".len();
    assert_eq!(
        &sample.bytes[first_doc..first_doc + 40],
        &sample.orders[0][..]
    );
    for length in [3i32, 0, -2, (MAX_DOCUMENT_SIZE + 1) as i32] {
        let mut bytes = sample.bytes.clone();
        bytes[first_doc..first_doc + 4].copy_from_slice(&length.to_le_bytes());
        let err = read_all(&bytes).unwrap_err();
        match &err {
            ArchiveError::InvalidLength {
                offset,
                length: found,
                namespace,
            } => {
                assert_eq!(*offset, first_doc as u64);
                assert_eq!(*found, length);
                assert_eq!(namespace.as_ref(), Some(&ns("shop", "orders")));
            }
            other => panic!("length {length}: {other:?}"),
        }
        assert!(err.to_string().contains("in shop.orders"), "{err}");
    }

    let mut bytes = sample.bytes.clone();
    bytes[first_doc + 39] = 1; // the document's trailing NUL
    let err = read_all(&bytes).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::InvalidDocument { namespace: Some(n), .. } if n == &ns("shop", "orders")),
        "{err:?}"
    );
}

#[test]
fn framing_errors() {
    let a = ns("d", "a");
    let prelude = prelude_bytes(&[entry("d", "a", CollectionType::Collection)]);
    let eof_block = |archive: &mut Vec<u8>| {
        archive.extend(encoded_ns_header(a.clone(), true, 0));
        archive.extend(TERMINATOR);
    };

    // A document after the EOF header.
    let mut archive = prelude.clone();
    archive.extend(encoded_ns_header(a.clone(), true, 0));
    archive.extend(padded_doc(1, 30));
    archive.extend(TERMINATOR);
    let err = read_all(&archive).unwrap_err();
    assert!(
        err.to_string().contains("after the EOF header of d.a"),
        "{err}"
    );

    // A segment after the EOF block.
    let mut archive = prelude.clone();
    eof_block(&mut archive);
    archive.extend(encoded_ns_header(a.clone(), false, 0));
    archive.extend(TERMINATOR);
    let err = read_all(&archive).unwrap_err();
    assert!(
        err.to_string()
            .contains("d.a has another block after its EOF block"),
        "{err}"
    );

    // Two terminators in a row.
    let mut archive = prelude.clone();
    eof_block(&mut archive);
    archive.extend(TERMINATOR);
    let err = read_all(&archive).unwrap_err();
    assert!(matches!(err, ArchiveError::Malformed { .. }), "{err:?}");

    // A header with a wrongly typed field.
    let mut archive = prelude.clone();
    archive.extend(bson::to_vec(&doc! { "db": "d", "collection": "a", "EOF": "yes" }).unwrap());
    let err = read_all(&archive).unwrap_err();
    assert!(err.to_string().contains("\"EOF\""), "{err}");

    // A header without a collection.
    let mut archive = prelude.clone();
    archive.extend(bson::to_vec(&doc! { "db": "d", "EOF": true }).unwrap());
    let err = read_all(&archive).unwrap_err();
    assert!(err.to_string().contains("no collection name"), "{err}");

    // No prelude header at all.
    let mut archive = MAGIC.to_vec();
    archive.extend(TERMINATOR);
    let err = read_all(&archive).unwrap_err();
    assert!(err.to_string().contains("no header document"), "{err}");
}

#[test]
fn lenient_about_what_mongo_tools_tolerates() {
    // Missing header fields, int64 counters, an int32 CRC.
    let mut archive = MAGIC.to_vec();
    archive
        .extend(bson::to_vec(&doc! { "concurrent_collections": 4_i64, "version": "0.1" }).unwrap());
    archive.extend(bson::to_vec(&doc! { "db": "d", "collection": "a", "size": 7_i64 }).unwrap());
    archive.extend(TERMINATOR);
    archive.extend(
        bson::to_vec(&doc! { "db": "d", "collection": "a", "EOF": true, "CRC": 0 }).unwrap(),
    );
    archive.extend(TERMINATOR);
    let events = read_all(&archive).unwrap();
    let ArchiveEvent::Prelude(prelude) = &events[0] else {
        panic!()
    };
    assert_eq!(prelude.header.concurrent_collections, 4);
    assert_eq!(prelude.header.server_version, "");
    assert_eq!(prelude.collections[0].size, 7);
    assert_eq!(
        prelude.collections[0].collection_type,
        CollectionType::Unspecified
    );
    assert_eq!(events.len(), 3);
}

#[test]
fn errors_are_final_and_finish_needs_drained_events() {
    let mut reader = ArchiveReader::new();
    reader.feed(b"nope, not an archive");
    assert!(matches!(
        reader.next_event(),
        Err(ArchiveError::BadMagic { .. })
    ));
    assert!(matches!(reader.next_event(), Err(ArchiveError::Usage(_))));
    assert!(matches!(reader.finish(), Err(ArchiveError::Usage(_))));

    let sample = sample();
    let mut reader = ArchiveReader::new();
    reader.feed(&sample.bytes);
    assert!(matches!(
        reader.next_event(),
        Ok(Some(ArchiveEvent::Prelude(_)))
    ));
    assert!(matches!(reader.finish(), Err(ArchiveError::Usage(_))));
}

// ---------------------------------------------------------------------------
// Writer misuse

#[test]
fn writer_rejects_misuse() {
    let collections = [
        entry("d", "a", CollectionType::Collection),
        entry("d", "b", CollectionType::Collection),
        entry("d", "ts", CollectionType::Timeseries),
    ];
    let mut w = ArchiveWriter::new(&header(), &collections).unwrap();
    let usage = |r: Result<(), ArchiveError>| match r {
        Err(ArchiveError::Usage(message)) => message,
        other => panic!("expected misuse, got {other:?}"),
    };
    assert!(usage(w.document(&padded_doc(1, 30))).contains("outside a namespace"));
    assert!(usage(w.begin_namespace("d", "nope")).contains("d.nope is not listed"));
    w.begin_namespace("d", "a").unwrap();
    assert!(usage(w.begin_namespace("d", "b")).contains("d.a is still open"));
    assert!(usage(w.finish().map(drop)).contains("d.a still open"));
    w.end_namespace().unwrap();
    assert!(usage(w.begin_namespace("d", "a")).contains("already written"));
    assert!(usage(w.end_namespace().map(drop)).contains("without begin_namespace"));
    assert!(usage(w.finish().map(drop)).contains("never written: d.b"));
    w.begin_namespace("d", "b").unwrap();
    w.end_namespace().unwrap();
    // Timeseries data goes under system.buckets and may be absent.
    let mut ts = ArchiveWriter::new(&header(), &collections[2..]).unwrap();
    ts.begin_namespace("d", "system.buckets.ts").unwrap();
    ts.end_namespace().unwrap();
    ts.finish().unwrap();
    w.finish().unwrap();
    assert!(usage(w.begin_namespace("d", "b")).contains("already finished"));

    let twice = [
        entry("d", "a", CollectionType::Collection),
        entry("d", "a", CollectionType::View),
    ];
    assert!(matches!(
        ArchiveWriter::new(&header(), &twice),
        Err(ArchiveError::Usage(_))
    ));
}

#[test]
fn writer_checks_document_framing() {
    let mut w =
        ArchiveWriter::new(&header(), &[entry("d", "a", CollectionType::Collection)]).unwrap();
    w.begin_namespace("d", "a").unwrap();
    let before = w.position();
    let good = padded_doc(1, 30);
    let mut no_nul = good.clone();
    *no_nul.last_mut().unwrap() = 7;
    let mut huge = vec![0u8; MAX_DOCUMENT_SIZE + 1];
    huge[..4].copy_from_slice(&((MAX_DOCUMENT_SIZE + 1) as i32).to_le_bytes());
    for (bad, why) in [
        (&good[..4], "too short"),
        (&good[..29], "length prefix says 30 bytes, 29 given"),
        (&no_nul[..], "NUL"),
        (&huge[..], "16 MiB"),
    ] {
        match w.document(bad) {
            Err(e @ ArchiveError::InvalidDocument { .. }) => {
                assert!(e.to_string().contains(why), "{e}");
                assert!(e.to_string().contains("d.a"), "{e}");
            }
            other => panic!("{why}: {other:?}"),
        }
    }
    assert_eq!(
        w.position(),
        before,
        "nothing written for rejected documents"
    );
    let mut exactly_max = vec![0u8; MAX_DOCUMENT_SIZE];
    exactly_max[..4].copy_from_slice(&(MAX_DOCUMENT_SIZE as i32).to_le_bytes());
    w.document(&exactly_max).unwrap();
    w.end_namespace().unwrap();
    let archive = [w.take(), w.finish().unwrap()].concat();
    let events = read_all(&archive).unwrap();
    assert!(matches!(&events[2], ArchiveEvent::Document(d) if d.len() == MAX_DOCUMENT_SIZE));
}

// ---------------------------------------------------------------------------
// Lister

#[test]
fn lister_reports_collections_and_counts() {
    let sample = sample();
    let listing = list_reader(&sample.bytes[..]).unwrap();
    assert_eq!(listing.header, header());
    let summary: Vec<_> = listing
        .collections
        .iter()
        .map(|c| {
            (
                c.namespace.to_string(),
                c.collection_type.clone(),
                c.documents,
                c.listed,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("shop.orders".into(), CollectionType::Collection, 3, true),
            ("shop.empty".into(), CollectionType::Collection, 0, true),
            ("shop.recent".into(), CollectionType::View, 0, true),
            ("metrics.cpu".into(), CollectionType::Timeseries, 2, true),
            ("other.items".into(), CollectionType::Collection, 1, true),
        ]
    );
    assert_eq!(listing.total_documents(), 6);
    let orders = listing.get("shop", "orders").unwrap();
    assert_eq!(orders.bytes, 10_064);
    assert_eq!(orders.crc, Some(crc64(&sample.orders.concat())));
    assert_eq!(listing.get("shop", "empty").unwrap().crc, Some(0));
}

#[test]
fn list_stream_reads_a_byte_stream_and_maps_errors() {
    let sample = sample();
    let chunks: Vec<backup_core::Result<Bytes>> = sample
        .bytes
        .chunks(1000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let listing = futures::executor::block_on(list_stream(futures::stream::iter(chunks))).unwrap();
    assert_eq!(listing.total_documents(), 6);

    let cut = Bytes::copy_from_slice(&sample.bytes[..sample.bytes.len() - 10]);
    let err =
        futures::executor::block_on(list_stream(futures::stream::iter([Ok(cut)]))).unwrap_err();
    assert!(
        matches!(err, backup_core::Error::Integrity { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("truncated"), "{err}");

    let failing = futures::stream::iter([
        Ok(Bytes::copy_from_slice(&sample.bytes[..100])),
        Err(backup_core::Error::Cancelled),
    ]);
    let err = futures::executor::block_on(list_stream(failing)).unwrap_err();
    assert!(matches!(err, backup_core::Error::Cancelled), "{err:?}");
}

#[test]
fn lister_keeps_unlisted_namespaces() {
    let mut archive = prelude_bytes(&[entry("d", "a", CollectionType::Collection)]);
    for name in ["a", "extra"] {
        archive.extend(encoded_ns_header(ns("d", name), true, 0));
        archive.extend(TERMINATOR);
    }
    let listing = list_reader(&archive[..]).unwrap();
    assert_eq!(listing.collections.len(), 2);
    assert!(!listing.collections[1].listed);
    assert_eq!(listing.collections[1].namespace, ns("d", "extra"));
}
