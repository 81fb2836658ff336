//! API abuse (issue #10 B): every route of the daemon's route table (the
//! one `/openapi.json` is generated from, so a new route cannot be left
//! out) × every kind of caller × bodies and ids a hostile client would
//! send. Each answer's status is checked, and afterwards that nothing
//! changed: the store (every file with its size and mtime), the registered
//! databases, and the data of both tenants' PostgreSQL databases.
//!
//! The real daemon binary, real HTTP, a real PostgreSQL; about 1,500
//! requests. It runs on PostgreSQL 15 only: the abuse is refused by the
//! daemon before any PostgreSQL call, and the two backups it takes as
//! fixtures are the round trip that `backupd.rs` already runs on both
//! majors of the test matrix.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use backup_postgres::TestServer;
use backupd::http::ROUTES;

mod support;
use support::*;

const A_READER: &str = "tenant-a-reader-token-for-tests-0123456789";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    NoToken,
    BadToken,
    Reader,
    TenantAdmin,
    TenantReader,
    Admin,
}

impl Caller {
    const ALL: [Caller; 6] = [
        Caller::NoToken,
        Caller::BadToken,
        Caller::Reader,
        Caller::TenantAdmin,
        Caller::TenantReader,
        Caller::Admin,
    ];

    fn token(self) -> Option<&'static str> {
        match self {
            Caller::NoToken => None,
            Caller::BadToken => Some("not-a-token-of-this-daemon-0123456789"),
            Caller::Reader => Some(READER),
            Caller::TenantAdmin => Some(TENANT_A),
            Caller::TenantReader => Some(A_READER),
            Caller::Admin => Some(ADMIN),
        }
    }

    fn authenticated(self) -> bool {
        !matches!(self, Caller::NoToken | Caller::BadToken)
    }

    fn admin(self) -> bool {
        matches!(self, Caller::TenantAdmin | Caller::Admin)
    }

    fn tenant_bound(self) -> bool {
        matches!(self, Caller::TenantAdmin | Caller::TenantReader)
    }
}

/// Which thing a path's `{id}` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdKind {
    Backup,
    Job,
    Database,
    Package,
    /// `{tenant}/{id}` of a source.
    Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Id {
    /// Tenant a's.
    Own,
    /// Tenant b's.
    Foreign,
    /// `../../etc/passwd`, encoded.
    Traversal,
    /// Well-formed, but nothing has it.
    Missing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    None,
    NoContentType,
    WrongContentType,
    NotAnObject,
    UnknownField,
    WrongTypes,
    DuplicateField,
    Huge,
    /// A valid body naming tenant b's things.
    ForeignReference,
}

const BODIES: [Body; 9] = [
    Body::None,
    Body::NoContentType,
    Body::WrongContentType,
    Body::NotAnObject,
    Body::UnknownField,
    Body::WrongTypes,
    Body::DuplicateField,
    Body::Huge,
    Body::ForeignReference,
];

/// What the test knows about a route beyond the table.
struct Spec {
    id: Option<IdKind>,
    /// The valid body it takes (never sent as is), `None` for none.
    body: Option<Value>,
    /// The same body naming tenant b's things, where a body can.
    foreign_body: Option<Value>,
}

