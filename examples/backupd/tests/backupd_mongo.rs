//! backupd with MongoDB databases: reserved and system names refused on
//! every path, tenant isolation, a restore drill, and authentication
//! failures reported as such. The real daemon binary over real HTTP
//! against SecantusDB, a MongoDB-compatible stand-in (not MongoDB itself)
//! started by the test.

use backup_mongo::{TestServer as Mongo, ThrowawaySecantus};
use reqwest::StatusCode;
use serde_json::{Value, json};

mod support;
use support::*;

/// Host and port of the stand-in (the tests need its address, not its
/// URI); `None` when `MONGODB_URI` names a real server, whose users
/// backupd (no `authSource` setting) may not be able to use.
fn address(server: &Mongo) -> Option<(String, u16)> {
    if !server.is_stand_in() {
        println!("skipped: backupd MongoDB tests run against the stand-in only");
        return None;
    }
    let uri = server.uri().expose().to_string();
    let rest = uri.strip_prefix("mongodb://").unwrap();
    let hostport = rest.split(['/', '?']).next().unwrap();
    let hostport = hostport.rsplit('@').next().unwrap();
    let (host, port) = hostport.rsplit_once(':').unwrap();
    Some((host.to_string(), port.parse().unwrap()))
}

fn mongo_body(id: &str, host: &str, port: u16, db: &str, tenant: Option<&str>) -> Value {
    let mut v = json!({
        "id": id,
        "engine": "mongodb",
        "host": host,
        "port": port,
        "database_name": db,
        "schedule": "disabled",
        "max_backups": 2,
    });
    if let Some(t) = tenant {
        v["tenant"] = json!(t);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_reserved_names_and_other_tenants_databases_are_refused() {
    let server = Mongo::shared();
    let Some((host, port)) = address(server) else {
        return;
    };
    let shop_a = Mongo::unique_name("bd_shopa");
    let shop_b = Mongo::unique_name("bd_shopb");
    server.create_sample(&shop_a, 300).await.unwrap();
    server.create_sample(&shop_b, 200).await.unwrap();
    let b_before = server.summary(&shop_b).await.unwrap();
    let d = Daemon::start("", 2);
    let api = Api::new(&d);

    register(
        &api,
        ADMIN,
        mongo_body("b_db", &host, port, &shop_b, Some("b")),
    )
    .await;
    register(
        &api,
        TENANT_A,
        mongo_body("a_db", &host, port, &shop_a, None),
    )
    .await;

    // System names, any case, and restore staging names: never registered.
    let reserved = ["admin", "Admin", "local", "LOCAL", "config", "Config"];
    for name in reserved
        .iter()
        .copied()
        .chain([format!("{shop_b}__restore_1a2b3c4d").as_str()])
    {
        for token in [ADMIN, TENANT_A] {
            let (status, v) = api
                .post(
                    "/api/v1/databases",
                    token,
                    mongo_body("sys", &host, port, name, None),
                )
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {v}");
        }
        let (status, v) = api
            .patch(
                "/api/v1/databases/a_db",
                ADMIN,
                json!({"database_name": name}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {v}");
        // A tenant token may not move its entry at all.
        let (status, v) = api
            .patch(
                "/api/v1/databases/a_db",
                TENANT_A,
                json!({"database_name": name}),
            )
            .await;
        assert!(
            matches!(status, StatusCode::BAD_REQUEST | StatusCode::FORBIDDEN),
            "{name}: {v}"
        );
    }
    // Tenant b's database: not by name, not in another case.
    for name in [shop_b.clone(), shop_b.to_uppercase()] {
        for token in [ADMIN, TENANT_A] {
            let (status, v) = api
                .patch(
                    "/api/v1/databases/a_db",
                    token,
                    json!({"database_name": name}),
                )
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{name}: {v}");
        }
    }

    // The entry still backs up a's own database.
    let id = backup_now(&api, "a_db", TENANT_A).await;
    let (_, m) = api.get(&format!("/api/v1/backups/{id}"), TENANT_A).await;
    assert_eq!(m["data"]["database"], shop_a.as_str(), "{m}");

    // A restore drill of it (tenant a's admin may start one): every
    // collection compared, the scratch database dropped.
    let job = api.drill("a_db", TENANT_A).await;
    assert_eq!(job["result"]["status"], "passed", "{job}");
    let items = &job["result"]["tables"][1];
    assert_eq!(items["name"], "items", "{job}");
    assert_eq!(items["restored_rows"], 300, "{job}");
    let names = server
        .client()
        .await
        .unwrap()
        .list_database_names()
        .await
        .unwrap();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with(backup_mongo::DRILL_PREFIX)),
        "{names:?}"
    );

    // Restores into system databases or b's are refused with or without
    // clean; into a's own (clean) and a new one they work.
    for target in reserved
        .iter()
        .map(|s| s.to_string())
        .chain([shop_b.clone(), shop_b.to_uppercase()])
    {
        for clean in [true, false] {
            let (status, job) = restore(
                &api,
                &id,
                TENANT_A,
                json!({"target_database": target, "clean": clean}),
            )
            .await;
            assert_eq!(status, StatusCode::ACCEPTED, "{job}");
            assert_eq!(job["status"], "failed", "{target} clean={clean}: {job}");
            assert!(job["error_code"].is_string(), "{job}");
        }
    }
    let (_, job) = restore(
        &api,
        &id,
        TENANT_A,
        json!({"target_database": shop_a, "clean": true}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let copy = format!("{shop_a}_copy");
    let (_, job) = restore(&api, &id, TENANT_A, json!({"target_database": copy})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        server.summary(&copy).await.unwrap(),
        server.summary(&shop_a).await.unwrap()
    );
    assert_eq!(
        server.summary(&shop_b).await.unwrap(),
        b_before,
        "b changed"
    );

    // In the configuration file too.
    for name in ["local", "Admin"] {
        let config = config_text(&Options {
            extra_config: format!(
                "databases:\n  - {{id: m, engine: mongodb, host: 127.0.0.1, database_name: {name}}}"
            ),
            ..Options::default()
        });
        let (code, stderr) = run_to_exit(&config, &[]);
        assert_eq!(code, Some(2), "{name}: {stderr}");
        assert!(stderr.contains("databases[0].database_name"), "{stderr}");
    }
    assert_no_secrets(&api, &d, &[ADMIN, TENANT_A]);
    for db in [&shop_a, &shop_b, &copy] {
        server.drop_database(db).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_authentication_failure_is_reported_as_such() {
    const PASSWORD: &str = "R1ght-Pa55-for-backupd";
    const WRONG: &str = "wr0ng-Pa55-for-backupd";
    let own = ThrowawaySecantus::start_with_user("backup", PASSWORD, "readWrite", "shop")
        .await
        .unwrap();
    let port = own.port();
    let client = mongodb::Client::with_uri_str(format!(
        "mongodb://backup:{PASSWORD}@127.0.0.1:{port}/shop?directConnection=true&authSource=shop"
    ))
    .await
    .unwrap();
    client
        .database("shop")
        .collection::<bson::Document>("orders")
        .insert_one(bson::doc! { "n": 1 })
        .await
        .unwrap();
    drop(client);
    let d = Daemon::start("", 2);
    let api = Api::new(&d);
    let mut body = mongo_body("guarded", "127.0.0.1", port, "shop", None);
    body["username"] = json!("backup");
    body["password"] = json!(WRONG);
    register(&api, ADMIN, body).await;
    let (status, v) = api
        .post(
            "/api/v1/backups?wait=true",
            ADMIN,
            json!({"database_id": "guarded"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{v}");
    assert_eq!(v["error"]["code"], "upstream_auth_failed", "{v}");
    let (_, v) = api
        .post("/api/v1/backups", ADMIN, json!({"database_id": "guarded"}))
        .await;
    let job = api
        .wait_job(v["data"]["job_id"].as_str().unwrap(), ADMIN)
        .await;
    assert_eq!(job["error_code"], "upstream_auth_failed", "{job}");
    assert_no_secrets(&api, &d, &[WRONG, PASSWORD, ADMIN]);
    drop(own);
}
