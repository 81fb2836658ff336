//! Restore drills of MongoDB backups ([`MongoDrill`]) through
//! `backup_core::Engine` and an in-memory store, against a
//! **MongoDB-compatible stand-in** (SecantusDB, started by the tests), not
//! MongoDB itself, or the real server named by `MONGODB_URI`.
//!
//! One test, run in sequence (it checks that no scratch database is left,
//! which parallel drills would blur): a killed drill's marked scratch is
//! listed and swept, an unmarked look-alike is reported and kept; the
//! dump records every collection's count and checksum (checked against
//! one computed here from the source); a drill of that backup passes
//! after the source changed and leaves no scratch database; a restored
//! copy changed by one document no longer matches; a byte flipped in the
//! stored artifact fails the drill with the reason, emits `DrillFailed`
//! and leaves no scratch database.

mod support;

use std::sync::Arc;
use std::time::Duration;

use backup_core::drill::{DrillStatus, DrillTarget};
use backup_core::fingerprint::compare;
use backup_core::memory::InMemoryStore;
use backup_core::prelude::*;
use backup_core::source::DumpOptions;
use backup_core::testing::{assert_drill_failed, next_drill_event, tamper_artifact};
use backup_mongo::*;
use bson::{Document, RawDocumentBuf, doc};
use sha2::{Digest, Sha256};
use support::*;

fn engine(store: &Arc<InMemoryStore>) -> Engine {
    Engine::new(store.clone() as Arc<dyn Store>).with_compressor(Arc::new(Compression::zstd(3)))
}

async fn scratch_databases(client: &mongodb::Client) -> Vec<String> {
    let mut names: Vec<String> = database_names(client)
        .await
        .into_iter()
        .filter(|n| n.starts_with(DRILL_PREFIX))
        .collect();
    names.sort();
    names
}

/// The checksum of `db.coll` as the fingerprint's method specifies it,
/// computed independently of the adapter.
async fn checksum_here(client: &mongodb::Client, db: &str, coll: &str) -> (u64, String) {
    let mut cursor = client
        .database(db)
        .collection::<RawDocumentBuf>(coll)
        .find(doc! {})
        .await
        .unwrap();
    let (mut rows, mut sum) = (0u64, 0u128);
    while cursor.advance().await.unwrap() {
        let digest = Sha256::digest(cursor.current().as_bytes());
        sum += u128::from(u64::from_be_bytes(digest[..8].try_into().unwrap()));
        rows += 1;
    }
    (rows, sum.to_string())
}

