//! Restore drills against the real PostgreSQL 15 ([`TestServer::shared`])
//! and a filesystem store: a good backup passes with every table's count
//! and checksum equal and leaves no scratch database; a byte flipped in
//! the artifact fails the drill with the reason, leaves no scratch
//! database and emits a failing event; a backup without a fingerprint
//! passes "not compared"; retention keeps the newest verified backup.

use std::sync::Arc;

use backup_core::drill::{DrillStatus, NOT_COMPARED};
use backup_core::prelude::*;
use backup_core::retention::{KeepLast, PlanOptions};
use backup_core::source::DumpOptions;
use backup_core::testing::assert_drill_passed;
use backup_postgres::{DRILL_PREFIX, PostgresDrill, PostgresSource, TestServer};
use backup_store_fs::FsStore;

const SCHEMA: &str = "CREATE TABLE items (id int PRIMARY KEY, name text, at timestamptz, \
     price float8, raw bytea, tags text[]); \
     INSERT INTO items SELECT g, 'item ' || g, '2025-01-01'::timestamptz + g * interval '1 hour', \
     g / 3.0, decode(md5(g::text), 'hex'), ARRAY['a', g::text] FROM generate_series(1, 500) g; \
     CREATE TABLE \"Empty | odd\" (x int); \
     CREATE SCHEMA other; CREATE TABLE other.notes (body text); \
     INSERT INTO other.notes VALUES ('it''s'), (E'two\\nlines'), (NULL);";

