//! The OpenAPI 3.1 document served at `/openapi.json`, generated from the
//! same route table as the router (a test checks they agree, and
//! validates the document against the OpenAPI 3.1 schema): every route's
//! path and query parameters, request body and every status it answers.

use serde_json::{Map, Value, json};

use crate::routes::{ROUTES, Route};

/// What a status means, for the document.
fn meaning(route: &Route, status: u16) -> &'static str {
    match status {
        200 => "success",
        201 if route.path.ends_with("/databases") => "registered",
        201 => "done (`?wait=true`): the result",
        202 => "accepted: an asynchronous job was started; poll its status_url",
        400 => "invalid id, query parameter or body (code says which)",
        401 => "missing or invalid bearer token",
        403 if route.path == "/metrics" => "token bound to a tenant",
        403 => "admin token required, or the tenant's policy refuses it",
        404 => "not found, or not visible to this token's tenant",
        409 => "conflict: it already exists or is busy",
        413 => "body larger than 64 KiB",
        415 => "body sent without Content-Type: application/json",
        422 => "a stored backup or manifest is damaged or too large",
        500 => "internal error (a tool missing on the daemon's host...)",
        502 => "the store or a database failed or refused",
        503 if route.path == "/readyz" => "not ready: store unreachable or shutting down",
        503 => "shutting down, or the store is unavailable: retry",
        504 => "a database stopped answering",
        507 => "the store is full",
        _ => "see the error code",
    }
}

fn parse(schema: &str, what: &str) -> Value {
    serde_json::from_str(schema).unwrap_or_else(|e| panic!("{what}: invalid JSON schema: {e}"))
}

fn parameters(route: &Route) -> Vec<Value> {
    let path = route
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            json!({
                "name": name,
                "in": "path",
                "required": true,
                "description": "letters, digits, `-`, `_`, `.`; job ids start with `job-`",
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]+$"}
            })
        });
    let query = route.query.iter().map(|p| {
        json!({
            "name": p.name,
            "in": "query",
            "required": false,
            "description": p.form,
            "schema": parse(p.schema, p.name)
        })
    });
    path.chain(query).collect()
}

fn response(route: &Route, status: u16) -> Value {
    let mut r = json!({"description": meaning(route, status)});
    let content = if !route.api() {
        match (route.path, status) {
            ("/openapi.json", 200) => json!({"application/json": {"schema": {"type": "object"}}}),
            (_, 200 | 503) => json!({"text/plain": {"schema": {"type": "string"}}}),
            _ => envelope("Error"),
        }
    } else if status >= 400 {
        envelope("Error")
    } else if status == 202 {
        envelope("JobStarted")
    } else if route.path.ends_with("/download") {
        json!({"application/octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}})
    } else {
        envelope("Success")
    };
    r["content"] = content;
    r
}

fn envelope(name: &str) -> Value {
    json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}})
}

fn operation(route: &Route) -> Value {
    let mut op = json!({
        "summary": route.summary,
        "operationId": format!("{}{}", route.method, route.path.replace(['/', '{', '}', '.'], "_")),
        "parameters": parameters(route),
        "responses": route
            .statuses()
            .into_iter()
            .map(|s| (s.to_string(), response(route, s)))
            .collect::<Map<String, Value>>(),
    });
    op["security"] = if route.api() || route.path == "/metrics" {
        json!([{"bearer": []}])
    } else {
        json!([])
    };
    if let Some(schema) = route.body_schema {
        let mut content = json!({"schema": parse(schema, route.path)});
        if let Some(example) = route.body {
            content["example"] = parse(example, route.path);
        }
        op["requestBody"] = json!({
            "required": true,
            "content": {"application/json": content}
        });
    }
    op
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        paths
            .entry(route.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .expect("path items are objects")
            .insert(route.method.to_string(), operation(route));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "backupd",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Standalone backupper built on the backup library: databases, backups, restores, packages. Every API answer is a JSON envelope; every error has a stable code."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Success": {
                    "type": "object",
                    "required": ["success", "data"],
                    "properties": {
                        "success": {"const": true},
                        "data": {}
                    }
                },
                "JobStarted": {
                    "type": "object",
                    "required": ["success", "data"],
                    "properties": {
                        "success": {"const": true},
                        "data": {
                            "type": "object",
                            "required": ["job_id", "status_url"],
                            "properties": {
                                "job_id": {"type": "string", "pattern": "^job-"},
                                "status_url": {"type": "string"}
                            }
                        }
                    }
                },
                "Error": {
                    "type": "object",
                    "required": ["success", "error"],
                    "properties": {
                        "success": {"const": false},
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string", "description": "stable, machine-readable (not_found, invalid_query, ...)"},
                                "message": {"type": "string", "description": "one line: what went wrong and what to do"}
                            }
                        }
                    }
                }
            }
        }
    })
}