fn spec(method: &str, path: &str, ids: &Ids) -> Spec {
    let id = if path.starts_with("/api/v1/backups/{id}") {
        Some(IdKind::Backup)
    } else if path.starts_with("/api/v1/jobs/{id}") {
        Some(IdKind::Job)
    } else if path.starts_with("/api/v1/databases/{id}") {
        Some(IdKind::Database)
    } else if path.starts_with("/api/v1/packages/{id}") {
        Some(IdKind::Package)
    } else if path.starts_with("/api/v1/sources/{tenant}/{id}") {
        Some(IdKind::Source)
    } else {
        assert!(!path.contains('{'), "{path}: unknown path parameter");
        None
    };
    let (body, foreign_body) = match (method, path) {
        ("get", _)
        | ("delete", _)
        | ("post", "/api/v1/packages")
        | ("post", "/api/v1/databases/{id}/drill") => (None, None),
        ("post", "/api/v1/backups") => (
            Some(json!({"database_id": "a_db", "type": "full"})),
            Some(json!({"database_id": "b_db", "type": "full"})),
        ),
        ("post", "/api/v1/backups/{id}/restore") => (
            Some(json!({"target_database": "abuse_new_target", "clean": false})),
            None,
        ),
        ("post", "/api/v1/cleanup") => (Some(json!({"dry_run": false})), None),
        ("post", "/api/v1/databases") => {
            let mut foreign = ids.new_db_body.clone();
            foreign["tenant"] = json!("b");
            (Some(ids.new_db_body.clone()), Some(foreign))
        }
        ("patch", "/api/v1/databases/{id}") => (
            Some(json!({"max_backups": 5, "package": false})),
            Some(json!({"database_name": ids.db_b})),
        ),
        other => panic!("route {other:?} has no entry in the abuse table: add one"),
    };
    Spec {
        id,
        body,
        foreign_body,
    }
}

/// The ids the matrix uses.
struct Ids {
    backup: [String; 2],
    job: [String; 2],
    package: [String; 2],
    db_b: String,
    new_db_body: Value,
}

impl Ids {
    fn path_id(&self, kind: IdKind, id: Id) -> String {
        let pair = |v: &[String; 2]| match id {
            Id::Own => v[0].clone(),
            Id::Foreign => v[1].clone(),
            Id::Traversal => "..%2F..%2Fetc%2Fpasswd".into(),
            Id::Missing => "20250101T000000Z-00000000".into(),
        };
        match kind {
            IdKind::Backup => pair(&self.backup),
            IdKind::Job => pair(&self.job),
            IdKind::Package => pair(&self.package),
            IdKind::Database => pair(&["a_db".into(), "b_db".into()]),
            IdKind::Source => match id {
                Id::Foreign => format!("b/{}", pair(&["a_db".into(), "b_db".into()])),
                _ => format!("a/{}", pair(&["a_db".into(), "b_db".into()])),
            },
        }
    }
}

/// Wrong JSON types for every field of `v`.
fn wrong_types(v: &Value) -> Value {
    let mut out = v.clone();
    for (_, field) in out.as_object_mut().unwrap().iter_mut() {
        *field = match field {
            Value::String(_) => json!(12345),
            Value::Bool(_) => json!("yes"),
            Value::Number(_) => json!("five"),
            _ => json!([1, 2]),
        };
    }
    out
}

fn raw_body(body: Body, valid: Option<&Value>, foreign: Option<&Value>) -> Option<RawBody> {
    let base = valid.cloned().unwrap_or_else(|| json!({}));
    let text = |ct: Option<&'static str>, s: String| {
        Some(RawBody {
            content_type: ct,
            bytes: s.into_bytes(),
        })
    };
    let json_ct = Some("application/json");
    match body {
        Body::None => None,
        Body::NoContentType => text(None, base.to_string()),
        Body::WrongContentType => text(Some("text/plain"), base.to_string()),
        Body::NotAnObject => text(json_ct, "[]".into()),
        Body::UnknownField => {
            let mut v = base;
            v["zz_unknown"] = json!(true);
            text(json_ct, v.to_string())
        }
        Body::WrongTypes => text(
            json_ct,
            if valid.is_some() {
                wrong_types(&base).to_string()
            } else {
                "{\"x\": 1}".into()
            },
        ),
        Body::DuplicateField => {
            let s = base.to_string();
            let (k, v) = base
                .as_object()
                .unwrap()
                .iter()
                .next()
                .map(|(k, v)| (k.clone(), v.clone()))
                .unwrap_or(("a".into(), json!(1)));
            text(
                json_ct,
                format!("{}, {}: {}}}", &s[..s.len() - 1], json!(k), v),
            )
        }
        Body::Huge => {
            let mut v = base;
            v["pad"] = json!("x".repeat(300_000));
            text(json_ct, v.to_string())
        }
        Body::ForeignReference => foreign.map(RawBody::json),
    }
}

