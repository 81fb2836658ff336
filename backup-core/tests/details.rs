//! Facts a source learns while streaming (`DumpStream::with_details`):
//! recorded in the manifest on both write paths, listed, round-tripped
//! through JSON; a source that promised them and did not deliver fails
//! the backup with nothing committed.

use std::collections::BTreeMap;
use std::sync::Arc;

use backup_core::prelude::*;
use backup_core::store::StoreExt;
use backup_core::testing::{ScriptedSource, assert_nothing_left};
use backup_core::{
    manifest::Manifest, memory::InMemoryStore, source::Details, source::DumpOptions,
    source::DumpStream, source::MAX_DETAILS, source::SourceInfo, source::Versions,
};
use bytes::Bytes;
use futures::StreamExt;

/// What the toy source does with its promise of details.
#[derive(Debug, Clone)]
enum Deliver {
    /// Sends these once the last byte went out.
    After(Details),
    /// Drops the sender without sending (a source that lost track).
    Never,
    /// Promises nothing.
    NoPromise,
}

#[derive(Debug, Clone)]
struct Toy(Deliver);

fn facts() -> Details {
    BTreeMap::from([
        ("toy.start".to_string(), "0/2000028".to_string()),
        ("toy.stop".to_string(), "0/2000100".to_string()),
    ])
}

#[async_trait::async_trait]
impl DumpSource for Toy {
    fn info(&self) -> SourceInfo {
        ScriptedSource::ok(0).info()
    }

    async fn dump(&self, _: &DumpOptions) -> Result<DumpStream> {
        let chunks: Vec<Result<Bytes>> = (0..40u8)
            .map(|i| Ok(Bytes::from(vec![i; 8 * 1024])))
            .collect();
        let bytes = futures::stream::iter(chunks);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let deliver = self.0.clone();
        // Sent only once the consumer reached the end, like a source
        // learning its facts from the tail of the stream.
        let end = futures::stream::once(async move {
            match deliver {
                Deliver::After(d) => {
                    let _ = tx.send(d);
                }
                Deliver::Never | Deliver::NoPromise => drop(tx),
            }
            None
        })
        .filter_map(futures::future::ready);
        let dump = DumpStream::new(bytes.chain(end).boxed(), Versions::default());
        Ok(match self.0 {
            Deliver::NoPromise => dump,
            _ => dump.with_details(rx),
        })
    }
}

fn engine(store: &Arc<InMemoryStore>) -> Engine {
    Engine::new(store.clone() as Arc<dyn Store>).with_dedup(
        backup_core::dedup::DedupOptions::default()
            .chunk_sizes(4 * 1024, 16 * 1024, 64 * 1024)
            .pack_size(128 * 1024),
    )
}

fn request(backup_type: BackupType) -> BackupRequest {
    BackupRequest::new("s").backup_type(backup_type)
}

#[tokio::test]
async fn details_reach_the_manifest_the_listing_and_survive_json() {
    for backup_type in [BackupType::Full, BackupType::Incremental] {
        let store = Arc::new(InMemoryStore::new());
        let m = engine(&store)
            .backup(&Toy(Deliver::After(facts())), &request(backup_type))
            .await
            .unwrap();
        assert_eq!(m.details, facts(), "{backup_type:?}");
        // A fresh engine reads the manifest from the store.
        let listed = engine(&store).catalog().list(&Filter::all()).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].details, facts(), "{backup_type:?}");
        let key = m.manifest_key().unwrap();
        let stored = store.get_bytes(&key).await.unwrap();
        let text = String::from_utf8(stored.to_vec()).unwrap();
        assert!(text.contains("\"toy.start\": \"0/2000028\""), "{text}");
        let back = Manifest::from_json(&key, &m.to_json()).unwrap();
        assert_eq!(back, m);
        // And the backup restores as any other.
        engine(&store).verify(&m.id).await.unwrap();
    }
}

#[tokio::test]
async fn without_details_the_manifest_has_no_details_key_and_old_ones_parse() {
    let store = Arc::new(InMemoryStore::new());
    let m = engine(&store)
        .backup(&Toy(Deliver::NoPromise), &request(BackupType::Full))
        .await
        .unwrap();
    assert!(m.details.is_empty());
    let json = m.to_json();
    let text = String::from_utf8(json.clone()).unwrap();
    assert!(!text.contains("details"), "{text}");
    // A manifest written before details existed (no such key) parses.
    let key = m.manifest_key().unwrap();
    assert_eq!(Manifest::from_json(&key, &json).unwrap(), m);
}

#[tokio::test]
async fn a_source_that_drops_its_promise_fails_the_backup_and_commits_nothing() {
    for backup_type in [BackupType::Full, BackupType::Incremental] {
        let store = Arc::new(InMemoryStore::new());
        let engine = engine(&store);
        let err = engine
            .backup(&Toy(Deliver::Never), &request(backup_type))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidDump { .. }), "{err}");
        assert!(err.to_string().contains("without the details"), "{err}");
        if backup_type == BackupType::Full {
            assert_nothing_left(&engine, "details never delivered").await;
        } else {
            // Completed packs stay for GC; no backup is listed.
            backup_core::testing::assert_no_backup_listed(&engine).await;
        }
    }
}

#[tokio::test]
async fn details_out_of_bounds_fail_the_backup() {
    let too_many: Details = (0..=MAX_DETAILS)
        .map(|i| (format!("toy.k{i}"), "v".to_string()))
        .collect();
    let too_big: Details = BTreeMap::from([("toy.big".to_string(), "x".repeat(20_000))]);
    let empty_key: Details = BTreeMap::from([(" ".to_string(), "v".to_string())]);
    for (what, details) in [
        ("too many", too_many),
        ("too big", too_big),
        ("empty key", empty_key),
    ] {
        let store = Arc::new(InMemoryStore::new());
        let engine = engine(&store);
        let err = engine
            .backup(&Toy(Deliver::After(details)), &request(BackupType::Full))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidDump { .. }), "{what}: {err}");
        assert_nothing_left(&engine, what).await;
    }
}
