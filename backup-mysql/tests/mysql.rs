//! The MySQL/MariaDB adapter against a real throwaway MariaDB (or the
//! server `BACKUP_TEST_MYSQL_URL` names): every common column type and
//! every kind of object round-trips, a corrupt artifact changes nothing,
//! the password is in no child's argv or environment, and restore drills
//! pass on a good backup and fail on a corrupt one without leaving a
//! scratch database.

use std::sync::Arc;

use backup_core::drill::{DrillStatus, DrillTarget, NOT_COMPARED};
use backup_core::memory::InMemoryStore;
use backup_core::prelude::*;
use backup_core::source::DumpOptions;
use backup_core::testing::{
    assert_drill_failed, assert_drill_passed, next_drill_event, process_tree, tamper_artifact,
};
use backup_mysql::{
    DRILL_MARKER_TABLE, DRILL_PREFIX, MysqlDrill, MysqlSource, MysqlTarget, STAGING_PREFIX,
    TestServer,
};
use futures::StreamExt;

const SCHEMA: &str = r#"
CREATE TABLE customers (
    id INT PRIMARY KEY,
    name VARCHAR(100) CHARACTER SET utf8mb4 NOT NULL,
    note TEXT CHARACTER SET utf8mb4,
    photo BLOB,
    balance DECIMAL(20,6) NOT NULL,
    seen DATETIME(6),
    prefs JSON,
    name_len INT AS (CHAR_LENGTH(name)) STORED,
    upper_name VARCHAR(100) AS (UPPER(name)) VIRTUAL
) ENGINE=InnoDB;
CREATE TABLE orders (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    customer_id INT NOT NULL,
    total DECIMAL(12,2) NOT NULL,
    created DATETIME(6) NOT NULL,
    CONSTRAINT fk_customer FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE=InnoDB;
CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(200) CHARACTER SET utf8mb4) ENGINE=InnoDB;
CREATE VIEW big_spenders AS
    SELECT c.name, SUM(o.total) AS spent FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.name;
CREATE VIEW top_spender AS SELECT name FROM big_spenders ORDER BY spent DESC LIMIT 1;
CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW
    INSERT INTO audit (what) VALUES (CONCAT('order ', NEW.id, ' ✓'));
DELIMITER //
CREATE PROCEDURE add_order(IN cid INT, IN amount DECIMAL(12,2))
BEGIN
    INSERT INTO orders (customer_id, total, created) VALUES (cid, amount, '2024-02-29 12:00:00.000001');
END//
CREATE FUNCTION spent_by(cid INT) RETURNS DECIMAL(12,2) READS SQL DATA
BEGIN
    RETURN (SELECT COALESCE(SUM(total), 0) FROM orders WHERE customer_id = cid);
END//
DELIMITER ;
INSERT INTO customers (id, name, note, photo, balance, seen, prefs) VALUES
    (1, 'Zoë 😀', 'multi\nline\ttab \\ backslash \'quote\'', X'00FF10275C0A0D', 12345678901234.123456, '2024-01-02 03:04:05.678901', '{"tags": ["a", "ü"], "n": 1.5}'),
    (2, '李小龙 🐉', NULL, NULL, -0.000001, NULL, NULL),
    (3, 'plain', '', X'', 0, '1970-01-01 00:00:01.000000', '[]');
CALL add_order(1, 10.50);
CALL add_order(1, 99.99);
CALL add_order(2, 0.01);
"#;

async fn source_db(server: &TestServer) -> String {
    let db = server.create_database("mysql_src").await.unwrap();
    server.sql(Some(&db), SCHEMA).await.unwrap();
    db
}

