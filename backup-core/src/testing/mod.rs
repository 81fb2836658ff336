//! Test support for adapter crates (feature `testing`): the [`Store`]
//! conformance suite every store runs against its real backend, the
//! engine suites every engine runs against its real server
//! ([`source_conformance`], [`target_conformance`]), the start-up of
//! throwaway test servers ([`server`]), sources
//! that misbehave on purpose, a store that fails on purpose
//! ([`FaultyStore`]), and two suites every store runs too: random
//! sequences of operations under faults ([`backup_properties`]) and
//! cleanups racing backups ([`race_cleanup_against_backups`]).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use backup_core::{memory::InMemoryStore, testing::{Capabilities, store_conformance}};
//! store_conformance(&InMemoryStore::new(), Capabilities::default()).await;
//! # });
//! ```

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

mod checks;
mod drill;
mod engine;
mod faults;
mod fixtures;
mod helper;
mod processes;
mod property;
mod race;
mod serialized;
pub mod server;

pub use drill::{assert_drill_failed, assert_drill_passed, next_drill_event};
pub use engine::{EngineCapabilities, EngineHarness, source_conformance, target_conformance};
pub use processes::{ProcessView, descendant_processes, process_tree};

pub use crate::dedup::packs::ascending_pack_ids;
pub use checks::{
    assert_full_and_incremental_commit, assert_no_backup_listed, assert_nothing_left, listed_keys,
    objects_besides_run_records, read_all, tamper_artifact,
};
pub use faults::{Faults, FaultyStore, Operation};
pub use fixtures::{Recording, RecordingTarget, ScriptedSource, pattern};
pub use helper::{
    DECOY_SECRETS, HELPER_PREFIX, HelperProcess, assert_success, hostile_secrets, run_helper,
    write_from_reader,
};
pub use property::{PropertyOptions, PropertyReport, backup_properties};
pub use race::{RaceOptions, RaceReport, race_cleanup_against_backups};
pub use serialized::SerializedCreates;

use crate::error::Error;
use crate::key::Key;
use crate::store::ObjectMeta;
use crate::store::{PutOptions, Store, StoreExt};

/// What the store under test supports beyond the required contract.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Capabilities {
    /// [`PutOptions::create`] is atomic (otherwise the suite expects
    /// [`Error::Unsupported`]).
    pub put_if_absent: bool,
    /// Size of the large streamed object the suite writes.
    pub large_object: usize,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            put_if_absent: true,
            large_object: 5 * 1024 * 1024 + 17,
        }
    }
}

impl Capabilities {
    /// Sets [`Capabilities::put_if_absent`].
    pub fn put_if_absent(mut self, yes: bool) -> Self {
        self.put_if_absent = yes;
        self
    }

    /// Sets [`Capabilities::large_object`].
    pub fn large_object(mut self, bytes: usize) -> Self {
        self.large_object = bytes;
        self
    }
}

fn key(prefix: &str, rest: &str) -> Key {
    Key::new(format!("{prefix}/{rest}")).expect("suite keys are valid")
}

/// Runs every conformance check against `store`, under a fresh random
/// prefix, and panics with a description on the first violation. Leaves
/// nothing behind on success.
pub async fn store_conformance(store: &dyn Store, caps: Capabilities) {
    let prefix = format!("conformance-{:08x}", rand::random::<u32>());
    small_objects(store, &prefix).await;
    missing_objects(store, &prefix).await;
    streamed_objects(store, &prefix, caps.large_object).await;
    ranges(store, &prefix).await;
    aborted_uploads_leave_nothing(store, &prefix).await;
    listing(store, &prefix).await;
    deletes(store, &prefix).await;
    create_only(store, &prefix, caps.put_if_absent).await;
    let rest = store
        .list_all(Some(&Key::new(prefix.as_str()).unwrap()))
        .await
        .expect("final listing");
    assert!(
        rest.is_empty(),
        "suite left objects behind: {:?}",
        rest.iter().map(|m| m.key.as_str()).collect::<Vec<_>>()
    );
}

async fn small_objects(store: &dyn Store, prefix: &str) {
    let k = key(prefix, "small/a.json");
    let meta = store
        .put(&k, Bytes::from_static(b"{\"a\":1}"), PutOptions::default())
        .await
        .expect("put small object");
    assert_eq!(meta.size, 7, "put reports the size");
    assert_eq!(meta.key, k);
    assert_eq!(&store.get_bytes(&k).await.unwrap()[..], b"{\"a\":1}");
    assert_eq!(store.head(&k).await.unwrap().size, 7, "head size");
    // overwrite replaces
    store
        .put(&k, Bytes::from_static(b"xy"), PutOptions::default())
        .await
        .expect("overwrite");
    assert_eq!(&store.get_bytes(&k).await.unwrap()[..], b"xy");
    // empty objects exist
    let empty = key(prefix, "small/empty");
    store
        .put(&empty, Bytes::new(), PutOptions::default())
        .await
        .expect("put empty");
    assert_eq!(store.head(&empty).await.unwrap().size, 0);
    assert!(store.get_bytes(&empty).await.unwrap().is_empty());
    // awkward but valid names
    let odd = key(prefix, "small/with space/ñandú (1).txt");
    store
        .put(&odd, Bytes::from_static(b"odd"), PutOptions::default())
        .await
        .expect("put odd name");
    assert_eq!(&store.get_bytes(&odd).await.unwrap()[..], b"odd");
    store.delete_many(&[k, empty, odd]).await.unwrap();
}

