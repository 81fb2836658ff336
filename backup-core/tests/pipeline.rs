//! The pipeline's guarantees, end to end over the in-memory store.

use backup_core::backup_ref::BackupRef;
use std::sync::Arc;
use std::time::Duration;

use backup_core::prelude::*;
use backup_core::testing::{
    Capabilities, RecordingTarget, ScriptedSource, objects_besides_run_records, store_conformance,
    tamper_artifact,
};
use backup_core::{
    catalog::HealthOptions, catalog::HealthStatus, catalog::Page, compression::Algorithm, key::Key,
    manifest::BackupKind, manifest::Manifest, memory::InMemoryStore, pipeline::PipelineOptions,
    retention::KeepLast, retention::PlanOptions, store::PutOptions,
};
use bytes::Bytes;

fn engine(store: &Arc<InMemoryStore>) -> Engine {
    Engine::new(store.clone() as Arc<dyn Store>)
}

async fn keys(store: &InMemoryStore) -> Vec<String> {
    objects_besides_run_records(store).await
}

#[tokio::test]
async fn in_memory_store_passes_conformance() {
    store_conformance(&InMemoryStore::new(), Capabilities::default()).await;
}

#[tokio::test]
async fn round_trip_with_every_compression() {
    let source = ScriptedSource::ok(3 * 1024 * 1024 + 11);
    for compression in ["none", "gzip:1", "zstd:3", "zstd:19"] {
        let store = Arc::new(InMemoryStore::new());
        let engine =
            engine(&store).with_compressor(Arc::new(compression.parse::<Compression>().unwrap()));
        let req = BackupRequest::new("src").tenant("acme").label("k", "v");
        let m = engine.backup(&source, &req).await.unwrap();
        assert_eq!(m.raw.size, source.len as u64);
        assert_eq!(
            m.compression.algorithm.name(),
            compression.split(':').next().unwrap()
        );
        assert!(m.artifact.starts_with("acme/src/"), "{}", m.artifact);
        assert_eq!(m.labels["k"], "v");
        assert_eq!(keys(&store).await.len(), 2, "artifact + manifest");

        engine.verify(&m.id).await.unwrap();
        let target = RecordingTarget::default();
        let report = engine
            .restore(
                BackupRef::in_tenant("acme", &m.id),
                &target,
                &RestoreOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(report.database, "synthetic");
        let rec = target.recording();
        assert!(!rec.aborted);
        assert!(rec.committed.unwrap() == source.content(), "{compression}");
    }
}

#[tokio::test]
async fn failing_source_leaves_nothing() {
    let store = Arc::new(InMemoryStore::new());
    let err = engine(&store)
        .backup(
            &ScriptedSource::fail_after(2 * 1024 * 1024, "server went away"),
            &BackupRequest::new("src"),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("server went away"), "{err}");
    assert!(keys(&store).await.is_empty(), "{:?}", keys(&store).await);
}

#[tokio::test(start_paused = true)]
async fn stalled_source_is_failed_by_the_watchdog() {
    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store)
        .with_options(PipelineOptions::default().stall_timeout(Duration::from_secs(30)));
    let err = engine
        .backup(
            &ScriptedSource::stall_after(100_000),
            &BackupRequest::new("src"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Stalled { seconds: 30 }), "{err}");
    assert!(keys(&store).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn cancelled_backup_leaves_nothing() {
    let store = Arc::new(InMemoryStore::new());
    let token = tokio_util::sync::CancellationToken::new();
    let engine =
        engine(&store).with_options(PipelineOptions::default().cancel_token(token.clone()));
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        token.cancel();
    });
    let err = engine
        .backup(
            &ScriptedSource::stall_after(100_000),
            &BackupRequest::new("src"),
        )
        .await
        .unwrap_err();
    canceller.await.unwrap();
    assert!(matches!(err, Error::Cancelled), "{err}");
    assert!(keys(&store).await.is_empty());
}

