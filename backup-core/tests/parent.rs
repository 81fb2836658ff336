//! A dump that depends on another backup (`DumpStream::with_parent`):
//! the engine records the parent in the manifest, retention keeps it,
//! and a parent that is not a listed backup of the same tenant and source
//! is refused before anything is stored.

use std::sync::Arc;

use backup_core::manifest::Manifest;
use backup_core::prelude::*;
use backup_core::retention::{KeepLast, PlanOptions, plan};
use backup_core::testing::{ScriptedSource, objects_besides_run_records, tamper_artifact};
use backup_core::{
    memory::InMemoryStore, source::DumpOptions, source::DumpStream, source::SourceInfo,
};

/// Dumps like [`ScriptedSource::ok`] and declares `parent`.
#[derive(Debug)]
struct WithParent(Option<String>);

#[async_trait::async_trait]
impl DumpSource for WithParent {
    fn info(&self) -> SourceInfo {
        ScriptedSource::ok(0).info()
    }

    async fn dump(&self, opts: &DumpOptions) -> Result<DumpStream> {
        let dump = ScriptedSource::ok(64 * 1024).dump(opts).await?;
        Ok(match &self.0 {
            Some(id) => dump.with_parent(id.clone()),
            None => dump,
        })
    }
}

fn engine(store: &Arc<InMemoryStore>) -> Engine {
    Engine::new(store.clone() as Arc<dyn Store>)
}

#[tokio::test]
async fn the_parent_is_recorded_and_kept_by_retention() {
    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store);
    let req = BackupRequest::new("s").tenant("t");
    let full = engine.backup(&WithParent(None), &req).await.unwrap();
    assert_eq!(full.parent, None);
    let child = engine
        .backup(&WithParent(Some(full.id.clone())), &req)
        .await
        .unwrap();
    assert_eq!(child.parent.as_deref(), Some(full.id.as_str()));
    let listed = engine.catalog().list(&Filter::all()).await.unwrap();
    let stored_child = listed.iter().find(|m| m.id == child.id).unwrap();
    assert_eq!(stored_child.parent.as_deref(), Some(full.id.as_str()));
    // Keep only the newest: its parent stays, for it.
    let p = plan(
        &listed,
        &[&KeepLast(1)],
        chrono::Utc::now(),
        PlanOptions::default().include_manual(true),
    );
    assert!(p.delete.is_empty(), "{:?}", p.delete);
    let kept = p.keep.iter().find(|d| d.id == full.id).unwrap();
    assert_eq!(kept.reasons, [format!("parent of {}", child.id)]);
    engine.verify(&child.id).await.unwrap();
}

#[tokio::test]
async fn a_parent_that_is_not_a_backup_of_the_same_tenant_and_source_is_refused() {
    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store);
    let other_source = engine
        .backup(&WithParent(None), &BackupRequest::new("other").tenant("t"))
        .await
        .unwrap();
    let other_tenant = engine
        .backup(&WithParent(None), &BackupRequest::new("s").tenant("u"))
        .await
        .unwrap();
    let before = objects_besides_run_records(store.as_ref()).await;
    for (what, parent) in [
        ("missing", "20250101T000000Z-0000abcd".to_string()),
        ("not an id", "../../etc".to_string()),
        ("another source", other_source.id.clone()),
        ("another tenant", other_tenant.id.clone()),
    ] {
        let err = engine
            .backup(
                &WithParent(Some(parent.clone())),
                &BackupRequest::new("s").tenant("t"),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{what}: {err}");
        let text = err.to_string();
        assert!(text.contains("parent backup"), "{what}: {text}");
        assert!(text.contains("tenant t, source s"), "{what}: {text}");
        // Nothing of the refused backup is stored: only its run record
        // is new.
        let now = objects_besides_run_records(store.as_ref()).await;
        assert_eq!(now, before, "{what}");
    }
}

/// A full backup and two incrementals on it, of tenant t, source s.
async fn chain_of_three(engine: &Engine) -> [Manifest; 3] {
    let req = BackupRequest::new("s").tenant("t");
    let full = engine.backup(&WithParent(None), &req).await.unwrap();
    let inc1 = engine
        .backup(&WithParent(Some(full.id.clone())), &req)
        .await
        .unwrap();
    let inc2 = engine
        .backup(&WithParent(Some(inc1.id.clone())), &req)
        .await
        .unwrap();
    [full, inc1, inc2]
}

#[tokio::test]
async fn a_parent_cannot_be_deleted_while_a_backup_depends_on_it() {
    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store);
    let [full, inc1, inc2] = chain_of_three(&engine).await;
    for (parent, child) in [(&full, &inc1), (&inc1, &inc2)] {
        let err = engine.catalog().delete(&parent.id).await.unwrap_err();
        match &err {
            Error::HasDependents { backup, dependents } => {
                assert_eq!(backup, &parent.id);
                assert_eq!(dependents, std::slice::from_ref(&child.id));
            }
            other => panic!("expected HasDependents, got {other:?}"),
        }
        assert!(err.to_string().contains(&child.id), "{err}");
        // Still listed, and still restorable.
        engine.verify(&parent.id).await.unwrap();
    }
    // Newest first works, down to the full backup.
    for m in [&inc2, &inc1, &full] {
        engine.catalog().delete(&m.id).await.unwrap();
    }
    assert!(
        engine
            .catalog()
            .list(&Filter::all())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn verify_chain_and_check_follow_parents() {
    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store);
    let [full, inc1, inc2] = chain_of_three(&engine).await;
    let ids = |chain: Vec<Arc<Manifest>>| chain.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(engine.verify_chain(&inc2.id).await.unwrap()),
        [full.id.clone(), inc1.id.clone(), inc2.id.clone()]
    );
    assert_eq!(
        ids(engine.verify_chain(&full.id).await.unwrap()),
        std::slice::from_ref(&full.id)
    );
    let report = engine.check(Some("t")).await.unwrap();
    assert!(
        report.is_ok() && report.broken_chains.is_empty(),
        "{report:?}"
    );

    // A damaged link: the newest backup alone is intact, its chain is not.
    let flip = |bytes: &mut Vec<u8>| bytes[10] ^= 0xFF;
    tamper_artifact(store.as_ref(), &inc1, flip).await;
    engine.verify(&inc2.id).await.unwrap();
    let err = engine.verify_chain(&inc2.id).await.unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("parent {} of {}", inc1.id, inc2.id)),
        "{err}"
    );
    let report = engine.check(Some("t")).await.unwrap();
    assert!(!report.is_ok());
    assert_eq!(
        report.broken_chains,
        [format!("{}: parent {} is damaged", inc2.id, inc1.id)]
    );
    for id in [&inc1.id, &inc2.id] {
        assert!(report.damaged_backups.contains(id), "{report:?}");
    }
    tamper_artifact(store.as_ref(), &inc1, flip).await;

    // A missing link, named.
    engine.catalog().delete_manifest(&inc1).await.unwrap();
    let err = engine.verify_chain(&inc2.id).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert!(err.to_string().contains(&inc1.id), "{err}");
    let report = engine.check(Some("t")).await.unwrap();
    assert_eq!(
        report.broken_chains,
        [format!("{}: parent {} is missing", inc2.id, inc1.id)]
    );
}
