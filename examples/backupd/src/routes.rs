//! The API's route table: each route's method, path, role, query
//! parameters, body and answers, for the router's authorization, the
//! query-string errors, the OpenAPI document and the tests.

use axum::http::Method;

/// A query parameter of a route.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Its name.
    pub name: &'static str,
    /// Its JSON Schema (JSON text).
    pub schema: &'static str,
    /// The form it accepts, as an error names it (`an RFC 3339 time such
    /// as 2025-01-31T00:00:00Z`).
    pub form: &'static str,
}

/// One route of the API.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// Lower-case HTTP method.
    pub method: &'static str,
    /// Path with `{id}` parameters.
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// Admin tokens only (every route that changes something).
    pub admin: bool,
    /// The JSON body it requires, as an example; `None`: it takes none.
    pub body: Option<&'static str>,
    /// The body's JSON Schema (JSON text; `additionalProperties: false`
    /// where unknown fields are refused), for the OpenAPI document.
    pub body_schema: Option<&'static str>,
    /// Its query parameters (none: a query string is ignored).
    pub query: &'static [Param],
    /// The statuses of its successful answers.
    pub success: &'static [u16],
    /// The error statuses it answers beyond those of every route of its
    /// kind (see [`Route::statuses`]).
    pub errors: &'static [u16],
}

const fn route(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    admin: bool,
    body: Option<&'static str>,
) -> Route {
    Route {
        method,
        path,
        summary,
        admin,
        body,
        body_schema: None,
        query: &[],
        success: &[200],
        errors: &[],
    }
}

impl Route {
    const fn schema(mut self, schema: &'static str) -> Route {
        self.body_schema = Some(schema);
        self
    }

    const fn query(mut self, query: &'static [Param]) -> Route {
        self.query = query;
        self
    }

    const fn success(mut self, success: &'static [u16]) -> Route {
        self.success = success;
        self
    }

    const fn errors(mut self, errors: &'static [u16]) -> Route {
        self.errors = errors;
        self
    }

    /// Whether it is under `/api/v1` (bearer token, JSON envelope).
    pub fn api(&self) -> bool {
        self.path.starts_with("/api/")
    }