/// A scratch database as a drill killed with its process leaves it:
/// marked, last heartbeat an hour ago, half restored.
async fn killed_drill_scratch(client: &mongodb::Client, name: &str) {
    let an_hour_ago =
        bson::DateTime::from_millis(bson::DateTime::now().timestamp_millis() - 3_600_000);
    let db = client.database(name);
    db.collection::<Document>(DRILL_MARKER_COLLECTION)
        .insert_one(doc! {
            "_id": "drill", "by": "backup-mongo", "token": "0123456789abcdef",
            "created": an_hour_ago, "heartbeat": an_hour_ago,
        })
        .await
        .unwrap();
    db.collection::<Document>("mixed")
        .insert_one(doc! { "half": "restored" })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_drills_pass_on_a_good_backup_fail_on_a_flipped_byte_and_leave_no_scratch() {
    let client = client().await;
    let drill = MongoDrill::new(server().connection("admin"));

    // What killed drills left: the marked one is swept, the look-alike
    // without a marker is reported and kept.
    let dead = format!("{DRILL_PREFIX}0000dead");
    let stranger = format!("{DRILL_PREFIX}0000beef");
    killed_drill_scratch(&client, &dead).await;
    client
        .database(&stranger)
        .collection::<Document>("theirs")
        .insert_one(doc! { "x": 1 })
        .await
        .unwrap();
    let found: Vec<_> = drill
        .leftovers()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(found, [dead.as_str()]);
    let swept = drill
        .remove_leftovers(Duration::from_secs(60))
        .await
        .unwrap();
    let removed: Vec<_> = swept.removed.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(removed, [dead.as_str()], "{swept:?}");
    assert_eq!(swept.unmarked, [stranger.as_str()]);
    assert_eq!(scratch_databases(&client).await, [stranger.as_str()]);
    drop_db(&client, &stranger).await;
    // Another one is swept by the next drill itself.
    killed_drill_scratch(&client, &dead).await;

    // The dump's fingerprint: every collection, not the view.
    let source_db = TestServer::unique_name("drill_src");
    make_source(&client, &source_db, 300).await;
    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store);
    let source = MongoSource::new(server().connection(&source_db));
    let req = BackupRequest::new("app");
    let good = engine.backup(&source, &req).await.unwrap();
    let fp = good.fingerprint.clone().expect("a fingerprint");
    assert_eq!(fp.method, FINGERPRINT_METHOD);
    let rows: Vec<_> = fp
        .tables
        .iter()
        .map(|t| (t.name.as_str(), t.rows))
        .collect();
    assert_eq!(rows, [("empty", 0), ("log", 200), ("mixed", 300)]);
    for table in &fp.tables {
        let (rows, sum) = checksum_here(&client, &source_db, &table.name).await;
        assert_eq!(
            (table.rows, &table.checksum),
            (rows, &sum),
            "{}",
            table.name
        );
    }
    let plain = engine
        .backup(
            &source,
            &req.clone()
                .dump_options(DumpOptions::default().skip_fingerprint(true)),
        )
        .await
        .unwrap();
    assert!(plain.fingerprint.is_none());

    // The source changes afterwards: the drill compares with the backup.
    client
        .database(&source_db)
        .collection::<Document>("mixed")
        .delete_many(doc! { "i": { "$gte": 100 } })
        .await
        .unwrap();
    let mut events = engine.events().subscribe();
    let record = engine.drill(good.id.as_str(), &drill).await.unwrap();
    assert_eq!(record.status, DrillStatus::Passed, "{record:?}");
    assert_eq!(record.note, None);
    let checked: Vec<_> = record
        .tables
        .iter()
        .map(|t| (t.name.as_str(), t.expected_rows, t.restored_rows, t.matches))
        .collect();
    assert_eq!(
        checked,
        [
            ("empty", 0, Some(0), true),
            ("log", 200, Some(200), true),
            ("mixed", 300, Some(300), true)
        ]
    );
    assert_eq!(
        scratch_databases(&client).await,
        Vec::<String>::new(),
        "scratch left (or the killed drill's not swept)"
    );
    assert!(matches!(
        events.recv().await.unwrap(),
        Event::DrillSucceeded { .. }
    ));

    // The recomputed fingerprint sees a changed document.
    let scratch = drill.scratch().await.unwrap();
    let (target, opts) = scratch.restore_target();
    engine
        .restore(good.id.as_str(), target, &opts)
        .await
        .unwrap();
    assert!(compare(&fp, &scratch.fingerprint().await.unwrap()).matches());
    client
        .database(scratch.name())
        .collection::<Document>("mixed")
        .update_one(doc! { "i": 7 }, doc! { "$set": { "s": "changed" } })
        .await
        .unwrap();
    let differs = compare(&fp, &scratch.fingerprint().await.unwrap());
    assert_eq!(
        differs.differences,
        ["table mixed: content checksum differs (300 rows on both sides)"]
    );
    scratch.discard().await.unwrap();
    assert_eq!(scratch_databases(&client).await, Vec::<String>::new());

    // A byte flipped in the stored artifact: failed, with the reason.
    let bad = engine.backup(&source, &req).await.unwrap();
    tamper_artifact(engine.store().as_ref(), &bad, |b| {
        let middle = b.len() / 2;
        b[middle] ^= 0x01;
    })
    .await;
    let mut events = engine.events().subscribe();
    let record = engine.drill(bad.id.as_str(), &drill).await.unwrap();
    let error = assert_drill_failed(&record, bad.id.as_str(), "integrity");
    assert_eq!(scratch_databases(&client).await, Vec::<String>::new());
    assert_eq!(
        next_drill_event(&mut events).await,
        (bad.id.to_string(), Some(error))
    );
    drop_db(&client, &source_db).await;
}
