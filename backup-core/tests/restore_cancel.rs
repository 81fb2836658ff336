//! Restores are cancellable per call (cancelling `RestoreOptions::cancel`
//! aborts the session: nothing is committed) and refuse other engines' dumps.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use backup_core::prelude::*;
use backup_core::testing::ScriptedSource;
use backup_core::{memory::InMemoryStore, source::RestoreReport, source::RestoreSession};
use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A target whose session signals its first write and then never accepts
/// another byte, like a database that hangs mid-restore.
#[derive(Debug, Default)]
struct Hanging {
    writing: Arc<Notify>,
    state: Arc<Mutex<(bool, bool)>>, // (committed, aborted)
}

#[derive(Debug)]
struct HangingSession {
    writing: Arc<Notify>,
    state: Arc<Mutex<(bool, bool)>>,
}

#[async_trait]
impl RestoreTarget for Hanging {
    fn engine(&self) -> &str {
        "scripted"
    }
    fn accepts_format(&self, _: &str) -> bool {
        true
    }
    async fn begin(&self, _: &RestoreOptions) -> Result<Box<dyn RestoreSession>> {
        Ok(Box::new(HangingSession {
            writing: self.writing.clone(),
            state: self.state.clone(),
        }))
    }
}

#[async_trait]
impl RestoreSession for HangingSession {
    async fn write(&mut self, _: Bytes) -> Result<()> {
        self.writing.notify_one();
        std::future::pending().await
    }
    async fn commit(self: Box<Self>) -> Result<RestoreReport> {
        self.state.lock().unwrap().0 = true;
        Ok(RestoreReport::default())
    }
    async fn abort(self: Box<Self>) -> Result<()> {
        self.state.lock().unwrap().1 = true;
        Ok(())
    }
}

#[tokio::test]
async fn cancelling_a_restore_aborts_its_session() {
    let engine = Engine::new(Arc::new(InMemoryStore::new()));
    let source = ScriptedSource::ok(4 * 1024 * 1024);
    let m = engine
        .backup(&source, &BackupRequest::new("src"))
        .await
        .unwrap();
    let target = Hanging::default();
    let cancel = CancellationToken::new();
    let opts = RestoreOptions::default().cancel_token(cancel.clone());
    let restore = engine.restore(&m.id, &target, &opts);
    tokio::pin!(restore);
    let result = tokio::select! {
        early = &mut restore => panic!("the restore ended before it was cancelled: {early:?}"),
        _ = target.writing.notified() => {
            cancel.cancel();
            restore.await
        }
    };
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert_eq!(
        *target.state.lock().unwrap(),
        (false, true),
        "aborted, not committed"
    );
    // The engine itself is not cancelled: the next restore runs.
    let target = backup_core::testing::RecordingTarget::default();
    engine
        .restore(&m.id, &target, &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(target.recording().committed.unwrap(), source.content());
}

/// A target of another engine.
#[derive(Debug)]
struct OtherEngine;

#[async_trait]
impl RestoreTarget for OtherEngine {
    fn engine(&self) -> &str {
        "postgres"
    }
    fn accepts_format(&self, _: &str) -> bool {
        true
    }
    async fn begin(&self, _: &RestoreOptions) -> Result<Box<dyn RestoreSession>> {
        panic!("a mismatched target must not be started")
    }
}

#[tokio::test]
async fn a_target_of_another_engine_is_refused_as_incompatible_not_as_configuration() {
    let engine = Engine::new(Arc::new(InMemoryStore::new()));
    let m = engine
        .backup(&ScriptedSource::ok(1000), &BackupRequest::new("src"))
        .await
        .unwrap();
    let err = engine
        .restore(&m.id, &OtherEngine, &RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Incompatible { engine, target, .. } if engine == "scripted" && target == "postgres"),
        "{err}"
    );
}