/// The status the daemon must answer, or `None` for a request that is
/// valid and would change something (not sent).
fn expected(
    admin_route: bool,
    s: &Spec,
    caller: Caller,
    id: Option<Id>,
    body: Body,
) -> Option<StatusCode> {
    if !caller.authenticated() {
        return Some(StatusCode::UNAUTHORIZED);
    }
    if admin_route && !caller.admin() {
        return Some(StatusCode::FORBIDDEN);
    }
    match id {
        Some(Id::Traversal) => return Some(StatusCode::BAD_REQUEST),
        Some(Id::Missing) => return Some(StatusCode::NOT_FOUND),
        Some(Id::Foreign) if caller.tenant_bound() => return Some(StatusCode::NOT_FOUND),
        _ => {}
    }
    if !admin_route {
        // Reads: sent without a body only.
        return Some(StatusCode::OK);
    }
    Some(match body {
        Body::Huge => StatusCode::PAYLOAD_TOO_LARGE,
        Body::NoContentType | Body::WrongContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Body::NotAnObject | Body::UnknownField | Body::WrongTypes | Body::DuplicateField => {
            StatusCode::BAD_REQUEST
        }
        Body::None if s.body.is_some() => StatusCode::BAD_REQUEST,
        Body::None => return None,
        Body::ForeignReference => {
            // Routes whose body cannot name another tenant's things: skip.
            s.foreign_body.as_ref()?;
            if caller.tenant_bound() {
                // Another tenant's database id or tenant name: not found;
                // moving an entry onto b's database: forbidden.
                if s.id == Some(IdKind::Database) {
                    StatusCode::FORBIDDEN
                } else {
                    StatusCode::NOT_FOUND
                }
            } else if s.id == Some(IdKind::Database) && id == Some(Id::Own) {
                StatusCode::FORBIDDEN
            } else {
                return None;
            }
        }
    })
}

