//! The API's route table: each route's method, path, role and body, for
//! the router's authorization, the OpenAPI document and the tests.

use axum::http::Method;

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
    }
}

/// Every route, for the router's authorization, the OpenAPI document and
/// the tests.
pub const ROUTES: &[Route] = &[
    route(
        "get",
        "/api/v1/backups",
        "List backups (filters: tenant, source_id, kind, type, since, until; paging: offset, limit 1-1000)",
        false,
        None,
    ),
    route(
        "post",
        "/api/v1/backups",
        "Start a manual backup (`?wait=true` waits)",
        true,
        Some(r#"{"database_id": "...", "type": "full"}"#),
    ),
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
    ),
    route(
        "delete",
        "/api/v1/backups/{id}",
        "Delete a backup (manifest first, then artifact)",
        true,
        None,
    ),
    route(
        "get",
        "/api/v1/backups/{id}/download",
        "Download a backup's artifact (streamed, with checksums)",
        false,
        None,
    ),
    route(
        "post",
        "/api/v1/backups/{id}/restore",
        "Restore asynchronously into the source's own database or a new one (target_database required; clean defaults to false)",
        true,
        Some(r#"{"target_database": "...", "clean": false}"#),
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
    ),
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
    ),
    route("get", "/api/v1/databases/{id}", "One database", false, None),
    route(
        "patch",
        "/api/v1/databases/{id}",
        "Change a database (schedule, retention, credentials; host, port, engine and database only with a tenant-less token)",
        true,
        Some(r#"{"max_backups": 10}"#),
    ),
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
    ),
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
    ),
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
        }
    }
}
