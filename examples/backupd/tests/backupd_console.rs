//! The web console: its files and headers over HTTP, and the console
//! itself in a real browser (Debian's chromium through chromedriver,
//! driven over WebDriver with fantoccini) against the real daemon and
//! PostgreSQL: sign in, back up now, watch the job, restore into a new
//! database typed by name, roles, tenants, a hostile name shown as text,
//! and no token in the page.
//!
//! The browser part is skipped (with a printed reason) only when
//! chromedriver is not installed and `CI` is unset; on CI a missing
//! browser fails. `BACKUPD_SCREENSHOTS=1` saves the main pages into
//! `examples/backupd/docs/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use backup_postgres::TestServer;
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use serde_json::{Value, json};

mod support;
use support::*;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const XSS: &str = "<img src=x onerror=alert(1)>";

#[tokio::test]
async fn the_console_files_come_with_their_types_and_a_strict_policy() {
    let d = Daemon::start("", 2);
    let http = reqwest::Client::new();
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/console/console.js", "text/javascript; charset=utf-8"),
        ("/console/pages.js", "text/javascript; charset=utf-8"),
        ("/console/console.css", "text/css; charset=utf-8"),
        ("/console/favicon.svg", "image/svg+xml"),
    ] {
        let r = http.get(format!("{}{path}", d.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let h = r.headers();
        assert_eq!(h["content-type"], content_type, "{path}");
        assert_eq!(h["content-security-policy"], CSP, "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["cache-control"], "no-store", "{path}");
        let body = r.text().await.unwrap();
        for banned in ["innerHTML", "eval(", "document.cookie"] {
            assert!(!body.contains(banned), "{path} contains {banned}");
        }
        for token in [ADMIN, READER, TENANT_A, TENANT_B] {
            assert!(!body.contains(token), "{path} holds a token");
        }
    }
    for path in [
        "/console/nope.js",
        "/console/..%2fCargo.toml",
        "/console/",
        "/index.html",
    ] {
        let r = http.get(format!("{}{path}", d.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["success"], false, "{path}: {v}");
    }
    // The API the console reads: who the token is, and the jobs.
    let api = Api::new(&d);
    let (status, v) = api.get("/api/v1/whoami", TENANT_B).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["data"], json!({"role": "reader", "tenant": "b"}));
    let (status, _) = api.get("/api/v1/whoami", "not-a-token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, v) = api.get("/api/v1/jobs?limit=0", ADMIN).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["code"], "bad_request");
}

/// chromedriver on a loopback port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("chromedriver"))
        .find(|p| p.is_file())
}

impl Driver {
    /// The browser, or `None` (skip) when chromedriver is missing off CI.
    async fn start() -> Option<(Driver, Client)> {
        let Some(bin) = chromedriver() else {
            if std::env::var_os("CI").is_some() {
                panic!("chromedriver is not installed: CI installs chromium-driver (.ci/test.sh)");
            }
            println!(
                "SKIPPED: chromedriver is not installed (apt-get install chromium chromium-driver)"
            );
            return None;
        };
        let port = free_port();
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut chrome = json!({"args": [
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1280,800",
        ]});
        if std::path::Path::new("/usr/bin/chromium").is_file() {
            chrome["binary"] = json!("/usr/bin/chromium");
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), chrome);
        // Both rustls providers are in the build: name one (an error means
        // one is installed already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = ClientBuilder::rustls()
            .expect("a rustls connector")
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .expect("a chromium session");
        Some((driver, client))
    }
}

/// The page, driven: waits and reads.
struct Page<'a> {
    c: &'a Client,
    base: &'a str,
}