#[tokio::test]
async fn corrupt_artifacts_are_refused_before_commit() {
    type Damage = fn(&mut Vec<u8>);
    let damages: [(&str, Damage); 3] = [
        ("flipped byte in the middle", |b| {
            let i = b.len() / 2;
            b[i] ^= 0x40
        }),
        ("flipped last byte", |b| {
            let i = b.len() - 1;
            b[i] ^= 0x01
        }),
        ("truncated", |b| b.truncate(b.len() - 100)),
    ];
    for compression in ["none", "zstd:3", "gzip:6"] {
        for (what, damage) in damages {
            let store = Arc::new(InMemoryStore::new());
            let engine = engine(&store)
                .with_compressor(Arc::new(compression.parse::<Compression>().unwrap()));
            // Larger than the holdback so the target has received data.
            let m = engine
                .backup(
                    &ScriptedSource::ok(4 * 1024 * 1024),
                    &BackupRequest::new("src"),
                )
                .await
                .unwrap();
            tamper_artifact(&*store, &m, damage).await;
            let err = engine.verify(&m.id).await.unwrap_err();
            assert!(
                matches!(err, Error::Integrity { .. }),
                "{compression} {what}: {err}"
            );
            let target = RecordingTarget::default();
            let err = engine
                .restore(&m.id, &target, &RestoreOptions::default())
                .await
                .unwrap_err();
            assert!(
                matches!(err, Error::Integrity { .. }),
                "{compression} {what}: {err}"
            );
            let rec = target.recording();
            assert_eq!(rec.committed, None, "{compression} {what}: committed");
            if what != "truncated" {
                assert!(rec.aborted, "{compression} {what}: not aborted");
            }
        }
    }
}

#[tokio::test]
async fn catalog_lists_only_committed_backups_and_sweeps_orphans() {
    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store);
    let m = engine
        .backup(&ScriptedSource::ok(1000), &BackupRequest::new("src"))
        .await
        .unwrap();
    // An orphan: an artifact-shaped key without a manifest.
    let orphan =
        Key::new("default/src/2025/01/manual-bin-synthetic-20250101T000000Z-00000000.bin.zst")
            .unwrap();
    store
        .put(&orphan, Bytes::from_static(b"half"), PutOptions::default())
        .await
        .unwrap();
    let listed = engine.catalog().list(&Filter::all()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, m.id);

    let now = chrono::Utc::now();
    let early = engine
        .catalog()
        .sweep(Duration::from_secs(3600), now)
        .await
        .unwrap();
    assert!(early.removed.is_empty());
    assert_eq!(early.too_recent, [orphan.to_string()]);
    let later = now + chrono::Duration::hours(2);
    let swept = engine
        .catalog()
        .sweep(Duration::from_secs(3600), later)
        .await
        .unwrap();
    assert_eq!(swept.removed, [orphan.to_string()]);
    // The committed backup is untouched.
    engine.verify(&m.id).await.unwrap();
}

#[tokio::test]
async fn ids_are_validated_and_scoped_by_tenant() {
    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store);
    let m = engine
        .backup(
            &ScriptedSource::ok(10),
            &BackupRequest::new("src").tenant("a"),
        )
        .await
        .unwrap();
    for bad in ["../../etc/passwd", "/etc/passwd", "a/b", ""] {
        let err = engine.catalog().get(bad).await.unwrap_err();
        assert!(matches!(err, Error::InvalidKey { .. }), "{bad}: {err}");
    }
    assert!(
        engine
            .catalog()
            .get(BackupRef::in_tenant("a", &m.id))
            .await
            .is_ok()
    );
    let err = engine
        .catalog()
        .get(BackupRef::in_tenant("b", &m.id))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    let err = engine
        .backup(
            &ScriptedSource::ok(10),
            &BackupRequest::new("src").tenant("../x"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidKey { .. }), "{err}");
}

