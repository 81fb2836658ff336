//! backupd with a MySQL/MariaDB database (`engine: mysql`) against a real
//! throwaway MariaDB server (`backup_mysql::TestServer`, or
//! `BACKUP_TEST_MYSQL_URL`): registered over the API, backed up, restored
//! into a new database with equal content, drilled; system and staging
//! names and other tenants' databases refused; the password in no
//! response or log.

use backup_mysql::TestServer as Mysql;
use reqwest::StatusCode;
use serde_json::{Value, json};

mod support;
use support::*;

fn mysql_body(id: &str, server: &Mysql, db: &str, tenant: Option<&str>) -> Value {
    let conn = server.connection(db);
    let mut v = json!({
        "id": id,
        "engine": "mysql",
        "host": conn.host(),
        "port": conn.port(),
        "database_name": db,
        "username": conn.user(),
        "password": conn.password().map(|p| p.expose().to_string()),
        "schedule": "disabled",
        "max_backups": 2,
    });
    if let Some(t) = tenant {
        v["tenant"] = json!(t);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mysql_entry_backs_up_and_restores_into_a_new_database_over_the_api() {
    let server = Mysql::shared();
    let shop = server.create_database("bd_shop").await.unwrap();
    let other = server.create_database("bd_other").await.unwrap();
    server
        .sql(
            Some(&shop),
            "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40) CHARACTER SET utf8mb4, \
             price DECIMAL(8,2), seen DATETIME(6), raw BLOB); \
             INSERT INTO items VALUES (1, 'tea \u{1F375}', 2.50, '2026-12-02 10:00:00.123456', X'00FF10'), \
             (2, 'cake', 3.10, NULL, NULL); \
             CREATE VIEW cheap AS SELECT id, name FROM items WHERE price < 3",
        )
        .await
        .unwrap();
    let d = Daemon::start("", 2);
    let api = Api::new(&d);

    let id = register_and_back_up(&api, ADMIN, mysql_body("shop", server, &shop, None)).await;
    let listed = d.listed_backups().await;
    let manifest = listed.iter().find(|m| m.id == id).unwrap();
    assert_eq!(manifest.engine, "mysql");
    assert_eq!(manifest.format, backup_mysql::FORMAT);

    let copy = format!("{shop}_copy");
    let (status, job) = restore(&api, &id, ADMIN, json!({"target_database": copy})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        server.table_checksums(&copy).await.unwrap(),
        server.table_checksums(&shop).await.unwrap()
    );
    assert!(
        server
            .objects(&copy)
            .await
            .unwrap()
            .iter()
            .any(|o| o.contains("cheap")),
        "the view is restored"
    );
    // A restore drill on the entry's server: a scratch database restored,
    // the rows counted from the dump script compared, the scratch dropped.
    let job = api.drill("shop", ADMIN).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"]["status"], "passed", "{job}");
    assert_eq!(job["result"]["tables"][0]["name"], "items", "{job}");
    assert_eq!(job["result"]["tables"][0]["restored_rows"], 2, "{job}");
    assert!(
        server
            .databases_like(backup_mysql::DRILL_PREFIX)
            .await
            .unwrap()
            .is_empty()
    );

    // A new database only: restoring onto an existing one is refused.
    let (status, job) = restore(&api, &id, ADMIN, json!({"target_database": copy})).await;
    assert!(
        status == StatusCode::CONFLICT || job["status"] == "failed",
        "{status} {job}"
    );

    // System, staging and malformed names are never registered nor
    // restored over.
    for name in [
        "mysql",
        "INFORMATION_SCHEMA",
        "sys",
        "_backup_staging_0123456789abcdef",
        "a.b",
        "a/b",
    ] {
        let (status, v) = api
            .post(
                "/api/v1/databases",
                ADMIN,
                mysql_body("bad", server, name, None),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {v}");
        // Refused by the restore job before it touches the server.
        let (status, job) = restore(&api, &id, ADMIN, json!({"target_database": name})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {job}");
        assert_eq!(job["status"], "failed", "{name}: {job}");
        let error = job["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("system database") || error.contains("not a valid MySQL"),
            "{name}: {job}"
        );
    }

    // A MySQL entry needs a user, and MySQL connects without TLS: sslmode
    // is refused rather than ignored.
    let mut body = mysql_body("nouser", server, &other, None);
    body.as_object_mut().unwrap().remove("username");
    let (status, v) = api.post("/api/v1/databases", ADMIN, body).await;
    assert_ne!(status, StatusCode::CREATED, "{v}");
    let mut body = mysql_body("tls", server, &other, None);
    body["sslmode"] = json!("require");
    let (status, v) = api.post("/api/v1/databases", ADMIN, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("sslmode"), "{v}");

    // Tenant a may not take a database the default tenant registered.
    let (status, v) = api
        .post(
            "/api/v1/databases",
            ADMIN,
            mysql_body("shop_a", server, &shop, Some("a")),
        )
        .await;
    assert!(status.is_client_error(), "{status} {v}");

    let password = server.password().map(|p| p.expose().to_string());
    if let Some(p) = password.as_deref().filter(|p| !p.is_empty()) {
        assert_no_secrets(&api, &d, &[p]);
    }
    for db in [&shop, &other, &copy] {
        server.drop_database(db).await.unwrap();
    }
}