async fn rows(server: &TestServer, db: &str) -> String {
    server
        .psql(
            db,
            "SELECT count(*) || ':' || md5(string_agg(x::text, ',' ORDER BY x)) FROM t",
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_every_abuse_and_changes_nothing() {
    let server = TestServer::shared();
    let mut dbs = Vec::new();
    for prefix in ["abuse_a", "abuse_b"] {
        let db = server
            .create_database_with(
                prefix,
                "CREATE TABLE t AS SELECT generate_series(1, 500) AS x",
            )
            .await
            .unwrap();
        dbs.push(db);
    }
    let (db_a, db_b) = (dbs[0].clone(), dbs[1].clone());
    let d = Daemon::start_with(Options {
        extra_tokens: vec!["{token_var: T_AR, role: reader, tenant: a}".into()],
        envs: vec![("T_AR".into(), A_READER.into())],
        ..Options::default()
    });
    let api = Api::new(&d);
    register(&api, TENANT_A, database_body("a_db", &db_a, None, true)).await;
    register(&api, ADMIN, database_body("b_db", &db_b, Some("b"), true)).await;
    let mut backup = Vec::new();
    let mut job = Vec::new();
    for (db, token) in [("a_db", TENANT_A), ("b_db", ADMIN)] {
        let (status, v) = api
            .post("/api/v1/backups", token, json!({"database_id": db}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{v}");
        let id = v["data"]["job_id"].as_str().unwrap().to_string();
        let record = api.wait_job(&id, token).await;
        assert_eq!(record["status"], "succeeded", "{record}");
        backup.push(record["result"]["id"].as_str().unwrap().to_string());
        job.push(id);
    }
    let v = api.make_packages().await;
    let package_of = |tenant: &str| {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["tenant"] == tenant)
            .unwrap_or_else(|| panic!("no package for {tenant}: {v}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mut new_db_body = database_body("abuse_new", &db_a, None, false);
    new_db_body["database_name"] = json!(format!("{db_a}_new"));
    let ids = Ids {
        backup: [backup[0].clone(), backup[1].clone()],
        job: [job[0].clone(), job[1].clone()],
        package: [package_of("a"), package_of("b")],
        db_b: db_b.clone(),
        new_db_body,
    };

    let store_before = snapshot(&d.store());
    let (_, databases_before) = api.get("/api/v1/databases", ADMIN).await;
    let rows_before = (rows(server, &db_a).await, rows(server, &db_b).await);

    let mut sent = 0;
    let mut failures = Vec::new();
    for route in ROUTES {
        let (method, path, admin_route) = (route.method, route.path, route.admin);
        let s = spec(method, path, &ids);
        let http_method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let id_variants: Vec<Option<Id>> = match s.id {
            Some(_) => vec![
                Some(Id::Own),
                Some(Id::Foreign),
                Some(Id::Traversal),
                Some(Id::Missing),
            ],
            None => vec![None],
        };
        for caller in Caller::ALL {
            for id in &id_variants {
                let url = match (s.id, id) {
                    (Some(kind), Some(id)) => {
                        let v = ids.path_id(kind, *id);
                        path.replace("{tenant}/{id}", &v).replace("{id}", &v)
                    }
                    _ => path.to_string(),
                };
                let bodies: &[Body] = if admin_route { &BODIES } else { &[Body::None] };
                for &body in bodies {
                    let want = if path.starts_with("/api/") {
                        expected(admin_route, &s, caller, *id, body)
                    } else {
                        // The root routes: probes and the document are open,
                        // metrics need a tenant-less token.
                        Some(match path {
                            "/metrics" if !caller.authenticated() => StatusCode::UNAUTHORIZED,
                            "/metrics" if caller.tenant_bound() => StatusCode::FORBIDDEN,
                            _ => StatusCode::OK,
                        })
                    };
                    let Some(want) = want else {
                        continue;
                    };
                    let raw = raw_body(body, s.body.as_ref(), s.foreign_body.as_ref());
                    if body != Body::None && raw.is_none() {
                        continue;
                    }
                    sent += 1;
                    let reply = match api
                        .try_raw(http_method.clone(), &url, caller.token(), raw)
                        .await
                    {
                        Ok(r) => r,
                        Err(e) => {
                            failures.push(format!(
                                "{method} {url} as {caller:?} with {body:?}: no answer: {e}"
                            ));
                            continue;
                        }
                    };
                    if reply.status != want {
                        failures.push(format!(
                            "{method} {url} as {caller:?} with {body:?}: {} (want {want}): {}",
                            reply.status,
                            reply.body.to_string().chars().take(200).collect::<String>()
                        ));
                    } else if want.is_client_error() && path.starts_with("/api/") {
                        // Every refusal is the JSON envelope with a code.
                        if reply.body["success"] != false
                            || !reply.body["error"]["code"].is_string()
                        {
                            failures.push(format!(
                                "{method} {url} as {caller:?} with {body:?}: not an error envelope: {}",
                                reply.body
                            ));
                        }
                    }
                }
            }
        }
    }
    println!("abuse: {sent} requests over {} routes", ROUTES.len());
    assert!(
        failures.is_empty(),
        "{} of {sent} answers were wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );

    assert_eq!(snapshot(&d.store()), store_before, "the store changed");
    let (_, databases_after) = api.get("/api/v1/databases", ADMIN).await;
    assert_eq!(databases_after, databases_before, "registrations changed");
    assert_eq!(
        (rows(server, &db_a).await, rows(server, &db_b).await),
        rows_before,
        "database contents changed"
    );
    assert!(
        !api.all_bodies().contains("root:"),
        "a traversal read a file"
    );
    assert_no_secrets(
        &api,
        &d,
        &[
            ADMIN,
            READER,
            TENANT_A,
            A_READER,
            server.connection("postgres").password().unwrap().expose(),
        ],
    );
    for db in &dbs {
        server.drop_database(db).await.unwrap();
    }
}