impl Page<'_> {
    async fn wait(&self, css: &str) -> fantoccini::elements::Element {
        self.c
            .wait()
            .at_most(Duration::from_secs(60))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} never appeared: {e}"))
    }

    async fn count(&self, css: &str) -> usize {
        self.c.find_all(Locator::Css(css)).await.unwrap().len()
    }

    async fn open(&self, hash: &str, ready: &str) {
        self.c.goto(&format!("{}/{hash}", self.base)).await.unwrap();
        self.wait(ready).await;
    }

    async fn sign_in(&self, token: &str) {
        self.c.goto(&format!("{}/", self.base)).await.unwrap();
        self.c
            .execute("sessionStorage.clear(); location.hash = ''", vec![])
            .await
            .unwrap();
        self.c.refresh().await.unwrap();
        let input = self.wait("#token").await;
        input.send_keys(token).await.unwrap();
        self.c
            .find(Locator::Css("#signin-button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.wait("#page-overview").await;
    }

    /// The job id the page went to (`#/jobs/<id>`).
    async fn job_in_url(&self) -> String {
        self.wait("#page-jobs").await;
        let url = self.c.current_url().await.unwrap();
        let fragment = url.fragment().unwrap_or_default().to_string();
        fragment
            .strip_prefix("/jobs/")
            .unwrap_or_else(|| panic!("not a job page: {url}"))
            .to_string()
    }

    /// Waits (the page polls) for job `id` to end; it must succeed.
    async fn job_succeeded(&self, id: &str) -> fantoccini::elements::Element {
        let row = self
            .wait(&format!(
                "tr[data-job=\"{id}\"]:not([data-status=\"running\"])"
            ))
            .await;
        let status = row.attr("data-status").await.unwrap();
        let text = row.text().await.unwrap();
        assert_eq!(status.as_deref(), Some("succeeded"), "{text}");
        row
    }

    async fn screenshot(&self, name: &str) {
        if std::env::var("BACKUPD_SCREENSHOTS").as_deref() != Ok("1") {
            return;
        }
        let png = self.c.screenshot().await.unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("console-{name}.png")), png).unwrap();
    }
}