#[tokio::test]
async fn delete_and_prune_remove_manifest_then_artifact() {
    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store);
    let mut ids = Vec::new();
    for _ in 0..4 {
        let m = engine
            .backup(
                &ScriptedSource::ok(10),
                &BackupRequest::new("src").kind(BackupKind::Scheduled),
            )
            .await
            .unwrap();
        ids.push(m.id);
        tokio::time::sleep(Duration::from_millis(1100)).await; // distinct timestamps
    }
    let manual = engine
        .backup(&ScriptedSource::ok(10), &BackupRequest::new("src"))
        .await
        .unwrap();
    let dry = engine
        .prune(
            &Filter::all(),
            &[&KeepLast(2)],
            PlanOptions::default(),
            true,
        )
        .await
        .unwrap();
    let plan = &dry.sources["default/src"];
    assert_eq!(plan.delete.len(), 2);
    assert_eq!(keys(&store).await.len(), 10, "dry run deletes nothing");
    engine
        .prune(
            &Filter::all(),
            &[&KeepLast(2)],
            PlanOptions::default(),
            false,
        )
        .await
        .unwrap();
    let left: Vec<String> = engine
        .catalog()
        .list(&Filter::all())
        .await
        .unwrap()
        .iter()
        .map(|m| m.id.clone())
        .collect();
    assert_eq!(left, [manual.id.clone(), ids[3].clone(), ids[2].clone()]);
    assert_eq!(keys(&store).await.len(), 6, "no orphans after prune");
    engine.catalog().delete(&manual.id).await.unwrap();
    assert_eq!(keys(&store).await.len(), 4);
}

#[tokio::test]
async fn paging_stats_and_health() {
    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store);
    for (tenant, source, n) in [("a", "x", 3), ("a", "y", 2), ("b", "x", 1)] {
        for _ in 0..n {
            engine
                .backup(
                    &ScriptedSource::ok(1000),
                    &BackupRequest::new(source).tenant(tenant),
                )
                .await
                .unwrap();
        }
    }
    let catalog = engine.catalog();
    let first = catalog
        .page(
            &Filter::all(),
            Page {
                offset: 0,
                limit: 4,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (first.items.len(), first.total, first.next_offset),
        (4, 6, Some(4))
    );
    let second = catalog
        .page(
            &Filter::all(),
            Page {
                offset: 4,
                limit: 4,
            },
        )
        .await
        .unwrap();
    assert_eq!((second.items.len(), second.next_offset), (2, None));
    let mut by_kind = Filter::tenant("a");
    by_kind.kind = Some(BackupKind::Scheduled);
    assert!(catalog.list(&by_kind).await.unwrap().is_empty());

    let stats = catalog.stats(&Filter::all()).await.unwrap();
    assert_eq!(stats.total.count, 6);
    assert_eq!(stats.tenants["a"].count, 5);
    assert_eq!(stats.sources["a/y"].count, 2);
    assert_eq!(stats.sources["b/x"].count, 1);
    assert!(stats.total.oldest <= stats.total.last_success);
    let only_b = catalog.stats(&Filter::tenant("b")).await.unwrap();
    assert_eq!(only_b.total.count, 1);

    let now = chrono::Utc::now();
    let opts = HealthOptions {
        expected: vec![("c".into(), "new".into())],
        ..HealthOptions::default()
    };
    let health = catalog.health(&Filter::all(), &opts, now).await.unwrap();
    let status: Vec<(String, HealthStatus)> = health
        .iter()
        .map(|h| (format!("{}/{}", h.tenant, h.source_id), h.status))
        .collect();
    assert_eq!(
        status,
        [
            ("a/x".into(), HealthStatus::Healthy),
            ("a/y".into(), HealthStatus::Healthy),
            ("b/x".into(), HealthStatus::Healthy),
            ("c/new".into(), HealthStatus::Stale),
        ]
    );
    let later = now + chrono::Duration::hours(25);
    let health = catalog
        .health(&Filter::tenant("a"), &HealthOptions::default(), later)
        .await
        .unwrap();
    assert!(
        health
            .iter()
            .all(|h| h.status == HealthStatus::Stale && h.hours_since_success.unwrap() > 24.0)
    );
    // A failed attempt: failing, with its error.
    engine
        .backup(
            &ScriptedSource::fail_after(10, "boom"),
            &BackupRequest::new("x").tenant("b"),
        )
        .await
        .unwrap_err();
    let health = catalog
        .health(&Filter::tenant("b"), &HealthOptions::default(), now)
        .await
        .unwrap();
    assert_eq!(health[0].status, HealthStatus::Failing);
    assert!(health[0].last_error.as_deref().unwrap().contains("boom"));
}

