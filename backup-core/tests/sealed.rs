//! Sealed objects (`Engine::put_sealed` / `Engine::open_sealed`): round
//! trips through every stage, tampering caught before the end, create-only.

use std::sync::Arc;

use backup_core::Engine;
use backup_core::compression::{Algorithm, Compression};
use backup_core::crypto::{AgeIdentities, AgeRecipients};
use backup_core::engine::{SealOptions, SealedRecord};
use backup_core::error::Error;
use backup_core::key::Key;
use backup_core::memory::InMemoryStore;
use backup_core::store::{ByteStream, PutOptions, Store, StoreExt};
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};

/// `len` bytes that compress a little but not to nothing.
fn content(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(2_654_435_761) >> 7) as u8 % 17)
        .collect()
}

fn stream_of(data: &[u8]) -> ByteStream {
    let chunks: Vec<_> = data
        .chunks(100_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(chunks).boxed()
}

async fn read_all(mut stream: ByteStream) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        out.extend_from_slice(&item?);
    }
    Ok(out)
}

fn key(s: &str) -> Key {
    Key::new(s).unwrap()
}

async fn round_trip(engine: &Engine, store: &InMemoryStore, name: &str) -> SealedRecord {
    let data = content(3 * 1024 * 1024 + 17);
    let k = key(&format!("t/_objects/{name}"));
    let record = engine
        .put_sealed(&k, stream_of(&data), &SealOptions::default())
        .await
        .unwrap();
    assert_eq!(record.raw.size, data.len() as u64);
    assert_eq!(record.raw.sha256, hex::encode(Sha256::digest(&data)));
    let stored = store.get_bytes(&k).await.unwrap();
    assert_eq!(record.stored.size, stored.len() as u64);
    assert_eq!(record.stored.sha256, hex::encode(Sha256::digest(&stored)));
    // The record survives JSON, as callers keep it.
    let json = serde_json::to_vec(&record).unwrap();
    let back: SealedRecord = serde_json::from_slice(&json).unwrap();
    assert_eq!(back, record);
    let read = read_all(engine.open_sealed(&k, &back).await.unwrap())
        .await
        .unwrap();
    assert!(read == data, "{name}: the plaintext read back differs");
    record
}

#[tokio::test]
async fn sealed_objects_round_trip_plain_zstd_and_age() {
    let store = Arc::new(InMemoryStore::new());
    let dyn_store = store.clone() as Arc<dyn Store>;

    let plain = Engine::new(dyn_store.clone()).with_compression(Compression::none());
    let r = round_trip(&plain, &store, "plain").await;
    assert_eq!(r.compression.algorithm, Algorithm::None);
    assert_eq!(
        (r.stored.size, &r.stored.sha256),
        (r.raw.size, &r.raw.sha256),
        "unchanged bytes hash the same"
    );

    let zstd = Engine::new(dyn_store.clone()).with_compression(Compression::zstd(3));
    let r = round_trip(&zstd, &store, "zstd").await;
    assert_eq!(r.compression.algorithm, Algorithm::Zstd);
    assert!(r.stored.size < r.raw.size, "{r:?}");

    let (identities, recipient, secret) = AgeIdentities::generate();
    let age = Engine::new(dyn_store.clone())
        .with_compression(Compression::zstd(3))
        .with_encryption(AgeRecipients::parse([recipient.as_str()]).unwrap())
        .with_identities(identities);
    let r = round_trip(&age, &store, "age").await;
    let enc = r.encryption.as_ref().unwrap();
    assert_eq!(enc.recipients, [recipient]);
    let json = String::from_utf8(serde_json::to_vec(&r).unwrap()).unwrap();
    assert!(!json.contains(secret.expose()), "a secret in the record");
    let stored = store.get_bytes(&key("t/_objects/age")).await.unwrap();
    assert!(stored.starts_with(b"age-encryption.org/v1\n"));
    // Without an identity the read is refused up front.
    let err = plain
        .open_sealed(&key("t/_objects/age"), &r)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::Decryption { .. }), "{err}");
}

#[tokio::test]
async fn a_flipped_stored_byte_ends_the_read_with_an_error_and_no_clean_end() {
    let store = Arc::new(InMemoryStore::new());
    for (name, compression) in [
        ("plain", Compression::none()),
        ("zstd", Compression::zstd(1)),
    ] {
        let engine = Engine::new(store.clone() as Arc<dyn Store>).with_compression(compression);
        let data = content(2 * 1024 * 1024 + 3);
        let k = key(&format!("t/_objects/flip-{name}"));
        let record = engine
            .put_sealed(&k, stream_of(&data), &SealOptions::default())
            .await
            .unwrap();
        let mut stored = store.get_bytes(&k).await.unwrap().to_vec();
        let at = stored.len() / 2;
        stored[at] ^= 0x01;
        store
            .put(&k, Bytes::from(stored), PutOptions::default())
            .await
            .unwrap();
        let mut stream = engine.open_sealed(&k, &record).await.unwrap();
        let mut released = 0usize;
        let mut failed = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => released += chunk.len(),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let err = failed.unwrap_or_else(|| panic!("{name}: the corrupt object read cleanly"));
        assert!(
            matches!(err, Error::Integrity { .. }),
            "{name}: {err} is not an integrity error"
        );
        assert!(err.to_string().contains(k.as_str()), "{err}");
        assert!(
            released < data.len(),
            "{name}: every byte was released before the check"
        );
    }
    // A record of another size is refused before anything is read.
    let engine = Engine::new(store.clone() as Arc<dyn Store>);
    let k = key("t/_objects/size");
    let mut record = engine
        .put_sealed(&k, stream_of(b"abc"), &SealOptions::default())
        .await
        .unwrap();
    record.stored.size += 1;
    let err = engine.open_sealed(&k, &record).await.err().unwrap();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
}

#[tokio::test]
async fn an_existing_key_is_refused_and_left_as_it_was() {
    let store = Arc::new(InMemoryStore::new());
    let engine = Engine::new(store.clone() as Arc<dyn Store>);
    let k = key("t/_objects/once");
    let first = engine
        .put_sealed(&k, stream_of(b"first"), &SealOptions::default())
        .await
        .unwrap();
    let before = store.get_bytes(&k).await.unwrap();
    let err = engine
        .put_sealed(&k, stream_of(b"second, longer"), &SealOptions::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
    assert_eq!(store.get_bytes(&k).await.unwrap(), before);
    let read = read_all(engine.open_sealed(&k, &first).await.unwrap())
        .await
        .unwrap();
    assert_eq!(read, b"first");
    assert!(matches!(
        engine
            .open_sealed(&key("t/_objects/none"), &first)
            .await
            .err()
            .unwrap(),
        Error::NotFound { .. }
    ));
}

#[tokio::test]
async fn a_failing_or_cancelled_stream_leaves_nothing() {
    let store = Arc::new(InMemoryStore::new());
    let engine = Engine::new(store.clone() as Arc<dyn Store>);
    let k = key("t/_objects/failed");
    let failing = futures::stream::iter(vec![
        Ok(Bytes::from_static(b"partial")),
        Err(Error::Config("the source broke".into())),
    ])
    .boxed();
    assert!(
        engine
            .put_sealed(&k, failing, &SealOptions::default())
            .await
            .is_err()
    );
    assert!(!store.exists(&k).await.unwrap());

    let token = tokio_util::sync::CancellationToken::new();
    token.cancel();
    let pending = futures::stream::pending().boxed();
    let err = engine
        .put_sealed(&k, pending, &SealOptions::default().with_cancel(token))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::Cancelled), "{err}");
    assert!(!store.exists(&k).await.unwrap());
}
