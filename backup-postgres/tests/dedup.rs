//! Incremental (deduplicated) backups of a real PostgreSQL: restores equal
//! to the source, what a second backup stores, damage refused before
//! pg_restore commits.

use std::sync::Arc;
use std::time::Duration;

use backup_core::prelude::*;
use backup_core::store::StoreExt;
use backup_core::{
    crypto::AgeIdentities, crypto::AgeRecipients, dedup::DedupOptions, memory::InMemoryStore,
    source::RestoreReport, store::ObjectMeta, store::PutOptions,
};
use backup_postgres::{PostgresSource, PostgresTarget, TestServer};
use bytes::Bytes;

fn incremental(source_id: &str) -> BackupRequest {
    BackupRequest::new(source_id).backup_type(BackupType::Incremental)
}

async fn restore_into(
    server: &TestServer,
    engine: &Engine,
    id: &str,
    db: &str,
) -> Result<RestoreReport> {
    let target = PostgresTarget::new(server.connection("postgres")).with_tools(server.tools());
    engine
        .restore(id, &target, &RestoreOptions::into_database(db).create(true))
        .await
}

backup_postgres::each_major! {
    async fn incremental_backups_restore_equal_to_the_source(server) {
        let db = server.create_database("dedup_src").await.unwrap();
        server.pgbench_init(&db, 2).await.unwrap();
        let (identities, recipient, _) = AgeIdentities::generate();
        for encrypted in [false, true] {
            let store = Arc::new(InMemoryStore::new());
            let mut engine = Engine::new(store.clone() as Arc<dyn Store>);
            if encrypted {
                engine = engine
                    .with_encryption(AgeRecipients::parse([recipient.as_str()]).unwrap())
                    .with_identities(identities.clone());
            }
            let source = PostgresSource::new(server.connection(&db)).with_tools(server.tools());
            let first = engine
                .backup(&source, &incremental("pgbench"))
                .await
                .unwrap();
            let d = first.dedup.as_ref().unwrap();
            assert_eq!(d.new_chunks, d.chunks);
            assert!(first.raw.size > 20_000_000, "{}", first.raw.size);
            assert!(
                first.bytes_stored() < first.raw.size / 3,
                "compressed chunks"
            );

            let copy = format!("{db}_copy{}", u8::from(encrypted));
            restore_into(server, &engine, &first.id, &copy).await.unwrap();
            let before = server.fingerprint(&db).await.unwrap();
            assert_eq!(server.fingerprint(&copy).await.unwrap(), before);

            // Change 1% of the accounts, contiguously; back up again.
            server
                .psql(
                    &db,
                    "UPDATE pgbench_accounts SET abalance = abalance + 7 WHERE aid <= 2000",
                )
                .await
                .unwrap();
            let second = engine
                .backup(&source, &incremental("pgbench"))
                .await
                .unwrap();
            let d2 = second.dedup.as_ref().unwrap();
            assert!(
                second.bytes_stored() * 10 < first.bytes_stored(),
                "second stored {} bytes, first {} ({d2:?})",
                second.bytes_stored(),
                first.bytes_stored()
            );
            engine.verify(&second.id).await.unwrap();
            let copy2 = format!("{copy}_second");
            restore_into(server, &engine, &second.id, &copy2).await.unwrap();
            let after = server.fingerprint(&db).await.unwrap();
            assert_ne!(after, before);
            assert_eq!(server.fingerprint(&copy2).await.unwrap(), after);

            // The first backup deleted and collected: the second still restores.
            engine.catalog().delete(&first.id).await.unwrap();
            // (Repack any pack with garbage: at this size everything fits in
            // one 16 MiB pack, which the default threshold would keep.)
            let gc = engine
                .clone()
                .with_dedup(DedupOptions::default().repack_threshold(0.0))
                .gc("default", Duration::ZERO, false)
                .await
                .unwrap();
            assert!(gc.removed_chunks > 0, "{gc:?}");
            let copy3 = format!("{copy}_after_gc");
            restore_into(server, &engine, &second.id, &copy3).await.unwrap();
            assert_eq!(server.fingerprint(&copy3).await.unwrap(), after);
            let check = engine.check(None).await.unwrap();
            assert!(check.is_ok(), "{check:?}");
            assert_eq!(check.unreferenced_chunks, 0, "{check:?}");

            for name in [copy, copy2, copy3] {
                server.drop_database(&name).await.unwrap();
            }
            // Undo the change for the next round.
            server
                .psql(
                    &db,
                    "UPDATE pgbench_accounts SET abalance = abalance - 7 WHERE aid <= 2000",
                )
                .await
                .unwrap();
        }
        server.drop_database(&db).await.unwrap();
    }
}

backup_postgres::each_major! {
    async fn a_corrupt_chunk_is_refused_before_pg_restore_commits(server) {
        let db = server.create_database("dedup_corrupt").await.unwrap();
        server.pgbench_init(&db, 1).await.unwrap();
        let store = Arc::new(InMemoryStore::new());
        let engine =
            Engine::new(store.clone() as Arc<dyn Store>).with_compressor(Arc::new(Compression::none()));
        let m = engine
            .backup(
                &PostgresSource::new(server.connection(&db)).with_tools(server.tools()),
                &incremental("c"),
            )
            .await
            .unwrap();
        // Flip a byte in the newest pack: late in the dump, after pg_restore
        // has received (and applied, inside its transaction) most of it.
        let packs: Vec<ObjectMeta> = store
            .list_all(None)
            .await
            .unwrap()
            .into_iter()
            .filter(|o| o.key.as_str().ends_with(".pack"))
            .collect();
        let last = packs.iter().max_by_key(|o| o.last_modified).unwrap();
        let mut bytes = store.get_bytes(&last.key).await.unwrap().to_vec();
        let n = bytes.len();
        bytes[n - 1000] ^= 0x04;
        store
            .put(&last.key, Bytes::from(bytes), PutOptions::default())
            .await
            .unwrap();

        let target_db = format!("{db}_target");
        server
            .psql("postgres", &format!("CREATE DATABASE {target_db}"))
            .await
            .unwrap();
        let target = PostgresTarget::new(server.connection("postgres")).with_tools(server.tools());
        let err = engine
            .restore(&m.id, &target, &RestoreOptions::into_database(&target_db))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Integrity { .. }), "{err}");
        let tables = server
            .psql(
                &target_db,
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            )
            .await
            .unwrap();
        assert_eq!(tables, "0", "pg_restore committed part of a corrupt backup");
        let report = engine.check(None).await.unwrap();
        assert_eq!(report.corrupt_chunks.len(), 1, "{report:?}");
        assert_eq!(report.damaged_backups, std::slice::from_ref(&m.id));
        server.drop_database(&target_db).await.unwrap();
        server.drop_database(&db).await.unwrap();
    }
}
