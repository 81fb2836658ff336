//! backupd with a physical PostgreSQL entry (`mode: physical`,
//! `wal_archiving: true`) on a real cluster: a base backup through the
//! API, WAL streamed into the store by the daemon's archiver (status and
//! metrics report it, with the point-in-time window), restore over the
//! API refused with the command that restores it, and the fields refused
//! over the API. An incremental base backup (`incremental:`, `base_backup:
//! incremental`) fails on PostgreSQL 15 with the version error, on 18
//! without `summarize_wal` with what to turn on. A drill of the entry
//! (`drill:`, `drill_dir:`) restores its base backup into a scratch data
//! directory, starts it and reads every table. The daemon stops its
//! archiver on SIGTERM. Runs on both majors of the test matrix
//! (`<test>::postgres_15`, `<test>::postgres_18` with the entry's
//! `pg_bin` naming the 18 tools).

use std::time::Duration;

use backup_postgres::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};

mod support;
use support::*;

async fn switch_wal(server: &TestServer) -> String {
    server
        .psql(
            "postgres",
            "CREATE TABLE IF NOT EXISTS wal_filler AS SELECT 1 AS x; \
             INSERT INTO wal_filler SELECT generate_series(1, 1000); \
             SELECT pg_walfile_name(pg_switch_wal())",
        )
        .await
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string()
}