#[tokio::test]
async fn md5_can_be_turned_off_and_unchanged_dumps_are_hashed_once() {
    let store = Arc::new(InMemoryStore::new());
    let source = ScriptedSource::ok(2 * 1024 * 1024 + 3);
    let engine = engine(&store)
        .with_compressor(Arc::new(Compression::none()))
        .with_options(PipelineOptions::default().md5(false));
    let m = engine
        .backup(&source, &BackupRequest::new("src"))
        .await
        .unwrap();
    assert_eq!(m.stored.md5, None);
    assert_eq!(
        m.raw.sha256, m.stored.sha256,
        "stored unchanged: same digest"
    );
    assert_eq!(m.raw.size, source.len as u64);
    engine.verify(&m.id).await.unwrap();
    engine.verify_stored(&m.id).await.unwrap();
    let target = RecordingTarget::default();
    engine
        .restore(&m.id, &target, &RestoreOptions::default())
        .await
        .unwrap();
    assert!(target.recording().committed.unwrap() == source.content());
}

#[tokio::test]
async fn a_manifest_naming_another_key_is_refused() {
    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store);
    let victim = engine
        .backup(
            &ScriptedSource::ok(100),
            &BackupRequest::new("src").tenant("b"),
        )
        .await
        .unwrap();
    // Tenant a's manifest claims tenant b's artifact.
    let mut forged = victim.clone();
    forged.tenant = "a".into();
    forged.id = "20250101T000000Z-00000001".into();
    let key =
        Key::new("a/src/2025/01/manual-bin-synthetic-20250101T000000Z-00000001.manifest.json")
            .unwrap();
    store
        .put(&key, Bytes::from(forged.to_json()), PutOptions::default())
        .await
        .unwrap();
    let err = engine
        .catalog()
        .get(BackupRef::in_tenant("a", &forged.id))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Manifest { .. }), "{err}");
    assert_eq!(
        engine
            .catalog()
            .list(&Filter::tenant("a"))
            .await
            .unwrap()
            .len(),
        0
    );
    // Tenant b's backup is intact.
    engine
        .verify(BackupRef::in_tenant("b", &victim.id))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_manifest_records_a_typed_algorithm_and_refuses_unknown_ones() {
    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store).with_compression(Compression::gzip(3));
    let m = engine
        .backup(&ScriptedSource::ok(1000), &BackupRequest::new("src"))
        .await
        .unwrap();
    assert_eq!(m.compression.algorithm, Algorithm::Gzip);
    let key = m.manifest_key().unwrap();
    let json = String::from_utf8(m.to_json()).unwrap();
    assert!(Manifest::from_json(&key, json.as_bytes()).is_ok());
    // A manifest naming a compression this build cannot decode is refused
    // when read, not when a restore is half-way.
    let foreign = json.replace("\"gzip\"", "\"brotli\"");
    assert_ne!(foreign, json);
    let err = Manifest::from_json(&key, foreign.as_bytes()).unwrap_err();
    assert!(matches!(err, Error::Manifest { .. }), "{err}");
}
