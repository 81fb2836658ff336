//! backupd hardening (issue #10): the tenant model, exact request bodies,
//! authorization before parsing, draining, metrics access, reserved
//! database names, range checks in the configuration and specific error
//! codes for upstream failures. The real daemon binary over real HTTP, a
//! real PostgreSQL (throwaway cluster) and a real S3 server (`s3s-fs`).
//!
//! The upstream-failure codes come from PostgreSQL's own refusals and run
//! on both majors of the test matrix (`<test>::postgres_15`,
//! `<test>::postgres_18`, see `support::Options::pg`); the rest is the
//! daemon's own policy, checked before or after a PostgreSQL call that is
//! the same whatever its version, and runs on 15 only.

use std::time::Duration;

use backup_core::{BackupRequest, manifest::BackupKind};
use backup_postgres::{PostgresSource, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;

mod support;
use support::*;

const TENANT_C: &str = "tenant-c-token-for-tests-0123456789";

/// `count(*)` and a checksum of every row of table `t`.
async fn checksum(server: &TestServer, db: &str) -> String {
    server
        .psql(
            db,
            "SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, ',' ORDER BY x)), '') FROM t",
        )
        .await
        .unwrap()
}

async fn database_with_rows(server: &TestServer, prefix: &str, rows: u32) -> String {
    server
        .create_database_with(
            prefix,
            &format!("CREATE TABLE t AS SELECT generate_series(1, {rows}) AS x"),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn a_tenant_cannot_point_its_entries_at_another_tenants_database() {
    let server = TestServer::shared();
    let db_a = database_with_rows(server, "ten_a", 10).await;
    let db_b = database_with_rows(server, "ten_b", 20).await;
    let b_before = checksum(server, &db_b).await;
    let d = Daemon::start_with(Options {
        extra_tokens: vec!["{token_var: T_C, role: admin, tenant: c}".into()],
        envs: vec![("T_C".into(), TENANT_C.into())],
        ..Options::default()
    });
    let api = Api::new(&d);
    register(&api, ADMIN, database_body("b_db", &db_b, Some("b"), false)).await;
    let backup_a =
        register_and_back_up(&api, TENANT_A, database_body("a_db", &db_a, None, false)).await;

    // The reported attack: repoint the entry at b's database (same server,
    // so the stored credentials are kept), then restore over it.
    let (status, v) = api
        .patch(
            "/api/v1/databases/a_db",
            TENANT_A,
            json!({"database_name": db_b}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    // Nor any other move of a registered entry by a tenant-bound token.
    for change in [
        json!({"host": "localhost"}),
        json!({"port": 1}),
        json!({"engine": "mongodb"}),
        json!({"database_name": format!("{db_a}_x")}),
    ] {
        let (status, v) = api
            .patch("/api/v1/databases/a_db", TENANT_A, change.clone())
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{change}: {v}");
    }
    let (status, v) = api
        .patch("/api/v1/databases/a_db", TENANT_A, json!({"tenant": "b"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    // Settings that do not move the entry stay the tenant's to change.
    let (status, v) = api
        .patch(
            "/api/v1/databases/a_db",
            TENANT_A,
            json!({"max_backups": 3}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");

    // A global admin may move entries, but never onto another tenant's
    // database: not by name, not through another spelling of its host,
    // not in another case.
    for change in [
        json!({"database_name": db_b}),
        json!({"database_name": db_b, "host": "localhost"}),
        json!({"database_name": db_b.to_uppercase()}),
    ] {
        let (status, v) = api
            .patch("/api/v1/databases/a_db", ADMIN, change.clone())
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{change}: {v}");
        assert_eq!(v["error"]["code"], "database_not_allowed", "{v}");
    }
    // Registering b's database again, for a or by a, is refused the same way.
    let mut body = database_body("a_steal", &db_b, None, false);
    body["host"] = json!("localhost");
    let (status, v) = api.post("/api/v1/databases", TENANT_A, body).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (status, v) = api
        .post(
            "/api/v1/databases",
            ADMIN,
            database_body("a_steal", &db_b, Some("a"), false),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    // Naming another tenant is a 404, as for every other thing of theirs.
    let (status, v) = api
        .post(
            "/api/v1/databases",
            TENANT_A,
            database_body("x_db", &db_a, Some("b"), false),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");

    // Restores over b's database are refused whatever the options.
    for body in [
        json!({"target_database": db_b, "clean": true}),
        json!({"target_database": db_b.to_uppercase(), "clean": true}),
        json!({"target_database": db_b}),
    ] {
        let (status, job) = restore(&api, &backup_a, TENANT_A, body.clone()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{job}");
        assert_eq!(job["status"], "failed", "{body}: {job}");
    }
    // The entry still points at a's own database, which a may restore over.
    let (status, job) = restore(
        &api,
        &backup_a,
        TENANT_A,
        json!({"target_database": db_a, "clean": true}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(checksum(server, &db_b).await, b_before, "b's data changed");

    // Tenant-bound tokens register only on the hosts their tenant allows;
    // a tenant without a `tenants:` entry may register nothing.
    let mut body = database_body("a_far", &db_a, None, false);
    body["host"] = json!("10.255.255.1");
    let (status, v) = api.post("/api/v1/databases", TENANT_A, body).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "host_not_allowed", "{v}");
    let db_c = database_with_rows(server, "ten_c", 5).await;
    let (status, v) = api
        .post(
            "/api/v1/databases",
            TENANT_C,
            database_body("c_db", &db_c, None, false),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "host_not_allowed", "{v}");

    assert_no_secrets(
        &api,
        &d,
        &[
            ADMIN,
            TENANT_A,
            TENANT_C,
            server.connection("postgres").password().unwrap().expose(),
        ],
    );
    for db in [&db_a, &db_b, &db_c] {
        server.drop_database(db).await.unwrap();
    }
}

#[tokio::test]
async fn system_databases_are_refused_on_every_path() {
    let server = TestServer::shared();
    let db = database_with_rows(server, "sys", 10).await;
    let d = Daemon::start("", 2);
    let api = Api::new(&d);
    for name in ["postgres", "template0", "Template1", "POSTGRES"] {
        let (status, v) = api
            .post(
                "/api/v1/databases",
                ADMIN,
                database_body("sys", name, None, false),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {v}");
    }
    let id = register_and_back_up(&api, ADMIN, database_body("sys", &db, None, false)).await;
    let (status, v) = api
        .patch(
            "/api/v1/databases/sys",
            ADMIN,
            json!({"database_name": "template1"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    for target in ["postgres", "Postgres", "template0", "template1"] {
        let (status, job) = restore(
            &api,
            &id,
            ADMIN,
            json!({"target_database": target, "clean": true}),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{job}");
        assert_eq!(job["status"], "failed", "{target}: {job}");
    }
    // In the configuration file too.
    for name in ["postgres", "template1"] {
        let config = config_text(&Options {
            extra_config: format!(
                "databases:\n  - {{id: s, engine: postgres, host: 127.0.0.1, database_name: {name}}}"
            ),
            ..Options::default()
        });
        let (code, stderr) = run_to_exit(&config, &[]);
        assert_eq!(code, Some(2), "{name}: {stderr}");
        assert!(stderr.contains("databases[0].database_name"), "{stderr}");
    }
    server.drop_database(&db).await.unwrap();
}

/// Two scheduled backups beside the daemon's and `max_backups: 1`: a real
/// cleanup deletes one, so any body taken for "no options" shows.
async fn cleanup_fixture(server: &TestServer, d: &Daemon, api: &Api, db: &str) {
    register(api, ADMIN, database_body("shop", db, None, false)).await;
    let engine = d.engine();
    for _ in 0..2 {
        engine
            .backup(
                &PostgresSource::new(server.connection(db)),
                &BackupRequest::new("shop").kind(BackupKind::Scheduled),
            )
            .await
            .unwrap();
        // Backup ids have a one-second resolution.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
}

#[tokio::test]
async fn request_bodies_must_be_exactly_what_the_route_takes() {
    let server = TestServer::shared();
    let db = database_with_rows(server, "bodies", 100).await;
    let d = Daemon::start("", 2);
    let api = Api::new(&d);
    cleanup_fixture(server, &d, &api, &db).await;
    let (_, listed) = api.get("/api/v1/backups", READER).await;
    let id = listed["data"]["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = snapshot(&d.store());

    let text = |ct: Option<&'static str>, s: &str| RawBody {
        content_type: ct,
        bytes: s.as_bytes().to_vec(),
    };
    let json_ct = Some("application/json");
    let cases: Vec<(&str, RawBody, StatusCode)> = vec![
        (
            "no content type",
            text(None, r#"{"dry_run": true}"#),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "text/plain",
            text(Some("text/plain"), r#"{"dry_run": true}"#),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "form",
            text(Some("application/x-www-form-urlencoded"), "dry_run=true"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        ("array", text(json_ct, "[]"), StatusCode::BAD_REQUEST),
        ("null", text(json_ct, "null"), StatusCode::BAD_REQUEST),
        (
            "not json",
            text(json_ct, "{dry_run"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "dry_run missing",
            text(json_ct, "{}"),
            StatusCode::BAD_REQUEST,
        ),
        ("no body", text(None, ""), StatusCode::BAD_REQUEST),
        (
            "wrong type",
            text(json_ct, r#"{"dry_run": "yes"}"#),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown field",
            text(json_ct, r#"{"dry_run": true, "everything": true}"#),
            StatusCode::BAD_REQUEST,
        ),
        (
            "duplicate field",
            text(json_ct, r#"{"dry_run": true, "dry_run": false}"#),
            StatusCode::BAD_REQUEST,
        ),
        (
            "huge",
            text(
                json_ct,
                &format!(r#"{{"dry_run": true, "pad": "{}"}}"#, "x".repeat(300_000)),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (what, body, want) in cases {
        let r = api
            .raw(Method::POST, "/api/v1/cleanup", Some(ADMIN), Some(body))
            .await;
        assert_eq!(r.status, want, "cleanup, {what}: {}", r.body);
        assert_eq!(r.body["success"], false, "{what}: {}", r.body);
    }
    assert_eq!(
        snapshot(&d.store()),
        before,
        "a refused cleanup changed the store"
    );
    // A dry run changes nothing either; a stated real run deletes.
    let (status, v) = api
        .post("/api/v1/cleanup", ADMIN, json!({"dry_run": true}))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(snapshot(&d.store()), before);

    // A restore's target is never dropped: without it (or without a
    // content type) nothing starts.
    for (what, body, want) in [
        (
            "no content type",
            text(
                None,
                &json!({"target_database": format!("{db}_new")}).to_string(),
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "no target",
            text(json_ct, r#"{"clean": false}"#),
            StatusCode::BAD_REQUEST,
        ),
        ("empty object", text(json_ct, "{}"), StatusCode::BAD_REQUEST),
        ("no body", text(None, ""), StatusCode::BAD_REQUEST),
        (
            "target not a string",
            text(json_ct, r#"{"target_database": 7}"#),
            StatusCode::BAD_REQUEST,
        ),
        (
            "clean not a boolean",
            text(json_ct, r#"{"target_database": "x", "clean": "true"}"#),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = api
            .raw(
                Method::POST,
                &format!("/api/v1/backups/{id}/restore"),
                Some(ADMIN),
                Some(body),
            )
            .await;
        assert_eq!(r.status, want, "restore, {what}: {}", r.body);
    }
    // Routes without a body refuse one instead of ignoring it.
    let r = api
        .raw(
            Method::POST,
            "/api/v1/packages",
            Some(ADMIN),
            Some(text(json_ct, r#"{"tenant": "b"}"#)),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = api
        .raw(
            Method::DELETE,
            &format!("/api/v1/backups/{id}"),
            Some(ADMIN),
            Some(text(json_ct, r#"{"force": true}"#)),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    // Query strings: unknown keys, wrong types and out-of-range values.
    for path in [
        "/api/v1/backups?limit=0",
        "/api/v1/backups?limit=100000",
        "/api/v1/backups?limit=ten",
        "/api/v1/backups?bogus=1",
        "/api/v1/backups?offset=-1",
        "/api/v1/backups?since=yesterday",
    ] {
        let (status, v) = api.get(path, READER).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert_eq!(v["success"], false, "{path}: {v}");
    }
    for path in [
        "/api/v1/backups?wait=maybe",
        "/api/v1/backups?wiat=true",
        "/api/v1/packages?wait=1",
    ] {
        let (status, v) = api.post(path, ADMIN, json!({"database_id": "shop"})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {v}");
    }
    assert_eq!(
        snapshot(&d.store()),
        before,
        "a refused request changed the store"
    );

    // Readers are refused before their body is looked at.
    for (method, path) in [
        (Method::POST, "/api/v1/backups".to_string()),
        (Method::POST, "/api/v1/cleanup".to_string()),
        (Method::POST, format!("/api/v1/backups/{id}/restore")),
        (Method::PATCH, "/api/v1/databases/shop".to_string()),
        (Method::POST, "/api/v1/databases".to_string()),
    ] {
        for body in [text(json_ct, "[]"), text(None, "x"), text(json_ct, "{")] {
            let r = api
                .raw(method.clone(), &path, Some(READER), Some(body))
                .await;
            assert_eq!(
                r.status,
                StatusCode::FORBIDDEN,
                "{method} {path}: {}",
                r.body
            );
        }
    }

    let (status, v) = api
        .post("/api/v1/cleanup", ADMIN, json!({"dry_run": false}))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, listed) = api.get("/api/v1/backups", READER).await;
    assert_eq!(listed["data"]["total"], 1, "{listed}");
    assert!(!d.audit().contains("dry_run"), "a body in the audit log");
    assert_no_secrets(
        &api,
        &d,
        &[
            ADMIN,
            READER,
            server.connection("postgres").password().unwrap().expose(),
        ],
    );
    server.drop_database(&db).await.unwrap();
}

#[test]
fn out_of_range_configuration_values_are_refused_with_their_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let db = |fields: &str| {
        format!(
            "databases:\n  - {{id: x, engine: postgres, host: 127.0.0.1, database_name: x, {fields}}}"
        )
    };
    let cases: Vec<(Options, &str)> = vec![
        (
            Options {
                extra_config: db("stale_after: 213503982334602d"),
                ..Options::default()
            },
            "databases[0].stale_after",
        ),
        (
            Options {
                extra_config: db("stale_after: 0h"),
                ..Options::default()
            },
            "databases[0].stale_after",
        ),
        (
            Options {
                extra_config: db("retention_days: 0"),
                ..Options::default()
            },
            "databases[0].retention_days",
        ),
        (
            Options {
                extra_config: db("max_backups: 0"),
                ..Options::default()
            },
            "databases[0].max_backups",
        ),
        (
            Options {
                extra_config: db("port: 0"),
                ..Options::default()
            },
            "databases[0].port",
        ),
        (
            Options {
                extra_config: "shutdown_timeout_seconds_x: 1".into(),
                ..Options::default()
            },
            "unknown field",
        ),
        (
            Options {
                max_parallel_jobs: 100_000,
                ..Options::default()
            },
            "global.max_parallel_jobs",
        ),
        (
            Options {
                storage: format!("{{type: fs, path: {}}}", file.display()),
                ..Options::default()
            },
            "storage.path",
        ),
        (
            Options {
                tenants: Some("{a: {allowed_hosts: [\"\"]}}".into()),
                ..Options::default()
            },
            "tenants.a.allowed_hosts[0]",
        ),
        (
            Options {
                tenants: Some("{a: {allowed_hosts: [127.0.0.1], bogus: 1}}".into()),
                ..Options::default()
            },
            "unknown field",
        ),
        (
            Options {
                extra_config: "metrics: {token_var: NOT_SET_ANYWHERE}".into(),
                ..Options::default()
            },
            "metrics.token_var",
        ),
        (
            // One database, two tenants.
            Options {
                extra_config: "databases:\n  - {id: x, engine: postgres, host: localhost, database_name: shared, tenant: a}\n  - {id: y, engine: postgres, host: 127.0.0.1, database_name: shared, tenant: b}".into(),
                ..Options::default()
            },
            "databases[1]",
        ),
    ];
    for (options, field) in cases {
        let config = config_text(&options);
        let (code, stderr) = run_to_exit(&config, &[]);
        assert_eq!(code, Some(2), "{field}: {stderr}");
        assert!(stderr.contains(field), "missing {field:?} in: {stderr}");
    }
    // The global section and the top-level numbers, through the YAML the
    // daemon reads (the test template sets them, so replace in place).
    let base = config_text(&Options::default());
    for (from, to, field) in [
        (
            "max_parallel_jobs: 2}",
            "max_parallel_jobs: 2, stale_after: 213503982334602d}",
            "global.stale_after",
        ),
        (
            "max_parallel_jobs: 2}",
            "max_parallel_jobs: 2, retention_days: 0}",
            "global.retention_days",
        ),
        (
            "max_parallel_jobs: 2}",
            "max_parallel_jobs: 0}",
            "global.max_parallel_jobs",
        ),
        (
            "max_backups: 2}",
            "max_backups: 0}",
            "package-conf.max_backups",
        ),
        (
            "shutdown_timeout_seconds: 30",
            "shutdown_timeout_seconds: 18446744073709551615",
            "shutdown_timeout_seconds",
        ),
    ] {
        let config = base.replace(from, to);
        assert_ne!(config, base);
        let (code, stderr) = run_to_exit(&config, &[]);
        assert_eq!(code, Some(2), "{field}: {stderr}");
        assert!(stderr.contains(field), "missing {field:?} in: {stderr}");
    }
}

#[tokio::test]
async fn metrics_need_a_token_unless_served_on_their_own_address() {
    let d = Daemon::start("", 2);
    let api = Api::new(&d);
    let (status, _) = api.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api
        .call(
            Method::GET,
            "/metrics",
            Some("not-a-token-of-ours-at-all"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api.call(Method::GET, "/metrics", Some(READER), None).await;
    assert_eq!(status, StatusCode::OK);
    // Metrics name every tenant's sources: not for tenant-bound tokens.
    let (status, _) = api
        .call(Method::GET, "/metrics", Some(TENANT_A), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    drop(d);

    // A dedicated token, required on the separate metrics address too.
    const METRICS: &str = "metrics-token-for-tests-0123456789";
    let port = free_port();
    let d = Daemon::start_with(Options {
        extra_config: format!("metrics: {{token_var: T_M}}\nmetrics_listen: 127.0.0.1:{port}"),
        envs: vec![("T_M".into(), METRICS.into())],
        ..Options::default()
    });
    let api = Api::new(&d);
    let (status, _) = api.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, text) = api.call(Method::GET, "/metrics", Some(METRICS), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.as_str().unwrap().contains("# EOF"), "{text}");
    // The metrics token opens nothing else.
    let (status, _) = api.get("/api/v1/backups", METRICS).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let separate = Api::at(&format!("http://127.0.0.1:{port}"));
    let (status, _) = separate.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = separate
        .call(Method::GET, "/metrics", Some(METRICS), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_no_secrets(&api, &d, &[METRICS, ADMIN]);
    drop(d);

    // A separate address without a metrics token is open (bind it to a
    // private interface), and serves nothing but probes and metrics.
    let port = free_port();
    let d = Daemon::start_with(Options {
        extra_config: format!("metrics_listen: 127.0.0.1:{port}"),
        ..Options::default()
    });
    let separate = Api::at(&format!("http://127.0.0.1:{port}"));
    let (status, text) = separate.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let (status, _) = separate.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = separate
        .call(Method::GET, "/api/v1/backups", Some(ADMIN), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = Api::new(&d).call(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn draining_keeps_the_probes_and_refuses_changes() {
    let server = TestServer::shared();
    let db = database_with_rows(server, "drain", 1000).await;
    let mut d = Daemon::start("", 2);
    let api = Api::new(&d);
    register(&api, ADMIN, database_body("drain", &db, None, false)).await;
    // Hold a lock pg_dump must wait for: the backup runs until the test
    // ends the locking session.
    let marker = format!("drain-lock-{db}");
    let locker = {
        let db = db.clone();
        let marker = marker.clone();
        tokio::spawn(async move {
            TestServer::shared()
                .psql(
                    &db,
                    &format!(
                        "BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600) /* {marker} */; COMMIT;"
                    ),
                )
                .await
        })
    };
    let waiting = |what: &'static str| {
        let marker = marker.clone();
        let db = db.clone();
        async move {
            let sql = match what {
                "lock" => format!(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%{marker} */%' AND wait_event = 'PgSleep'"
                ),
                _ => format!(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND wait_event_type = 'Lock'"
                ),
            };
            for _ in 0..600 {
                if TestServer::shared().psql("postgres", &sql).await.unwrap() != "0" {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("never saw {what}");
        }
    };
    waiting("lock").await;
    let (status, v) = api
        .post("/api/v1/backups", ADMIN, json!({"database_id": "drain"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    waiting("pg_dump").await;

    let pid = d.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    // Readiness turns 503 (answered, not refused); liveness and metrics
    // keep answering; changes are refused with 503.
    let mut ready = StatusCode::OK;
    for _ in 0..600 {
        ready = api.call(Method::GET, "/readyz", None, None).await.0;
        if ready != StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ready, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _) = api.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.call(Method::GET, "/metrics", Some(READER), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = api
        .post("/api/v1/backups", ADMIN, json!({"database_id": "drain"}))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"]["code"], "shutting_down", "{v}");
    let (status, _) = api.get("/api/v1/status", READER).await;
    assert_eq!(status, StatusCode::OK, "reads still answer");

    // Release the lock: the running backup finishes and the daemon exits.
    server
        .psql(
            "postgres",
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%{marker} */%' AND pid <> pg_backend_pid()"
            ),
        )
        .await
        .unwrap();
    let _ = locker.await;
    let (exit, d) = tokio::task::spawn_blocking(move || {
        let s = d.child.wait().unwrap();
        (s, d)
    })
    .await
    .unwrap();
    assert!(exit.success(), "exit {exit:?}: {}", d.logs());
    let listed = d.listed_backups().await;
    assert_eq!(listed.len(), 1, "{}", d.logs());
    server.drop_database(&db).await.unwrap();
}

backup_postgres::each_major! {
    /// PostgreSQL's own refusals (a wrong password, nothing listening, a
    /// missing database) each have their code, synchronously and in a
    /// job's record.
    async fn upstream_failures_have_specific_codes(server) {
        let db = database_with_rows(server, "upstream", 10).await;
        let d = Daemon::start_with(Options {
            pg: Some(server),
            ..Options::default()
        });
        let api = Api::new(&d);
        let mut wrong_password = database_body_on(server, "wrongpw", &db, None, false);
        wrong_password["password"] = json!("not-the-password-0123");
        let mut unreachable = database_body_on(server, "unreachable", &db, None, false);
        unreachable["port"] = json!(free_port());
        let missing = database_body_on(server, "missing", &format!("{db}_missing"), None, false);
        for (body, code) in [
            (wrong_password, "upstream_auth_failed"),
            (unreachable, "upstream_unreachable"),
            (missing, "upstream_database_missing"),
        ] {
            let id = body["id"].as_str().unwrap().to_string();
            register(&api, ADMIN, body).await;
            let (status, v) = api
                .post(
                    "/api/v1/backups?wait=true",
                    ADMIN,
                    json!({"database_id": id}),
                )
                .await;
            assert_eq!(status, StatusCode::BAD_GATEWAY, "{id}: {v}");
            assert_eq!(v["error"]["code"], code, "{v}");
            // The same code in the record of an asynchronous job.
            let job = post_backup(&api, ADMIN, json!({"database_id": id})).await;
            assert_eq!(job["status"], "failed", "{job}");
            assert_eq!(job["error_code"], code, "{job}");
        }
        assert_no_secrets(&api, &d, &["not-the-password-0123", ADMIN]);
        server.drop_database(&db).await.unwrap();
    }
}

/// S3 that refuses the daemon's keys: its own code, and not ready.
#[tokio::test]
async fn storage_failures_have_specific_codes() {
    let s3 = backup_store_s3::S3TestServer::start().unwrap();
    let d = Daemon::start_with(Options {
        storage: format!(
            "{{type: s3, bucket: {}, endpoint: \"{}\", region: us-east-1, access_key_var: S3_AK, secret_key_var: S3_SK, allow_http: true}}",
            s3.bucket(),
            s3.endpoint()
        ),
        envs: vec![
            ("S3_AK".into(), s3.access_key_id().into()),
            ("S3_SK".into(), "wrong-secret-key-0123456789".into()),
        ],
        ..Options::default()
    });
    let api = Api::new(&d);
    let (status, v) = api.get("/api/v1/backups", READER).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{v}");
    assert_eq!(v["error"]["code"], "storage_access_denied", "{v}");
    let (status, _) = api.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_no_secrets(
        &api,
        &d,
        &[
            "wrong-secret-key-0123456789",
            s3.secret_access_key().expose(),
        ],
    );
}