async fn missing_objects(store: &dyn Store, prefix: &str) {
    let k = key(prefix, "missing/nothing");
    assert!(
        matches!(store.get(&k).await, Err(Error::NotFound { .. })),
        "get of a missing key must be NotFound"
    );
    assert!(
        matches!(store.head(&k).await, Err(Error::NotFound { .. })),
        "head of a missing key must be NotFound"
    );
    assert!(!store.exists(&k).await.unwrap());
}

async fn streamed_objects(store: &dyn Store, prefix: &str, len: usize) {
    let data = pattern(len, 1);
    let k = key(prefix, "stream/big.bin");
    let mut upload = store.put_stream(&k).await.expect("start upload");
    // Odd chunk sizes, including an empty one.
    let mut offset = 0;
    for (i, size) in [1usize, 0, 4095, 65537, 1 << 20].iter().cycle().enumerate() {
        if offset >= data.len() {
            break;
        }
        let end = (offset + size).min(data.len());
        upload
            .write(Bytes::copy_from_slice(&data[offset..end]))
            .await
            .unwrap_or_else(|e| panic!("write {i}: {e}"));
        offset = end;
        if i == 3 {
            assert!(
                !store.exists(&k).await.unwrap(),
                "an upload in progress must not be visible"
            );
            let listed = store.list_all(Some(&key(prefix, "stream"))).await.unwrap();
            assert!(
                listed.is_empty(),
                "listing shows an in-progress upload: {listed:?}"
            );
        }
    }
    let meta = upload.complete().await.expect("complete");
    assert_eq!(meta.size, len as u64, "completed size");
    let got = store.get(&k).await.expect("get streamed");
    assert_eq!(got.meta.size, len as u64);
    let mut read = Vec::with_capacity(len);
    let mut stream = got.stream;
    while let Some(chunk) = stream.next().await {
        read.extend_from_slice(&chunk.expect("read chunk"));
    }
    assert!(
        read == data,
        "streamed object differs from what was written"
    );
    // A streamed upload replaces an existing object atomically.
    let mut upload = store.put_stream(&k).await.unwrap();
    upload.write(Bytes::from_static(b"v2")).await.unwrap();
    upload.complete().await.unwrap();
    assert_eq!(&store.get_bytes(&k).await.unwrap()[..], b"v2");
    // An empty stream is a valid empty object.
    let e = key(prefix, "stream/empty.bin");
    let upload = store.put_stream(&e).await.unwrap();
    assert_eq!(upload.complete().await.unwrap().size, 0);
    assert_eq!(store.head(&e).await.unwrap().size, 0);
    store.delete_many(&[k, e]).await.unwrap();
}

async fn ranges(store: &dyn Store, prefix: &str) {
    let data = pattern(300_000, 4);
    let k = key(prefix, "range/pack.bin");
    let mut upload = store.put_stream(&k).await.unwrap();
    upload.write(Bytes::from(data.clone())).await.unwrap();
    upload.complete().await.unwrap();
    let len = data.len() as u64;
    for range in [0..1, 0..len, 1000..70_000, len - 1..len, 4096..4096] {
        let got = store
            .get_range(&k, range.clone())
            .await
            .unwrap_or_else(|e| panic!("get_range {range:?}: {e}"));
        assert!(
            got[..] == data[range.start as usize..range.end as usize],
            "get_range {range:?} returned other bytes"
        );
    }
    for bad in [len - 10..len + 1, len + 5..len + 10] {
        assert!(
            store.get_range(&k, bad.clone()).await.is_err(),
            "get_range {bad:?} past the end of a {len}-byte object must fail"
        );
    }
    let missing = key(prefix, "range/missing.bin");
    assert!(
        matches!(
            store.get_range(&missing, 0..1).await,
            Err(Error::NotFound { .. })
        ),
        "get_range of a missing key must be NotFound"
    );
    store.delete(&k).await.unwrap();
}

