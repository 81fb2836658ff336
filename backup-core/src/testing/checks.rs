//! Checks the engine tests of every crate share: that full and
//! incremental backups commit, what a failed backup may leave behind (no
//! backup listed, no object but the run records); and whole streams read
//! into memory, artifacts damaged on purpose.

use bytes::Bytes;
use futures::StreamExt;

use super::fixtures::ScriptedSource;
use crate::catalog::{Filter, RUN_RECORD_NAME};
use crate::engine::{BackupRequest, Engine};
use crate::key::Key;
use crate::manifest::{BackupType, Manifest};
use crate::store::{ByteStream, PutOptions, Store, StoreExt};

/// The keys of every object in `store` but the engine's run records
/// ([`RUN_RECORD_NAME`]), in listing order.
pub async fn objects_besides_run_records(store: &dyn Store) -> Vec<String> {
    let mut keys = listed_keys(store, None).await;
    keys.retain(|k| !k.ends_with(RUN_RECORD_NAME));
    keys
}

/// The keys of every object in `store` under `prefix` (everything
/// without one), in listing order.
pub async fn listed_keys(store: &dyn Store, prefix: Option<&Key>) -> Vec<String> {
    store
        .list_all(prefix)
        .await
        .expect("list the store")
        .into_iter()
        .map(|m| m.key.to_string())
        .collect()
}

/// Panics unless `engine`'s catalog lists no backup at all.
pub async fn assert_no_backup_listed(engine: &Engine) {
    let listed = engine
        .catalog()
        .list(&Filter::all())
        .await
        .expect("list the catalog");
    assert!(listed.is_empty(), "no backup may be listed: {listed:?}");
}

/// Panics unless `engine` lists no backup and its store holds nothing but
/// run records: what a failed backup must leave. `context` starts the
/// message.
pub async fn assert_nothing_left(engine: &Engine, context: &str) {
    assert_no_backup_listed(engine).await;
    let left = objects_besides_run_records(engine.store().as_ref()).await;
    assert!(left.is_empty(), "{context}: left {left:?}");
}

/// Every byte of `stream`, in memory; panics on the first error. For
/// tests with small dumps only.
pub async fn read_all(stream: ByteStream) -> Vec<u8> {
    let mut stream = stream;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("read the stream"));
    }
    out
}

/// Rewrites the artifact of backup `m` in `store` with `damage` applied to
/// its bytes: a corrupt or truncated artifact under the same manifest.
pub async fn tamper_artifact(store: &dyn Store, m: &Manifest, damage: impl FnOnce(&mut Vec<u8>)) {
    let key = m.artifact_key().expect("the backup has an artifact");
    let mut bytes = store
        .get_bytes(&key)
        .await
        .expect("read the artifact")
        .to_vec();
    damage(&mut bytes);
    store
        .put(&key, Bytes::from(bytes), PutOptions::default())
        .await
        .expect("rewrite the artifact");
}

/// Takes a full and then an incremental backup of a scripted source with
/// `engine`, whose catalog starts empty, and panics unless both commit,
/// verify and are listed: what every store must allow, whatever its
/// create-only puts.
pub async fn assert_full_and_incremental_commit(engine: &Engine) {
    for backup_type in [BackupType::Full, BackupType::Incremental] {
        let m = engine
            .backup(
                &ScriptedSource::ok(300_000),
                &BackupRequest::new("db").backup_type(backup_type),
            )
            .await
            .unwrap_or_else(|e| panic!("{backup_type:?} backup: {e}"));
        engine
            .verify(&m.id)
            .await
            .unwrap_or_else(|e| panic!("verify the {backup_type:?} backup: {e}"));
    }
    let listed = engine
        .catalog()
        .list(&Filter::all())
        .await
        .expect("list the catalog");
    assert_eq!(listed.len(), 2, "{listed:?}");
}