#[tokio::test]
async fn the_console_in_a_real_browser() {
    let Some((_driver, c)) = Driver::start().await else {
        return;
    };
    let server = TestServer::shared();
    let db = server.create_database("console_src").await.unwrap();
    server
        .psql(
            &db,
            "CREATE TABLE orders AS SELECT g AS id, 'item ' || g AS label FROM generate_series(1, 500) g",
        )
        .await
        .unwrap();
    let d = Daemon::start("", 2);
    let api = Api::new(&d);
    let mut body = database_body("shop", &db, None, false);
    body["name"] = json!("Shop orders");
    register(&api, ADMIN, body).await;
    let mut hostile = database_body("hostile", &db, None, false);
    hostile["name"] = json!(XSS);
    hostile["schedule"] = json!("disabled");
    register(&api, ADMIN, hostile).await;
    let page = Page {
        c: &c,
        base: &d.base,
    };

    // A wrong token: refused (401), the form stays.
    c.goto(&format!("{}/", d.base)).await.unwrap();
    page.wait("#token")
        .await
        .send_keys("not-a-token")
        .await
        .unwrap();
    page.wait("#signin-button").await.click().await.unwrap();
    let refused = page.wait("#signin-error").await;
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(
            "#signin-view:not([hidden]) #signin-error:not(:empty)",
        ))
        .await
        .unwrap();
    assert!(refused.text().await.unwrap().contains("401"));

    // The admin: sees the source, backs it up now, watches the job.
    page.sign_in(ADMIN).await;
    let card = page.wait(".card.source[data-source=\"shop\"]").await;
    assert!(card.text().await.unwrap().contains("Shop orders"));
    card.find(Locator::Css("button.backup-now"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let job = page.job_in_url().await;
    let row = page.job_succeeded(&job).await;
    let backup_id = row
        .find(Locator::Css("a"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let jobs = api.get("/api/v1/jobs", ADMIN).await.1;
    let listed = &jobs["data"]["jobs"][0];
    assert_eq!(listed["id"], job.as_str(), "{jobs}");
    assert!(
        listed["progress"]["bytes_read"].as_u64().unwrap() > 0,
        "{jobs}"
    );
    assert!(
        listed["progress"]["bytes_stored"].as_u64().unwrap() > 0,
        "{jobs}"
    );
    page.screenshot("jobs").await;

    // Another backup for the size trend, then the pages.
    backup_now(&api, "shop", ADMIN).await;
    page.open("#/overview", ".card.source[data-source=\"shop\"] svg.trend")
        .await;
    page.screenshot("overview").await;
    page.open("#/backups", "tr[data-backup]").await;
    assert_eq!(page.count("tr[data-backup]").await, 2);
    page.screenshot("backups").await;

    // Its detail, and a restore into a new database typed by name.
    page.open(&format!("#/backup/{backup_id}"), "#sha256").await;
    let manifest = api
        .get(&format!("/api/v1/backups/{backup_id}"), ADMIN)
        .await
        .1;
    let sha = page.wait("#sha256").await.text().await.unwrap();
    assert_eq!(sha, manifest["data"]["stored"]["sha256"].as_str().unwrap());
    page.screenshot("backup").await;
    let target = format!("{db}_restored");
    page.wait("#restore-target")
        .await
        .send_keys(&target)
        .await
        .unwrap();
    page.wait("button.restore").await.click().await.unwrap();
    let job = page.job_in_url().await;
    page.job_succeeded(&job).await;
    let restored = server
        .psql(&target, "SELECT count(*), max(label) FROM orders")
        .await
        .unwrap();
    assert!(
        restored.contains("500") && restored.contains("item 99"),
        "{restored}"
    );
    server.assert_same_data(&db, &target).await;

    // The hostile name is text: no image, no alert.
    page.open("#/databases", "tr[data-database=\"hostile\"]")
        .await;
    let name = page
        .wait("tr[data-database=\"hostile\"] td.db-name")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(name, XSS);
    page.open("#/overview", ".card.source").await;
    page.open("#/databases", "tr[data-database=\"hostile\"]")
        .await;
    assert_eq!(page.count("img").await, 0);
    assert!(c.get_alert_text().await.is_err(), "an alert opened");
    assert!(page.count("button.remove").await >= 2);
    page.screenshot("databases").await;

    // Databases through the forms: the password is write-only.
    let conn = server.connection(&db);
    let db_password = conn.password().unwrap().expose().to_string();
    page.open("#/database/shop", "#database-form").await;
    let password = page.wait("#db-password").await;
    assert_eq!(password.prop("value").await.unwrap().as_deref(), Some(""));
    assert!(!c.source().await.unwrap().contains(&db_password));
    let name = page.wait("#db-name").await;
    name.clear().await.unwrap();
    name.send_keys("Shop orders (edited)").await.unwrap();
    page.wait("#save-database").await.click().await.unwrap();
    let edited = page
        .wait("#page-databases tr[data-database=\"shop\"] td.db-name")
        .await;
    assert_eq!(edited.text().await.unwrap(), "Shop orders (edited)");
    page.open("#/database/new", "#database-form").await;
    let port = conn.port().to_string();
    for (field, value) in [
        ("id", "added"),
        ("name", "Added in the console"),
        ("host", conn.host()),
        ("port", port.as_str()),
        ("database_name", db.as_str()),
        ("username", conn.user()),
        ("password", db_password.as_str()),
        ("schedule", "disabled"),
    ] {
        let input = page.wait(&format!("#db-{field}")).await;
        input.clear().await.unwrap();
        input.send_keys(value).await.unwrap();
    }
    page.wait("#save-database").await.click().await.unwrap();
    let added = page
        .wait("#page-databases tr[data-database=\"added\"]")
        .await;
    assert!(added.text().await.unwrap().contains("set"));
    assert!(!c.source().await.unwrap().contains(&db_password));
    let (status, v) = api.get("/api/v1/databases/added", ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["has_password"], true, "{v}");

    // No token in the page, its URL or cookies; a reload without the
    // session storage asks again.
    let source = c.source().await.unwrap();
    assert!(!source.contains(ADMIN));
    assert!(!c.current_url().await.unwrap().as_str().contains(ADMIN));
    let cookies = c.execute("return document.cookie", vec![]).await.unwrap();
    assert_eq!(cookies, json!(""));
    c.execute("sessionStorage.clear()", vec![]).await.unwrap();
    c.refresh().await.unwrap();
    page.wait("#signin-view:not([hidden]) #token").await;
    assert!(!c.source().await.unwrap().contains(ADMIN));

    // A reader: no button that changes anything.
    page.sign_in(READER).await;
    page.wait(".card.source[data-source=\"shop\"]").await;
    assert_eq!(page.count("button.backup-now").await, 0);
    page.open(&format!("#/backup/{backup_id}"), "#sha256").await;
    page.wait("button.download").await;
    for css in ["button.restore", "button.delete", "#restore-target"] {
        assert_eq!(page.count(css).await, 0, "{css}");
    }
    page.open("#/databases", "tr[data-database=\"shop\"]").await;
    assert_eq!(page.count("button.remove").await, 0);
    assert_eq!(page.count("#add-database").await, 0);

    // Another tenant sees nothing of these, and a 404 for the backup.
    page.sign_in(TENANT_B).await;
    page.open("#/databases", "#page-databases p.empty").await;
    page.open("#/backups", "#backup-list p.empty").await;
    page.open(&format!("#/backup/{backup_id}"), "#flash:not([hidden])")
        .await;
    let shown = c
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!shown.contains("Shop orders"), "{shown}");
    page.open("#/overview", "#page-overview").await;
    assert_eq!(page.count(".card.source").await, 0);

    c.close().await.unwrap();
    server
        .psql("postgres", &format!("DROP DATABASE \"{target}\""))
        .await
        .unwrap();
}