/// Polls `/status` until the archiver of `id` has archived `segment`.
async fn wait_archived(api: &Api, id: &str, segment: &str) -> Value {
    for _ in 0..600 {
        let (status, v) = api.get("/api/v1/status", ADMIN).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let entry = v["data"]["wal_archiving"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["source_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no archiver for {id}: {v}"));
        if entry["status"]["last_segment"]
            .as_str()
            .is_some_and(|s| s >= segment)
        {
            return entry;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{segment} was not archived");
}

backup_postgres::each_major! {
    async fn a_physical_entry_backs_up_the_cluster_and_archives_its_wal(server) {
        let slot = format!("backupd_phys_{}", std::process::id());
        // Scratch data directories of drills: a directory the server's
        // user can enter.
        let drills = backup_core::testing::server::temp_dir("bdrill-", 0o755).unwrap();
        let admin = server.connection("postgres");
        let entry = pg_entry(
            server,
            "cluster",
            "postgres",
            &format!(
                "schedule: disabled, incremental: disabled, mode: physical, wal_archiving: true, slot: {slot}, \
                 drill: \"weekly sun 05:00\", drill_dir: {}, drill_user: {}",
                drills.display(),
                admin.user()
            ),
        );
        let d = Daemon::start_with(Options {
            extra_config: format!("databases:\n  - {entry}\n"),
            pg: Some(server),
            ..Options::default()
        });
        let api = Api::new(&d);

        let id = backup_now(&api, "cluster", ADMIN).await;
        let listed = d.listed_backups().await;
        let manifest = listed.iter().find(|m| m.id == id).unwrap();
        assert_eq!(manifest.format, backup_postgres::BASEBACKUP_FORMAT);
        let info = backup_postgres::BaseBackupInfo::from_manifest(manifest).unwrap();

        // A drill of the base backup: restored under drill_dir, started,
        // every table read, nothing left.
        let job = api.drill("cluster", ADMIN).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["result"]["status"], "passed", "{job}");
        assert_eq!(job["result"]["backup_id"], id.as_str(), "{job}");
        let note = job["result"]["note"].as_str().unwrap_or_default();
        assert!(
            note.contains("consistent and open") && note.contains("read every table"),
            "{job}"
        );
        assert_eq!(std::fs::read_dir(&drills).unwrap().count(), 0, "scratch left");
        std::fs::remove_dir(&drills).unwrap();

        let segment = switch_wal(server).await;
        let archived = wait_archived(&api, "cluster", &segment).await;
        let window = &archived["pitr_window"]["ranges"][0];
        assert_eq!(window["backup_id"], id.as_str(), "{archived}");
        assert_eq!(window["from_lsn"], info.stop_lsn.to_string(), "{archived}");
        assert!(
            window["to_segment"]
                .as_str()
                .is_some_and(|s| s >= segment.as_str()),
            "the window reaches the archived WAL: {archived}"
        );
        assert!(archived["status"]["archived"].as_u64().unwrap() >= 1);

        // The window is cached between requests; a new base backup is in the
        // very next one.
        let second = backup_now(&api, "cluster", ADMIN).await;
        let (status, v) = api.get("/api/v1/status", ADMIN).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let entry = v["data"]["wal_archiving"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["source_id"] == "cluster")
            .unwrap();
        let ranges: Vec<&str> = entry["pitr_window"]["ranges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["backup_id"].as_str().unwrap())
            .collect();
        assert_eq!(ranges, [id.as_str(), second.as_str()], "{entry}");

        let metrics = api.metrics(ADMIN).await;
        assert!(
            metrics.contains("backup_wal_archived_total{source=\"cluster\",tenant=\"default\"}"),
            "{metrics}"
        );

        // A physical backup is not restored into a database over the API.
        let (status, job) =
            restore(&api, &id, ADMIN, json!({"target_database": "phys_copy"})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{job}");
        assert_eq!(job["status"], "failed", "{job}");
        assert!(
            job["error"]
                .as_str()
                .unwrap_or_default()
                .contains("--datadir"),
            "{job}"
        );

        // An incremental base backup: on PostgreSQL 15 the job fails with
        // the version error, on 18 (summarize_wal off in this binary's
        // cluster) with what to turn on; an unknown kind is refused.
        let job = post_backup(
            &api,
            ADMIN,
            json!({"source_id": "cluster", "base_backup": "incremental"}),
        )
        .await;
        assert_eq!(job["status"], "failed", "{job}");
        let error = job["error"].as_str().unwrap_or_default();
        let says = if server.major().await.unwrap() < 17 {
            "PostgreSQL 17 or later"
        } else {
            "summarize_wal is off"
        };
        assert!(error.contains(says), "{job}");
        let (status, v) = api
            .post(
                "/api/v1/backups",
                ADMIN,
                json!({"source_id": "cluster", "base_backup": "differential"}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        assert!(v.to_string().contains("unknown base_backup"), "{v}");
        // Deduplicated chunks and block-level increments do not mix.
        let (status, v) = api
            .post(
                "/api/v1/backups",
                ADMIN,
                json!({"source_id": "cluster", "type": "incremental", "base_backup": "incremental"}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        assert!(v.to_string().contains("contradicts base_backup"), "{v}");

        // Whole-cluster backups and WAL archiving are the operator's.
        for field in [
            json!({"mode": "physical"}),
            json!({"wal_archiving": true}),
            json!({"slot": "x"}),
            json!({"incremental": "daily 03:00"}),
            json!({"fallback_to_full": true}),
        ] {
            let mut body = database_body_on(server, "phys_api", "postgres", None, false);
            for (k, v) in field.as_object().unwrap() {
                body[k] = v.clone();
            }
            let (status, v) = api.post("/api/v1/databases", ADMIN, body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
            assert!(v.to_string().contains("configuration file"), "{v}");
        }

        // SIGTERM: the archiver stops with the daemon.
        let pid = d.child.id().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let (exit, d) = tokio::task::spawn_blocking(move || {
            let mut d = d;
            let s = d.child.wait().unwrap();
            (s, d)
        })
        .await
        .unwrap();
        assert!(exit.success(), "{}", d.logs());
        assert!(d.logs().contains("WAL archiver stopped"), "{}", d.logs());
        server
            .psql(
                "postgres",
                &format!("SELECT pg_drop_replication_slot('{slot}')"),
            )
            .await
            .unwrap();
    }
}

/// Retention of a `wal_archiving` entry prunes its WAL archive too: with
/// the first base backup deleted, `POST /api/v1/cleanup` (a dry run
/// first, which deletes nothing) removes the segments only it needed, and
/// the second backup's window still reaches the newest WAL. (After a
/// scheduled backup the same pruning follows the backup's retention.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_of_a_physical_entry_prunes_the_wal_no_kept_backup_needs() {
    let server = TestServer::shared();
    let conn = server.connection("postgres");
    let slot = format!("backupd_prune_{}", std::process::id());
    let d = Daemon::start_with(Options {
        extra_config: format!(
            "databases:\n  - {{id: pruned, engine: postgres, host: {}, port: {}, database_name: postgres, username_var: DB_USER, password_var: DB_PASSWORD, schedule: disabled, keep_last: 1, mode: physical, wal_archiving: true, slot: {slot}}}\n",
            conn.host(),
            conn.port()
        ),
        ..Options::default()
    });
    let api = Api::new(&d);

    let first = backup_now(&api, "pruned", ADMIN).await;
    let old = switch_wal(server).await;
    wait_archived(&api, "pruned", &old).await;
    let archive = backup_postgres::WalArchive::new(
        std::sync::Arc::new(d.engine()),
        backup_core::manifest::DEFAULT_TENANT,
        "pruned",
    )
    .unwrap();
    let timeline = u32::from_str_radix(&old[..8], 16).unwrap();
    assert!(archive.list(timeline).await.unwrap().contains(&old));

    let second = backup_now(&api, "pruned", ADMIN).await;
    let (status, v) = api
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/backups/{first}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = api
        .post("/api/v1/cleanup", ADMIN, json!({"dry_run": true}))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(
        archive.list(timeline).await.unwrap().contains(&old),
        "a dry run deleted WAL"
    );
    let (status, v) = api
        .post("/api/v1/cleanup", ADMIN, json!({"dry_run": false}))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let left = archive.list(timeline).await.unwrap();
    assert!(
        !left.contains(&old),
        "{old}, needed only by the deleted backup, is still archived: {left:?}"
    );
    // What the kept backup needs from its start on is there.
    let segment = switch_wal(server).await;
    let status = wait_archived(&api, "pruned", &segment).await;
    let ranges = status["pitr_window"]["ranges"].as_array().unwrap();
    assert_eq!(ranges.len(), 1, "{status}");
    assert_eq!(ranges[0]["backup_id"], second.as_str(), "{status}");
    assert!(
        ranges[0]["to_segment"]
            .as_str()
            .is_some_and(|s| s >= segment.as_str()),
        "the kept backup's window reaches the newest WAL without a gap: {status}"
    );
    // The daemon's pg_receivewal goes with it, a moment later.
    drop(d);
    let drop_slot = format!(
        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = '{slot}' AND active_pid IS NOT NULL; \
         SELECT pg_sleep(0.2); SELECT pg_drop_replication_slot('{slot}')"
    );
    let mut dropped = Err(None);
    for _ in 0..20 {
        match server.psql("postgres", &drop_slot).await {
            Ok(_) => {
                dropped = Ok(());
                break;
            }
            Err(e) => dropped = Err(Some(e)),
        }
    }
    dropped.unwrap_or_else(|e| panic!("dropping the slot {slot}: {e:?}"));
}