async fn aborted_uploads_leave_nothing(store: &dyn Store, prefix: &str) {
    let k = key(prefix, "abort/x.bin");
    let mut upload = store.put_stream(&k).await.unwrap();
    upload
        .write(Bytes::from(pattern(300_000, 2)))
        .await
        .unwrap();
    upload.abort().await.expect("abort");
    assert!(!store.exists(&k).await.unwrap(), "aborted upload visible");

    // Dropping without completing discards too.
    let d = key(prefix, "abort/dropped.bin");
    let mut upload = store.put_stream(&d).await.unwrap();
    upload.write(Bytes::from(pattern(1000, 3))).await.unwrap();
    drop(upload);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!store.exists(&d).await.unwrap(), "dropped upload visible");

    // An aborted replacement leaves the old object intact.
    store
        .put(&k, Bytes::from_static(b"old"), PutOptions::default())
        .await
        .unwrap();
    let mut upload = store.put_stream(&k).await.unwrap();
    upload.write(Bytes::from_static(b"new")).await.unwrap();
    upload.abort().await.unwrap();
    assert_eq!(&store.get_bytes(&k).await.unwrap()[..], b"old");
    store.delete(&k).await.unwrap();
    let left = store.list_all(Some(&key(prefix, "abort"))).await.unwrap();
    assert!(left.is_empty(), "abort left objects: {left:?}");
}

async fn listing(store: &dyn Store, prefix: &str) {
    let keys = ["l/a/1", "l/a/2", "l/a/sub/3", "l/ab/4", "l/b"];
    for k in keys {
        store
            .put(
                &key(prefix, k),
                Bytes::from(k.as_bytes().to_vec()),
                PutOptions::default(),
            )
            .await
            .unwrap();
    }
    let names = |items: Vec<ObjectMeta>| -> Vec<String> {
        items
            .into_iter()
            .map(|m| {
                assert_eq!(
                    m.size,
                    m.key.as_str().len() as u64 - prefix.len() as u64 - 1
                );
                m.key.as_str()[prefix.len() + 1..].to_string()
            })
            .collect()
    };
    let under_a = store.list_all(Some(&key(prefix, "l/a"))).await.unwrap();
    assert_eq!(
        names(under_a),
        ["l/a/1", "l/a/2", "l/a/sub/3"],
        "prefix listing is by whole segments and recursive"
    );
    let all = store.list_all(Some(&key(prefix, "l"))).await.unwrap();
    assert_eq!(names(all), keys, "listing everything under a prefix");
    let none = store.list_all(Some(&key(prefix, "l/zzz"))).await.unwrap();
    assert!(none.is_empty(), "missing prefix lists nothing");
    let whole = store.list_all(None).await.unwrap();
    for k in keys {
        let full = key(prefix, k);
        assert!(
            whole.iter().any(|m| m.key == full),
            "unprefixed listing misses {full}"
        );
    }
    let doomed: Vec<Key> = keys.iter().map(|k| key(prefix, k)).collect();
    store.delete_many(&doomed).await.unwrap();
}

async fn deletes(store: &dyn Store, prefix: &str) {
    let k = key(prefix, "d/x");
    store
        .delete(&k)
        .await
        .expect("deleting a missing key succeeds");
    store
        .put(&k, Bytes::from_static(b"x"), PutOptions::default())
        .await
        .unwrap();
    store.delete(&k).await.unwrap();
    assert!(!store.exists(&k).await.unwrap());
    store.delete(&k).await.expect("second delete succeeds");
    let many: Vec<Key> = (0..25).map(|i| key(prefix, &format!("d/m{i}"))).collect();
    for k in &many[..20] {
        store
            .put(k, Bytes::from_static(b"m"), PutOptions::default())
            .await
            .unwrap();
    }
    store
        .delete_many(&many)
        .await
        .expect("bulk delete with some keys missing");
    assert!(
        store
            .list_all(Some(&key(prefix, "d")))
            .await
            .unwrap()
            .is_empty()
    );
    store.delete_many(&[]).await.expect("empty bulk delete");
}

async fn create_only(store: &dyn Store, prefix: &str, supported: bool) {
    let k = key(prefix, "lease/lock.json");
    let first = store
        .put(&k, Bytes::from_static(b"first"), PutOptions::create())
        .await;
    if !supported {
        assert!(
            matches!(first, Err(Error::Unsupported { .. })),
            "a store without put-if-absent must say Unsupported, got {first:?}"
        );
        return;
    }
    first.expect("create-only put of a new key");
    let second = store
        .put(&k, Bytes::from_static(b"second"), PutOptions::create())
        .await;
    assert!(
        matches!(second, Err(Error::AlreadyExists { .. })),
        "second create-only put must be AlreadyExists, got {second:?}"
    );
    assert_eq!(&store.get_bytes(&k).await.unwrap()[..], b"first");
    // Racing creators: exactly one wins.
    let race = key(prefix, "lease/race.json");
    let attempts = (0..8).map(|i| {
        let race = race.clone();
        async move {
            store
                .put(&race, Bytes::from(format!("{i}")), PutOptions::create())
                .await
        }
    });
    let results = futures::future::join_all(attempts).await;
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "racing create-only puts: {results:?}");
    store.delete_many(&[k, race]).await.unwrap();
}
