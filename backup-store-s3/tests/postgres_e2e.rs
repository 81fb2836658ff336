//! End to end: a pgbench database backed up with `pg_dump` into S3
//! (multipart), verified, restored into a new database and compared, then
//! deleted, on PostgreSQL 15 and 18 (`<test>::postgres_15`,
//! `<test>::postgres_18`, see `backup_postgres::each_major`).
//! PostgreSQL is a throwaway cluster of `backup-postgres` (or
//! `BACKUP_TEST_PG_URL` / `BACKUP_TEST_PG18_*`); S3 is a local `s3s-fs`
//! (or `BACKUP_TEST_S3_ENDPOINT`).

use backup_core::backup_ref::BackupRef;
use std::sync::Arc;

use backup_core::testing::assert_no_backup_listed;
use backup_core::{
    BackupRequest, Compression, Engine, Filter, RestoreOptions, Store, store::StoreExt,
};
use backup_postgres::{PostgresSource, PostgresTarget};
use backup_store_s3::{MIN_PART_SIZE, S3TestServer};

backup_postgres::each_major! {
    async fn pgbench_backup_to_s3_verifies_and_restores_equal(pg) {
        let s3 = S3TestServer::from_env_or_start()
            .unwrap_or_else(|e| panic!("no S3 server for the tests: {e}"));
        let store = s3
            .store_builder()
            .part_size(MIN_PART_SIZE)
            .upload_concurrency(3)
            .build()
            .unwrap();
        let source_db = pg.create_database("s3_src").await.unwrap();
        pg.pgbench_init(&source_db, 3).await.unwrap();

        // Uncompressed, the dump (~30 MB) spans several 5 MiB parts, so the
        // backup goes through the multipart path.
        let engine =
            Engine::new(Arc::new(store.clone())).with_compressor(Arc::new(Compression::none()));
        let source = PostgresSource::new(pg.connection(&source_db)).with_tools(pg.tools());
        let manifest = engine
            .backup(&source, &BackupRequest::new("pgbench").tenant("acme"))
            .await
            .unwrap();
        assert_eq!(manifest.engine, "postgres");
        assert!(
            manifest.stored.size > 2 * MIN_PART_SIZE as u64,
            "artifact of {} bytes should span several parts",
            manifest.stored.size
        );
        let artifact = store.head(&manifest.artifact_key().unwrap()).await.unwrap();
        assert_eq!(artifact.size, manifest.stored.size);

        let listed = engine
            .catalog()
            .list(&Filter::tenant("acme"))
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, manifest.id);
        engine
            .verify(BackupRef::in_tenant("acme", &manifest.id))
            .await
            .unwrap();

        let target_db = format!("{source_db}_restored");
        let report = engine
            .restore(
                BackupRef::in_tenant("acme", &manifest.id),
                &PostgresTarget::new(pg.connection("postgres")).with_tools(pg.tools()),
                &RestoreOptions::into_database(&target_db).create(true),
            )
            .await
            .unwrap();
        assert_eq!(report.database, target_db);
        let before = pg.fingerprint(&source_db).await.unwrap();
        let after = pg.fingerprint(&target_db).await.unwrap();
        assert_eq!(
            before.iter().find(|t| t.0 == "pgbench_accounts").unwrap().1,
            300_000
        );
        assert_eq!(before, after, "restored data equal the source");

        // Deleting the backup removes manifest and artifact.
        engine
            .catalog()
            .delete(BackupRef::in_tenant("acme", &manifest.id))
            .await
            .unwrap();
        assert_no_backup_listed(&engine).await;
        assert!(
            !store
                .exists(&manifest.artifact_key().unwrap())
                .await
                .unwrap()
        );

        pg.drop_database(&source_db).await.unwrap();
        pg.drop_database(&target_db).await.unwrap();
    }
}
