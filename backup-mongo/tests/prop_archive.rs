//! Property tests of the mongodump archive format (fuzz target:
//! `mongo_archive`): generated collections survive writer → reader in any
//! split; arbitrary, truncated or damaged bytes give an error or events,
//! never a panic; and the reader's memory stays bounded whatever length a
//! document claims (measured with a counting allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use backup_mongo::archive::{
    ArchiveEvent, ArchiveHeader, ArchiveReader, ArchiveWriter, CollectionMetadata, CollectionType,
    Lister, MAGIC, MAX_DOCUMENT_SIZE, Namespace, NamespaceSummary,
};
use bson::{Bson, Document};
use proptest::prelude::*;

// ---- per-thread allocation accounting ----

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + size;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn note_free(size: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(size)));
}

// SAFETY: forwards to the system allocator; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_free(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_free(layout.size());
        note_alloc(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak bytes allocated by this thread while `f` runs, above what was live
/// before.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, PEAK.with(Cell::get) - base)
}

// ---- generators ----

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9_]{0,8}",
        "[a-z]{1,3}\\.[a-z]{1,3}",
        "\\PC{1,6}"
    ]
    .prop_filter("no NUL", |s| !s.contains('\0'))
}

fn bson_value() -> impl Strategy<Value = Bson> {
    let leaf = prop_oneof![
        any::<i32>().prop_map(Bson::Int32),
        any::<i64>().prop_map(Bson::Int64),
        any::<f64>()
            .prop_filter("NaN never equals itself", |f| !f.is_nan())
            .prop_map(Bson::Double),
        any::<bool>().prop_map(Bson::Boolean),
        "\\PC{0,20}".prop_map(Bson::String),
        Just(Bson::Null),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|bytes| {
            Bson::Binary(bson::Binary {
                subtype: bson::spec::BinarySubtype::Generic,
                bytes,
            })
        }),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Bson::Array),
            prop::collection::vec(("[a-z_]{1,6}", inner), 0..4)
                .prop_map(|kv| Bson::Document(kv.into_iter().collect())),
        ]
    })
}

fn document() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(("[a-z_]{1,8}", bson_value()), 0..6).prop_map(|kv| {
        let doc: Document = kv.into_iter().collect();
        bson::to_vec(&doc).unwrap()
    })
}

#[derive(Debug, Clone)]
struct Collection {
    namespace: Namespace,
    kind: CollectionType,
    documents: Vec<Vec<u8>>,
}

fn collections(timeseries: bool) -> impl Strategy<Value = Vec<Collection>> {
    let kind = if timeseries {
        prop_oneof![
            Just(CollectionType::Collection),
            Just(CollectionType::View),
            Just(CollectionType::Timeseries),
            Just(CollectionType::Unspecified),
        ]
        .boxed()
    } else {
        prop_oneof![Just(CollectionType::Collection), Just(CollectionType::View)].boxed()
    };
    prop::collection::vec(
        (
            name(),
            name(),
            kind,
            prop::collection::vec(document(), 0..5),
        ),
        0..5,
    )
    .prop_map(|raw| {
        let mut seen = std::collections::HashSet::new();
        raw.into_iter()
            .filter(|(db, c, _, _)| seen.insert((db.clone(), c.clone())))
            .map(|(db, collection, kind, documents)| Collection {
                namespace: Namespace::new(db, collection),
                documents: if kind == CollectionType::View {
                    Vec::new()
                } else {
                    documents
                },
                kind,
            })
            .collect()
    })
}

fn data_namespace(c: &Collection) -> Namespace {
    match c.kind {
        CollectionType::Timeseries => Namespace::new(
            c.namespace.db.clone(),
            format!("system.buckets.{}", c.namespace.collection),
        ),
        _ => c.namespace.clone(),
    }
}

fn write(collections: &[Collection]) -> (Vec<u8>, Vec<NamespaceSummary>) {
    let prelude: Vec<CollectionMetadata> = collections
        .iter()
        .map(|c| CollectionMetadata::new(c.namespace.clone(), c.kind.clone(), ""))
        .collect();
    let mut w = ArchiveWriter::new(&ArchiveHeader::new("7.0.14", "prop"), &prelude).unwrap();
    let mut out = Vec::new();
    let mut summaries = Vec::new();
    for c in collections {
        let ns = data_namespace(c);
        w.begin_namespace(&ns.db, &ns.collection).unwrap();
        for d in &c.documents {
            w.document(d).unwrap();
            out.extend_from_slice(&w.take());
        }
        summaries.push(w.end_namespace().unwrap());
    }
    out.extend_from_slice(&w.finish().unwrap());
    (out, summaries)
}

