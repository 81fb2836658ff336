//! Property tests of manifests and the key layout (fuzz target:
//! `manifest`): generated manifests survive `to_json`/`from_json`; any
//! bytes give an error or a manifest, never a panic; a manifest whose
//! artifact is not the one beside it is refused by the catalog.

use std::sync::Arc;

use backup_core::{
    BackupType, Filter, Store, catalog::Catalog, compression::Algorithm, key::Key,
    manifest::BackupKind, manifest::CompressionInfo, manifest::DedupInfo, manifest::Digests,
    manifest::EncryptionInfo, manifest::Layout, manifest::Manifest, manifest::is_backup_id,
    memory::InMemoryStore, source::Versions, store::PutOptions,
};
use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;

fn id_text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9_.-]{0,20}"
}

fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    // 1970 to 2200, with nanoseconds.
    (0i64..7_258_118_400, 0u32..1_000_000_000).prop_map(|(s, ns)| Utc.timestamp_opt(s, ns).unwrap())
}

fn digests() -> impl Strategy<Value = Digests> {
    (
        any::<u64>(),
        "[0-9a-f]{64}",
        proptest::option::of("[0-9a-f]{32}"),
    )
        .prop_map(|(size, sha256, md5)| Digests { size, sha256, md5 })
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[ -~]{0,16}", "\\PC{0,12}", any::<String>()]
}

prop_compose! {
    fn manifest()(
        tenant in id_text(),
        source_id in id_text(),
        database in text(),
        format in "[a-z]{1,8}",
        kind in prop_oneof![Just(BackupKind::Manual), Just(BackupKind::Scheduled)],
        backup_type in prop_oneof![Just(BackupType::Full), Just(BackupType::Incremental)],
        started_at in instant(),
        took in 0i64..1_000_000,
        random in any::<u32>(),
        ext in "[a-z]{1,4}(\\.[a-z]{1,4}){0,2}",
        algorithm in prop_oneof![Just(Algorithm::None), Just(Algorithm::Gzip), Just(Algorithm::Zstd)],
        level in proptest::option::of(any::<i32>()),
        recipients in proptest::option::of(prop::collection::vec("age1[a-z0-9]{10,20}", 0..3)),
        stored in digests(),
        raw in digests(),
        tool in proptest::option::of(text()),
        server in proptest::option::of(text()),
        parent in proptest::option::of(text()),
        created_by in proptest::option::of(text()),
        labels in prop::collection::btree_map(text(), text(), 0..4),
        dedup in proptest::option::of((any::<[u64; 6]>(), "[a-z0-9/]{1,20}")),
        details in prop::collection::btree_map("[a-z.]{1,12}", text(), 0..4),
    ) -> Manifest {
        let id = format!("{}-{random:08x}", started_at.format("%Y%m%dT%H%M%SZ"));
        let layout = Layout::new(&tenant, &source_id, kind, &format, &database, &id, started_at)
            .expect("generated ids are valid");
        Manifest {
            manifest_version: 1,
            id,
            tenant,
            source_id,
            engine: "postgres".into(),
            database,
            kind,
            backup_type,
            format,
            compression: CompressionInfo { algorithm, level },
            encryption: recipients.map(|recipients| EncryptionInfo { scheme: "age".into(), recipients }),
            started_at,
            finished_at: started_at + chrono::Duration::milliseconds(took),
            artifact: layout.artifact_key(&ext).unwrap().to_string(),
            stored,
            raw,
            versions: Versions { tool, server },
            parent,
            created_by,
            labels,
            dedup: dedup.map(|(n, chunker)| DedupInfo {
                chunker,
                chunks: n[0],
                new_chunks: n[1],
                new_raw_bytes: n[2],
                stored_bytes: n[3],
                packs: n[4],
                logical_size: n[5],
            }),
            details,
            fingerprint: None,
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn manifests_round_trip(m in manifest()) {
        let key = m.manifest_key().unwrap();
        let back = Manifest::from_json(&key, &m.to_json()).unwrap();
        prop_assert_eq!(&back, &m);
        let layout = Layout::from_manifest_key(key.as_str()).unwrap();
        prop_assert_eq!(layout.id(), m.id.as_str());
        prop_assert_eq!(Layout::from_artifact(&m.artifact).unwrap(), layout);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let key = Key::new("t/s/2025/11/manual-f-d-20251126T030000Z-0badf00d.manifest.json").unwrap();
        if let Ok(m) = Manifest::from_json(&key, &bytes) {
            prop_assert_eq!(Manifest::from_json(&key, &m.to_json()).unwrap(), m);
        }
    }

    #[test]
    fn damaged_manifests_never_panic(m in manifest(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<bool>()) {
        let key = m.manifest_key().unwrap();
        let mut json = m.to_json();
        let i = at.index(json.len());
        if cut { json.truncate(i) } else { json[i] = byte }
        if let Ok(parsed) = Manifest::from_json(&key, &json) {
            prop_assert!(Key::new(parsed.artifact.as_str()).is_ok());
        }
    }

    #[test]
    fn layout_parsers_never_panic(s in prop_oneof![any::<String>(), "[a-z/]{0,10}-[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}(\\.[a-z.]{0,20})?"]) {
        if let Some(l) = Layout::from_manifest_key(&s) {
            prop_assert!(is_backup_id(l.id()));
        }
        if let Some(l) = Layout::from_artifact(&s) {
            prop_assert!(is_backup_id(l.id()));
            prop_assert!(s.starts_with(l.base()));
        }
    }

    #[test]
    fn manifests_naming_another_artifact_are_refused(
        m in manifest(),
        other in manifest(),
    ) {
        prop_assume!(Layout::from_artifact(&m.artifact).unwrap().base()
            != Layout::from_artifact(&other.artifact).unwrap().base());
        // `m`'s manifest, stored where `m` belongs, names `other`'s artifact.
        let key = m.manifest_key().unwrap();
        let forged = Manifest { artifact: other.artifact.clone(), ..m.clone() };
        let store = Arc::new(InMemoryStore::new());
        let catalog = Catalog::new(store.clone());
        runtime().block_on(async {
            store.put(&key, forged.to_json().into(), PutOptions::default()).await.unwrap();
            let err = catalog.get(&m.id).await.unwrap_err();
            assert!(err.to_string().contains("is not beside it"), "{err}");
            assert!(catalog.list(&Filter::all()).await.unwrap().is_empty());
            // The honest manifest is listed.
            store.put(&key, m.to_json().into(), PutOptions::default()).await.unwrap();
            let fresh = Catalog::new(store.clone());
            assert_eq!(*fresh.get(&m.id).await.unwrap(), m);
        });
    }
}

#[test]
fn regressions() {
    // Panicked before the fix (found by `layout_parsers_never_panic`): the
    // id was cut at a byte that is not a character boundary.
    for key in [
        "/！\u{119da}େশA® \u{8e3}Σ𐠼𝒻",
        "t/s/ñññññññññññññññññññññññññ.manifest.json",
        "t/s/x-ééééééééééééé.dump",
    ] {
        assert_eq!(Layout::from_manifest_key(key), None, "{key}");
        assert_eq!(Layout::from_artifact(key), None, "{key}");
    }
}