    /// Every status it can answer, sorted: its successes and `errors`,
    /// plus those of its kind: 401 for the API and `/metrics`; 500, 502
    /// and 503 for the API (the store or a database failed); 403 for
    /// admin routes and `/metrics`; 503 for changes (shutting down); 400
    /// and 404 for an `{id}` (malformed, absent or another tenant's); 400
    /// for query parameters; 400, 413 and 415 for changes, which read
    /// their body exactly (routes that take none refuse one).
    pub fn statuses(&self) -> Vec<u16> {
        let mut out: Vec<u16> = self.success.iter().chain(self.errors).copied().collect();
        if self.api() || self.path == "/metrics" {
            out.push(401);
        }
        if self.api() {
            // The store or a server it talks to failed (never a bare
            // 500 for those: see `crate::error`), or shutting down.
            out.extend([500, 502, 503]);
        }
        if self.admin || self.path == "/metrics" {
            out.push(403);
        }
        if self.path.contains('{') {
            out.extend([400, 404]);
        }
        if !self.query.is_empty() {
            out.push(400);
        }
        if self.method != "get" {
            out.extend([400, 413, 415, 503]);
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// `?wait=true`: answer when done (201) instead of at once (202).
const WAIT: &[Param] = &[Param {
    name: "wait",
    schema: r#"{"type": "boolean", "default": false}"#,
    form: "true or false",
}];

/// The filter of `GET /api/v1/drills`.
const DRILLS: &[Param] = &[Param {
    name: "database",
    schema: r#"{"type": "string"}"#,
    form: "a database id",
}];

const TIME_FORM: &str = "an RFC 3339 time such as 2025-01-31T00:00:00Z";

/// The filters and paging of `GET /api/v1/backups`.
const LIST: &[Param] = &[
    Param {
        name: "tenant",
        schema: r#"{"type": "string"}"#,
        form: "a tenant id",
    },
    Param {
        name: "source_id",
        schema: r#"{"type": "string"}"#,
        form: "a database id",
    },
    Param {
        name: "database_id",
        schema: r#"{"type": "string", "description": "alias of source_id"}"#,
        form: "a database id",
    },
    Param {
        name: "kind",
        schema: r#"{"type": "string", "enum": ["manual", "scheduled"]}"#,
        form: "manual or scheduled",
    },
    Param {
        name: "type",
        schema: r#"{"type": "string", "enum": ["full", "incremental"]}"#,
        form: "full or incremental",
    },
    Param {
        name: "since",
        schema: r#"{"type": "string", "format": "date-time"}"#,
        form: TIME_FORM,
    },
    Param {
        name: "until",
        schema: r#"{"type": "string", "format": "date-time"}"#,
        form: TIME_FORM,
    },
    Param {
        name: "offset",
        schema: r#"{"type": "integer", "minimum": 0, "default": 0}"#,
        form: "a whole number from 0",
    },
    Param {
        name: "limit",
        schema: r#"{"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}"#,
        form: "a whole number from 1 to 1000",
    },
];

/// The fields of a database entry over the API: the configuration file's
/// (less `username_var`/`password_var`) plus `username` and `password`.
macro_rules! database_fields {
    () => {
        r#""id": {"type": "string", "pattern": "^[A-Za-z0-9._-]+$"},
    "name": {"type": "string"},
    "engine": {"type": "string", "enum": ["postgres", "mongodb", "mysql", "mariadb"]},
    "host": {"type": "string"},
    "port": {"type": "integer", "minimum": 1, "maximum": 65535},
    "database_name": {"type": "string"},
    "username": {"type": "string", "minLength": 1, "maxLength": 1024, "writeOnly": true},
    "password": {"type": "string", "minLength": 1, "maxLength": 1024, "writeOnly": true},
    "schedule": {"description": "cron text, a preset (`daily`, `every_12h 15:00`) or an object with `preset` and `time` (`daily`, `03:00`)"},
    "compression": {"type": "string", "description": "none, gzip[:level] or zstd[:level]"},
    "keep_last": {"type": "integer", "minimum": 1, "maximum": 100000},
    "max_age": {"type": "string", "description": "a duration such as 30d"},
    "retention_days": {"type": "integer", "minimum": 1, "maximum": 36500, "deprecated": true, "description": "older name of max_age, in days"},
    "max_backups": {"type": "integer", "minimum": 1, "maximum": 100000, "deprecated": true, "description": "older name of keep_last"},
    "keep_newest_verified": {"type": "boolean", "description": "retention never deletes the newest backup with a passed restore drill (default: true when the entry has a drill schedule)"},
    "package": {"type": "boolean"},
    "tenant": {"type": "string"},
    "stale_after": {"type": "string", "description": "a duration such as 90m, 24h or 30d"},
    "sslmode": {"type": "string"}"#
    };
}

/// `POST /api/v1/databases`'s body.
const NEW_DATABASE: &str = concat!(
    r#"{"type": "object", "additionalProperties": false, "required": ["id", "engine", "database_name"], "properties": {"#,
    database_fields!(),
    "}}"
);

/// `PATCH /api/v1/databases/{id}`'s body: the fields to change.
const DATABASE_CHANGE: &str = concat!(
    r#"{"type": "object", "additionalProperties": false, "properties": {"#,
    database_fields!(),
    "}}"
);

/// Every route, for the router's authorization, the OpenAPI document and
/// the tests.
pub const ROUTES: &[Route] = &[
    route(
        "get",
        "/api/v1/backups",
        "List backups (filters: tenant, source_id, kind, type, since, until; paging: offset, limit 1-1000)",
        false,
        None,
    )
    .query(LIST)
    .errors(&[404]),
    route(
        "post",
        "/api/v1/backups",
        "Start a manual backup (`?wait=true` waits)",
        true,
        Some(r#"{"source_id": "...", "type": "full"}"#),
    )
    .schema(r#"{"type": "object", "additionalProperties": false, "oneOf": [{"required": ["source_id"]}, {"required": ["database_id"]}], "properties": {"source_id": {"type": "string"}, "database_id": {"type": "string", "deprecated": true, "description": "older name of source_id"}, "type": {"type": "string", "enum": ["full", "incremental"], "default": "full"}, "base_backup": {"type": "string", "enum": ["full", "incremental"], "default": "full", "description": "physical entries: a full base backup, or a block-level incremental on the newest one (entries with an incremental schedule)"}}}"#)
    .query(WAIT)
    .success(&[201, 202])
    .errors(&[404, 409, 422, 504, 507]),
    route(
        "get",
        "/api/v1/backups/stats",
        "Count, size, newest and oldest backup per tenant and source",
        false,
        None,
    ),
    route(
        "get",
        "/api/v1/backups/{id}",
        "One backup's manifest",
        false,
        None,
    )
    .errors(&[422]),
    route(
        "delete",
        "/api/v1/backups/{id}",
        "Delete a backup (manifest first, then artifact)",
        true,
        None,
    )
    .errors(&[409]),
    route(
        "get",
        "/api/v1/backups/{id}/download",
        "Download a backup's artifact (streamed, with checksums)",
        false,
        None,
    )
    .errors(&[422]),
    route(
        "post",
        "/api/v1/backups/{id}/restore",
        "Restore asynchronously into the source's own database or a new one (target_database required; clean defaults to false)",
        true,
        Some(r#"{"target_database": "...", "clean": false}"#),
    )
    .schema(r#"{"type": "object", "additionalProperties": false, "required": ["target_database"], "properties": {"target_database": {"type": "string", "minLength": 1, "maxLength": 63}, "clean": {"type": "boolean", "default": false}}}"#)
    .success(&[202]),
    route(
        "get",
        "/api/v1/jobs",
        "The caller's asynchronous operations, newest first, with their progress (limit 1-1000)",
        false,
        None,
    )
    .query(&[Param {
        name: "limit",
        schema: r#"{"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}"#,
        form: "a whole number from 1 to 1000",
    }]),
    route(
        "get",
        "/api/v1/whoami",
        "The caller's role and tenant (for the web console)",
        false,
        None,
    ),
    route(
        "get",
        "/api/v1/jobs/{id}",
        "State of an asynchronous operation",
        false,
        None,
    ),
    route(
        "get",
        "/api/v1/drills",
        "Restore drill records, newest first (filter: database)",
        false,
        None,
    )
    .query(DRILLS),
    route(
        "post",
        "/api/v1/databases/{id}/drill",
        "Start a restore drill of the database's newest backup into a scratch database",
        true,
        None,
    )
    .success(&[202])
    .errors(&[422]),
    route(
        "get",
        "/api/v1/status",
        "Health per database and scheduler state",
        false,
        None,
    ),
    route(
        "post",
        "/api/v1/cleanup",
        "Apply retention now (dry_run required)",
        true,
        Some(r#"{"dry_run": true}"#),
    )
    .schema(r#"{"type": "object", "additionalProperties": false, "required": ["dry_run"], "properties": {"dry_run": {"type": "boolean"}}}"#)
    .errors(&[409, 422]),
    route(
        "get",
        "/api/v1/databases",
        "Registered databases (never credentials)",
        false,
        None,
    ),
    route(
        "post",
        "/api/v1/databases",
        "Register a database at run time",
        true,
        Some(r#"{"id": "...", "engine": "postgres", "host": "...", "database_name": "..."}"#),
    )
    .schema(NEW_DATABASE)
    .success(&[201])
    .errors(&[404, 409]),
    route("get", "/api/v1/databases/{id}", "One database", false, None),
    route(
        "patch",
        "/api/v1/databases/{id}",
        "Change a database (schedule, retention, credentials; host, port, engine and database only with a tenant-less token)",
        true,
        Some(r#"{"max_backups": 10}"#),
    )
    .schema(DATABASE_CHANGE)
    .errors(&[404, 409]),
    route(
        "delete",
        "/api/v1/databases/{id}",
        "Unregister a database (its backups stay)",
        true,
        None,
    ),
    route("get", "/api/v1/packages", "List packages", false, None),
    route(
        "post",
        "/api/v1/packages",
        "Build packages now (`?wait=true` waits)",
        true,
        None,
    )
    .query(WAIT)
    .success(&[201, 202])
    .errors(&[409, 422, 507]),
    route(
        "get",
        "/api/v1/packages/{id}/download",
        "Download a package",
        false,
        None,
    ),
    route(
        "delete",
        "/api/v1/packages/{id}",
        "Delete a package",
        true,
        None,
    ),
    route(
        "delete",
        "/api/v1/sources/{tenant}/{id}/run-record",
        "Forget a source's run record (its latest attempt), so a failed attempt no longer makes it failing; its backups are never deleted (404 when it has none)",
        true,
        None,
    ),
    route(
        "get",
        "/metrics",
        "Prometheus metrics (bearer: a tenant-less token or metrics.token_var)",
        false,
        None,
    ),
    route("get", "/healthz", "Liveness", false, None),
    route(
        "get",
        "/readyz",
        "Readiness (store reachable, not shutting down)",
        false,
        None,
    )
    .errors(&[503]),
    route("get", "/openapi.json", "This document", false, None),
];

/// The route `method path` (a matched path, with `{id}`).
pub fn find_route(method: &Method, path: &str) -> Option<&'static Route> {
    ROUTES
        .iter()
        .find(|r| r.path == path && method.as_str().eq_ignore_ascii_case(r.method))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;
    use serde_json::Value;

    /// The database body schema lists exactly what the API parses: the
    /// entry's fields (`RawDatabase`) but the `*_var` names (refused over
    /// the API), plus `username` and `password` (read from the body).
    #[test]
    fn the_database_schema_follows_the_entry_fields() {
        let schema: Value = serde_json::from_str(NEW_DATABASE).unwrap();
        let documented: std::collections::BTreeSet<String> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let entry = serde_json::to_value(crate::config::RawDatabase {
            url_var: Some("X".into()),
            keep_last: Some(1),
            max_age: Some("1d".into()),
            max_backups: Some(1),
            retention_days: Some(1),
            pg_bin: Some("/x".into()),
            path: Some("/x.db".into()),
            mode: Some("physical".into()),
            wal_archiving: true,
            slot: Some("s".into()),
            keep_newest_verified: Some(true),
            ..Default::default()
        })
        .unwrap();
        let mut parsed: std::collections::BTreeSet<String> =
            entry.as_object().unwrap().keys().cloned().collect();
        for refused in [
            "url_var",
            "username_var",
            "password_var",
            "pg_bin",
            "path",
            "mode",
            "wal_archiving",
            "slot",
        ] {
            assert!(parsed.remove(refused), "{refused} is an entry field");
        }
        parsed.extend(["schedule", "username", "password"].map(String::from));
        assert_eq!(documented, parsed);
    }

    #[test]
    fn the_route_table_is_consistent() {
        for r in ROUTES {
            let mutating = r.method != "get";
            // The middleware refuses non-admins on both counts; they agree.
            assert_eq!(r.admin, mutating, "{} {}", r.method, r.path);
            if let Some(example) = r.body {
                assert!(matches!(r.method, "post" | "patch"), "{}", r.path);
                let v: Value = serde_json::from_str(example).expect(r.path);
                assert!(v.is_object(), "{}", r.path);
            }
            let method = Method::from_bytes(r.method.to_uppercase().as_bytes()).unwrap();
            assert!(find_route(&method, r.path).is_some());
            // A body has its schema, and its example fits the fields.
            assert_eq!(r.body.is_some(), r.body_schema.is_some(), "{}", r.path);
            if let Some(schema) = r.body_schema {
                let schema: Value = serde_json::from_str(schema).expect(r.path);
                let example: Value = serde_json::from_str(r.body.unwrap()).unwrap();
                for key in example.as_object().unwrap().keys() {
                    assert!(schema["properties"].get(key).is_some(), "{} {key}", r.path);
                }
            }
            for p in r.query {
                let _: Value = serde_json::from_str(p.schema).expect(p.name);
            }
            assert!(!r.success.is_empty());
            assert!(r.statuses().windows(2).all(|w| w[0] < w[1]));
        }
    }
}