/// Feeds `bytes` in pieces of `split` (0: at once), collecting events until
/// the first error; then `finish`.
fn read(bytes: &[u8], split: usize) -> (Vec<ArchiveEvent>, Result<(), String>) {
    let mut reader = ArchiveReader::new();
    let mut events = Vec::new();
    let piece = if split == 0 {
        bytes.len().max(1)
    } else {
        split
    };
    for chunk in bytes.chunks(piece) {
        reader.feed(chunk);
        loop {
            match reader.next_event() {
                Ok(Some(e)) => events.push(e),
                Ok(None) => break,
                Err(e) => {
                    assert!(reader.next_event().is_err(), "an error is final");
                    return (events, Err(e.to_string()));
                }
            }
        }
    }
    let end = reader.finish().map_err(|e| e.to_string());
    (events, end)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(120))]

    #[test]
    fn written_archives_read_back(cols in collections(true), split in 0usize..64) {
        let (bytes, summaries) = write(&cols);
        let (events, end) = read(&bytes, split);
        prop_assert!(end.is_ok(), "{:?}", end);
        let mut docs: Vec<(Namespace, Vec<u8>)> = Vec::new();
        let mut ends = Vec::new();
        let mut current = None;
        for e in events {
            match e {
                ArchiveEvent::Prelude(p) => {
                    prop_assert_eq!(p.header.server_version.as_str(), "7.0.14");
                    let listed: Vec<Namespace> = p.collections.iter().map(|c| c.namespace.clone()).collect();
                    let want: Vec<Namespace> = cols.iter().map(|c| c.namespace.clone()).collect();
                    prop_assert_eq!(listed, want);
                }
                ArchiveEvent::NamespaceStart { namespace, .. } => current = Some(namespace),
                ArchiveEvent::Document(d) => docs.push((current.clone().unwrap(), d.to_vec())),
                ArchiveEvent::NamespaceEnd(s) => ends.push(s),
                _ => {}
            }
        }
        let want_docs: Vec<(Namespace, Vec<u8>)> = cols
            .iter()
            .flat_map(|c| c.documents.iter().map(move |d| (data_namespace(c), d.clone())))
            .collect();
        prop_assert_eq!(docs, want_docs);
        prop_assert_eq!(ends, summaries);
        let mut lister = Lister::new();
        lister.feed(&bytes).unwrap();
        let listing = lister.finish().unwrap();
        let total: usize = cols.iter().map(|c| c.documents.len()).sum();
        prop_assert_eq!(listing.total_documents(), total as u64);
    }

    #[test]
    fn truncated_archives_never_finish(cols in collections(false), at in any::<prop::sample::Index>(), split in 0usize..64) {
        let (bytes, _) = write(&cols);
        let cut = at.index(bytes.len());
        let (_, end) = read(&bytes[..cut], split);
        prop_assert!(end.is_err(), "a {}-byte prefix of {} bytes was accepted", cut, bytes.len());
    }

    #[test]
    fn damaged_archives_never_panic(cols in collections(true), at in any::<prop::sample::Index>(), byte in 1u8..=255, split in 0usize..64) {
        let (mut bytes, _) = write(&cols);
        let i = at.index(bytes.len());
        bytes[i] ^= byte;
        let _ = read(&bytes, split);
        let mut lister = Lister::new();
        if lister.feed(&bytes).is_ok() {
            let _ = lister.finish();
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_small(
        body in prop::collection::vec(any::<u8>(), 0..600),
        magic in any::<bool>(),
        claim in prop_oneof![any::<u32>(), Just(i32::MAX as u32), Just(MAX_DOCUMENT_SIZE as u32 + 1), Just(0x8000_0000)],
        split in 0usize..32,
    ) {
        let mut bytes = Vec::new();
        if magic {
            bytes.extend_from_slice(&MAGIC);
            bytes.extend_from_slice(&claim.to_le_bytes());
        }
        bytes.extend_from_slice(&body);
        let ((_, _), peak) = peak_during(|| read(&bytes, split));
        // At most one declared document (16 MiB) is reserved ahead of its
        // bytes, plus what was fed: never a claimed 2 GiB.
        let bound = MAX_DOCUMENT_SIZE + 64 * bytes.len() + 64 * 1024;
        prop_assert!(peak <= bound, "peak {} bytes for {} input bytes", peak, bytes.len());
    }
}

#[test]
fn an_oversized_claim_is_refused_without_allocating_it() {
    for claim in [
        i32::MAX as u32,
        MAX_DOCUMENT_SIZE as u32 + 1,
        0x8000_0000,
        4,
    ] {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&claim.to_le_bytes());
        let ((events, end), peak) = peak_during(|| read(&bytes, 0));
        assert!(events.is_empty());
        assert!(end.is_err(), "claim {claim}");
        assert!(peak < 1024 * 1024, "claim {claim}: peak {peak}");
    }
}
