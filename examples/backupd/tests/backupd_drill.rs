//! Restore drills through the daemon: the real binary over real HTTP, a
//! real PostgreSQL 15 and the fs store. An admin of tenant `a` starts a
//! drill (a job) that passes; `GET /api/v1/drills` shows it to tenant `a`
//! and global tokens, not to tenant `b`; readers cannot start one; the
//! metrics count it; no scratch database is left; `/status` says
//! `unverified` before the first passed drill (`verify_max_age`) and
//! carries `last_verified_at` after it. A drill that fails (a corrupted
//! artifact) is a failed job; scheduled backups and drills are listed in
//! `GET /api/v1/jobs` beside API jobs, within their tenant, with their
//! progress. A start drops the scratch databases of drills killed before
//! it.

use backup_postgres::{DRILL_PREFIX, TestServer};
use reqwest::StatusCode;
use serde_json::Value;

mod support;
use support::*;

fn drills(v: &Value) -> Vec<Value> {
    v["data"]["drills"].as_array().cloned().unwrap_or_default()
}

/// Status and `last_verified_at` of `a_db` in `/api/v1/status`.
async fn source_status(api: &Api) -> (String, Value) {
    let (status, v) = api.get("/api/v1/status", TENANT_A).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let source = v["data"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source_id"] == "a_db")
        .cloned()
        .unwrap_or_else(|| panic!("{v}"));
    (
        source["status"].as_str().unwrap().to_string(),
        source["last_verified_at"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_job_records_and_tenants() {
    let server = TestServer::shared();
    let db = server
        .create_database_with(
            "drill_api",
            "CREATE TABLE t AS SELECT g AS x, md5(g::text) AS y FROM generate_series(1, 200) g",
        )
        .await
        .unwrap();
    let d = Daemon::start_with(Options {
        extra_config: format!(
            "databases:\n  - {}\n",
            pg_entry(server, "a_db", &db, "tenant: a, verify_max_age: 7d")
        ),
        ..Options::default()
    });
    let api = Api::new(&d);
    let backup = backup_now(&api, "a_db", TENANT_A).await;
    // Backed up but never drilled: unverified.
    assert_eq!(
        source_status(&api).await,
        ("unverified".into(), Value::Null)
    );

    // Readers may not start one; another tenant does not see the entry.
    for token in [READER, TENANT_B] {
        let (status, v) = api
            .post("/api/v1/databases/a_db/drill", token, serde_json::json!({}))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    }
    let (status, v) = api.get("/api/v1/drills", TENANT_A).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(drills(&v).is_empty(), "{v}");

    // The route takes no body: one is refused before anything runs.
    let (status, v) = api
        .post(
            "/api/v1/databases/a_db/drill",
            TENANT_A,
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let job = api.drill("a_db", TENANT_A).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["kind"], "drill", "{job}");
    assert_eq!(job["source"], "a_db", "{job}");
    assert!(job["progress"]["bytes_read"].as_u64().unwrap() > 0, "{job}");
    assert_eq!(job["result"]["status"], "passed", "{job}");
    assert_eq!(job["result"]["backup_id"], backup.as_str());
    assert_eq!(job["result"]["tables"][0]["expected_rows"], 200, "{job}");
    assert_eq!(job["result"]["tables"][0]["restored_rows"], 200, "{job}");

    let (status, verified_at) = source_status(&api).await;
    assert_eq!(status, "healthy");
    assert_eq!(verified_at, job["result"]["verified_at"]);
    for token in [TENANT_A, ADMIN, READER] {
        let (status, v) = api.get("/api/v1/drills?database=a_db", token).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let list = drills(&v);
        assert_eq!(list.len(), 1, "{v}");
        assert_eq!(list[0]["tenant"], "a");
        assert_eq!(list[0]["database"], "a_db");
        assert_eq!(list[0]["status"], "passed");
        assert!(list[0]["verified_at"].is_string());
    }
    let (_, v) = api.get("/api/v1/drills", TENANT_B).await;
    assert!(drills(&v).is_empty(), "tenant b sees tenant a's drill: {v}");
    let (status, _) = api.get("/api/v1/drills?database=a%2Fb", ADMIN).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let metrics = api.metrics(ADMIN).await;
    assert!(
        metrics.contains(r#"backup_drill_total{source="a_db",tenant="a",status="passed"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("backup_last_verified_timestamp_seconds{"),
        "{metrics}"
    );
    // No scratch database is left. The other test of this binary drills
    // on the same server every minute, so one of its scratch databases
    // may exist for a moment: wait for a moment without any.
    let mut left = String::new();
    for _ in 0..600 {
        left = server
            .psql(
                "postgres",
                &format!("SELECT count(*) FROM pg_database WHERE datname LIKE '{DRILL_PREFIX}%'"),
            )
            .await
            .unwrap();
        if left.trim() == "0" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(left.trim(), "0", "a drill scratch database was left");
    server.drop_database(&db).await.unwrap();
}

/// The first job `token` sees that matches `pick` and has ended, polled
/// for (scheduled runs start at the next minute).
async fn wait_listed(api: &Api, token: &str, pick: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..1800 {
        let (status, v) = api.get("/api/v1/jobs", token).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let found = v["data"]["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| pick(j) && j["status"] != "running")
            .cloned();
        if let Some(job) = found {
            return job;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no such job was listed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_runs_are_jobs_and_a_failed_drill_fails_its_job() {
    let server = TestServer::shared();
    let ticks = server
        .create_database_with("drill_ticks", "CREATE TABLE t AS SELECT 1 AS x")
        .await
        .unwrap();
    let broken = server
        .create_database_with(
            "drill_broken",
            "CREATE TABLE t AS SELECT g AS x FROM generate_series(1, 50) g",
        )
        .await
        .unwrap();
    let d = Daemon::start_with(Options {
        extra_config: format!(
            "databases:\n  - {}\n  - {}\n",
            pg_entry(
                server,
                "ticks",
                &ticks,
                "tenant: a, schedule: \"* * * * *\", drill: \"* * * * *\""
            ),
            pg_entry(server, "broken", &broken, "tenant: a")
        ),
        ..Options::default()
    });
    let api = Api::new(&d);

    // A byte flipped in the artifact: the drill runs, fails, and so does
    // its job; the record is stored and listed all the same.
    let backup = backup_now(&api, "broken", TENANT_A).await;
    let manifest = d
        .listed_backups()
        .await
        .into_iter()
        .find(|m| m.id == backup)
        .unwrap();
    let path = d.store().join(&manifest.artifact);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let job = api.drill("broken", TENANT_A).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error_code"], "restore_failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("restore drill of {backup} failed"))
            && error.contains("integrity check failed"),
        "{job}"
    );
    let (_, v) = api.get("/api/v1/drills?database=broken", TENANT_A).await;
    let list = drills(&v);
    assert_eq!(list.len(), 1, "{v}");
    assert_eq!(list[0]["status"], "failed", "{v}");
    assert_eq!(list[0]["backup_id"], backup.as_str(), "{v}");

    // The scheduled backup of `ticks` (at the next minute) is a job of
    // tenant a, with its progress; tenant b sees none of it.
    let scheduled = wait_listed(&api, TENANT_A, |j| {
        j["source"] == "ticks" && j["kind"] == "backup"
    })
    .await;
    assert_eq!(scheduled["trigger"], "scheduled", "{scheduled}");
    assert_eq!(scheduled["tenant"], "a", "{scheduled}");
    assert_eq!(scheduled["status"], "succeeded", "{scheduled}");
    assert!(scheduled["finished_at"].is_string(), "{scheduled}");
    assert!(scheduled["result"]["backup_id"].is_string(), "{scheduled}");
    for counter in ["bytes_read", "bytes_stored"] {
        assert!(
            scheduled["progress"][counter].as_u64().unwrap() > 0,
            "{scheduled}"
        );
    }
    let id = scheduled["id"].as_str().unwrap();
    let (status, v) = api.get(&format!("/api/v1/jobs/{id}"), ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["trigger"], "scheduled", "{v}");
    let (status, v) = api.get(&format!("/api/v1/jobs/{id}"), TENANT_B).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    let (_, v) = api.get("/api/v1/jobs", TENANT_B).await;
    assert_eq!(v["data"]["total"], 0, "{v}");

    // So is its scheduled drill, whichever way it went (it fired with the
    // backup, so it may have found no backup yet).
    let drill = wait_listed(&api, TENANT_A, |j| {
        j["source"] == "ticks" && j["kind"] == "drill"
    })
    .await;
    assert_eq!(drill["trigger"], "scheduled", "{drill}");
    assert_eq!(drill["tenant"], "a", "{drill}");
    server.drop_database(&ticks).await.unwrap();
    server.drop_database(&broken).await.unwrap();
}

/// A drill killed with an earlier daemon left its scratch database: the
/// next start drops it once its mark has been silent for the grace, and
/// leaves a live drill's scratch (fresh mark) alone. On a server of its
/// own, so that no other test's drill sweeps it first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_drops_the_scratch_of_a_drill_killed_before_it() {
    let server: &'static TestServer = Box::leak(Box::new(
        tokio::task::spawn_blocking(TestServer::throwaway)
            .await
            .unwrap()
            .unwrap(),
    ));
    let db = server
        .create_database_with("drill_restart", "CREATE TABLE t AS SELECT 1 AS x")
        .await
        .unwrap();
    let (dead, live) = (
        format!("{DRILL_PREFIX}0000dead"),
        format!("{DRILL_PREFIX}0000beef"),
    );
    for (name, silent_secs) in [(&dead, 11 * 60), (&live, 60)] {
        server
            .psql("postgres", &format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let mark = format!(
            "DO $x$ BEGIN EXECUTE format('COMMENT ON DATABASE %I IS %L', '{name}', \
             'backup-postgres drill scratch; alive=' || (extract(epoch from now())::bigint - {silent_secs})); END $x$"
        );
        server.psql("postgres", &mark).await.unwrap();
    }
    let d = Daemon::start_with(Options {
        extra_config: format!(
            "databases:\n  - {}\n",
            pg_entry(server, "nightly", &db, "drill: \"weekly sun 05:00\"")
        ),
        pg: Some(server),
        ..Options::default()
    });
    let mut removed = false;
    for _ in 0..600 {
        if d.logs()
            .contains("removed the scratch of a killed restore drill")
        {
            removed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(removed, "{}", d.logs());
    let left = server
        .psql(
            "postgres",
            &format!("SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE '{DRILL_PREFIX}%'"),
        )
        .await
        .unwrap();
    assert_eq!(left, live);
}
