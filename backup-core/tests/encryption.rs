//! age encryption in the pipeline: round trips, wrong keys, tampering, and
//! interoperability with the plain age format.

use std::sync::Arc;

use backup_core::prelude::*;
use backup_core::store::StoreExt;
use backup_core::testing::{RecordingTarget, ScriptedSource};
use backup_core::{
    crypto::AgeIdentities, crypto::AgeRecipients, memory::InMemoryStore, store::PutOptions,
};
use bytes::Bytes;

fn engine(store: &Arc<InMemoryStore>) -> Engine {
    Engine::new(store.clone() as Arc<dyn Store>)
}

#[tokio::test]
async fn encrypted_backups_round_trip_and_record_only_public_ids() {
    let (identities, recipient, secret) = AgeIdentities::generate();
    let (_, second_recipient, _) = AgeIdentities::generate();
    let store = Arc::new(InMemoryStore::new());
    let source = ScriptedSource::ok(3 * 1024 * 1024 + 5);
    let engine = engine(&store)
        .with_encryption(
            AgeRecipients::parse([recipient.as_str(), second_recipient.as_str()]).unwrap(),
        )
        .with_identities(identities.clone());
    let m = engine
        .backup(&source, &BackupRequest::new("enc"))
        .await
        .unwrap();
    assert!(m.artifact.ends_with(".bin.zst.age"), "{}", m.artifact);
    let enc = m.encryption.as_ref().unwrap();
    assert_eq!(enc.scheme, "age");
    assert_eq!(enc.recipients, [recipient.clone(), second_recipient]);
    let json = String::from_utf8(m.to_json()).unwrap();
    assert!(
        !json.contains(secret.expose()),
        "secret key in the manifest"
    );
    assert!(!format!("{identities:?}").contains(secret.expose()));

    let stored = store.get_bytes(&m.artifact_key().unwrap()).await.unwrap();
    assert!(
        stored.starts_with(b"age-encryption.org/v1\n"),
        "a plain age file"
    );

    engine.verify(&m.id).await.unwrap();
    let target = RecordingTarget::default();
    engine
        .restore(&m.id, &target, &RestoreOptions::default())
        .await
        .unwrap();
    assert!(target.recording().committed.unwrap() == source.content());

    // The age crate alone decrypts it (then zstd): format interoperability.
    let decryptor = age::Decryptor::new(&stored[..]).unwrap();
    let mut reader = decryptor
        .decrypt(std::iter::once(
            &secret.expose().parse::<age::x25519::Identity>().unwrap() as &dyn age::Identity,
        ))
        .unwrap();
    let mut compressed = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut compressed).unwrap();
    let plain = zstd_decode(&compressed).await;
    assert!(plain == source.content());
}

async fn zstd_decode(data: &[u8]) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    async_compression::tokio::bufread::ZstdDecoder::new(data)
        .read_to_end(&mut out)
        .await
        .unwrap();
    out
}

#[tokio::test]
async fn wrong_or_missing_keys_are_refused_and_nothing_is_applied() {
    let (_, recipient, _) = AgeIdentities::generate();
    let (wrong, _, _) = AgeIdentities::generate();
    let store = Arc::new(InMemoryStore::new());
    let m = engine(&store)
        .with_encryption(AgeRecipients::parse([recipient.as_str()]).unwrap())
        .backup(
            &ScriptedSource::ok(2 * 1024 * 1024),
            &BackupRequest::new("enc"),
        )
        .await
        .unwrap();

    // No identity at all: refused before any session starts.
    let target = RecordingTarget::default();
    let err = engine(&store)
        .restore(&m.id, &target, &RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decryption { .. }), "{err}");
    assert!(err.to_string().contains("no identity"), "{err}");
    assert!(target.recording().received.is_empty());

    // The wrong identity: a clear error, the session aborted, nothing in.
    let target = RecordingTarget::default();
    let err = engine(&store)
        .with_identities(wrong.clone())
        .restore(&m.id, &target, &RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decryption { .. }), "{err}");
    assert!(err.to_string().contains("wrong key"), "{err}");
    let rec = target.recording();
    assert_eq!(rec.committed, None);
    assert!(rec.received.is_empty());
    let err = engine(&store)
        .with_identities(wrong)
        .verify(&m.id)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decryption { .. }), "{err}");

    // Stored bytes can be checked without any key.
    engine(&store).verify_stored(&m.id).await.unwrap();
}

#[tokio::test]
async fn tampered_ciphertext_is_an_integrity_error() {
    let (identities, recipient, _) = AgeIdentities::generate();
    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store)
        .with_encryption(AgeRecipients::parse([recipient.as_str()]).unwrap())
        .with_identities(identities);
    let m = engine
        .backup(
            &ScriptedSource::ok(4 * 1024 * 1024),
            &BackupRequest::new("enc"),
        )
        .await
        .unwrap();
    let key = m.artifact_key().unwrap();
    let mut bytes = store.get_bytes(&key).await.unwrap().to_vec();
    let i = bytes.len() - 3000;
    bytes[i] ^= 0x01;
    store
        .put(&key, Bytes::from(bytes), PutOptions::default())
        .await
        .unwrap();
    let target = RecordingTarget::default();
    let err = engine
        .restore(&m.id, &target, &RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    assert_eq!(target.recording().committed, None);
    assert!(matches!(
        engine.verify_stored(&m.id).await,
        Err(Error::Integrity { .. })
    ));
}

#[tokio::test]
async fn passphrase_mode_for_humans() {
    let pass = Secret::new("correct horse battery staple");
    let store = Arc::new(InMemoryStore::new());
    let source = ScriptedSource::ok(100_000);
    let m = engine(&store)
        .with_encryption(AgeRecipients::passphrase(&pass))
        .backup(&source, &BackupRequest::new("enc"))
        .await
        .unwrap();
    assert_eq!(
        m.encryption.as_ref().unwrap().recipients,
        ["scrypt passphrase"]
    );
    let target = RecordingTarget::default();
    engine(&store)
        .with_identities(AgeIdentities::passphrase(&pass))
        .restore(&m.id, &target, &RestoreOptions::default())
        .await
        .unwrap();
    assert!(target.recording().committed.unwrap() == source.content());
    let err = engine(&store)
        .with_identities(AgeIdentities::passphrase(&Secret::new("wrong")))
        .verify(&m.id)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decryption { .. }), "{err}");
}

#[test]
fn identity_parsing() {
    let (_, recipient, secret) = AgeIdentities::generate();
    let text = format!(
        "# created: today\n# public key: {recipient}\n{}\n",
        secret.expose()
    );
    assert!(AgeIdentities::parse(&Secret::new(text)).is_ok());
    let err = AgeIdentities::parse(&Secret::new("AGE-SECRET-KEY-1NOPE")).unwrap_err();
    assert!(
        !err.to_string().contains("NOPE"),
        "errors do not echo key material: {err}"
    );
    assert!(AgeRecipients::parse(Vec::<String>::new()).is_err());
}