/// The tests check that no staging database is left: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn engine(store: &Arc<InMemoryStore>) -> Engine {
    Engine::new(store.clone() as Arc<dyn Store>)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_and_object_round_trips_into_a_new_database() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::shared();
    let src = source_db(server).await;
    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store);
    let source = MysqlSource::new(server.connection(&src));
    let m = engine
        .backup(&source, &BackupRequest::new("shop"))
        .await
        .unwrap();
    assert_eq!(
        (m.engine.as_str(), m.format.as_str()),
        ("mysql", "mysqldump")
    );
    assert!(
        m.versions.tool.as_deref().unwrap().contains("dump"),
        "{:?}",
        m.versions
    );
    assert!(m.versions.server.is_some());
    assert!(
        m.details["mysql.flags"].contains("--single-transaction"),
        "{:?}",
        m.details
    );
    assert!(m.details.contains_key("mysql.server"));
    engine.verify(&m.id).await.unwrap();

    let dst = format!("{src}_restored");
    let target = MysqlTarget::new(server.connection("mysql"));
    let report = engine
        .restore(
            &m.id,
            &target,
            &RestoreOptions::into_database(&dst).new_database_only(true),
        )
        .await
        .unwrap();
    assert_eq!(report.database, dst);

    let before = server.table_checksums(&src).await.unwrap();
    assert_eq!(before.len(), 3, "{before:?}");
    assert_eq!(server.table_checksums(&dst).await.unwrap(), before);
    let objects = server.objects(&src).await.unwrap();
    assert_eq!(objects.len(), 5, "{objects:?}");
    assert_eq!(server.objects(&dst).await.unwrap(), objects);

    // The objects work in the restored database: the view over the view,
    // the function, the procedure and its trigger.
    let rows = server
        .sql(Some(&dst), "SELECT name FROM top_spender; SELECT spent_by(1); CALL add_order(2, 1.00); SELECT COUNT(*) FROM audit; SELECT name, name_len, upper_name FROM customers WHERE id = 1")
        .await
        .unwrap();
    let flat: Vec<Option<String>> = rows.into_iter().flatten().collect();
    assert_eq!(
        flat,
        [
            Some("Zoë 😀".into()),
            Some("110.49".into()),
            Some("4".into()),
            Some("Zoë 😀".into()),
            Some("5".into()),
            Some("ZOË 😀".into()),
        ]
    );
    // The foreign key came along and points into the restored database.
    let err = server
        .sql(
            Some(&dst),
            "INSERT INTO orders (customer_id, total, created) VALUES (99, 1, NOW())",
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("foreign key constraint fails"),
        "{err}"
    );

    // A must_be_new restore into the now existing database is refused.
    let err = engine
        .restore(
            &m.id,
            &target,
            &RestoreOptions::into_database(&dst).new_database_only(true),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
    // Without clean, tables of the same names are refused; with it, replaced.
    server
        .sql(Some(&dst), "DELETE FROM orders WHERE customer_id = 2")
        .await
        .unwrap();
    let err = engine
        .restore(&m.id, &target, &RestoreOptions::into_database(&dst))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("restore with clean"), "{err}");
    engine
        .restore(
            &m.id,
            &target,
            &RestoreOptions::into_database(&dst).clean(true),
        )
        .await
        .unwrap();
    assert_eq!(server.table_checksums(&dst).await.unwrap(), before);
    assert_eq!(server.objects(&dst).await.unwrap(), objects);

    // Selected tables only.
    let part = format!("{src}_part");
    let report = engine
        .restore(
            &m.id,
            &target,
            &RestoreOptions::into_database(&part)
                .create(true)
                .only(vec!["audit".into()]),
        )
        .await
        .unwrap();
    assert!(!report.warnings.is_empty());
    let sums = server.table_checksums(&part).await.unwrap();
    assert_eq!(
        sums,
        before
            .iter()
            .filter(|t| t.0 == "audit")
            .cloned()
            .collect::<Vec<_>>()
    );

    assert!(
        server
            .databases_like(STAGING_PREFIX)
            .await
            .unwrap()
            .is_empty()
    );
    for db in [&src, &dst, &part] {
        server.drop_database(db).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_artifact_changes_nothing_and_leaves_no_staging_database() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::shared();
    let src = source_db(server).await;
    let target_db = server.create_database("mysql_corrupt_dst").await.unwrap();
    server
        .sql(
            Some(&target_db),
            "CREATE TABLE customers (x INT); INSERT INTO customers VALUES (42)",
        )
        .await
        .unwrap();
    let before = server.table_checksums(&target_db).await.unwrap();
    type Damage = fn(&mut Vec<u8>);
    let damages: [(&str, Damage); 2] = [
        ("flipped byte near the end", |b| {
            let i = b.len() - 40;
            b[i] ^= 0x01
        }),
        ("truncated", |b| b.truncate(b.len() / 2)),
    ];
    for (what, damage) in damages {
        let store = Arc::new(InMemoryStore::new());
        let engine = engine(&store);
        let m = engine
            .backup(
                &MysqlSource::new(server.connection(&src)),
                &BackupRequest::new("shop"),
            )
            .await
            .unwrap();
        tamper_artifact(&*store, &m, damage).await;
        let target = MysqlTarget::new(server.connection("mysql"));
        for opts in [
            RestoreOptions::into_database(&target_db).clean(true),
            RestoreOptions::into_database(format!("{src}_never")).create(true),
        ] {
            let err = engine.restore(&m.id, &target, &opts).await.unwrap_err();
            assert!(matches!(err, Error::Integrity { .. }), "{what}: {err:?}");
        }
        assert_eq!(
            server.table_checksums(&target_db).await.unwrap(),
            before,
            "{what}"
        );
        assert!(
            !server.exists(&format!("{src}_never")).await.unwrap(),
            "{what}"
        );
        assert!(
            server
                .databases_like(STAGING_PREFIX)
                .await
                .unwrap()
                .is_empty(),
            "{what}"
        );
    }
    server.drop_database(&src).await.unwrap();
    server.drop_database(&target_db).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_is_in_no_child_argv_or_environment() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::shared();
    let password = server
        .password()
        .expect("the test account has a password")
        .clone();
    let src = source_db(server).await;
    let check = |when: &str| {
        let children = process_tree(std::process::id());
        assert!(!children.is_empty(), "no child process {when}");
        for p in children {
            assert!(
                !p.argv.contains(password.expose()),
                "{when}: argv of {}",
                p.pid
            );
            assert!(
                !p.environ.contains(password.expose()),
                "{when}: environment of {}",
                p.pid
            );
            if p.comm == "mariadb" || p.comm == "mariadb-dump" {
                assert!(
                    p.argv.contains("--defaults-extra-file=/dev/fd/3"),
                    "{when}: {}",
                    p.argv
                );
            }
        }
    };
    // While a dump runs (its first bytes read, the rest still coming).
    let source = MysqlSource::new(server.connection(&src));
    let mut dump = source.dump(&DumpOptions::default()).await.unwrap();
    let mut bytes = dump.stream.next().await.unwrap().unwrap().to_vec();
    check("during a dump");
    while let Some(chunk) = dump.stream.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    // While a restore's client runs.
    let target = MysqlTarget::new(server.connection("mysql"));
    let dst = format!("{src}_secret");
    let mut session = target
        .begin(&RestoreOptions::into_database(&dst).create(true))
        .await
        .unwrap();
    session.write(bytes.into()).await.unwrap();
    check("during a restore");
    session.commit().await.unwrap();
    assert_eq!(
        server.table_checksums(&dst).await.unwrap(),
        server.table_checksums(&src).await.unwrap()
    );
    server.drop_database(&src).await.unwrap();
    server.drop_database(&dst).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_errors_say_what_is_wrong_before_any_byte() {
    let server = TestServer::shared();
    let dump = |source: MysqlSource| async move {
        source
            .dump(&DumpOptions::default())
            .await
            .map(|_| ())
            .unwrap_err()
    };
    // No tool where the tools are said to be.
    let empty = tempfile::tempdir().unwrap();
    let err = dump(
        MysqlSource::new(server.connection("mysql"))
            .with_tools(backup_mysql::MysqlTools::in_dir(empty.path())),
    )
    .await;
    assert!(matches!(err, Error::ToolNotFound { .. }), "{err:?}");
    // Nothing listens on the port.
    let port = backup_core::testing::server::free_port().unwrap();
    let conn = backup_mysql::MysqlConnection::new("127.0.0.1", port, "nobody", "db");
    let err = dump(MysqlSource::new(conn)).await;
    assert!(matches!(err, Error::Connection { .. }), "{err:?}");
    // A missing database, by name.
    let err = dump(MysqlSource::new(server.connection("no_such_db_here"))).await;
    assert!(
        matches!(&err, Error::DatabaseMissing { database, .. } if database == "no_such_db_here"),
        "{err:?}"
    );
}

/// No drill scratch and no staging database is left on `server`.
async fn assert_no_scratch(server: &TestServer) {
    for prefix in [DRILL_PREFIX, STAGING_PREFIX] {
        let left = server.databases_like(prefix).await.unwrap();
        assert!(left.is_empty(), "{left:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drills_pass_on_a_good_backup_and_fail_on_a_corrupt_one() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::shared();
    let src = source_db(server).await;
    let store = Arc::new(InMemoryStore::new());
    let engine = engine(&store);
    let source = MysqlSource::new(server.connection(&src));
    let drill = MysqlDrill::new(server.connection("mysql"));
    let req = BackupRequest::new("shop");

    // The fingerprint is counted from the dump script: every table, with
    // the rows the database has.
    let good = engine.backup(&source, &req).await.unwrap();
    let fp = good.fingerprint.clone().expect("a fingerprint");
    let rows: Vec<_> = fp
        .tables
        .iter()
        .map(|t| (t.name.as_str(), t.rows))
        .collect();
    assert_eq!(rows, [("audit", 3), ("customers", 3), ("orders", 3)]);
    assert_eq!(fp.method, "mysql.dump-rows-sha256.v1");

    let mut events = engine.events().subscribe();
    let record = engine
        .drill_latest("default", "shop", &drill)
        .await
        .unwrap();
    assert_drill_passed(&record, good.id.as_str(), 3);
    assert_no_scratch(server).await;
    assert_eq!(
        next_drill_event(&mut events).await,
        (good.id.to_string(), None)
    );

    // A changed row after the backup does not matter; a restore that
    // differs from what was dumped does: the recount of a database whose
    // content differs from the fingerprint's fails the comparison.
    let scratch = drill.scratch().await.unwrap();
    server
        .sql(
            Some(scratch.name()),
            "CREATE TABLE audit (id INT PRIMARY KEY, what VARCHAR(200)); INSERT INTO audit VALUES (1, 'x')",
        )
        .await
        .unwrap();
    let recount = scratch.fingerprint().await.unwrap();
    assert!(recount.tables.iter().all(|t| t.name != DRILL_MARKER_TABLE));
    let cmp = backup_core::fingerprint::compare(&fp, &recount);
    assert!(!cmp.matches());
    assert!(
        cmp.differences
            .join("\n")
            .contains("table audit: 3 rows recorded, 1 restored"),
        "{:?}",
        cmp.differences
    );
    scratch.discard().await.unwrap();

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
    assert_eq!(record.status, DrillStatus::Passed, "{record:?}");
    assert_eq!(record.note.as_deref(), Some(NOT_COMPARED));

    // A corrupt artifact: the drill fails with the reason, no scratch or
    // staging database is left, a failing event is raised.
    let bad = engine.backup(&source, &req).await.unwrap();
    tamper_artifact(&*store, &bad, |b| {
        let i = b.len() / 2;
        b[i] ^= 0x01
    })
    .await;
    let mut events = engine.events().subscribe();
    let record = engine
        .drill_latest("default", "shop", &drill)
        .await
        .unwrap();
    let error = assert_drill_failed(&record, bad.id.as_str(), "integrity check failed");
    assert_no_scratch(server).await;
    assert_eq!(
        next_drill_event(&mut events).await,
        (bad.id.to_string(), Some(error))
    );

    // A scratch database left by a killed drill is swept once old enough;
    // a look-alike without the marker is only reported.
    let left = drill.scratch().await.unwrap();
    let left_name = left.name().to_string();
    std::mem::forget(left);
    server
        .sql(None, &format!("CREATE DATABASE {DRILL_PREFIX}0000beef"))
        .await
        .unwrap();
    let report = drill
        .remove_leftovers(std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(report.removed.is_empty(), "{report:?}");
    let report = drill
        .remove_leftovers(std::time::Duration::ZERO)
        .await
        .unwrap();
    let removed: Vec<_> = report.removed.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(removed, [left_name.as_str()]);
    assert_eq!(
        server.databases_like(DRILL_PREFIX).await.unwrap(),
        [format!("{DRILL_PREFIX}0000beef")]
    );
    server
        .drop_database(&format!("{DRILL_PREFIX}0000beef"))
        .await
        .unwrap();

    // Each drill first drops the scratches of killed drills, silent for
    // the grace (10 min); a live drill's (mark fresh) stays.
    let (dead, live) = (
        format!("{DRILL_PREFIX}0000dead"),
        format!("{DRILL_PREFIX}0000cafe"),
    );
    for (name, silent_secs) in [(&dead, 11 * 60), (&live, 9 * 60)] {
        server
            .sql(
                None,
                &format!(
                    "CREATE DATABASE {name}; CREATE TABLE {name}.{DRILL_MARKER_TABLE} (alive DATETIME NOT NULL); \
                     INSERT INTO {name}.{DRILL_MARKER_TABLE} VALUES (UTC_TIMESTAMP() - INTERVAL {silent_secs} SECOND)"
                ),
            )
            .await
            .unwrap();
    }
    let record = engine.drill(good.backup_ref(), &drill).await.unwrap();
    assert_drill_passed(&record, good.id.as_str(), 3);
    assert_eq!(
        server.databases_like(DRILL_PREFIX).await.unwrap(),
        std::slice::from_ref(&live)
    );
    server.drop_database(&live).await.unwrap();
    server.drop_database(&src).await.unwrap();
}
