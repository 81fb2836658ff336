//! Request bodies, read exactly or refused. Handlers call these only after
//! the caller is authorized and the path's ids are resolved, so a caller
//! who may not act learns nothing from a body and makes the daemon parse
//! nothing.
//!
//! - A non-empty body needs `Content-Type: application/json` (optionally
//!   `; charset=utf-8`): anything else is `415`. Nothing is ever read as
//!   "no options" because of its content type.
//! - At most [`MAX_BODY`] bytes: `413`.
//! - A JSON object, without duplicate keys (anywhere), whose fields are
//!   exactly the route's (`deny_unknown_fields`) with the right types:
//!   otherwise `400`.
//! - Routes that take no body refuse one (`400`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::error::ApiError;

/// Largest request body accepted (bytes).
pub const MAX_BODY: usize = 64 * 1024;

/// How much of an unread or refused body is read and thrown away after
/// answering, so the client receives the answer instead of a reset
/// connection. Larger bodies are cut off.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body is larger than {MAX_BODY} bytes"),
    )
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let unsupported = |got: &str| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("send the body as Content-Type: application/json (got {got})"),
        )
    };
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(unsupported("no Content-Type"));
    };
    let text = value
        .to_str()
        .map_err(|_| unsupported("an unreadable Content-Type"))?;
    let mut parts = text.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(unsupported(&format!(
            "{:?}",
            text.chars().take(80).collect::<String>()
        )));
    }
    for param in parts {
        let param = param.trim().replace(' ', "");
        if !param.eq_ignore_ascii_case("charset=utf-8") && !param.is_empty() {
            return Err(unsupported(&format!(
                "{:?}",
                text.chars().take(80).collect::<String>()
            )));
        }
    }
    Ok(())
}

/// Reads the whole body (up to [`MAX_BODY`]); `None` when it is empty.
async fn read(headers: &HeaderMap, body: Body) -> Result<Option<Bytes>, ApiError> {
    if let Some(len) = headers.get(header::CONTENT_LENGTH) {
        let len: u64 = len
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ApiError::bad_request("invalid Content-Length"))?;
        if len > MAX_BODY as u64 {
            return Err(too_large());
        }
    }
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}")))?;
        if buf.len().saturating_add(chunk.len()) > MAX_BODY {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    if buf.is_empty() {
        return Ok(None);
    }
    check_content_type(headers)?;
    Ok(Some(Bytes::from(buf)))
}

/// The route's JSON object body, required; `example` shows a valid one in
/// the error when it is missing.
pub async fn json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    example: &str,
) -> Result<T, ApiError> {
    let Some(bytes) = read(headers, body).await? else {
        return Err(ApiError::bad_request(format!(
            "this route needs a JSON body, for example {example}"
        )));
    };
    let value = parse_object(&bytes)?;
    serde_json::from_value(Value::Object(value))
        .map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))
}

/// Refuses any body: for routes that take none.
pub async fn none(headers: &HeaderMap, body: Body) -> Result<(), ApiError> {
    match read(headers, body).await? {
        None => Ok(()),
        Some(_) => Err(ApiError::bad_request("this route takes no request body")),
    }
}

/// Parses a JSON object, refusing duplicate keys at any depth.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let Strict(value) = serde::Deserialize::deserialize(&mut de)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(ApiError::bad_request(format!(
            "the body must be a JSON object, not {}",
            match other {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                Value::Array(_) => "an array",
                Value::Object(_) => "an object",
            }
        ))),
    }
}

/// A JSON value whose objects have no duplicate keys.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("not a finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if out.insert(key.clone(), v).is_some() {
                return Err(de::Error::custom(format!("duplicate field {key:?}")));
            }
        }
        Ok(Value::Object(out))
    }
}

/// Middleware: after the inner service answered, reads and discards what
/// is left of the request body (up to a limit), so the client receives
/// the answer — a 401, 403 or 413 sent before the body was read — rather
/// than a connection reset. Nothing read here is parsed or kept.
pub async fn finish_body(req: Request, next: Next) -> Response {
    let declared: Option<u64> = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    if declared == Some(0) || declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let shared = Arc::new(tokio::sync::Mutex::new(body.into_data_stream()));
    let reader = Arc::clone(&shared);
    let stream = futures::stream::unfold(reader, |s| async move {
        let item = s.lock().await.next().await;
        item.map(|i| (i, s))
    });
    let response = next
        .run(Request::from_parts(parts, Body::from_stream(stream)))
        .await;
    let drain = async {
        let mut rest = shared.lock().await;
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = rest.next().await {
            seen = seen.saturating_add(chunk.len());
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_only_and_no_duplicates() {
        assert!(parse_object(br#"{"a": 1, "b": {"c": [1, {"d": 2}]}}"#).is_ok());
        for bad in [
            &b"[]"[..],
            b"null",
            b"1",
            b"\"x\"",
            br#"{"a": 1, "a": 2}"#,
            br#"{"a": {"b": 1, "b": 1}}"#,
            br#"{"a": 1} {"b": 2}"#,
            b"{",
        ] {
            let e = parse_object(bad).unwrap_err();
            assert_eq!(
                e.status,
                StatusCode::BAD_REQUEST,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn content_types() {
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            check_content_type(&h)
        };
        assert!(with("application/json").is_ok());
        assert!(with("Application/JSON; charset=UTF-8").is_ok());
        for bad in [
            "text/plain",
            "application/json; charset=latin1",
            "application/jsonx",
            "multipart/form-data",
        ] {
            assert_eq!(
                with(bad).unwrap_err().status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{bad}"
            );
        }
        assert!(check_content_type(&HeaderMap::new()).is_err());
    }
}