async fn scratch_databases(server: &TestServer) -> String {
    server
        .psql(
            "postgres",
            &format!("SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE '{DRILL_PREFIX}%'"),
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drills_pass_fail_and_protect_the_newest_verified_backup() {
    let server = TestServer::shared();
    let db = server.create_database_with("drill", SCHEMA).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FsStore::new(dir.path()).unwrap());
    let engine = Engine::new(store);
    let mut events = engine.events().subscribe();
    let source = PostgresSource::new(server.connection(&db)).with_tools(server.tools());
    let drill = PostgresDrill::new(server.connection("postgres")).with_tools(server.tools());
    let req = BackupRequest::new("sales");

    // A good backup: the fingerprint is in the manifest, the drill passes.
    let good = engine.backup(&source, &req).await.unwrap();
    let fp = good.fingerprint.as_ref().expect("a fingerprint");
    let names: Vec<_> = fp
        .tables
        .iter()
        .map(|t| (t.name.as_str(), t.rows))
        .collect();
    assert_eq!(
        names,
        [
            ("other.notes", 3),
            ("public.\"Empty | odd\"", 0),
            ("public.items", 500)
        ]
    );
    let record = engine
        .drill_latest("default", "sales", &drill)
        .await
        .unwrap();
    assert_drill_passed(&record, good.id.as_str(), 3);
    assert_eq!(scratch_databases(server).await, "", "scratch database left");
    assert!(matches!(
        events.recv().await.unwrap(),
        Event::Started { .. }
    ));
    assert!(matches!(
        events.recv().await.unwrap(),
        Event::Succeeded { .. }
    ));
    assert!(matches!(
        events.recv().await.unwrap(),
        Event::DrillSucceeded { .. }
    ));

    // Without a fingerprint: restored, not compared.
    let plain = engine
        .backup(
            &source,
            &req.clone()
                .dump_options(DumpOptions::default().skip_fingerprint(true)),
        )
        .await
        .unwrap();
    assert!(plain.fingerprint.is_none());
    let record = engine.drill(plain.id.as_str(), &drill).await.unwrap();
    assert_eq!(record.status, DrillStatus::Passed);
    assert_eq!(record.note.as_deref(), Some(NOT_COMPARED));
    assert!(record.tables.is_empty());

    // A byte flipped in the newest artifact: the drill fails, says why.
    let bad = engine.backup(&source, &req).await.unwrap();
    let path = dir.path().join(&bad.artifact);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let mut events = engine.events().subscribe();
    let record = engine
        .drill_latest("default", "sales", &drill)
        .await
        .unwrap();
    assert_eq!(record.status, DrillStatus::Failed);
    assert_eq!(record.backup_id, bad.id);
    let error = record.error.clone().unwrap();
    assert!(
        error.contains("integrity check failed") && error.contains(&bad.artifact),
        "{error}"
    );
    assert_eq!(scratch_databases(server).await, "", "scratch database left");
    match events.recv().await.unwrap() {
        Event::DrillFailed {
            backup_id,
            error: e,
            ..
        } => {
            assert_eq!(backup_id, bad.id);
            assert_eq!(e, error);
        }
        other => panic!("{other:?}"),
    }

    // Records, newest first.
    let records = engine
        .drill_records("default", Some("sales"))
        .await
        .unwrap();
    let ids: Vec<_> = records
        .iter()
        .map(|r| (r.backup_id.as_str(), r.status))
        .collect();
    assert_eq!(
        ids,
        [
            (bad.id.as_str(), DrillStatus::Failed),
            (plain.id.as_str(), DrillStatus::Passed),
            (good.id.as_str(), DrillStatus::Passed)
        ]
    );
    // Drill records are not backups.
    assert_eq!(
        engine.catalog().list(&Filter::all()).await.unwrap().len(),
        3
    );

    // Retention: keep the last 1, and the newest verified one (`plain`).
    let opts = PlanOptions::default().include_manual(true);
    let report = engine
        .prune(
            &Filter::all(),
            &[&KeepLast(1)],
            opts.keep_newest_verified(true),
            true,
        )
        .await
        .unwrap();
    let plan = &report.sources["default/sales"];
    let kept: Vec<_> = plan.keep.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(kept, [bad.id.as_str(), plain.id.as_str()]);
    assert!(
        plan.keep[1].reasons.iter().any(|r| r == "newest verified"),
        "{plan:?}"
    );
    let without = engine
        .prune(&Filter::all(), &[&KeepLast(1)], opts, true)
        .await
        .unwrap();
    assert_eq!(without.sources["default/sales"].keep.len(), 1);

    // A crashed drill's leftover is swept.
    let mut scratch = backup_core::drill::DrillTarget::scratch(&drill)
        .await
        .unwrap();
    let name = scratch.name().to_string();
    std::mem::forget(std::mem::replace(
        &mut scratch,
        backup_core::drill::DrillTarget::scratch(&drill)
            .await
            .unwrap(),
    ));
    scratch.discard().await.unwrap();
    let left = drill.leftovers().await.unwrap();
    assert_eq!(
        left.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        [name.as_str()]
    );
    let swept = drill
        .remove_leftovers(std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(swept.removed.len(), 1, "{swept:?}");
    assert_eq!(scratch_databases(server).await, "");

    // Each drill first drops the scratches of killed drills, silent for
    // the grace (10 min); a live drill's (mark fresh) and a look-alike
    // without the mark stay.
    let (dead, live, unmarked) = (
        format!("{DRILL_PREFIX}0000dead"),
        format!("{DRILL_PREFIX}0000beef"),
        format!("{DRILL_PREFIX}0000cafe"),
    );
    for (name, silent_secs) in [
        (&dead, Some(11 * 60)),
        (&live, Some(9 * 60)),
        (&unmarked, None),
    ] {
        let create = format!("CREATE DATABASE {name}");
        server.psql("postgres", &create).await.unwrap();
        if let Some(secs) = silent_secs {
            let mark = format!(
                "DO $x$ BEGIN EXECUTE format('COMMENT ON DATABASE %I IS %L', '{name}', \
                 'backup-postgres drill scratch; alive=' || (extract(epoch from now())::bigint - {secs})); END $x$"
            );
            server.psql("postgres", &mark).await.unwrap();
        }
    }
    let record = engine
        .drill_latest("default", "sales", &drill)
        .await
        .unwrap();
    assert_eq!(record.status, DrillStatus::Failed, "the newest is `bad`");
    assert_eq!(
        scratch_databases(server).await,
        format!("{live},{unmarked}")
    );
    let left = drill.leftovers().await.unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0]
            .idle
            .is_some_and(|idle| idle >= std::time::Duration::from_secs(9 * 60)),
        "{left:?}"
    );
    for name in [&live, &unmarked] {
        server.drop_database(name).await.unwrap();
    }
    server.drop_database(&db).await.unwrap();
}
