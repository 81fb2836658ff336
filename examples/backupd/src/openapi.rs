//! The OpenAPI 3.1 document served at `/openapi.json`, generated from the
//! same route table as the router (a test checks they agree).

use serde_json::{Map, Value, json};

use crate::routes::ROUTES;

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let (method, path, summary, admin) =
            (&route.method, &route.path, &route.summary, &route.admin);
        let api = path.starts_with("/api/");
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = json!({
            "summary": summary,
            "parameters": params,
            "responses": {
                "200": {"description": "success", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}}},
                "400": {"description": "invalid input or id"},
                "404": {"description": "not found (or not visible to this token's tenant)"}
            }
        });
        if api {
            op["security"] = json!([{"bearer": []}]);
            op["responses"]["401"] = json!({"description": "missing or invalid token"});
            if *admin {
                op["responses"]["403"] = json!({"description": "admin token required"});
            }
        } else if *path == "/metrics" {
            op["security"] = json!([{"bearer": []}]);
            op["responses"]["401"] = json!({"description": "missing or invalid token (a tenant-less token or metrics.token_var)"});
            op["responses"]["403"] = json!({"description": "token bound to a tenant"});
        } else {
            op["security"] = json!([]);
        }
        if let Some(example) = route.body {
            let example: Value =
                serde_json::from_str(example).expect("route body examples are JSON");
            op["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {"type": "object"}, "example": example}}
            });
            op["responses"]["413"] = json!({"description": "body larger than 64 KiB"});
            op["responses"]["415"] =
                json!({"description": "body sent without Content-Type: application/json"});
        }
        if *method == "post" {
            op["responses"]["202"] =
                json!({"description": "accepted: an asynchronous job was started"});
        }
        if *admin {
            op["responses"]["503"] = json!({"description": "shutting down: changes refused"});
        }
        paths
            .entry(path.to_string())
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .expect("path items are objects")
            .insert(method.to_string(), op);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "backupd",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Standalone backupper built on the backup library: databases, backups, restores, packages."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Envelope": {
                    "type": "object",
                    "required": ["success"],
                    "properties": {
                        "success": {"type": "boolean"},
                        "data": {},
                        "error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}
                    }
                }
            }
        }
    })
}
